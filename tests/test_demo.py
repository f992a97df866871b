"""The offline demo (reproduce.demo): the whole pipeline on SYNTHETIC data, end to end, fast."""
import json

import cv2
import numpy as np
import pytest

from converters.formats import read_mean, read_net, read_solver
from reproduce import demo

FOLDS = (0, 1)
ITERS = 300


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    data = demo.run_demo(out, folds=FOLDS, iters=ITERS, progress=False)
    return out, data


def test_two_folds_learn_far_above_chance(run):   # its wall time: benchmarks/demo.py
    out, data = run
    cells = {c["target"]: c for c in data["cells"]}
    assert set(cells) == {"age", "gender"}
    age, gender = cells["age"], cells["gender"]
    assert [f["fold"] for f in age["folds"]] == list(FOLDS)
    # chance: age 1/8 = 0.125 (1-off about 0.3), gender 0.5; the synthetic signal gives ~0.45 / ~0.88 here
    assert age["mean"]["acc"] > 0.30 and min(f["acc"] for f in age["folds"]) > 0.22
    assert age["mean"]["one_off"] > 0.60
    assert gender["mean"]["acc"] > 0.75 and min(f["acc"] for f in gender["folds"]) > 0.7


def test_results_are_labelled_synthetic_with_the_paper_beside(run):
    out, data = run
    saved = json.loads((out / "results.json").read_text())
    assert saved["SYNTHETIC"] is True and "SYNTHETIC" in saved["note"]
    assert saved["generated_by"] == "reproduce/demo.py"
    for cell in saved["cells"]:
        assert cell["synthetic"] is True and "SYNTHETIC" in cell["dataset"]
        assert cell["row"] == "[i]" and cell["col"] == "A"
        assert cell["folder"] == f"{cell['target']}_net_definitions"
        assert set(cell["mean"]) >= {"acc", "one_off", "acc_single", "acc_centre"}
    published = {c["target"]: c["published"]["paper"] for c in saved["cells"]}
    assert published["age"] == {"acc": 0.514, "one_off": 0.87} and published["gender"]["acc"] == 0.881
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("dataset,table,target") and all(l.startswith("SYNTHETIC,") for l in csv_lines[1:])
    assert "SYNTHETIC" in (out / "results.md").read_text()
    for name in ("results.png", "training_curves.png"):
        assert (out / name).stat().st_size > 1000
    for target in ("age", "gender"):
        for k in FOLDS:
            pred = (out / "predictions" / f"{target}_net_definitions_fold{k}.csv").read_text().splitlines()
            assert pred[0].startswith("key,label,prediction") and len(pred) > 50


def test_pipeline_artefacts_follow_the_upstream_layout(run):
    out, _ = run
    assert (out / "adience" / "fold_0_data.txt").is_file() and (out / "adience" / "aligned").is_dir()
    for k in FOLDS:
        lists = out / "folds" / "train_val_txt_files_per_fold" / f"test_fold_is_{k}"
        assert len(list(lists.glob("*.txt"))) == 8
        lmdbs = out / "lmdb" / f"Test_fold_is_{k}"
        assert sorted(p.name for p in lmdbs.iterdir()) == sorted(
            f"{t}_{p}_lmdb" for t in ("age", "gender") for p in ("train", "val", "test"))
        mean_file = out / "mean_image" / f"Test_fold_is_{k}" / "mean.binaryproto"
        mean = read_mean(mean_file)
        assert mean.shape == (3, 64, 64)
        # the mean is the gender training set's (upstream section 4.6), used by both targets.  Recomputed
        # from the images: the solver's data layer keeps the train LMDBs open in this process.
        assert np.abs(mean - _list_mean(out, k, "gender")).max() < 1e-3
        assert np.abs(mean - _list_mean(out, k, "age")).max() > 1e-2
        for target in ("age", "gender"):
            folder = out / "models" / f"{target}_net_definitions"
            model = folder / f"models_test_is_{k}" / f"caffenet_train_iter_{ITERS}.caffemodel"
            assert model.is_file() and (folder / f"models_test_is_{k}" / "caffenet_train_log.csv").is_file()
            net = read_net(folder / f"train_val_test_fold_is_{k}.prototxt")
            data = [l for l in net.layer if l.type == "Data"]
            assert [l.transform_param.mean_file for l in data] == [str(mean_file.resolve())] * 2
            assert data[0].data_param.source.endswith(f"Test_fold_is_{k}/{target}_train_lmdb")
            assert data[1].data_param.source.endswith(f"Test_fold_is_{k}/{target}_val_lmdb")
            solver = read_solver(folder / f"solver_test_fold_is_{k}.prototxt")
            assert solver.max_iter == ITERS and solver.lr_policy == "step" and solver.momentum == pytest.approx(0.9)


def _list_mean(out, k, target):
    from reproduce.folds import read_list
    lines = read_list(out / "folds" / "train_val_txt_files_per_fold" / f"test_fold_is_{k}" / f"{target}_train.txt")
    total = np.zeros((64, 64, 3), np.float64)
    for path, _ in lines:
        total += cv2.resize(cv2.imread(str(out / "adience" / "aligned" / path)), (64, 64))
    return (total / len(lines)).transpose(2, 0, 1)


def _structure(net):
    return [(l.type, l.convolution_param.kernel_size[:], l.convolution_param.stride[:], l.convolution_param.pad[:],
             l.pooling_param.kernel_size, l.pooling_param.stride, l.lrn_param.local_size, l.include[:] and
             l.include[0].phase, list(l.bottom), list(l.top), [(p.lr_mult, p.decay_mult) for p in l.param])
            for l in net.layer]


def test_demo_net_keeps_the_upstream_adiencenet_structure(upstream_tree, tmp_path):
    """Same layers, order, kernels, strides, pads, LRN, multipliers and phases as upstream; only
    widths, fillers, sources and crop size differ.  Upstream = the real files, else the stand-in's
    AdienceNet (tests/upstream_standin.py, written from the spec's description of it)."""
    upstream = upstream_tree.root
    from string import Template
    text = Template(demo.TEMPLATES["train_val"].read_text()).substitute(
        train_source="a", val_source="b", mean_file="m", batch_size=50, crop_size=56, num_output=8)
    (tmp_path / "tv.prototxt").write_text(text)
    mine = read_net(tmp_path / "tv.prototxt")
    theirs = read_net(upstream / "model_definitions" / "age_net_definitions" / "train_val_test_fold_is_0.prototxt")
    assert _structure(mine) == _structure(theirs)
    solver = Template(demo.TEMPLATES["solver"].read_text()).substitute(
        net="n", test_iter=1, test_interval=10, base_lr=0.1, stepsize=5, display=1, max_iter=10, snapshot=10,
        snapshot_prefix="p", random_seed=1)
    (tmp_path / "s.prototxt").write_text(solver)
    mine, theirs = read_solver(tmp_path / "s.prototxt"), read_solver(
        upstream / "model_definitions" / "age_net_definitions" / "solver_test_fold_is_0.prototxt")
    for field in ("lr_policy", "gamma", "momentum", "weight_decay"):
        assert getattr(mine, field) == getattr(theirs, field), field


def test_cli_rejects_bad_folds(tmp_path, capsys):
    assert demo.main_demo(["--demo-out", str(tmp_path), "--demo-folds", "7"]) == 2
    assert "--demo-folds" in capsys.readouterr().err
    assert demo.main_demo(["--demo-out", str(tmp_path), "--demo-iters", "0"]) == 2


def test_r_and_m_variants_square_faces_and_score_m_on_the_r_test_set(tmp_path):
    data = demo.run_demo(tmp_path, folds=(0,), iters=10, progress=False, variants=("r", "m"), targets=("gender",),
                         rows_per_fold=30, users_per_fold=4, test_interval=10)
    cells = {c["row"]: c for c in data["cells"]}
    assert set(cells) == {"[r]", "[m]"}
    assert {c["folder"] for c in cells.values()} == {"gender_net_definitions_unaligned", "gender_net_definitions_mixed"}
    squared = list((tmp_path / "adience" / "faces_squared").rglob("coarse_tilt_aligned_face.*"))
    assert squared and all(cv2.imread(str(p)).shape[0] == cv2.imread(str(p)).shape[1] for p in squared[:20])
    assert (tmp_path / "lmdb_unaligned" / "Test_fold_is_0" / "gender_test_lmdb").is_dir()
    assert (tmp_path / "mean_image_mixed" / "Test_fold_is_0" / "mean.binaryproto").is_file()
    r_test = len((tmp_path / "folds" / "squared_unaligned_train_val_txt_files_per_fold" / "test_fold_is_0"
                  / "gender_test.txt").read_text().splitlines())
    m_test = len((tmp_path / "folds" / "mixed_train_val_txt_files_per_fold" / "test_fold_is_0"
                  / "gender_test.txt").read_text().splitlines())
    assert m_test == 2 * r_test
    # [m] models are scored on the [r] test LMDB with the [m] mean (upstream score_models.py)
    fold = cells["[m]"]["folds"][0]
    assert fold["images"] == r_test and fold["mean_file"].endswith("mean_image_mixed/Test_fold_is_0/mean.binaryproto")
