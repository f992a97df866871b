"""``python -m converters inspect``: kind detection and the summaries of good files."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from converters import __main__ as cli
from converters.cli import inspect as insp
from converters.formats import write_weight_arrays
from conftest import need

REPO = Path(__file__).resolve().parent.parent


def run(capsys, *args):
    code = cli.main(["inspect", *map(str, args)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err == ""
    return out


def rows(out):
    """The table rows of the output, split on runs of 2+ spaces."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("--"))
    import re
    return [re.split(r"\s{2,}", line.strip()) for line in lines[start + 1:] if line.strip()]


def test_detect_kind(oracle, tmp_path):
    sgd = oracle / "solver/sgd_step_itersize2"
    data = oracle / "solver/data"
    assert insp.detect_kind(sgd / "train_val.prototxt") == "net"
    assert insp.detect_kind(sgd / "solver.prototxt") == "solver"
    assert insp.detect_kind(oracle / "nets/caffenet_age/weights.caffemodel") == "caffemodel"
    assert insp.detect_kind(data / "mean.binaryproto") == "mean"
    assert insp.detect_kind(data / "lmdb_train") == "lmdb"
    assert insp.detect_kind(data / "lmdb_train/data.mdb") == "lmdb"
    # content decides when the extension does not
    for src, kind in ((oracle / "nets/caffenet_age/weights.caffemodel", "caffemodel"),
                      (data / "mean.binaryproto", "mean"),
                      (sgd / "solver.prototxt", "solver"),
                      (sgd / "train_val.prototxt", "net")):
        copy = tmp_path / f"file_{kind}.bin"
        copy.write_bytes(src.read_bytes())
        assert insp.detect_kind(copy) == kind


def test_inspect_v1_train_val(upstream_tree, capsys):
    """The real AdienceNet train_val, else the stand-in's (same V1 structure, spec 2.3)."""
    path = upstream_tree.root / "model_definitions/age_net_definitions/train_val_test_fold_is_0.prototxt"
    out = run(capsys, path)
    assert "V1 layers" in out and "layers      22 (TRAIN 20, TEST 21)" in out
    table = {r[1]: r for r in rows(out) if r[0] != "#"}
    assert len(table) == 21  # two layers are both named "data"
    data_rows = [r for r in rows(out) if r[1] == "data"]
    assert [r[-1] for r in data_rows] == ["TRAIN", "TEST"]
    assert table["accuracy"][2] == "Accuracy" and table["accuracy"][-1] == "TEST"
    assert table["conv1"][2] == "Convolution" and table["conv1"][-1] == "TRAIN+TEST"
    assert table["loss"][3] == "fc8,label"
    # parameter counts (spec: AdienceNet age has 11,415,048 parameters)
    assert "parameters  11,415,048" in out or "?" in table["fc6"][6]


def test_inspect_deploy_shapes_and_weights(oracle, capsys):
    deploy = oracle / "nets/adiencenet_age/deploy.prototxt"
    out = run(capsys, deploy, "--weights", oracle / "nets/adiencenet_age/weights.caffemodel")
    table = {r[1]: r for r in rows(out)}
    assert table["input"][2] == "Input" and table["input"][5] == "1x3x227x227"
    assert table["fc6"][6] == "150,592"  # 64 x 2352 + 64, from the caffemodel
    assert "parameters  180,552" in out
    # Caffe's ceil-mode pooling: 56 -> 28 -> 14 -> 7
    assert table["pool1"][5] == "1x12x28x28" and table["pool5"][5] == "1x48x7x7"
    assert table["prob"][5] == "1x8"


def test_inspect_without_shape_inference(oracle, capsys):
    out = run(capsys, oracle / "nets/caffenet_age/deploy.prototxt", "--no-shapes")
    table = {r[1]: r for r in rows(out)}
    assert table["conv1"][5] == "?" and table["conv1"][6] == "?"
    assert table["relu1"][6] == "-"
    assert "output shapes: not inferred" in out


def test_inspect_caffemodel(oracle, capsys):
    out = run(capsys, oracle / "nets/v1_caffemodel/weights_v1.caffemodel")
    table = {r[0]: r for r in rows(out)}
    assert table["fc6"][1] == "InnerProduct"
    assert table["fc6"][2] == "1x1x64x2352, 1x1x1x64"  # legacy V1 dims
    assert "parameters  180,552 (722,208 bytes as float32)" in out


def test_inspect_solver(upstream_tree, capsys):
    out = run(capsys, upstream_tree.root / "model_definitions/age_net_definitions/solver_test_fold_is_0.prototxt")
    assert "lr_policy            step" in out
    assert "net                  train_val_test_fold_is_0.prototxt" in out
    # the shortest decimal that reads back as the stored float32, not its double expansion
    assert "solver_mode          GPU" in out and "base_lr              0.001\n" in out
    assert "0.00100000005" not in out


def test_inspect_mean(upstream_tree, capsys):
    out = run(capsys, upstream_tree.root / "mean_images/mean_image/Test_fold_is_0/mean.binaryproto")
    assert "shape       3x256x256" in out
    # the real [i] fold-0 mean, else the exact channel means the stand-in was written with
    b, g, r = upstream_tree.facts["mean_bgr"][("i", 0)] if upstream_tree.synthetic else (78.5961, 88.0108, 115.0881)
    assert f"per channel B {b:.4f}, G {g:.4f}, R {r:.4f}" in out


def test_inspect_encoded_lmdb(oracle, capsys):
    need(oracle, "transform/lmdb_png")
    out = run(capsys, oracle / "transform/lmdb_png")
    assert "entries      8" in out and "datum shape  3x256x256" in out
    assert "labels       0: 2, 1: 3, 2: 2, 6: 1" in out and "encoded      8 of 8" in out


def test_inspect_raw_lmdb(oracle, capsys):
    """convert_imageset's raw-Datum LMDB of the solver data: count, shape and label histogram as
    Caffe wrote them (lmdb_arrays.npz is pycaffe's reading of the same LMDB)."""
    ref = np.load(oracle / "solver/data/lmdb_arrays.npz")
    out = run(capsys, oracle / "solver/data/lmdb_train")
    n, c, h, w = ref["arrays"].shape
    labels, counts = np.unique(ref["labels"], return_counts=True)
    assert f"entries      {n}" in out and f"datum shape  {c}x{h}x{w}" in out
    assert "labels       " + ", ".join(f"{int(k)}: {int(v)}" for k, v in zip(labels, counts)) in out
    assert "encoded      0 of " in out


def test_inspect_written_caffemodel_without_extension(tmp_path, capsys):
    path = tmp_path / "model.weights"
    write_weight_arrays([("ip", "InnerProduct", [np.ones((3, 4), np.float32), np.zeros(3, np.float32)])],
                        path, net_name="n")
    out = run(capsys, path)
    assert "ip     InnerProduct  3x4, 3       15" in out


def test_help_lists_inspect(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    assert "inspect" in capsys.readouterr().out


def test_real_entry_point(oracle):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run([sys.executable, "-m", "converters", "inspect",
                          str(oracle / "solver/data/mean.binaryproto")],
                         capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    mean = np.load(oracle / "solver/data/mean.npy").astype(np.float64)   # pycaffe's reading of the file
    assert f"per channel B {mean[0].mean():.4f}, G {mean[1].mean():.4f}, R {mean[2].mean():.4f}" in res.stdout
