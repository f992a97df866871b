"""``python -m converters explain``: files written, the record, user errors exit 2 with one line."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from converters.__main__ import main

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture()
def face(tmp_path):
    import cv2
    rng = np.random.default_rng(7)
    img = np.zeros((300, 260, 3), np.uint8)
    img[...] = (90, 120, 170)
    cv2.circle(img, (130, 150), 90, (60, 100, 200), -1)
    img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), img)
    return path


@pytest.fixture()
def caffenet(oracle):
    folder = oracle / "nets" / "caffenet_age"
    return folder / "deploy.prototxt", folder / "weights.caffemodel", oracle / "protocol" / "mean_image" / \
        "Test_fold_is_0" / "mean.binaryproto"


def test_explain_writes_heatmaps_relevance_and_record(tmp_path, face, caffenet, capsys):
    prototxt, weights, mean = caffenet
    out = tmp_path / "out"
    rc = main(["explain", str(prototxt), str(weights), str(face), "--mean", str(mean), "--out", str(out),
               "--class", "3", "--eps", "0.1", "--flat-upto", "0"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "class 3" in printed and "face_black-firered.png" in printed
    for suffix in ("relevance.npy", "relevance.json", "black-firered.png", "seismic.png", "input.png", "panel.png"):
        assert (out / f"face_{suffix}").is_file(), suffix
    r = np.load(out / "face_relevance.npy")
    assert r.shape == (3, 227, 227) and r.dtype == np.float32 and np.isfinite(r).all()
    record = json.loads((out / "face_relevance.json").read_text())
    assert record["classes"] == [3] and record["start_layer"] == "fc8_agexgender"
    assert record["relevance_sums"][0] == pytest.approx(float(r.astype(np.float64).sum()), rel=1e-5)
    assert record["composite"]["name"] == "paper" and record["composite"]["params"]["flat_upto"] == 0
    rules = {e["name"]: e["rule"] for e in record["layers"]}
    assert rules["conv1"] == "Flat(mode='toolbox')" and rules["conv2"].startswith("AlphaBeta")
    assert rules["fc8_agexgender"] == "Epsilon(eps=0.1)" and rules["norm1"] == "LRNTaylor()"
    assert record["image"] == str(face) and record["preprocess"] == "protocol"
    import cv2
    hm = cv2.imread(str(out / "face_black-firered.png"))
    assert hm.shape == (227, 227, 3)

    # the same input through the API gives the same relevance (protocol preprocessing)
    from converters import load_caffe
    from converters.formats import read_mean
    from converters.lrp import explain, paper_composite
    from converters.lrp.image import prepare
    x, crop = prepare(face, 227, read_mean(mean))
    assert crop.shape == (227, 227, 3)
    relevance, _ = explain(load_caffe(prototxt, weights), torch.from_numpy(x), 3, paper_composite(0, eps=0.1))
    np.testing.assert_allclose(relevance[0].numpy(), r, rtol=1e-5, atol=1e-6 * np.abs(r).max())


def test_explain_predicted_class_demonstrator_preprocessing_and_options(tmp_path, face, caffenet):
    prototxt, weights, mean = caffenet
    out = tmp_path / "o"
    rc = main(["explain", str(prototxt), str(weights), str(face), str(face), "--mean", str(mean), "--out", str(out),
               "--preprocess", "demonstrator", "--lrn", "identity", "--flat-upto", "none", "--eps", "0.01", "-q"])
    assert rc == 0
    assert (out / "face_relevance.npy").is_file() and (out / "face_2_relevance.npy").is_file()
    record = json.loads((out / "face_relevance.json").read_text())
    rules = {e["name"]: e["rule"] for e in record["layers"]}
    assert rules["conv1"].startswith("AlphaBeta") and rules["norm1"] == "LRNIdentity()"
    assert rules["fc6"] == "Epsilon(eps=0.01)" and record["preprocess"] == "demonstrator"
    assert record["class_mode"] == "predicted" and 0 <= record["classes"][0] < 8


@pytest.mark.parametrize("extra,message", [
    (["--class", "8"], "target class 8 out of range"),
    (["--class", "old"], "--class: expected a class index or 'predicted'"),
    (["--eps", "-1"], "--eps must be >= 0"),
    (["--flat-upto", "no_such_layer"], "no_such_layer"),
    (["--composite", "nope"], "unknown composite 'nope'"),
    (["--no-quirk", "nope"], "unknown quirk 'nope'"),
    (["--mean-value", "1,2"], "--mean-value: expected B,G,R"),
    (["--labels", "a,b,c"], "--labels: 3 names for a start layer (fc8_agexgender) with 8 outputs"),
    (["--labels", "nofile"], "is neither a file nor comma-separated names"),
])
def test_explain_user_errors_exit_2_with_one_line(tmp_path, face, caffenet, capsys, extra, message):
    prototxt, weights, mean = caffenet
    rc = main(["explain", str(prototxt), str(weights), str(face), "--out", str(tmp_path / "o"),
               "--mean-value", "104,117,123"] + extra)
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_explain_missing_or_unreadable_image(tmp_path, caffenet, capsys):
    prototxt, weights, _ = caffenet
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    for path, message in ((tmp_path / "missing.jpg", "missing.jpg: No such file"),
                          (bad, "cannot be read as an image")):
        rc = main(["explain", str(prototxt), str(weights), str(path), "--out", str(tmp_path / "o"), "--mean-value", "1,2,3"])
        err = capsys.readouterr().err
        assert rc == 2 and message in err and len(err.strip().splitlines()) == 1


def test_explain_as_a_subprocess(tmp_path, face, caffenet):
    prototxt, weights, mean = caffenet
    proc = subprocess.run([sys.executable, "-m", "converters", "explain", str(prototxt), str(weights), str(face),
                           "--out", str(tmp_path / "sp"), "--class", "99", "--mean-value", "104,117,123"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("python -m converters explain: error:") and "out of range" in proc.stderr


def test_explain_mean_value_labels_variant_and_the_no_mean_warning(tmp_path, face, caffenet, capsys):
    prototxt, weights, _ = caffenet
    labels = tmp_path / "ages.txt"
    labels.write_text("\n".join(f"age{i}" for i in range(8)) + "\n")
    rc = main(["explain", str(prototxt), str(weights), str(face), "--mean-value", "104,117,123", "--labels",
               str(labels), "--class", "5", "--out", str(tmp_path / "a")])
    cap = capsys.readouterr()
    assert rc == 0 and cap.err == "" and "class 5 (age5)" in cap.out and "toolbox LRP" in cap.out
    record = json.loads((tmp_path / "a" / "face_relevance.json").read_text())
    assert record["label"] == "age5" and record["mean"] == "B,G,R = 104,117,123"
    assert record["variant"] == "toolbox" and all(record["quirks"].values())
    # --mean-value is a constant mean image of the resize size: the same input as the API gets
    from converters import load_caffe
    from converters.lrp import explain, paper_composite
    from converters.lrp.image import prepare
    mean = np.broadcast_to(np.array([104, 117, 123], np.float32)[:, None, None], (3, 256, 256))
    x, _ = prepare(face, 227, mean)
    want = explain(load_caffe(prototxt, weights), torch.from_numpy(x), 5, paper_composite(0)).relevance[0].numpy()
    np.testing.assert_allclose(np.load(tmp_path / "a" / "face_relevance.npy"), want, rtol=1e-5,
                               atol=1e-6 * np.abs(want).max())
    # no mean: one warning line on stderr, still a heatmap; the corrected variant is recorded
    rc = main(["explain", str(prototxt), str(weights), str(face), "--out", str(tmp_path / "b"), "-q",
               "--variant", "corrected", "--no-quirk", "group0_bias", "--labels", ",".join("abcdefgh")])
    err = capsys.readouterr().err
    assert rc == 0 and len(err.strip().splitlines()) == 1 and "warning: no --mean or --mean-value" in err
    record = json.loads((tmp_path / "b" / "face_relevance.json").read_text())
    assert record["variant"] == "corrected" and record["mean"] is None and record["label"] in "abcdefgh"
    assert record["composite"]["params"]["flat_mode"] == "normalized"


TINY_PROD = """name: "prod"
input: "data"
input_shape { dim: 1 dim: 3 dim: 16 dim: 16 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "sq" type: "Eltwise" bottom: "conv" bottom: "conv" top: "sq" eltwise_param { operation: PROD } }
layer { name: "fc" type: "InnerProduct" bottom: "sq" top: "fc"
        inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


def test_predict_explain_writes_predictions_and_table_first_then_lrp_error_is_one_line(tmp_path, face, capsys):
    """run.py --predict --explain: predictions.json/CSV and the table come before the heatmaps, so an
    LRP failure (Eltwise PROD has no rule) leaves them written and is one line with exit 2."""
    import converters
    from reproduce import predict
    proto = tmp_path / "prod.prototxt"
    proto.write_text(TINY_PROD)
    weights = tmp_path / "prod.caffemodel"
    converters.save_caffemodel(converters.load_caffe(str(proto)), weights)
    out = tmp_path / "out"
    rc = predict.main_predict([str(face), "--deploy", str(proto), "--caffemodel", str(weights), "--mean-value",
                               "104,117,123", "--resize", "20", "--explain", "--out", str(out), "--no-progress"])
    cap = capsys.readouterr()
    assert rc == 2, cap.err
    assert "face.png" in cap.out and "predictions.json" in cap.out            # the table was printed
    (rec,) = json.loads((out / "predictions.json").read_text())
    assert (out / "predictions.csv").is_file() and rec["heatmap"].endswith("face_face0.png")
    assert rec["heatmap_lrp"] == "toolbox"
    assert cap.err.count("\n") == 1 and "LRP heatmaps:" in cap.err and "Eltwise PROD" in cap.err
    assert "Traceback" not in cap.err
