"""Exactness against real Caffe: the oracle's miniature upstream layout (5 folds, per-fold means and
models) scored by ``reproduce/run.py`` must give what pycaffe + upstream ``score_models.py`` gave
(``caffe-oracle/protocol/expected.json``): the same prediction for every image, probabilities
within 1e-4, the same per-fold and all-fold scores and confusion matrices."""
import json

import numpy as np
import pytest

import converters
from reproduce import grid, protocol, run, sources
from conftest import assert_predictions_equal_caffes, need

# oracle model folder -> the table cell it stands in for (both are [i] models: plain lmdb/ and mean_image/)
MODELS = {"age_fromscratch_caffereference": (2, "i", "C"), "gender_net_definitions": (3, "i", "A")}
PROB_TOL = 1e-4


@pytest.fixture(scope="module")
def proto(oracle):
    d = oracle / "protocol"
    return d, json.loads((d / "expected.json").read_text())["results"]


def _folds(expected, folder):
    """The test folds the oracle holds for that model (all five, in the full and in the mini set)."""
    return [f["fold"] for f in expected[folder]["folds"]]


@pytest.fixture(scope="module")
def scored(proto, tmp_path_factory):
    """results.json cell + out folder per oracle model, produced by run.main."""
    d, expected = proto
    out = {}
    for folder, (table, row, col) in MODELS.items():
        o = tmp_path_factory.mktemp(folder)
        folds = ",".join(map(str, _folds(expected, folder)))
        rc = run.main(["--table", str(table), "--row", row, "--col", col, "--lmdb", str(d), "--means", str(d),
                       "--weights", str(d / "models"), "--weights-name", "weights.caffemodel", "--out", str(o),
                       "--no-progress", "--batch", "3", "--assets-mirror", str(o / "no-network"), "--folds", folds])
        assert rc == 0
        (cell,) = json.loads((o / "results.json").read_text())["cells"]
        assert cell["folder"] == folder
        out[folder] = (cell, o)
    return out


@pytest.mark.parametrize("folder", sorted(MODELS))
def test_every_image_gets_caffes_prediction_and_probabilities(folder, proto, scored):
    d, expected = proto
    need(d.parent, f"protocol/models/{folder}")
    cell, o = scored[folder]
    assert assert_predictions_equal_caffes(o, folder, expected[folder], atol=PROB_TOL) > 0


# our result keys -> the names score_models.py writes into expected.json
SCORE_NAMES = {"acc": "acco", "one_off": "1offo", "acc_single": "acc", "one_off_single": "1off",
               "acc_centre": "acc_center", "one_off_centre": "1off_center"}
CONFMAT_NAMES = {"oversampled": "confmato", "single": "confmat", "centre": "confmat_center"}


@pytest.mark.parametrize("folder", sorted(MODELS))
def test_fold_scores_and_confusion_matrices_equal_upstream(folder, proto, scored):
    d, expected = proto
    need(d.parent, f"protocol/models/{folder}")
    exp = expected[folder]
    cell, _ = scored[folder]
    assert len(cell["folds"]) == len(exp["folds"]) >= 1
    for f, ef in zip(cell["folds"], exp["folds"]):
        assert f["fold"] == ef["fold"] and f["images"] == len(ef["images"])
        for ours, theirs in SCORE_NAMES.items():
            assert f[ours] == pytest.approx(ef["scores"][theirs], abs=1e-12), (f["fold"], ours)
        for ours, theirs in CONFMAT_NAMES.items():
            assert f["confmat"][ours] == ef["confmats"][theirs], (f["fold"], ours)


@pytest.mark.parametrize("folder", sorted(MODELS))
def test_five_fold_means_and_summed_confusion_matrices_equal_upstream(folder, proto, scored):
    d, expected = proto
    need(d.parent, f"protocol/models/{folder}")
    exp = expected[folder]
    cell, _ = scored[folder]
    assert len(cell["folds"]) == 5
    for ours, theirs in SCORE_NAMES.items():
        assert cell["mean"][ours] == pytest.approx(exp["all_folds"][theirs]["mean"], abs=1e-12)
        assert cell["std"][ours] == pytest.approx(exp["all_folds"][theirs]["std_population"], abs=1e-12)
    assert cell["upstream_all"]["acc"] == exp["all_folds"]["acco"]["upstream_string"]
    assert cell["upstream_all"]["one_off"] == exp["all_folds"]["1offo"]["upstream_string"]
    for ours, theirs in CONFMAT_NAMES.items():
        assert cell["confmat"][ours] == exp["confmats_summed"][theirs]


def test_the_ten_crops_match_caffe_crop_by_crop(proto):
    """Every one of the 10 oversampled crops (order, offsets, mirrors) against pycaffe's rows."""
    d, expected = proto
    from converters.formats import read_mean
    checked = 0
    for folder, (table, row, col) in MODELS.items():
        cell = grid.cell(table, row, col)
        ef = expected[folder]["folds"][-1]      # fold 4
        k = ef["fold"]
        model = converters.load_caffe(str(d / "models" / folder / "deploy.prototxt"),
                                      str(d / "models" / folder / f"models_test_is_{k}" / "weights.caffemodel"),
                                      phase="test")
        samples = sources.lmdb_samples(sources.lmdb_path(d, "i", k, cell.target))
        checked += 1
        p = protocol.evaluate(model.eval(), samples, read_mean(sources.mean_path(d, "i", k)), cell.input_size,
                              cell.output_blob, batch=4, keep_crops=True)
        for n, im in enumerate(ef["images"]):
            np.testing.assert_allclose(p.crops[n], im["prob_10crop"], atol=PROB_TOL, rtol=0)
            np.testing.assert_allclose(p.prob_single[n], im["prob_single_bottomright"], atol=PROB_TOL, rtol=0)
            np.testing.assert_allclose(p.prob_centre[n], im["prob_single_center"], atol=PROB_TOL, rtol=0)
    assert checked == len(MODELS)
