"""``reproduce/predict.py``: age/gender of your own photos.

Exactness: a test image of the real-Caffe oracle (a 256x256 LMDB Datum written as a lossless PNG)
must get the probabilities pycaffe's 10-crop evaluation gave it (``caffe-oracle/protocol/
expected.json``, 1e-4), with a ``--deploy/--caffemodel/--mean`` model and with the oracle laid out
as the upstream archive (``--table/--row/--col --weights --means``).  Plus batching, face
detection and its fallback, the output files, and the one-line errors (exit 2).
"""
import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from conftest import need  # noqa: E402
from reproduce import predict  # noqa: E402

TOL = 1e-4
MODELS = {"age_fromscratch_caffereference": (2, "i", "C", "age"), "gender_net_definitions": (3, "i", "A", "gender")}


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def proto(oracle):
    d = oracle / "protocol"
    if not (d / "expected.json").is_file():
        pytest.skip(f"{d}/expected.json not found")
    return d, json.loads((d / "expected.json").read_text())["results"]


@pytest.fixture(scope="module")
def fold0_pngs(proto, tmp_path_factory):
    """Fold 0's test images (age and gender LMDBs) as lossless PNGs: {png name: (key, target)}."""
    from converters.formats import iter_lmdb
    d, _ = proto
    folder = tmp_path_factory.mktemp("fold0")
    names = {}
    for target in ("age", "gender"):
        (folder / target).mkdir()
        for key, _, arr in iter_lmdb(str(d / "lmdb" / "Test_fold_is_0" / f"{target}_test_lmdb")):
            assert arr.shape == (3, 256, 256) and arr.dtype == np.uint8
            name = f"{target}__{key.replace('/', '_')}.png"
            assert cv2.imwrite(str(folder / target / name), arr.transpose(1, 2, 0))   # lossless
            names[name] = (key, target)
    return folder, names


def custom_args(d, folder, fold=0, *extra):
    model = "age_fromscratch_caffereference" if folder == "age" else "gender_net_definitions"
    return ["--deploy", str(d / "models" / model / "deploy.prototxt"),
            "--caffemodel", str(d / "models" / model / f"models_test_is_{fold}" / "weights.caffemodel"),
            "--mean", str(d / "mean_image" / f"Test_fold_is_{fold}" / "mean.binaryproto"), "--no-progress",
            "--labels", folder, *extra]   # a --deploy net's classes are "class N" unless named


def expected_by_png(expected, model, names):
    imgs = {im["key"]: im for im in expected[model]["folds"][0]["images"]}
    return {png: imgs[key] for png, (key, _) in names.items() if key in imgs}


def run(argv, capsys):
    rc = predict.main_predict([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


# ---------------------------------------------------------------------------- exactness vs Caffe
@pytest.mark.parametrize("model", sorted(MODELS))
def test_probabilities_equal_caffes_10crop_prediction(model, proto, fold0_pngs, tmp_path, capsys):
    d, expected = proto
    need(d.parent, f"protocol/models/{model}")
    folder, names = fold0_pngs
    target = MODELS[model][3]
    out = tmp_path / "out"
    rc, stdout, err = run([folder / target, *custom_args(d, target), "--out", out, "--batch", 3], capsys)
    assert rc == 0, err
    recs = json.loads((out / "predictions.json").read_text())
    exp = expected_by_png(expected, model, {k: v for k, v in names.items() if v[1] == target})
    assert len(recs) == len(exp) == 4
    for r in recs:
        e = exp[Path(r["image"]).name]
        np.testing.assert_allclose(r["probs"], e["prob_10crop_mean"], atol=TOL, rtol=0)
        assert r["label"] == e["pred_10crop"]
        assert r["label_name"] == predict.LABELS[target][e["pred_10crop"]]
    assert "images/s" in stdout


@pytest.mark.parametrize("model", sorted(MODELS))
def test_paper_cell_from_archive_layout_fold_k_and_all(model, proto, fold0_pngs, tmp_path):
    """The oracle folder as the upstream archive: --weights DIR/<folder>/models_test_is_K/..., --means DIR."""
    d, expected = proto
    need(d.parent, f"protocol/models/{model}")
    folder, names = fold0_pngs
    table, row, col, target = MODELS[model]
    exp = expected_by_png(expected, model, {k: v for k, v in names.items() if v[1] == target})

    def args(fold):
        return SimpleNamespace(predict=[str(folder / target)], table=table, row=[row], col=[col], fold=fold,
                               weights=str(d / "models"), weights_name="weights.caffemodel", means=str(d),
                               assets_mirror=str(tmp_path / "no-network"), assets_dir=str(tmp_path / "assets"),
                               no_progress=True, batch=4)

    recs, summary = predict.predict(args("0"))
    assert summary["nets"] == 1 and summary["target"] == target
    for r in recs:
        np.testing.assert_allclose(r["probs"], exp[Path(r["image"]).name]["prob_10crop_mean"], atol=TOL, rtol=0)
    if target != "gender":
        return                                                        # the fold averaging once is enough
    # default --fold all: the 5 fold models (each with its own fold's mean) averaged
    need(d.parent, *(f"protocol/models/{model}/models_test_is_{k}/weights.caffemodel" for k in range(5)))
    recs = recs[:2]
    clf = predict.build_classifier(args(None))
    assert [n.name for n in clf.nets] == [f"fold {k}" for k in range(5)]
    assert [Path(n.mean_source).parent.name for n in clf.nets] == [f"Test_fold_is_{k}" for k in range(5)]
    faces = np.stack([predict.to_net_input(predict.read_image(r["image"]), clf.resize) for r in recs])
    per_fold = [predict.Classifier([n], clf.labels, clf.target, clf.resize).probabilities(faces) for n in clf.nets]
    np.testing.assert_allclose(per_fold[0], [r["probs"] for r in recs], atol=1e-6, rtol=0)
    np.testing.assert_allclose(clf.probabilities(faces), np.mean(per_fold, axis=0), atol=1e-6, rtol=0)


def test_batching_and_folder_walk_do_not_change_results(proto, fold0_pngs, tmp_path):
    d, _ = proto
    folder, _ = fold0_pngs
    (folder / "notes.txt").write_text("not an image")              # ignored in folders

    def go(paths, batch):
        ns = predict.build_parser().parse_args([*map(str, paths), *custom_args(d, "gender"), "--batch", str(batch)])
        return predict.predict(ns)[0]

    targets = ["gender", "age"]
    whole = go([folder], 100)                                        # recursive: age/ and gender/
    assert len(whole) == 4 * len(targets) and [r["image"] for r in whole] == sorted(r["image"] for r in whole)
    one = go([folder], 1)
    three = go([folder / t for t in targets], 3)                     # several inputs, in the given order
    by_img = {r["image"]: r["probs"] for r in whole}
    for rec in one + three:
        np.testing.assert_allclose(rec["probs"], by_img[rec["image"]], atol=1e-6, rtol=0)
    assert [Path(r["image"]).parent.name for r in three] == [t for t in targets for _ in range(4)]


# ---------------------------------------------------------------------------- faces
def draw_face(img, cx, cy, r):
    """A cartoon head that OpenCV's frontal-face cascade recognises (eye sockets, brows, mouth)."""
    aa = cv2.LINE_AA
    cv2.ellipse(img, (cx, cy - int(0.3 * r)), (int(0.95 * r), int(0.95 * r)), 0, 180, 360, (25, 30, 45), -1, aa)
    cv2.ellipse(img, (cx, cy), (int(0.78 * r), r), 0, 0, 360, (150, 180, 225), -1, aa)
    cv2.ellipse(img, (cx, cy - int(0.75 * r)), (int(0.7 * r), int(0.3 * r)), 0, 180, 360, (25, 30, 45), -1, aa)
    for s in (-1, 1):
        ex, ey = cx + s * int(0.33 * r), cy - int(0.15 * r)
        cv2.ellipse(img, (ex, ey), (int(0.2 * r), int(0.12 * r)), 0, 0, 360, (95, 115, 150), -1, aa)
        cv2.ellipse(img, (ex, ey), (int(0.14 * r), int(0.07 * r)), 0, 0, 360, (230, 230, 230), -1, aa)
        cv2.circle(img, (ex, ey), int(0.065 * r), (30, 25, 20), -1, aa)
        cv2.line(img, (ex - int(0.2 * r), ey - int(0.18 * r)), (ex + int(0.2 * r), ey - int(0.2 * r)),
                 (25, 30, 45), max(3, r // 10), aa)
    cv2.line(img, (cx, cy - int(0.1 * r)), (cx - int(0.05 * r), cy + int(0.25 * r)), (100, 120, 170),
             max(2, r // 20), aa)
    cv2.ellipse(img, (cx, cy + int(0.25 * r)), (int(0.12 * r), int(0.05 * r)), 0, 0, 360, (90, 110, 160), -1, aa)
    cv2.ellipse(img, (cx, cy + int(0.52 * r)), (int(0.28 * r), int(0.07 * r)), 0, 0, 360, (60, 50, 150), -1, aa)


def two_face_photo(path):
    ramp = np.linspace(0, 1, 640)[None, :, None]
    img = np.zeros((360, 640, 3), np.uint8)
    img[:] = (np.array([120, 150, 140]) * (1 - ramp) + np.array([200, 190, 170]) * ramp).astype(np.uint8)
    draw_face(img, 170, 180, 100)
    draw_face(img, 470, 175, 90)
    img = cv2.GaussianBlur(img, (5, 5), 0)
    assert cv2.imwrite(str(path), img)
    return img


needs_haar = pytest.mark.skipif(not hasattr(__import__("cv2"), "CascadeClassifier"),
                                reason="OpenCV's Haar cascade is not in this OpenCV (5.x moved it to opencv-contrib)")


@needs_haar
def test_detect_faces_predicts_each_face_with_margin(proto, tmp_path, capsys):
    d, _ = proto
    photo = tmp_path / "photo.png"
    img = two_face_photo(photo)
    out = tmp_path / "out"
    rc, stdout, err = run([photo, *custom_args(d, "gender"), "--detect-faces", "--out", out], capsys)
    assert rc == 0, err
    recs = json.loads((out / "predictions.json").read_text())
    annotated = cv2.imread(str(out / "annotated" / "photo.png"))
    assert annotated is not None and annotated.shape == img.shape
    if all(r["face_box"] is None for r in recs):
        # documented fallback: no face found -> the whole photo, face_box null, note on stderr
        assert len(recs) == 1 and recs[0]["detected"] is False and "no face found" in err
        return
    assert len(recs) >= 1 and all(r["detected"] for r in recs)
    assert [r["face"] for r in recs] == list(range(len(recs)))
    xs = [r["face_box"][0] for r in recs]
    assert xs == sorted(xs)                                          # left to right
    det = predict.FaceDetector()
    for r in recs:
        x, y, w, h = r["face_box"]
        assert 0 <= x and 0 <= y and x + w <= img.shape[1] and y + h <= img.shape[0] and w > 0 and h > 0
        assert tuple(r["face_box"]) == det.crop_box(r["detection_box"], img.shape)
        dx, dy, dw, dh = r["detection_box"]
        assert x <= dx and y <= dy and x + w >= dx + dw and y + h >= dy + dh
        assert abs(sum(r["probs"]) - 1) < 1e-5
    if len(recs) == 2:                                                # the two drawn heads
        assert recs[0]["detection_box"][0] < 320 <= recs[1]["detection_box"][0]
    # each face is predicted as if it were its own photo: the crop through the plain pipeline
    r = recs[0]
    x, y, w, h = r["face_box"]
    crop = tmp_path / "crop.png"
    cv2.imwrite(str(crop), img[y:y + h, x:x + w])
    rc, _, err = run([crop, *custom_args(d, "gender"), "--out", tmp_path / "o2"], capsys)
    assert rc == 0, err
    alone = json.loads((tmp_path / "o2" / "predictions.json").read_text())[0]
    np.testing.assert_allclose(alone["probs"], r["probs"], atol=1e-6, rtol=0)


@needs_haar
def test_no_face_found_falls_back_to_the_whole_image(proto, tmp_path, capsys):
    d, _ = proto
    blank = tmp_path / "wall.png"
    g = np.linspace(60, 190, 300, dtype=np.float32)
    cv2.imwrite(str(blank), np.stack([np.tile(g, (200, 1))] * 3, axis=-1).astype(np.uint8))
    rc, _, err = run([blank, *custom_args(d, "gender"), "--detect-faces", "--out", tmp_path / "a"], capsys)
    assert rc == 0, err
    assert "no face found in" in err
    (rec,) = json.loads((tmp_path / "a" / "predictions.json").read_text())
    assert rec["face_box"] is None and rec["detected"] is False and "detection_box" not in rec
    rc, _, _ = run([blank, *custom_args(d, "gender"), "--out", tmp_path / "b"], capsys)
    (plain,) = json.loads((tmp_path / "b" / "predictions.json").read_text())
    assert plain["probs"] == rec["probs"]


@needs_haar
def test_crop_box_margin_and_clipping():
    det = predict.FaceDetector(margin=0.4)
    assert det.crop_box((100, 100, 50, 50), (400, 400, 3)) == (80, 80, 90, 90)     # 20 px = 40 % each side
    assert det.crop_box((5, 10, 50, 40), (60, 100, 3)) == (0, 0, 75, 60)          # clipped to the photo
    assert predict.FaceDetector(margin=0).crop_box((5, 10, 50, 40), (60, 100, 3)) == (5, 10, 50, 40)


# ---------------------------------------------------------------------------- outputs
def test_json_csv_and_table(proto, fold0_pngs, tmp_path, capsys):
    d, _ = proto
    need(d.parent, "protocol/models/age_fromscratch_caffereference", "protocol/lmdb/Test_fold_is_0/age_test_lmdb")
    folder, _ = fold0_pngs
    out = tmp_path / "out"
    rc, stdout, err = run([folder / "age", *custom_args(d, "age"), "--out", out], capsys)
    assert rc == 0, err
    recs = json.loads((out / "predictions.json").read_text())
    assert isinstance(recs, list) and len(recs) == 4
    for r in recs:
        assert {"image", "face_box", "probs", "label", "label_name"} <= set(r)
        assert r["face_box"] is None and isinstance(r["image"], str) and Path(r["image"]).is_file()
        assert len(r["probs"]) == 8 and all(isinstance(p, float) for p in r["probs"])
        assert abs(sum(r["probs"]) - 1) < 1e-5
        assert r["label"] == int(np.argmax(r["probs"])) and r["label_name"] == predict.LABELS["age"][r["label"]]
        lo, hi = r["one_off_range"]
        assert lo == predict.LABELS["age"][max(0, r["label"] - 1)]
        assert hi == predict.LABELS["age"][min(7, r["label"] + 1)]
        assert Path(r["annotated"]).is_file()
        assert f"±1 group: {lo}-{hi}" in stdout and Path(r["image"]).name in stdout
    import csv
    rows = list(csv.DictReader(open(out / "predictions.csv", encoding="utf-8")))
    assert [row["image"] for row in rows] == [r["image"] for r in recs]
    for row, r in zip(rows, recs):
        assert int(row["label"]) == r["label"] and row["label_name"] == r["label_name"]
        assert [float(row[f"prob_{i}"]) for i in range(8)] == r["probs"]
    assert stdout.startswith("Model: ")


def test_one_off_range_and_labels():
    names = predict.LABELS["age"]
    p = np.full(8, 0.125, np.float32)
    assert predict.one_off(p, 4, names)[:2] == ("(15, 20)", "(38, 43)")
    assert predict.one_off(p, 0, names)[:2] == ("(0, 2)", "(4, 6)")
    assert predict.one_off(p, 7, names)[:2] == ("(48, 53)", "(60, 100)")
    assert predict.one_off(p, 4, names)[2] == pytest.approx(0.375)
    assert names[0] == "(0, 2)" and names[-1] == "(60, 100)" and predict.LABELS["gender"] == ("male", "female")


def test_label_names_agree_with_upstream_synsets(upstream):
    age = (upstream / "heatmap_drawing" / "synset_age.txt").read_text().split("\n")
    gender = (upstream / "heatmap_drawing" / "synset_gender.txt").read_text().split("\n")
    assert len(age) == 8 and len(gender) == 2
    # the synset file spells class 2 "(8, 13)"; the label mapping of the data preparation "(8, 12)"
    assert [a for i, a in enumerate(age) if i != 2] == [n for i, n in enumerate(predict.LABELS["age"]) if i != 2]
    assert age[2] == "(8, 13)" and predict.LABELS["age"][2] == "(8, 12)"
    assert [g[0] for g in predict.LABELS["gender"]] == gender      # m, f


def test_black_firered_colour_map():
    r = np.array([[1.0, 0.25, 0.0, -0.25, -1.0, 0.5]])
    rgb = predict.black_firered(r)[0][:, ::-1]                       # BGR -> RGB
    assert rgb[0].tolist() == [255, 255, 255] and rgb[1].tolist() == [255, 0, 0] and rgb[2].tolist() == [0, 0, 0]
    assert rgb[3].tolist() == [0, 0, 255] and rgb[4].tolist() == [255, 255, 255] and rgb[5].tolist() == [255, 255, 0]


def test_explain_writes_heatmaps_or_fails_cleanly(proto, fold0_pngs, tmp_path, capsys, monkeypatch):
    d, _ = proto
    folder, names = fold0_pngs
    png = folder / "gender" / sorted(n for n, (_, t) in names.items() if t == "gender")[0]
    rc, _, err = run([png, *custom_args(d, "gender"), "--explain", "--out", tmp_path / "o"], capsys)
    assert rc == 0, err
    (rec,) = json.loads((tmp_path / "o" / "predictions.json").read_text())
    pic = cv2.imread(rec["heatmap"])
    assert pic is not None and pic.shape == (227, 2 * 227 + 4, 3)
    monkeypatch.setitem(__import__("sys").modules, "converters.lrp", None)  # "not installed"
    rc, _, err = run([png, *custom_args(d, "gender"), "--explain", "--out", tmp_path / "p"], capsys)
    assert rc == 2 and "converters.lrp" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------- errors
def _tiny_net(tmp_path, head: str) -> tuple[Path, Path]:
    """A 3x16x16 net: conv, then ``head`` (text of the last layers); random weights."""
    import converters
    proto_txt = tmp_path / f"tiny{len(list(tmp_path.glob('tiny*.prototxt')))}.prototxt"
    proto_txt.write_text('name: "tiny"\ninput: "data"\ninput_shape { dim: 1 dim: 3 dim: 16 dim: 16 }\n'
                         'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
                         'convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "xavier" } } }\n'
                         + head)
    model = converters.load_caffe(str(proto_txt))
    weights = proto_txt.with_suffix(".caffemodel")
    converters.save_caffemodel(model, weights)
    return proto_txt, weights


@pytest.mark.parametrize("case", ["missing-mean", "missing-means-dir", "missing-file", "unreadable", "empty-folder",
                                  "not-softmax", "not-classifier", "wrong-weights", "no-model", "bad-fold",
                                  "two-columns", "labels-count"])
def test_bad_inputs_exit_2_with_one_line(case, proto, fold0_pngs, tmp_path, capsys):
    d, expected = proto
    folder, names = fold0_pngs
    png = folder / "gender" / sorted(n for n, (_, t) in names.items() if t == "gender")[0]
    gender = custom_args(d, "gender")
    cell = ["--weights", d / "models", "--weights-name", "weights.caffemodel", "--assets-mirror",
            tmp_path / "no-network", "--assets-dir", tmp_path / "assets"]
    want = None
    if case == "missing-mean":
        argv, want = [png, *gender[:4]], "garbage"
    elif case == "missing-means-dir":
        argv, want = [png, "--table", 3, "--row", "i", "--col", "A", *cell, "--means", tmp_path, "--fold", 0], \
            "mean_image"
    elif case == "missing-file":
        argv, want = [tmp_path / "nope.jpg", *gender], "no such file"
    elif case == "unreadable":
        bad = tmp_path / "broken.jpg"
        bad.write_bytes(b"this is no JPEG")
        argv, want = [bad, *gender], "broken.jpg"
    elif case == "empty-folder":
        (tmp_path / "empty").mkdir()
        argv, want = [tmp_path / "empty", *gender], "no images"
    elif case == "not-softmax":
        deploy, w = _tiny_net(tmp_path, 'layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc" '
                                        'inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }\n')
        argv, want = [png, "--deploy", deploy, "--caffemodel", w, "--mean-value", "1,2,3", "--resize", 32], "Softmax"
    elif case == "not-classifier":
        deploy, w = _tiny_net(tmp_path, "")
        argv, want = [png, "--deploy", deploy, "--caffemodel", w, "--mean-value", "1,2,3", "--resize", 32], \
            "not a classifier"
    elif case == "wrong-weights":
        argv = [png, *gender]
        # CaffeNet weights for the AdienceNet deploy: conv1 is 12x3x11x11 there, 6x3x7x7 here
        argv[argv.index("--caffemodel") + 1] = d.parent / "nets" / "caffenet_age" / "weights.caffemodel"
    elif case == "no-model":
        argv, want = [png, "--mean-value", "1,2,3"], "no model"
    elif case == "bad-fold":
        argv, want = [png, "--table", 3, "--row", "i", "--col", "A", *cell, "--means", d, "--fold", 7], "--fold"
    elif case == "two-columns":
        argv, want = [png, "--table", 3, "--row", "i", *cell, "--means", d], "--col"
    else:
        argv, want = [png, *gender, "--labels", "age"], "8 names"
    rc, stdout, err = run(argv, capsys)
    assert rc == 2, (case, stdout, err)
    assert len(err.strip().splitlines()) == 1 and err.startswith("predict: error: "), err
    assert "Traceback" not in err
    if want:
        assert want in err, err


# ---------------------------------------------------------------------------- run.py wiring
def test_arguments_merge_into_run_py_parser(proto, fold0_pngs):
    """run.py's parser reads a --predict command line with the predict mode's own options."""
    from reproduce import run as run_py
    d, _ = proto
    folder, _ = fold0_pngs
    p = run_py.build_parser()
    args = p.parse_args(["--predict", str(folder / "gender"), "--table", "3", "--row", "i", "--col", "A",
                         "--weights", str(d / "models"), "--weights-name", "weights.caffemodel", "--means", str(d),
                         "--fold", "0", "--batch", "2", "--no-progress"])
    assert args.predict == [str(folder / "gender")] and args.fold == "0" and args.row == ["i"]
    recs, summary = predict.predict(args)
    assert len(recs) == 4 and summary["nets"] == 1
    # a standalone parser works the same way (positionals or --predict)
    q = argparse.ArgumentParser()
    predict.add_predict_arguments(q)
    assert q.parse_args(["--predict", "a.jpg", "b"]).predict == ["a.jpg", "b"]
