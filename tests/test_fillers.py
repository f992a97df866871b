"""Fillers vs real Caffe: constant and bilinear exact, random fillers statistically."""
import json
import math

import numpy as np
import pytest
import torch

from converters.formats import read_net
from converters.proto import caffe_pb2 as pb
from converters.fillers import bilinear_kernel, fans, fill, layer_fillers

SHAPE = (64, 32, 5, 5)


@pytest.fixture(scope="module")
def fixture(oracle):
    folder = oracle / "fillers"
    meta = json.loads((folder / "fixture.json").read_text())
    net = read_net(folder / "fillers.prototxt")
    fillers = {layer.name: layer_fillers(layer)[0] for layer in net.layer if layer.type == "Convolution"}
    return folder, meta, fillers


def _fill(filler, seed=1234):
    t = torch.empty(SHAPE)
    fill(filler, t, torch.Generator().manual_seed(seed))
    return t.numpy().astype(np.float64)


def test_fans():
    assert fans(SHAPE) == (800, 1600)
    assert fans((16, 1800)) == (1800, 16)
    assert fans((7,)) == (1, 7)


@pytest.mark.parametrize("name", ["constant", "bilinear"])
def test_exact(fixture, name):
    folder, _, fillers = fixture
    t = torch.empty(SHAPE)
    fill(fillers[name], t)
    expected = np.load(folder / f"{name}.npy")
    assert t.dtype == torch.float32 and expected.dtype == np.float32
    assert np.array_equal(t.numpy(), expected)


def test_bilinear_slice_matches_listed_values(fixture):
    _, meta, _ = fixture
    np.testing.assert_array_equal(bilinear_kernel(SHAPE)[0, 0],
                                  np.asarray(meta["fillers"]["bilinear"]["slice_0_0"], np.float32))


# name -> (support low, high or None, kurtosis of the distribution)
RANDOM = {
    "gaussian": (None, None, 3.0),
    "msra": (None, None, 3.0),
    "msra_fan_out": (None, None, 3.0),
    "xavier_fan_in": (-0.06123724356957945, 0.06123724356957945, 1.8),
    "xavier_fan_out": (-0.04330127018922193, 0.04330127018922193, 1.8),
    "xavier_average": (-0.05, 0.05, 1.8),
    "uniform": (-0.3, 0.7, 1.8),
}


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_random_fillers_statistics(fixture, name):
    _, meta, fillers = fixture
    low, high, kurt = RANDOM[name]
    caffe = meta["fillers"][name]["stats"]
    ours = _fill(fillers[name])
    n = ours.size
    sigma = caffe["std"]
    se_mean = sigma / math.sqrt(n)
    se_std = sigma * math.sqrt((kurt - 1) / (4 * n))
    # Two independent samples: their difference has sqrt(2) times the standard error.
    assert abs(ours.mean() - caffe["mean"]) <= 3 * math.sqrt(2) * se_mean
    assert abs(ours.std() - caffe["std"]) <= 3 * math.sqrt(2) * se_std
    theory = meta["fillers"][name]["theory"]
    expected_std = theory.get("std_value", theory.get("std"))
    if isinstance(expected_std, float):
        assert abs(ours.std() / expected_std - 1) < 0.02
    if low is not None:
        lo32, hi32 = float(np.float32(low)), float(np.float32(high))
        assert lo32 - 1e-7 <= ours.min() and ours.max() <= hi32 + 1e-7  # inside the support
        width = high - low
        assert ours.min() - low < 1e-3 * width and high - ours.max() < 1e-3 * width
        # Caffe's observed extremes obey the same bounds
        assert lo32 - 1e-7 <= caffe["min"] and caffe["max"] <= hi32 + 1e-7


def test_positive_unitball(fixture):
    _, meta, fillers = fixture
    ours = _fill(fillers["positive_unitball"])
    sums = ours.reshape(SHAPE[0], -1).sum(axis=1)
    assert ours.min() >= 0
    assert np.abs(sums - 1).max() < 1e-5
    caffe = meta["fillers"]["positive_unitball"]["stats"]
    assert abs(ours.mean() - caffe["mean"]) < 1e-7
    se_std = caffe["std"] * math.sqrt(0.8 / (4 * ours.size))
    assert abs(ours.std() - caffe["std"]) <= 3 * math.sqrt(2) * se_std * 4  # per-filter normalisation adds noise


def test_sparse_gaussian_mask():
    filler = pb.FillerParameter(type="gaussian", std=1.0, sparse=16)
    t = torch.empty(64, 1000)
    fill(filler, t, torch.Generator().manual_seed(3))
    nonzero = (t != 0).float().mean().item()
    p = 16 / 64
    assert abs(nonzero - p) < 4 * math.sqrt(p * (1 - p) / t.numel())


def test_reproducible_with_generator_and_defaults():
    f = pb.FillerParameter(type="xavier")
    a, b = torch.empty(8, 9), torch.empty(8, 9)
    fill(f, a, torch.Generator().manual_seed(5))
    fill(f, b, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    z = torch.ones(3)
    fill(pb.FillerParameter(), z)  # Caffe's default filler: constant 0
    assert torch.equal(z, torch.zeros(3))
    with pytest.raises(ValueError, match="unknown filler"):
        fill(pb.FillerParameter(type="orthogonal"), z)


def test_layer_fillers_defaults():
    layer = pb.LayerParameter(type="PReLU")
    assert layer_fillers(layer)[0].value == pytest.approx(0.25)
    layer = pb.LayerParameter(type="InnerProduct")
    weight, bias = layer_fillers(layer)
    assert weight.type == "constant" and bias.type == "constant"


SHARED = """
name: "shared"
layer { name: "data" type: "Input" top: "data" top: "label" input_param { shape { dim: 2 dim: 3 } shape { dim: 2 } } }
layer { name: "a" type: "InnerProduct" bottom: "data" top: "a" param { name: "w" }
        inner_product_param { num_output: 3 bias_term: false weight_filler { type: "constant" value: 1 } } }
layer { name: "b" type: "InnerProduct" bottom: "a" top: "b" param { name: "w" }
        inner_product_param { num_output: 3 bias_term: false weight_filler { type: "constant" value: 2 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "b" bottom: "label" top: "loss" }
"""


def test_a_shared_blob_gets_its_owners_filler_in_convert_and_solver(tmp_path):
    """Caffe: the sharing layer's blob is replaced by the owner's (ShareData), so the owner's filler
    shows; the conversion and the solver fill through converters.fillers alike."""
    import converters
    from converters.formats import parse_net
    from converters.solver import Solver

    net = converters.load_caffe(parse_net(SHARED), phase="train")
    assert net.caffe_layers["b"].weight is net.caffe_layers["a"].weight
    assert torch.equal(net.caffe_layers["a"].weight.detach(), torch.ones(3, 3))
    param = pb.SolverParameter(base_lr=0.1, lr_policy="fixed", max_iter=1, display=0, snapshot_prefix="s")
    param.net_param.CopyFrom(parse_net(SHARED))
    solver = Solver(param, root=tmp_path, progress=False, verbose=False, log_csv=False, plot=False,
                    train_data=lambda: {"data": torch.zeros(2, 3), "label": torch.zeros(2)})
    assert torch.equal(solver.net.caffe_layers["b"].weight.detach(), torch.ones(3, 3))


def test_fillers_module_does_not_import_the_solver():
    import subprocess
    import sys
    code = ("import sys, converters.fillers, converters.convert; "
            "print(sorted(m for m in sys.modules if m.startswith('converters.solver')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
