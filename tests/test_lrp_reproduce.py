"""reproduce.explain: heatmaps of table cells over fold models, fold averages and panels, on the
real-Caffe protocol fixture (per-fold CaffeNet age and AdienceNet gender models, per-fold means)."""
import json

import numpy as np
import pytest

from reproduce import grid
from reproduce.explain import (FLAT_UPTO, ExplainError, explain_cells, flat_upto_for, parse_class_mode,
                               parse_images)


@pytest.fixture()
def faces(tmp_path):
    import cv2
    paths = []
    for i, size in enumerate(((280, 280), (300, 240))):
        rng = np.random.default_rng(i)
        img = np.clip(rng.normal(128, 40, size + (3,)), 0, 255).astype(np.uint8)
        cv2.circle(img, (size[1] // 2, size[0] // 2), 80, (40, 90, 200), -1)
        paths.append(tmp_path / f"face{i}.jpg")
        cv2.imwrite(str(paths[-1]), img)
    return paths


def test_flat_index_declared_per_family():
    assert FLAT_UPTO == {"caffenet": 0, "googlenet": 4, "vgg16": 9, "adiencenet": 0}
    for c in grid.all_cells():
        if not c.empty:
            assert flat_upto_for(c) == FLAT_UPTO[c.family]


def test_parsing_helpers(tmp_path):
    assert parse_class_mode("Predicted") == "predicted" and parse_class_mode("true") == "true"
    assert parse_class_mode("3") == 3
    with pytest.raises(ExplainError):
        parse_class_mode("-1")
    images = parse_images(["a.jpg", "dir/b.png:1", "c:d.jpg", ("e.jpg", 0)])
    assert [(str(p), label) for p, label in images] == [("a.jpg", None), ("dir/b.png", 1), ("c:d.jpg", None),
                                                        ("e.jpg", 0)]


def test_explain_cells_on_fold_models(oracle, tmp_path, faces):
    from conftest import need
    need(oracle, *(f"protocol/models/{m}/models_test_is_{k}/weights.caffemodel"
                   for m in ("age_fromscratch_caffereference", "gender_net_definitions") for k in (0, 3)))
    proto = oracle / "protocol"
    cells = [grid.cell(2, "i", "C"), grid.cell(3, "i", "A")]
    out = tmp_path / "explain"
    summary = explain_cells(cells, [str(faces[0]) + ":2", faces[1]], proto / "models", folds=(0, 3), out_dir=out,
                            class_mode="predicted", means_dir=proto, weights_name="weights.caffemodel")
    assert [c["folder"] for c in summary["cells"]] == ["age_fromscratch_caffereference", "gender_net_definitions"]
    for entry, cell in zip(summary["cells"], cells):
        slug = f"table{cell.table}_i_{cell.col}_{cell.folder}"
        for stem in ("face0", "face1"):
            d = out / slug / stem
            folds = [np.load(d / f"fold{k}_relevance.npy") for k in (0, 3)]
            assert all(f.shape == (3, 227, 227) and np.isfinite(f).all() for f in folds)
            avg = np.load(d / "average_relevance.npy")
            np.testing.assert_allclose(avg, (folds[0].sum(0) + folds[1].sum(0)) / 2, rtol=1e-5,
                                       atol=1e-6 * np.abs(avg).max())
            for name in ("fold0_black-firered.png", "average_black-firered.png", "average_seismic.png"):
                assert (d / name).is_file()
            rec = json.loads((d / "fold3_relevance.json").read_text())
            assert rec["fold"] == 3 and rec["cell"] == cell.label and rec["composite"]["params"]["flat_upto"] == 0
            assert rec["classes"][0] == entry["folds"][3]["images"][stem]["class"]
        assert (out / slug / "panel.png").is_file()
    assert (out / "panel.png").is_file()
    saved = json.loads((out / "explain.json").read_text())
    assert saved["images"] == [str(faces[0]), str(faces[1])] and len(saved["cells"]) == 2
    assert saved["variant"] == "toolbox" and rec["variant"] == "toolbox" and all(rec["quirks"].values())


def test_explain_cells_true_class_and_missing_inputs(oracle, tmp_path, faces):
    proto = oracle / "protocol"
    cell = grid.cell(3, "i", "A")
    summary = explain_cells([cell], [(faces[0], 1)], proto / "models", folds=[0], out_dir=tmp_path / "t",
                            class_mode="true", means_dir=proto, weights_name="weights.caffemodel")
    assert summary["cells"][0]["folds"][0]["images"]["face0"]["class"] == 1
    with pytest.raises(ExplainError, match="needs the image's label"):
        explain_cells([cell], [faces[0]], proto / "models", folds=[0], out_dir=tmp_path / "t2", class_mode="true",
                      means_dir=proto, weights_name="weights.caffemodel")
    with pytest.raises(ExplainError, match="missing"):
        explain_cells([cell], [faces[0]], tmp_path / "no_models", folds=[0], out_dir=tmp_path / "t3",
                      means_dir=proto)
    with pytest.raises(ExplainError, match="out of range"):
        explain_cells([cell], [faces[0]], proto / "models", folds=[0], out_dir=tmp_path / "t4", class_mode=5,
                      means_dir=proto, weights_name="weights.caffemodel")
