"""The onnxruntime backend (converters.ort_backend) against real BVLC Caffe 1.0 (the ``oracle`` nets):
every output within 1e-5 relative (``max|ours - caffe| <= 1e-5 * max|caffe|``) with the same argmax
per row; one traced graph serves several weight sets; the backend choice rules."""
import numpy as np
import pytest
import torch

import converters
from converters import ort_backend
from conftest import assert_predictions_equal_caffes

ort = pytest.importorskip("onnxruntime", reason="onnxruntime (optional dependency) is not installed")

NETS = ["adiencenet_age", "adiencenet_gender", "caffenet_age", "googlenet_age", "vgg16_gender"]
RTOL = 1e-5


def _load(oracle, net):
    folder = oracle / "nets" / net
    return converters.load_caffe(folder / "deploy.prototxt", folder / "weights.caffemodel")


@pytest.mark.parametrize("net", NETS)
def test_every_output_matches_caffe(oracle, net, capsys):
    from conftest import need
    need(oracle, f"nets/{net}/weights.caffemodel", f"nets/{net}/input.npy")
    folder = oracle / "nets" / net
    model = _load(oracle, net)
    runner = ort_backend.for_inference(model, "onnxruntime")
    assert isinstance(runner, ort_backend.OrtNet)
    ref_out = dict(np.load(folder / "outputs.npz"))
    assert runner.output_names == sorted(ref_out)
    got = runner.forward_blobs({"data": torch.from_numpy(np.load(folder / "input.npy"))})
    worst = 0.0
    for name, ref in ref_out.items():
        ours = got[name].numpy()
        assert ours.shape == ref.shape, name
        scale = float(np.abs(ref).max())
        rel = float(np.abs(ours.astype(np.float64) - ref).max()) / scale
        assert rel <= RTOL, f"{net}: output {name!r} differs by {rel:.3g} relative"
        np.testing.assert_array_equal(ours.reshape(len(ours), -1).argmax(1), ref.reshape(len(ref), -1).argmax(1))
        worst = max(worst, rel)
    with capsys.disabled():
        print(f"\n[onnxruntime parity] {net}: worst relative output difference {worst:.3g}")


def test_one_graph_serves_other_weights(oracle):
    """The graph is traced once per structure; a second weight set must give *its* outputs."""
    model = _load(oracle, "adiencenet_age")
    other = _load(oracle, "adiencenet_age")
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(-0.5)
    x = torch.from_numpy(np.load(oracle / "nets" / "adiencenet_age" / "input.npy"))
    a = ort_backend.OrtNet(model)(x)
    b = ort_backend.OrtNet(other)(x)
    with torch.inference_mode():
        want_b = other(x)
    assert not torch.allclose(a, b)
    assert float((b - want_b).abs().max()) <= RTOL * float(want_b.abs().max())


def test_batch_axis_is_dynamic(oracle):
    model = _load(oracle, "caffenet_age")
    runner = ort_backend.OrtNet(model)
    x = torch.from_numpy(np.random.RandomState(0).uniform(-100, 100, (3, 3, 227, 227)).astype(np.float32))
    with torch.inference_mode():
        want = model(x)
    got = runner(x)
    assert got.shape == want.shape == (3, want.shape[1])
    assert float((got - want).abs().max()) <= RTOL * float(want.abs().max())


def test_backend_choice(monkeypatch):
    assert ort_backend.resolve_backend("auto", "cpu") == "onnxruntime"
    assert ort_backend.resolve_backend("torch", "cpu") == "torch"
    assert ort_backend.resolve_backend("auto", "cuda") == "torch"
    with pytest.raises(ort_backend.BackendError, match="CPU only"):
        ort_backend.resolve_backend("onnxruntime", "cuda")
    with pytest.raises(ort_backend.BackendError, match="unknown backend"):
        ort_backend.resolve_backend("tensorrt", "cpu")
    monkeypatch.setattr(ort_backend, "onnxruntime_available", lambda: False)
    assert ort_backend.resolve_backend("auto", "cpu") == "torch"
    with pytest.raises(ort_backend.BackendError, match="pip install"):
        ort_backend.resolve_backend("onnxruntime", "cpu")


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_protocol_oracle_predictions_identical_per_backend(oracle, backend, tmp_path):
    """run.py --backend B on the oracle's miniature folds: every image gets real Caffe's predictions
    (10-crop, single bottom-right, true centre) and probabilities within 1e-4."""
    import json

    from reproduce import run

    d = oracle / "protocol"
    expected = json.loads((d / "expected.json").read_text())["results"]
    folder, (table, row, col) = "gender_net_definitions", (3, "i", "A")
    rc = run.main(["--table", str(table), "--row", row, "--col", col, "--lmdb", str(d), "--means", str(d),
                   "--weights", str(d / "models"), "--weights-name", "weights.caffemodel", "--out", str(tmp_path),
                   "--no-progress", "--batch", "3", "--assets-mirror", str(tmp_path / "no-network"),
                   "--backend", backend,
                   "--folds", ",".join(str(f["fold"]) for f in expected[folder]["folds"])])
    assert rc == 0
    assert assert_predictions_equal_caffes(tmp_path, folder, expected[folder]) > 0


def test_cli_rejects_onnxruntime_without_it(monkeypatch, capsys):
    from reproduce import run

    monkeypatch.setattr(ort_backend, "onnxruntime_available", lambda: False)
    assert run.main(["--table", "2", "--backend", "onnxruntime"]) == 2
    err = capsys.readouterr().err
    assert "--backend" in err and "pip install" in err and "Traceback" not in err
