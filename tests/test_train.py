"""``run.py --train`` (reproduce/train.py): upstream path rewriting, the paper's schedule, Q-G1, starting
points, missing inputs, and one full-size AdienceNet fold trained end to end on tiny LMDBs (2 iterations of
batch 1), resumed, and evaluated by run.py's table machinery.  The upstream prototxts are the real ones when
present, else the synthetic stand-in's (tests/upstream_standin.py: the same families, paths and quirks)."""
import csv
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from converters.formats import read_net, read_solver, write_lmdb, write_mean
from converters.formats.prototxt import filter_net, parse_net
from converters.net import with_automatic_tops
from reproduce import grid, run, train

FOLDER = "age_net_definitions"  # Table 2 [i] A: scratch, 227 crops of 256x256 LMDB images


@pytest.fixture
def upstream(upstream_pins):
    """The upstream folder (real, else the stand-in), its manifest in force for run.py's asset store."""
    return upstream_pins.root


def cli(argv) -> int:
    """run.py's main (which has --train)."""
    return run.main(argv)


def mean_stub(variant, fold):
    return Path("/means") / f"mean_image{train.VARIANT_SUFFIX[variant]}" / f"Test_fold_is_{fold}" / "mean.binaryproto"


def rewrite(upstream, cell, fold, **kw):
    f = upstream / "model_definitions" / cell.folder / f"train_val_test_fold_is_{fold}.prototxt"
    return train.rewrite_train_val(f.read_text(), file=f, fold=fold, lmdb_root="/data", mean_path=mean_stub,
                                   variant=train.training_variant(cell), remap=cell.folder == train.QG1_FOLDER, **kw)


# ---------------------------------------------------------------------------- rewriting
def test_every_upstream_train_val_maps_to_the_users_data(upstream):
    folders = train.unique_folders(grid.all_cells())
    assert len(folders) == 38
    seen_variants = set()
    for cell in folders:
        variant = train.training_variant(cell)
        seen_variants.add(variant)
        sfx = train.VARIANT_SUFFIX[variant]
        for k in range(5):
            r = rewrite(upstream, cell, k, batch_size=3)
            assert "/home/" not in r.text and "AgeGenderDeepLearning" not in r.text
            splits = [s for s, _ in r.lmdbs]
            # VGG validates on the training LMDB (spec 2.4), everything else on val
            assert splits == (["train", "train"] if cell.family == "vgg16" else ["train", "val"]), cell.folder
            for split, p in r.lmdbs:
                assert p == Path(f"/data/lmdb{sfx}/Test_fold_is_{k}/{cell.target}_{split}_lmdb")
            assert r.means and set(r.means) == {mean_stub(variant, k)}
            assert bool(r.remapped) == (cell.folder == train.QG1_FOLDER)
            assert re.findall(r"batch_size\s*:\s*(\d+)", r.text) == ["3", "3"]
            if k == 0:  # the rewritten text is still a valid net (parsing all 190 costs ~4 s)
                net = parse_net(r.text)
                layers = [l for l in list(net.layer) + list(net.layers) if l.data_param.source]
                assert [l.data_param.source for l in layers] == [str(p) for _, p in r.lmdbs]
                # Caffe's AutoTopBlobs: only the VGG train_val 'loss' layer is written without a top;
                # the converter gives it one (converters.net.with_automatic_tops)
                losses = [l for l in net.layer if l.type == "SoftmaxWithLoss"]
                assert losses and sum(len(l.top) == 0 for l in losses) == (1 if cell.family == "vgg16" else 0)
                auto = with_automatic_tops(filter_net(net, "train"))
                assert all(len(l.top) == 1 for l in auto.layer if l.type == "SoftmaxWithLoss")
    assert seen_variants == {"i", "r", "m"}


def test_unmappable_paths_name_file_and_line(upstream):
    f = upstream / "model_definitions" / FOLDER / "train_val_test_fold_is_2.prototxt"
    text = f.read_text()
    kw = dict(file=f, fold=2, lmdb_root="/d", mean_path=mean_stub, variant="i")
    bad = text.replace("lmdb/Test_fold_is_2/age_val_lmdb", "elsewhere/age_val_db")
    line = next(i for i, l in enumerate(bad.split("\n"), 1) if "elsewhere" in l)
    with pytest.raises(train.TrainError, match=rf"{re.escape(str(f))}:{line}: cannot map source"):
        train.rewrite_train_val(bad, **kw)
    bad = text.replace("mean.binaryproto", "mean.npy", 1)
    line = next(i for i, l in enumerate(bad.split("\n"), 1) if "mean.npy" in l)
    with pytest.raises(train.TrainError, match=rf":{line}: cannot map mean_file"):
        train.rewrite_train_val(bad, **kw)
    with pytest.raises(train.TrainError, match="is for fold 3"):
        train.rewrite_train_val(text.replace("Test_fold_is_2/age_train", "Test_fold_is_3/age_train"), **kw)
    with pytest.raises(train.TrainError, match=r"reads the \[r\] data"):
        train.rewrite_train_val(text.replace("/lmdb/", "/lmdb_unaligned/", 1), **kw)
    with pytest.raises(train.TrainError, match="absolute path '/home/x/y.txt'"):
        train.rewrite_train_val(text.replace('name: "CaffeNet"', 'name: "CaffeNet"\nfoo: "/home/x/y.txt"'), **kw)


def test_solver_gets_the_real_schedule_and_keeps_the_committed_hyperparameters(upstream, tmp_path):
    gammas = {}
    for cell in train.unique_folders(grid.all_cells()):
        max_iter, step = train.schedule(cell)
        for k in range(5):
            f = upstream / "model_definitions" / cell.folder / f"solver_test_fold_is_{k}.prototxt"
            text, changes = train.rewrite_solver(f.read_text(), file=f.name, net="../tv.prototxt",
                                                 max_iter=max_iter, snapshot=step)
            tmp = tmp_path / "solver.prototxt"
            tmp.write_text(text)
            new, old = read_solver(tmp), read_solver(f)
            assert (new.max_iter, new.snapshot, new.net, new.snapshot_prefix) == (
                max_iter, step, "../tv.prototxt", "caffenet_train")
            for fld in ("base_lr", "gamma", "stepsize", "momentum", "weight_decay", "lr_policy", "test_iter",
                        "test_interval", "display", "type"):
                assert getattr(new, fld) == getattr(old, fld), (cell.folder, k, fld)
            gammas[(cell.folder, k)] = new.gamma
    assert [round(gammas[("gender_net_definitions_mixed", k)], 3) for k in range(5)] == [0.1, 0.3, 0.3, 0.3, 0.1]
    assert round(gammas[("age_finetuning_caffereference", 0)], 3) == 0.3


def test_test_iter_zero_switches_validation_off_and_seed_is_added():
    text, changes = train.rewrite_solver('net: "a"\ntest_iter: 1000\ntest_interval: 1000\nmax_iter: 950\n'
                                         'snapshot: 50\nsnapshot_prefix: "caffenet_train"\n', file="s",
                                         net="b", max_iter=10, snapshot=5, test_iter=0, seed=7)
    body = [l for l in text.splitlines() if not l.startswith("#")]
    assert "test_interval: 0" in body and "test_initialization: false" in body and "random_seed: 7" in body
    assert "test_iter: 1000" in body and "max_iter: 10" in body and 'net: "b"' in body


# ---------------------------------------------------------------------------- schedule, init, Q-G1
@pytest.mark.parametrize("family,final,step", [("adiencenet", 50000, 1000), ("caffenet", 50000, 1000),
                                               ("googlenet", 170000, 1000), ("vgg16", 125000, 2500)])
def test_schedule_per_family_doubles_for_mixed(family, final, step):
    cells = [c for c in grid.all_cells() if not c.empty and c.family == family]
    assert cells
    for c in cells:
        expected = 2 * final if c.train == "m" else final
        assert train.schedule(c) == (expected, step)
        assert (c.final_iter, c.snapshot_step) == (expected, step)  # what run.py scores
        assert train.effective_schedule(c, iters=2) == (2, 2)
        assert train.effective_schedule(c, iters=5 * step) == (5 * step, step)
        assert train.effective_schedule(c, iters=10, snapshot_every=3) == (10, 3)


def test_starting_points_per_cell():
    got = {}
    for c in grid.all_cells():
        if not c.empty:
            got.setdefault((c.init, c.col), set()).add(train.init_file(c))
    assert got == {("scratch", "A"): {None}, ("scratch", "C"): {None}, ("scratch", "G"): {None},
                   ("imagenet", "C"): {"bvlc_reference_caffenet.caffemodel"},
                   ("imagenet", "G"): {"bvlc_googlenet.caffemodel"},
                   ("imagenet", "V"): {"VGG_ILSVRC_16_layers.caffemodel"},
                   ("imdbwiki", "V"): {"dex_imdb_wiki.caffemodel"}}


def args_ns(**kw):
    base = dict(iters=None, snapshot_every=None, init="/init", q_g1="mixed", batch_size=None, test_iter=None,
                seed=None, means=None)
    base.update(kw)
    return SimpleNamespace(**base)


def test_q_g1_trains_gender_mn_googlenet_on_the_mixed_data_and_flags_it(upstream, tmp_path):
    cell = grid.cell(3, "m,n", "G")
    assert cell.folder == train.QG1_FOLDER and cell.train == "m"
    jobs = train.make_jobs([cell], [1], args_ns(), tmp_path)
    assert jobs[0].variant == "m" and any("Q-G1" in f and "MIXED" in f for f in jobs[0].flags)
    assert jobs[0].init == Path("/init/bvlc_googlenet.caffemodel") and jobs[0].max_iter == 340000
    r = rewrite(upstream, cell, 1)
    assert {p.parent.parent.name for _, p in r.lmdbs} == {"lmdb_mixed"}
    assert {p.parent.parent.name for p in r.means} == {"mean_image_mixed"}
    assert len(r.remapped) == 4  # 2 sources + 2 mean files
    # --q-g1 committed: what the committed file says, the [r] data
    jobs = train.make_jobs([cell], [1], args_ns(q_g1="committed"), tmp_path)
    assert jobs[0].variant == "r" and "as committed" in jobs[0].flags[0]
    f = upstream / "model_definitions" / cell.folder / "train_val_test_fold_is_1.prototxt"
    r = train.rewrite_train_val(f.read_text(), file=f, fold=1, lmdb_root="/d", mean_path=mean_stub, variant="r")
    assert {p.parent.parent.name for _, p in r.lmdbs} == {"lmdb_unaligned"} and not r.remapped
    # nothing else is remapped: the [r,n] G gender cell has no flag
    assert not train.make_jobs([grid.cell(3, "r,n", "G")], [1], args_ns(), tmp_path)[0].flags


def test_tables_4_5_train_each_model_folder_once(tmp_path):
    cells = grid.select(4, ["i", "r"], ["A"])
    jobs = train.make_jobs(cells, [0, 1], args_ns(), tmp_path)
    assert sorted((j.folder, j.fold) for j in jobs) == [
        ("age_net_definitions", 0), ("age_net_definitions", 1),
        ("age_net_definitions_unaligned", 0), ("age_net_definitions_unaligned", 1)]


# ---------------------------------------------------------------------------- missing inputs
def test_missing_lmdbs_and_starting_points_say_what_where_and_exit_2(upstream, tmp_path, capsys):
    rc = cli(["--table", "2", "--row", "m,w", "--train", "--lmdb", str(tmp_path / "nodata"), "--init",
              str(tmp_path), "--folds", "0,1", "--out", str(tmp_path / "o"), "--assets-mirror", str(upstream),
              "--assets-dir", str(tmp_path / "assets"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "cannot train Table 2 ([m,w] V)" in err
    assert str(tmp_path / "nodata" / "lmdb_mixed" / "Test_fold_is_0" / "age_train_lmdb") in err
    assert str(tmp_path / "dex_imdb_wiki.caffemodel") in err
    assert "https://datacloud.hhi.fraunhofer.de/s/rakPNNWAQbeGCPx" in err
    assert "https://datacloud.hhi.fraunhofer.de/s/n6BLLnGPzinbe55" in err
    assert "Traceback" not in err and not (tmp_path / "o" / "weights").exists()


def test_no_data_no_init_and_bad_options_exit_2(upstream, tmp_path, capsys):
    rc = cli(["--table", "3", "--row", "i,n", "--col", "C", "--train", "--out", str(tmp_path / "o"),
              "--assets-mirror", str(upstream), "--assets-dir", str(tmp_path / "assets"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "neither --lmdb DIR nor --adience DIR" in err
    assert "--init DIR was not given (needed: bvlc_reference_caffenet.caffemodel)" in err
    for extra, needle in ((["--iters", "0"], "--iters"), (["--iter", "5"], "--iters N"),
                          (["--row", "x"], "row 'x'")):
        assert cli(["--table", "2", "--train", *extra]) == 2
        assert needle in capsys.readouterr().err


# ---------------------------------------------------------------------------- locking, raw Adience
def test_a_second_job_on_the_same_fold_is_refused(tmp_path):
    lock = tmp_path / "models_test_is_0" / "train.lock"
    with train.Lock(lock):
        with pytest.raises(train.TrainError, match="another job trains this fold"):
            train.Lock(lock).__enter__()
    assert not lock.exists()
    lock.write_text(json.dumps({"host": __import__("socket").gethostname(), "pid": 2 ** 22 + 12345}))
    with train.Lock(lock):  # stale lock of a dead process on this machine is taken over
        pass


def test_raw_adience_builds_the_training_lmdbs_of_the_mixed_variant(tmp_path):
    import cv2
    from converters.formats import iter_lmdb
    ada = tmp_path / "adience"
    rows = []
    for i, (d, prefix) in enumerate([("aligned", train.LANDMARK), ("faces", train.COARSE)] * 2):
        rel = f"u{i}/{prefix}.{i}.img{i}.jpg"
        (ada / d / f"u{i}").mkdir(parents=True)
        h, w = (40, 40) if d == "aligned" else (30, 50)
        cv2.imwrite(str(ada / d / rel), np.full((h, w, 3), 10 * i, np.uint8))
        rows.append(f"{rel} {i % 2}")
    lst = tmp_path / "gender_train.txt"
    lst.write_text("\n".join(rows) + "\n")
    store = SimpleNamespace(fold_list=lambda variant, fold, target, split: lst)
    dest = tmp_path / "data" / "lmdb_mixed" / "Test_fold_is_0" / "gender_train_lmdb"
    job = SimpleNamespace(rewritten=SimpleNamespace(lmdbs=[("train", dest)]), variant="m", fold=0)
    assert train.build_adience_lmdbs([job], SimpleNamespace(adience=ada), store, tmp_path / "data", False) == []
    recs = list(iter_lmdb(dest))
    assert len(recs) == 4 and all(a.shape == (3, 256, 256) for _, _, a in recs)
    assert sorted(k.split("_", 1)[1] for k, _, _ in recs) == sorted(r.split()[0] for r in rows)
    (ada / "faces" / "u1").rename(ada / "faces" / "gone")
    dest2 = dest.with_name("gender_val_lmdb")
    job.rewritten.lmdbs = [("val", dest2)]
    msg = train.build_adience_lmdbs([job], SimpleNamespace(adience=ada), store, tmp_path / "data", False)
    assert msg and "are missing" in msg[0] and not dest2.exists()


# ---------------------------------------------------------------------------- end to end
def tiny_data(root: Path, fold: int = 0):
    """Upstream layout, real 256x256 images, very few of them."""
    rng = np.random.default_rng(fold)
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        write_lmdb(root / "data" / "lmdb" / f"Test_fold_is_{fold}" / f"age_{split}_lmdb",
                   [(f"{i:08d}_u/img{i}.jpg", (int(rng.integers(0, 8)), rng.integers(0, 256, (3, 256, 256),
                                                                                     dtype=np.uint8)))
                    for i in range(n)])
    write_mean(np.full((3, 256, 256), 110, np.float32),
               root / "means" / "mean_image" / f"Test_fold_is_{fold}" / "mean.binaryproto")


def train_argv(tmp_path, upstream, *extra):
    return ["--table", "2", "--row", "i", "--col", "A", "--folds", "0", "--train", "--lmdb", str(tmp_path / "data"),
            "--means", str(tmp_path / "means"), "--out", str(tmp_path / "out"), "--batch-size", "1",
            "--test-iter", "1", "--seed", "3", "--assets-mirror", str(upstream), "--assets-dir",
            str(tmp_path / "assets"), "--no-progress", "--quiet", *extra]


def test_train_one_fold_end_to_end_resume_and_evaluate(upstream, tmp_path, capsys):
    tiny_data(tmp_path)
    assert cli(train_argv(tmp_path, upstream, "--iters", "2")) == 0
    out = capsys.readouterr().out
    folder = tmp_path / "out" / "weights" / FOLDER
    models = folder / "models_test_is_0"
    for ext in ("caffemodel", "solverstate"):
        assert (models / f"caffenet_train_iter_2.{ext}").is_file()
    assert (models / "caffenet_train_curve.png").is_file() and (models / "train_info.json").is_file()
    # the rewritten train_val reads the tmp LMDBs and means, with the reduced batch
    tv = read_net(folder / "train_val_test_fold_is_0.prototxt")
    data = [l for l in list(tv.layer) + list(tv.layers) if l.data_param.source]
    assert [l.data_param.source for l in data] == [
        str((tmp_path / "data" / "lmdb" / "Test_fold_is_0" / f"age_{s}_lmdb").resolve()) for s in ("train", "val")]
    assert {l.transform_param.mean_file for l in data} == {
        str((tmp_path / "means" / "mean_image" / "Test_fold_is_0" / "mean.binaryproto").resolve())}
    assert {l.data_param.batch_size for l in data} == {1}
    sv = read_solver(folder / "solver_test_fold_is_0.prototxt")
    assert (sv.max_iter, sv.snapshot, sv.base_lr, sv.stepsize) == (2, 2, pytest.approx(0.001), 10000)
    # the evaluation scored the new snapshot with the table machinery
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    (rec,) = res["cells"]
    assert rec["folder"] == FOLDER and rec["iteration"] == 2 and rec["folds"][0]["images"] == 2
    assert rec["folds"][0]["weights"] == str(models / "caffenet_train_iter_2.caffemodel")
    assert any("--iters 2" in d for d in res["training"]["deviations"])
    assert "DEVIATES from the paper" in out
    info = json.loads((models / "train_info.json").read_text())
    assert info["status"] == "trained" and info["iteration"] == 2 and info["init_weights"] is None

    # rerun with more iterations: resumes from the solverstate, keeps the log rows, no evaluation
    assert cli(train_argv(tmp_path, upstream, "--iters", "3", "--no-eval")) == 0
    info = json.loads((models / "train_info.json").read_text())
    assert (info["start_iter"], info["iteration"]) == (2, 3) and len(info["runs"]) == 2
    with open(models / "caffenet_train_log.csv") as fh:
        assert [int(r["iter"]) for r in csv.DictReader(fh) if r["loss"]] == [0, 1, 2]
    resumed = (models / "caffenet_train_iter_3.caffemodel").read_bytes()
    # same seed, uninterrupted: the resumed run is bit-identical
    other = tmp_path / "other"
    assert cli(train_argv(tmp_path, upstream, "--iters", "3", "--no-eval", "--weights", str(other))) == 0
    assert (other / FOLDER / "models_test_is_0" / "caffenet_train_iter_3.caffemodel").read_bytes() == resumed
    # a third run finds the final snapshot and does nothing
    capsys.readouterr()
    assert cli(train_argv(tmp_path, upstream, "--iters", "3", "--no-eval")) == 0
    assert "exists, nothing to do" in capsys.readouterr().err


def test_starting_point_is_passed_as_caffe_weights_but_not_when_resuming(upstream, tmp_path, monkeypatch):
    """C [i,n]: bvlc_reference_caffenet.caffemodel from --init; the Solver copies it by layer name."""
    import converters.solver as solver_mod
    calls = []

    class StubSolver:
        def __init__(self, path, root=None, weights=None, **kw):
            calls.append({"path": path, "root": Path(root), "weights": weights})
            self.root, self.iter, self.losses, self.test_results = Path(root), 0, [], []
            self.train_feed, self.test_feeds = SimpleNamespace(close=lambda: None), []
            self.max_iter = read_solver(path).max_iter

        def restore(self, path):
            self.iter = int(re.search(r"iter_(\d+)", str(path)).group(1))

        def solve(self):
            self.iter = self.max_iter
            for ext in ("caffemodel", "solverstate"):
                (self.root / f"caffenet_train_iter_{self.iter}.{ext}").write_bytes(b"x")

    monkeypatch.setattr(solver_mod, "Solver", StubSolver)
    init = tmp_path / "init"
    init.mkdir()
    (init / "bvlc_reference_caffenet.caffemodel").write_bytes(b"stand-in")
    for split in ("train", "val"):
        write_lmdb(tmp_path / "data" / "lmdb" / "Test_fold_is_0" / f"gender_{split}_lmdb",
                   [("00000000_a", (0, np.zeros((3, 8, 8), np.uint8)))])
    argv = ["--table", "3", "--row", "i,n", "--col", "C", "--folds", "0", "--train", "--no-eval", "--lmdb",
            str(tmp_path / "data"), "--init", str(init), "--out", str(tmp_path / "out"), "--assets-mirror",
            str(upstream), "--assets-dir", str(tmp_path / "assets"), "--no-progress", "--iters", "4"]
    assert cli(argv) == 0
    assert calls[-1]["weights"] == str(init / "bvlc_reference_caffenet.caffemodel")
    assert calls[-1]["root"] == tmp_path / "out" / "weights" / "gender_finetuning_caffereference" / "models_test_is_0"
    # the committed fine-tuning solver (gamma 0.3) with the requested length; mean from the upstream files
    sv = read_solver(calls[-1]["root"].parent / "solver_test_fold_is_0.prototxt")
    assert (round(sv.gamma, 3), sv.max_iter) == (0.3, 4)
    tv = (calls[-1]["root"].parent / "train_val_test_fold_is_0.prototxt").read_text()
    assert str(tmp_path / "assets" / "mean_images" / "mean_image" / "Test_fold_is_0" / "mean.binaryproto") in tv
    assert cli(argv[:-1] + ["8"]) == 0  # resumes from iteration 4: no --weights copy
    assert calls[-1]["weights"] is None
