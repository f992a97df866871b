"""The CUDA paths against the CPU (and real Caffe): run on a machine with a GPU, skipped elsewhere.

* every converted oracle net (``caffe-oracle/nets``): every blob on CUDA within 1e-4 relative of
  the CPU's (``max|cuda - cpu| <= 1e-4 * max|cpu|``), same argmax per output row;
* one solver step (the oracle's SGD fixture, iter_size 2) on CUDA: every weight and momentum within
  1e-5 relative of the CPU step;
* the protocol oracle through ``run.py --device cuda``: every prediction identical to real Caffe's.

TF32 is off for the comparisons (``reproduce.protocol.strict_float32``): Caffe computes in float32.
``benchmarks/gpu_checks.sh`` runs this file with the benchmarks.
"""
import json

import numpy as np
import pytest
import torch

import converters
from conftest import assert_predictions_equal_caffes

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="CUDA is not available to torch here (benchmarks/gpu_checks.sh runs "
                                       "these on a GPU machine)")

NETS = ["adiencenet_age", "adiencenet_gender", "caffenet_age", "googlenet_age", "vgg16_gender"]


def _strict():
    from reproduce.protocol import strict_float32
    return strict_float32()


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("channels_last", [True, False], ids=["channels_last", "nchw"])
def test_oracle_net_on_cuda_matches_cpu(oracle, net, channels_last):
    folder = oracle / "nets" / net
    cpu = converters.load_caffe(folder / "deploy.prototxt", folder / "weights.caffemodel",
                                channels_last=channels_last)
    gpu = converters.load_caffe(folder / "deploy.prototxt", folder / "weights.caffemodel",
                                channels_last=channels_last).to("cuda")
    x = torch.from_numpy(np.load(folder / "input.npy"))
    with torch.inference_mode(), _strict():
        want = cpu.forward_blobs({"data": x})
        got = gpu.forward_blobs({"data": x.cuda()})
    ref_out = dict(np.load(folder / "outputs.npz"))
    for name, ref in want.items():
        g = got[name].float().cpu()
        scale = float(ref.abs().max())
        diff = float((g.double() - ref.double()).abs().max())
        assert diff <= 1e-4 * scale + 1e-30, f"{net}: blob {name!r} differs by {diff} (max|cpu| {scale})"
    for name in ref_out:
        a = got[name].cpu().reshape(len(got[name]), -1).argmax(1)
        b = want[name].reshape(len(want[name]), -1).argmax(1)
        assert torch.equal(a, b), f"{net}: argmax of {name!r} differs"


def _solver(folder, tmp_path, device):
    from converters.formats import read_solver
    from converters.solver import Solver

    param = read_solver(folder / "solver.prototxt")
    param.snapshot_prefix = str(tmp_path / f"snap_{device}")
    return Solver(param, root=folder, weights="init.caffemodel", progress=False, verbose=False,
                  log_csv=tmp_path / f"log_{device}.csv", plot=tmp_path / f"curve_{device}.png", device=device)


def test_one_solver_step_on_cuda_matches_cpu(oracle, tmp_path):
    folder = oracle / "solver" / "sgd_step_itersize2"
    with _strict():
        cpu = _solver(folder, tmp_path, "cpu")
        gpu = _solver(folder, tmp_path, "cuda")
        cpu.step(1)
        gpu.step(1)
    assert len(cpu.params) > 0
    for key, value in cpu.params.items():
        g = gpu.params[key].detach().cpu()
        scale = float(value.abs().max())
        diff = float((g.double() - value.detach().double()).abs().max())
        assert diff <= 1e-5 * scale, f"weight {key}: differs by {diff} (max|cpu| {scale})"
    for key, value in cpu.history_arrays().items():
        g = gpu.history_arrays()[key]
        scale = float(np.abs(value).max())
        assert float(np.abs(g.astype(np.float64) - value).max()) <= 1e-5 * max(scale, 1e-30), f"momentum {key}"
    assert abs(cpu.losses[0] - gpu.losses[0]) <= 1e-5 * abs(cpu.losses[0])


def test_protocol_oracle_on_cuda_gives_caffes_predictions(oracle, tmp_path):
    from reproduce import run

    d = oracle / "protocol"
    expected = json.loads((d / "expected.json").read_text())["results"]
    for folder, (table, row, col) in {"age_fromscratch_caffereference": (2, "i", "C"),
                                      "gender_net_definitions": (3, "i", "A")}.items():
        out = tmp_path / folder
        rc = run.main(["--table", str(table), "--row", row, "--col", col, "--lmdb", str(d), "--means", str(d),
                       "--weights", str(d / "models"), "--weights-name", "weights.caffemodel", "--out", str(out),
                       "--no-progress", "--batch", "3", "--assets-mirror", str(out / "no-network"),
                       "--device", "cuda"])
        assert rc == 0
        assert assert_predictions_equal_caffes(out, folder, expected[folder]) > 0
