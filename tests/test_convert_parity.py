"""Converted nets against real BVLC Caffe 1.0 (the golden files of the ``oracle`` fixture).

For every net in ``caffe-oracle/nets``: load deploy.prototxt + weights.caffemodel, feed
input.npy and compare every stored blob (after Caffe's in-place writers) and every output with
``max|ours - caffe| <= 1e-4 * max|caffe_B| + 1e-5``; the argmax of every output row must be
identical.  The worst relative difference per net is printed.
"""
import json

import numpy as np
import pytest
import torch

import converters
from conftest import need

NETS = ["adiencenet_age", "adiencenet_gender", "caffenet_age", "googlenet_age", "vgg16_gender"]
RTOL, ATOL = 1e-4, 1e-5


def _compare(blobs: dict, reference: dict, net: str) -> tuple[float, str]:
    worst, worst_name = 0.0, ""
    for name, ref in reference.items():
        assert name in blobs, f"{net}: blob {name!r} missing from our forward pass"
        ours = blobs[name].detach().cpu().numpy()
        assert ours.shape == ref.shape, f"{net}: blob {name!r} has shape {ours.shape}, Caffe {ref.shape}"
        diff = float(np.abs(ours.astype(np.float64) - ref).max())
        scale = float(np.abs(ref).max())
        assert diff <= RTOL * scale + ATOL, f"{net}: blob {name!r} differs by {diff} (max|caffe| {scale})"
        rel = diff / scale if scale else diff
        if rel >= worst:
            worst, worst_name = rel, name
    return worst, worst_name


def _run(oracle, net, caffemodel="weights.caffemodel", folder=None, channels_last=None):
    """Forward pass of an oracle net; ``channels_last`` None = load_caffe's default layout."""
    folder = oracle / "nets" / (folder or net)
    need(oracle, f"nets/{folder.name}/{caffemodel}", f"nets/{net}/input.npy")
    model = converters.load_caffe(folder / "deploy.prototxt", folder / caffemodel, channels_last=channels_last)
    assert model.missing_weights == []
    x = torch.from_numpy(np.load(oracle / "nets" / net / "input.npy"))
    with torch.inference_mode():
        blobs = model.forward_blobs({"data": x})
    return model, blobs


@pytest.mark.parametrize("net", NETS)
def test_net_matches_caffe(oracle, net, capsys):
    folder = oracle / "nets" / net
    need(oracle, f"nets/{net}/weights.caffemodel", f"nets/{net}/blobs.npz")
    fixture = json.loads((folder / "fixture.json").read_text())
    model, blobs = _run(oracle, net)
    ref_blobs = dict(np.load(folder / "blobs.npz"))
    ref_out = dict(np.load(folder / "outputs.npz"))
    assert model.output_names == fixture["outputs"] == sorted(ref_out)
    assert {k: list(v) for k, v in model.blob_shapes.items()} == fixture["blob_shapes"]
    worst_blob = _compare(blobs, ref_blobs, net)
    worst_out = _compare(blobs, ref_out, net)
    for name, ref in ref_out.items():
        ours = blobs[name].numpy().reshape(ref.shape[0], -1).argmax(1)
        np.testing.assert_array_equal(ours, ref.reshape(ref.shape[0], -1).argmax(1), err_msg=f"{net}: {name}")
        assert ours.tolist() == fixture["output_margins"][name]["argmax"]
    worst = max(worst_blob, worst_out)
    with capsys.disabled():
        print(f"\n[parity] {net}: worst relative difference {worst[0]:.3g} (blob {worst[1]!r}), "
              f"{len(ref_blobs)} blobs + {len(ref_out)} outputs within 1e-4*max+1e-5")


def test_v1_caffemodel_equals_new_caffemodel(oracle, capsys):
    """Legacy V1 caffemodel (num/channels/height/width blobs, IP weights 1x1xNxK): same parameters."""
    legacy = converters.load_caffe(oracle / "nets/v1_caffemodel/deploy.prototxt",
                                   oracle / "nets/v1_caffemodel/weights_v1.caffemodel")
    modern = converters.load_caffe(oracle / "nets/adiencenet_age/deploy.prototxt",
                                   oracle / "nets/adiencenet_age/weights.caffemodel")
    a, b = legacy.state_dict(), modern.state_dict()
    assert list(a) == list(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key          # exact
    x = torch.from_numpy(np.load(oracle / "nets/adiencenet_age/input.npy"))
    with torch.inference_mode():
        prob = legacy(x)
    ref = np.load(oracle / "nets/v1_caffemodel/outputs.npz")["prob"]
    diff = float(np.abs(prob.numpy() - ref).max())
    assert diff <= RTOL * np.abs(ref).max() + ATOL
    assert prob.numpy().argmax(1).tolist() == ref.argmax(1).tolist()
    with capsys.disabled():
        print(f"\n[parity] v1_caffemodel: parameters exact, worst output relative difference "
              f"{diff / np.abs(ref).max():.3g}")


def test_batch_rows_match_caffe_batch(oracle):
    """A net declared with batch 10 runs any batch size; rows equal Caffe's rows."""
    folder = oracle / "nets/adiencenet_gender"
    need(oracle, "nets/adiencenet_gender/weights.caffemodel")
    model = converters.load_caffe(folder / "deploy.prototxt", folder / "weights.caffemodel")
    assert model.input_shapes == {"data": (10, 3, 227, 227)}
    x = np.load(folder / "input.npy")
    ref = np.load(folder / "outputs.npz")["prob"]
    with torch.inference_mode():
        prob = model(torch.from_numpy(x[3:6])).numpy()
    assert np.abs(prob - ref[3:6]).max() <= RTOL * np.abs(ref).max() + ATOL


@pytest.mark.parametrize("net", ["caffenet_age", "adiencenet_age"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_channels_last_is_exact_too(oracle, net, channels_last):
    """Both memory layouts keep Caffe's values on whole nets (LRN, grouped conv, ceil pooling).
    load_caffe picks channels-last by default in the TEST phase; ``channels_last=False`` forces
    the plain NCHW layout, and the blobs show which layout really ran."""
    folder = oracle / "nets" / net
    model, blobs = _run(oracle, net, channels_last=channels_last)
    assert model.input_memory_format == (torch.channels_last if channels_last else None)
    conv1 = blobs["conv1"]
    assert conv1.is_contiguous(memory_format=torch.channels_last) is channels_last
    assert conv1.is_contiguous() is not channels_last
    _compare(blobs, dict(np.load(folder / "blobs.npz")), f"{net} ({'channels_last' if channels_last else 'NCHW'})")
    _compare(blobs, dict(np.load(folder / "outputs.npz")), f"{net} ({'channels_last' if channels_last else 'NCHW'})")
    assert model.output_names == ["prob"] and model.input_shapes == {"data": (1, 3, 227, 227)}
