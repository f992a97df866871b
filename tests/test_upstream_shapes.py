"""The paper's 38 upstream deploy nets (full size, no weights) build and give Caffe's shapes,
and the upstream train_val nets convert for training (Data layers become inputs, losses flow).
Without the real files they run on the synthetic stand-in's nets (tests/upstream_standin.py), written
from the spec's description of the four families; the expected shapes follow from those architectures.
"""
import numpy as np
import pytest
import torch

import converters
from converters.formats import filter_net, read_net
from converters.net import CaffeNet

FAMILIES = {
    # AdienceNet: ceil pooling 56 -> 28 -> 14 -> 7, fc6 sees 384 * 7 * 7 = 18816 inputs
    "net_definitions": {"conv1": 56, "pool1": 28, "pool2": 14, "pool5": 7},
    "caffereference": {"conv1": 55, "pool1": 27, "pool2": 13, "pool5": 6},
    "googlenet": {"conv1/7x7_s2": 112, "pool1/3x3_s2": 56, "pool2/3x3_s2": 28, "pool3/3x3_s2": 14,
                  "pool4/3x3_s2": 7, "pool5/7x7_s1": 1},
    "vgg16": {"conv1_1": 224, "pool1": 112, "pool2": 56, "pool3": 28, "pool4": 14, "pool5": 7},
}
FC6_INPUT = {"net_definitions": 18816, "caffereference": 9216, "vgg16": 25088}


@pytest.fixture(scope="module")
def upstream(upstream_tree):
    """The upstream folder: the real one when present, else the synthetic stand-in built to spec 2.1-2.4."""
    return upstream_tree.root


def _family(folder: str) -> str:
    for key in FAMILIES:
        if key in folder:
            return key
    raise AssertionError(f"unknown upstream net family: {folder}")


def _deploys(upstream):
    return sorted((upstream / "model_definitions").glob("*/deploy.prototxt"))


def test_all_upstream_deploy_nets_have_caffe_shapes(upstream):
    deploys = _deploys(upstream)
    assert len(deploys) == 38
    for path in deploys:
        family = _family(path.parent.name)
        shapes = converters.infer_shapes(path)
        for blob, size in FAMILIES[family].items():
            assert shapes[blob][2:] == (size, size), f"{path.parent.name}: {blob} {shapes[blob]}"
        batch = shapes["data"][0]
        if family in FC6_INPUT:
            assert int(np.prod(shapes[next(b for b in ("pool5",) if b in shapes)][1:])) == FC6_INPUT[family]
            assert shapes["fc6"][0] == batch
        else:
            assert shapes["inception_5b/output"] == (batch, 1024, 7, 7)
            assert {"loss1/loss1", "loss2/loss1", "loss3/loss3"} <= set(shapes)


@pytest.mark.parametrize("folder", ["age_net_definitions", "gender_fromscratch_googlenet",
                                    "age_finetuning_caffereference"])
def test_upstream_forward_on_random_weights(upstream, folder):
    """A real forward (batch 1, random weights) gives every blob its inferred shape."""
    path = upstream / "model_definitions" / folder / "deploy.prototxt"
    model = converters.load_caffe(path, input_shapes={"data": (1, 3) + converters.infer_shapes(path)["data"][2:]})
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.01)
        blobs = model.forward_blobs({"data": torch.randn(model.input_shapes["data"])})
    for name, shape in model.blob_shapes.items():
        assert tuple(blobs[name].shape) == shape, name
    out = [blobs[name] for name in model.output_names]
    for o in out:
        torch.testing.assert_close(o.sum(1), torch.ones(1))        # softmax outputs


def test_vgg16_full_forward_once(upstream):
    path = upstream / "model_definitions/gender_finetuning_vgg16/deploy.prototxt"
    model = converters.load_caffe(path)
    assert model.blob_shapes["fc6"] == (1, 4096) and model.output_names == ["prob"]
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.01)
    with torch.inference_mode():
        prob = model(torch.randn(1, 3, 224, 224))
    assert tuple(prob.shape) == (1, 2)


def test_train_net_from_upstream_train_val(upstream):
    path = upstream / "model_definitions/age_net_definitions/train_val_test_fold_is_0.prototxt"
    # TRAIN: the TRAIN Data layer becomes the inputs data (batch 50, crop 227) and label
    shapes = converters.infer_shapes(read_net(path), phase="train")
    assert shapes["data"] == (50, 3, 227, 227) and shapes["label"] == (50,) and shapes["loss"] == ()
    model = converters.load_caffe(path, phase="train", input_shapes={"data": (2, 3, 227, 227), "label": (2,)})
    assert model.phase == "TRAIN"
    assert model.input_names == ["data", "label"]
    assert model.output_names == ["loss"]                       # Accuracy is TEST-only upstream
    assert model.loss_weights == {"loss": 1.0}
    specs = list(model.param_specs())
    assert [(n, i, lr, d) for n, i, _, lr, d in specs[:2]] == [("conv1", 0, 1.0, 1.0), ("conv1", 1, 2.0, 0.0)]
    torch.manual_seed(0)
    blobs = model.forward_blobs({"data": torch.randn(2, 3, 227, 227) * 50, "label": torch.tensor([0.0, 5.0])})
    loss = model.total_loss(blobs)
    assert blobs["loss"].shape == () and torch.isfinite(loss)
    loss.backward()
    for name in ("conv1", "fc8"):
        grad = model.caffe_layers[name].weight.grad
        assert grad is not None and grad.abs().sum() > 0, name
    # TEST: the TEST Data layer, Accuracy included, Dropout is the identity
    test = converters.load_caffe(path, phase="test", input_shapes={"data": (2, 3, 227, 227), "label": (2,)})
    assert test.output_names == ["accuracy", "loss"]
    out = test({"data": torch.randn(2, 3, 227, 227), "label": torch.tensor([1.0, 2.0])})
    assert out["accuracy"].shape == () and 0 <= out["accuracy"].item() <= 1


def test_googlenet_train_val_loss_weights(upstream):
    path = upstream / "model_definitions/age_fromscratch_googlenet/train_val_test_fold_is_0.prototxt"
    with torch.device("meta"):
        train = CaffeNet(filter_net(read_net(path), "train"))
        test = CaffeNet(filter_net(read_net(path), "test"))
    w = float(np.float32(0.3))                       # Caffe's loss weights are float32
    assert train.loss_weights == {"loss1/loss1": w, "loss2/loss1": w, "loss3/loss3": 1.0}
    assert train.output_names == ["loss1/loss1", "loss2/loss1", "loss3/loss3"]
    assert train.input_shapes == {"data": (32, 3, 224, 224), "label": (32,)}
    assert test.input_shapes["data"] == (50, 3, 224, 224)
    assert "loss3/top-2" in test.output_names and "loss3/top-2" not in train.blob_shapes
    # Caffe's learnable params: 2 per Convolution/InnerProduct, in layer order
    layers = [l for l in train.net_param.layer if l.type in ("Convolution", "InnerProduct")]
    assert len(list(train.param_specs())) == 2 * len(layers)
