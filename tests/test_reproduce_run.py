"""``reproduce/run.py``: argument handling, missing inputs, outputs (results.json schema, CSVs, chart)
and resuming from the per-(cell, fold) cache.  The converter is replaced by a small stand-in net so
that these tests exercise the command, not the numerics (tests/test_protocol_oracle.py does that)."""
import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import converters
from converters.formats import write_mean
from converters.proto import caffe_pb2
from reproduce import run

REPO = Path(__file__).resolve().parents[1]
FOLDER = "age_net_definitions"  # Table 2 [i] A: 227 input, prob, final snapshot 50000
N_IMAGES = 3


class FakeNet(torch.nn.Module):
    """Softmax of a random linear map of quadrant means; the map depends on the weights file name."""

    def __init__(self, weights):
        super().__init__()
        seed = int(hashlib.sha256(str(weights).encode()).hexdigest()[:8], 16)
        self.w = torch.randn(12, 8, generator=torch.Generator().manual_seed(seed))
        self.output_names = ["prob"]

    def forward(self, x):
        h = x.shape[-1] // 2
        q = torch.cat([x[..., :h, :h].mean((2, 3)), x[..., :h, h:].mean((2, 3)),
                       x[..., h:, :h].mean((2, 3)), x[..., h:, h:].mean((2, 3))], 1)
        return torch.softmax(q @ self.w / 10.0, dim=1)


class Loads(list):
    fail = ()  # models_test_is_K folder names whose loading crashes


@pytest.fixture
def loads(monkeypatch):
    """Replace converters.load_caffe; returns the list of weights files loaded."""
    calls = Loads()

    def fake_load(prototxt, caffemodel=None, phase="test", **kw):
        assert phase == "test" and Path(prototxt).is_file()
        calls.append(Path(caffemodel))
        if calls[-1].parent.name in calls.fail:
            raise RuntimeError("simulated crash")
        return FakeNet(caffemodel)

    monkeypatch.setattr(converters, "load_caffe", fake_load, raising=False)
    return calls


def write_lmdb(path, images):
    import lmdb
    path.mkdir(parents=True)
    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for i, (label, arr) in enumerate(images):
            d = caffe_pb2.Datum(channels=3, height=256, width=256, data=arr.tobytes(), label=label)
            txn.put(f"{i:08d}_u/img{i}.jpg".encode(), d.SerializeToString())
    env.close()


@pytest.fixture
def layout(tmp_path):
    rng = np.random.default_rng(0)
    for k in range(5):
        write_lmdb(tmp_path / "data" / "lmdb" / f"Test_fold_is_{k}" / "age_test_lmdb",
                   [(int(rng.integers(0, 8)), rng.integers(0, 256, (3, 256, 256), dtype=np.uint8))
                    for _ in range(N_IMAGES)])
        write_mean(rng.random((3, 256, 256)).astype(np.float32) * 100,
                   tmp_path / "means" / "mean_image" / f"Test_fold_is_{k}" / "mean.binaryproto")
        w = tmp_path / "weights" / FOLDER / f"models_test_is_{k}"
        w.mkdir(parents=True)
        (w / "caffenet_train_iter_50000.caffemodel").write_bytes(b"stand-in")
    (tmp_path / "weights" / FOLDER / "deploy.prototxt").write_text('name: "stand-in"\n')
    return tmp_path


def args_for(layout, *extra):
    return ["--table", "2", "--row", "i", "--col", "A", "--lmdb", str(layout / "data"), "--means",
            str(layout / "means"), "--weights", str(layout / "weights"), "--out", str(layout / "out"),
            "--no-progress", "--assets-mirror", str(layout / "no-network-here"), *extra]


# ---------------------------------------------------------------------------- arguments
@pytest.mark.parametrize("argv,needle", [
    (["--table", "7"], "--table"),
    (["--table", "2", "--row", "x,y"], "row 'x,y' is not in Table 2"),
    (["--table", "4", "--col", "V"], "column 'V' is not in Table 4"),
    (["--table", "2", "--folds", "0,5"], "--folds"),
    (["--table", "2", "--iter", "1000", "--source", "readme"], "exclude"),
    (["--table", "2", "--bogus"], "unrecognized arguments"),
    (["--table", "2", "--lmdb", "a", "--adience", "b"], "either --lmdb or --adience"),
    ([], "one of --table"),
])
def test_bad_arguments_give_one_line_and_exit_2(argv, needle, capsys):
    assert run.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and err.startswith("run.py: error:")


def test_list_prints_every_cell(capsys):
    assert run.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "age_imdbwiki_vgg16_mixed" in out and "gender_finetuning_googlenet_mixed" in out and "Q-G1" in out


def test_empty_cells_are_reported_as_such(capsys):
    assert run.main(["--table", "2", "--row", "r,w"]) == 0
    out = capsys.readouterr().out
    assert out.count("(empty in the paper)") == 4 and "nothing to evaluate" in out


# ---------------------------------------------------------------------------- missing inputs
def test_missing_data_and_weights_say_what_and_where_exit_2(tmp_path, capsys):
    rc = run.main(["--table", "2", "--row", "m,w", "--out", str(tmp_path / "o"), "--assets-mirror",
                   str(tmp_path / "none")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "inputs are missing" in err and "[m,w] V" in err
    assert "--lmdb" in err and "--adience" in err and "--weights" in err
    for link in ("https://datacloud.hhi.fraunhofer.de/s/n6BLLnGPzinbe55",
                 "https://datacloud.hhi.fraunhofer.de/s/TQnGNJmQZLWkQ7X",
                 "https://talhassner.github.io/home/projects/Adience/Adience-data.html#agegender"):
        assert link in err
    assert not (tmp_path / "o").exists()


def test_missing_files_are_listed_with_their_expected_paths(layout, capsys, loads):
    (layout / "weights" / FOLDER / "models_test_is_3" / "caffenet_train_iter_50000.caffemodel").unlink()
    assert run.main(args_for(layout, "--iter", "40000")) == 2
    err = capsys.readouterr().err
    assert "weights files not found (5)" in err
    assert str(layout / "weights" / FOLDER / "models_test_is_0" / "caffenet_train_iter_40000.caffemodel") in err
    assert run.main(args_for(layout, "--folds", "2,3")) == 2
    err = capsys.readouterr().err
    assert "weights file not found (1)" in err and "models_test_is_3" in err
    assert run.main(args_for(layout, "--col", "C")) == 2  # C [i]: no LMDB problem, no weights
    assert "age_fromscratch_caffereference" in capsys.readouterr().err
    assert loads == []


def test_script_entry_point_exits_2_without_inputs(tmp_path):
    proc = subprocess.run([sys.executable, "reproduce/run.py", "--table", "3", "--row", "i", "--col", "A",
                           "--out", str(tmp_path / "o")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "datacloud.hhi.fraunhofer.de" in proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------- outputs
def test_results_json_schema_csv_predictions_and_chart(layout, loads, capsys):
    assert run.main(args_for(layout)) == 0
    out = capsys.readouterr().out
    assert "| T2 age [i] A | age_net_definitions | 51.4 / 87.0 | 51.4 / 87.0 |" in out
    assert "bottom-right" in out and "images/s" in out
    res = json.loads((layout / "out" / "results.json").read_text())
    (cell,) = res["cells"]
    for key in ("table", "row", "col", "folder", "published", "folds", "mean", "std"):
        assert key in cell
    assert (cell["table"], cell["row"], cell["col"], cell["folder"]) == (2, "[i]", "A", FOLDER)
    assert cell["published"] == {"paper": {"acc": 0.514, "one_off": 0.87}, "readme": {"acc": 0.514, "one_off": 0.87}}
    assert [f["fold"] for f in cell["folds"]] == [0, 1, 2, 3, 4]
    metrics = ("acc", "one_off", "acc_single", "one_off_single", "acc_centre", "one_off_centre")
    for f in cell["folds"]:
        assert f["images"] == N_IMAGES and f["iteration"] == 50000
        assert all(0.0 <= f[m] <= 1.0 for m in metrics)
        preds = list(csv.DictReader(open(layout / "out" / "predictions" / f"{FOLDER}_fold{f['fold']}.csv")))
        assert len(preds) == N_IMAGES
        assert sorted(preds[0]) == sorted(["key", "label", "prediction", "prediction_single", "prediction_centre"]
                                          + [f"prob_{c}" for c in range(8)])
        acc = np.mean([int(p["prediction"]) == int(p["label"]) for p in preds])
        assert f["acc"] == pytest.approx(acc)
        for p in preds:
            probs = [float(p[f"prob_{c}"]) for c in range(8)]
            assert int(p["prediction"]) == int(np.argmax(probs)) and sum(probs) == pytest.approx(1, abs=1e-5)
        assert np.sum(f["confmat"]["oversampled"]) == N_IMAGES
    for m in metrics:
        vals = [f[m] for f in cell["folds"]]
        assert cell["mean"][m] == pytest.approx(np.mean(vals)) and cell["std"][m] == pytest.approx(np.std(vals))
    assert res["summary"]["images"] == 5 * N_IMAGES and res["summary"]["images_per_s"] > 0
    rows = list(csv.DictReader(open(layout / "out" / "results.csv")))
    assert [r["fold"] for r in rows] == ["0", "1", "2", "3", "4", "mean", "std"]
    assert float(rows[5]["acc"]) == pytest.approx(cell["mean"]["acc"]) and rows[0]["paper_acc"] == "0.514"
    assert (layout / "out" / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(loads) == 5


def test_interrupted_run_resumes_from_the_cache(layout, loads, capsys):
    w = layout / "weights" / FOLDER
    loads.fail = ("models_test_is_3",)  # the run dies when it loads fold 3's model
    with pytest.raises(RuntimeError, match="simulated crash"):
        run.main(args_for(layout))
    assert len(list((layout / "out" / "cache").glob("*.json"))) == 3  # folds 0, 1, 2 done
    loads.fail = ()
    loads.clear()
    assert run.main(args_for(layout)) == 0
    assert [p.parent.name for p in loads] == ["models_test_is_3", "models_test_is_4"]
    first = json.loads((layout / "out" / "results.json").read_text())
    loads.clear()
    assert run.main(args_for(layout)) == 0  # everything cached now
    assert loads == [] and "5 fold result(s) reused" in capsys.readouterr().out
    again = json.loads((layout / "out" / "results.json").read_text())
    assert again["cells"][0]["mean"] == first["cells"][0]["mean"]
    # a changed input invalidates that fold's cache entry
    (w / "models_test_is_1" / "caffenet_train_iter_50000.caffemodel").write_bytes(b"new weights")
    assert run.main(args_for(layout)) == 0
    assert [p.parent.name for p in loads] == ["models_test_is_1"]


def test_readme_source_takes_the_best_snapshot_per_metric(layout, loads):
    for k in range(5):
        d = layout / "weights" / FOLDER / f"models_test_is_{k}"
        for it in (1000, 2000, 3000, 51000):
            (d / f"caffenet_train_iter_{it}.caffemodel").write_bytes(b"x")
        (d / "caffenet_train_iter_1500.caffemodel").write_bytes(b"x")  # not on the 1000 grid
    (layout / "weights" / FOLDER / "models_test_is_2" / "caffenet_train_iter_3000.caffemodel").unlink()
    assert run.main(args_for(layout, "--source", "readme")) == 0
    (cell,) = json.loads((layout / "out" / "results.json").read_text())["cells"]
    snaps = {s["iteration"]: s for s in cell["snapshots"]}
    assert sorted(snaps) == [1000, 2000, 50000]  # present in every fold, on the grid, <= min(final, 100k)
    best_acc = max(snaps.values(), key=lambda s: s["mean"]["acc"])
    best_one = max(snaps.values(), key=lambda s: s["mean"]["one_off"])
    assert cell["mean"]["acc"] == best_acc["mean"]["acc"] and cell["iteration"] == best_acc["iteration"]
    assert cell["mean"]["one_off"] == best_one["mean"]["one_off"]
    assert (layout / "out" / "predictions" / f"{FOLDER}_fold0_iter2000.csv").is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_request_without_cuda_is_a_usage_error(capsys):
    assert run.main(["--table", "2", "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_adience_input_uses_the_upstream_fold_lists_and_reports_missing_images(layout, upstream_pins, loads, capsys):
    """The fold list comes through the asset store from the upstream mirror (the real files, else the
    stand-in with its manifest)."""
    upstream = upstream_pins.root
    n = len((upstream / "folds/train_val_txt_files_per_fold/test_fold_is_0/age_test.txt").read_text().splitlines())
    assert n == (upstream_pins.facts["lists"][("i", 0, "age", "test")] if upstream_pins.synthetic else 4316)
    (layout / "adience" / "aligned").mkdir(parents=True)
    rc = run.main(["--table", "2", "--row", "i", "--col", "A", "--folds", "0", "--adience", str(layout / "adience"),
                   "--means", str(layout / "means"), "--weights", str(layout / "weights"), "--out",
                   str(layout / "out"), "--no-progress", "--assets-mirror", str(upstream), "--assets-dir",
                   str(layout / "assets")])
    assert rc == 2
    err = capsys.readouterr().err
    # fold 0 [i] age test list (4316 faces upstream), looked up under aligned/<user>/landmark_aligned_face.*
    assert f"{n} of the {n} Adience images listed in" in err and "test_fold_is_0/age_test.txt" in err
    assert str(layout / "adience" / "aligned") in err and "landmark_aligned_face." in err
    assert loads == []
