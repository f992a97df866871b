"""converters.cvdnn: OpenCV 4's Caffe API on the converter (parity against the installed OpenCV 4.x
where it has readNetFromCaffe; behaviour tests that need no reference run everywhere)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from converters import cvdnn
from cvdnn_helpers import AGE_MEAN, DATA, opencv4, photo, random_weights

REPO = DATA.parent.parent.parent


@pytest.fixture(scope="module")
def age_net(tmp_path_factory):
    proto = DATA / "age_deploy.prototxt"
    blob = cvdnn.blobFromImage(photo(1), 1.0, (227, 227), AGE_MEAN)
    weights = random_weights(proto, tmp_path_factory.mktemp("cvdnn") / "age.caffemodel", seed=3,
                             calibrate={"_input": blob, "fc8": 2.0})
    return proto, weights


# ---------------------------------------------------------------------------- blobFromImage
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_blob_from_image_matches_opencv4(dtype, channels):
    cv2 = opencv4()
    rs = np.random.RandomState(channels)
    worst, n = 0.0, 0
    for h, w in [(240, 300), (301, 199), (17, 33)]:
        img = (rs.rand(h, w, channels) * 255).astype(dtype)
        if channels == 1:
            img = img[:, :, 0]
        for size in [(0, 0), (227, 227), (300, 200), (99, 151)]:
            for crop in (False, True):
                for swap in (False, True):
                    for mean, scale in [((), 1.0), ((104, 177, 123), 1.0), ((78.4, 87.7, 114.8, 3), 1 / 255.),
                                        (127.5, 0.007843)]:
                        ref = cv2.dnn.blobFromImage(img, scale, size, mean, swap, crop)
                        got = cvdnn.blobFromImage(img, scale, size, mean, swap, crop)
                        assert got.shape == ref.shape and got.dtype == np.float32, (h, w, size, crop)
                        worst = max(worst, float(np.abs(got - ref).max() / max(1.0, np.abs(ref).max())))
                        n += 1
    assert n == 3 * 4 * 2 * 2 * 4
    assert worst <= 1e-6


def test_blob_from_images_and_back_match_opencv4():
    cv2 = opencv4()
    imgs = [photo(2, 50, 60), photo(3, 70, 40)]
    ref = cv2.dnn.blobFromImages(imgs, 0.5, (0, 0), (1, 2, 3), True, True)
    got = cvdnn.blobFromImages(imgs, 0.5, (0, 0), (1, 2, 3), True, True)
    assert got.shape == ref.shape == (2, 3, 50, 60)
    assert np.abs(got - ref).max() <= 1e-5
    back_ref, back = cv2.dnn.imagesFromBlob(ref), cvdnn.imagesFromBlob(ref)
    assert len(back) == len(back_ref) == 2
    assert all(np.array_equal(a, b) for a, b in zip(back, back_ref))
    u8 = cvdnn.blobFromImage(imgs[0], ddepth=cvdnn.CV_8U)
    assert u8.dtype == np.uint8 and np.array_equal(u8, cv2.dnn.blobFromImage(imgs[0], ddepth=cv2.CV_8U))


def test_blob_from_image_semantics_without_reference():
    img = np.full((4, 6, 3), (10, 20, 30), np.uint8)
    b = cvdnn.blobFromImage(img, 2.0, mean=(1, 2, 3), swapRB=True)
    # swapRB: blob channel 0 is the image's channel 2; the mean is in the blob's channel order
    assert b.shape == (1, 3, 4, 6)
    assert b[0, :, 0, 0].tolist() == [(30 - 1) * 2.0, (20 - 2) * 2.0, (10 - 3) * 2.0]
    with pytest.raises(cvdnn.BlobError, match="CV_8U"):
        cvdnn.blobFromImage(img, 0.5, ddepth=cvdnn.CV_8U)
    with pytest.raises(cvdnn.BlobError, match="image 0"):
        cvdnn.blobFromImage(np.zeros((4, 4, 2), np.uint8))


# ---------------------------------------------------------------------------- Net vs OpenCV 4
def test_net_matches_opencv4_layer_by_layer(age_net):
    cv2 = opencv4()
    proto, weights = age_net
    ref = cv2.dnn.readNetFromCaffe(str(proto), str(weights))
    ours = cvdnn.readNetFromCaffe(str(proto), str(weights))
    assert ours.getLayerNames() == ref.getLayerNames()
    assert np.array_equal(ours.getUnconnectedOutLayers(), ref.getUnconnectedOutLayers())
    assert ours.getUnconnectedOutLayersNames() == ref.getUnconnectedOutLayersNames() == ("prob",)
    assert [ours.getLayerId(n) for n in ("conv1", "relu1", "prob", "nope")] == \
           [ref.getLayerId(n) for n in ("conv1", "relu1", "prob", "nope")]
    blob = cv2.dnn.blobFromImage(photo(4), 1.0, (227, 227), AGE_MEAN)
    ref.setInput(blob)
    ours.setInput(blob)
    p_ref, p = ref.forward(), ours.forward()
    assert p.shape == p_ref.shape == (1, 8)
    assert np.abs(p - p_ref).max() <= 1e-5
    assert 0.02 < p_ref.max() < 0.98          # the calibrated weights give a real distribution
    names = list(ref.getLayerNames())
    for name, a, b in zip(names, ref.forward(names), ours.forward(names)):
        assert a.shape == b.shape, name
        assert np.abs(a - b).max() <= 1e-4 * np.abs(a).max() + 1e-5, name
    # conv1 is the value before the in-place relu1, as OpenCV keeps it
    assert ours.forward("conv1").min() < 0 <= ours.forward("relu1").min()
    (all_prob,), = ours.forwardAndRetrieve(["prob"])
    assert np.array_equal(all_prob, p)
    # setInput's own scale and mean
    ref.setInput(blob, "", 0.5, (1, 2, 3))
    ours.setInput(blob, "data", 0.5, (1, 2, 3))
    assert np.abs(ref.forward("conv1") - ours.forward("conv1")).max() <= 1e-4
    total, per_layer = ours.getPerfProfile()
    assert per_layer.shape == (len(names),) and total > 0


def test_read_net_either_order_and_layer_names_like_opencv4(tmp_path):
    cv2 = opencv4()
    proto = tmp_path / "probe.prototxt"
    proto.write_text(textwrap.dedent("""\
        name: "probe"
        layer { name: "in" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
        layer { name: "c1" type: "Convolution" bottom: "data" top: "t1" convolution_param { num_output: 4 kernel_size: 3 } }
        layer { name: "r1" type: "ReLU" bottom: "t1" top: "t1" }
        layer { name: "d1" type: "Deconvolution" bottom: "t1" top: "td" convolution_param { num_output: 2 kernel_size: 2 stride: 2 } }
        layer { name: "c1" type: "Pooling" bottom: "td" top: "p1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
        layer { name: "x" type: "Eltwise" bottom: "p1" bottom: "p1" top: "e" }
        layer { name: "fl" type: "Flatten" bottom: "e" top: "f" }
        layer { name: "x" type: "Power" bottom: "t1" top: "pw" power_param { scale: 2 } }
        """))
    weights = random_weights(proto, tmp_path / "probe.caffemodel")
    ref = cv2.dnn.readNet(str(weights), str(proto))
    for ours in (cvdnn.readNet(str(weights), str(proto)), cvdnn.readNet(str(proto), str(weights)),
                 cvdnn.readNet(str(proto), str(weights), "caffe")):
        assert ours.getLayerNames() == ref.getLayerNames() == ("t1", "r1", "d1", "c1_1", "x", "fl", "x_1")
        assert ours.getUnconnectedOutLayersNames() == ref.getUnconnectedOutLayersNames()
        x = np.random.RandomState(0).randn(1, 3, 8, 8).astype(np.float32)
        ref.setInput(x)
        ours.setInput(x)
        assert np.abs(ours.forward() - ref.forward()).max() <= 1e-5      # forward() = the last layer
        assert ours.forward().shape == (1, 4, 6, 6)


# ---------------------------------------------------------------------------- behaviour, no reference
def test_empty_net_errors_and_other_shapes(age_net, tmp_path):
    proto, weights = age_net
    assert cvdnn.Net().empty()
    net = cvdnn.readNetFromCaffe(proto, weights)
    assert not net.empty()
    with pytest.raises(cvdnn.CvdnnError, match="no layer named 'nope'"):
        net.setInput(np.zeros((1, 3, 227, 227), np.float32))
        net.forward("nope")
    with pytest.raises(cvdnn.CvdnnError, match="layer .fc6. does not accept the input shapes"):
        net.setInput(np.zeros((1, 3, 250, 300), np.float32))
        net.forward()
    net.setInput(np.zeros((2, 3, 250, 300), np.float32))
    assert net.forward("conv3").shape[0] == 2              # convolutions take any size, as in OpenCV
    with pytest.raises(cvdnn.CvdnnError, match="no such file"):
        cvdnn.readNetFromCaffe(tmp_path / "missing.prototxt")
    bad = tmp_path / "bad.prototxt"
    bad.write_text('layer { name: "a" type: "NoSuchLayer" }\n')
    with pytest.raises(cvdnn.CvdnnError, match="bad.prototxt|NoSuchLayer"):
        cvdnn.readNetFromCaffe(bad)
    cv2 = pytest.importorskip("cv2", reason="OpenCV (cv2) is not installed")
    with pytest.raises(cv2.error):                           # scripts' `except cv2.error` still catch it
        cvdnn.readNetFromCaffe(tmp_path / "missing.prototxt")


def test_backend_and_target(age_net):
    net = cvdnn.readNetFromCaffe(*age_net)
    net.setPreferableBackend(cvdnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cvdnn.DNN_TARGET_CPU)
    with pytest.warns(UserWarning, match="DNN_TARGET_OPENCL"):
        net.setPreferableTarget(cvdnn.DNN_TARGET_OPENCL)
    with pytest.warns(UserWarning, match="DNN_BACKEND_INFERENCE_ENGINE"):
        net.setPreferableBackend(cvdnn.DNN_BACKEND_INFERENCE_ENGINE)
    import torch
    if not torch.cuda.is_available():
        with pytest.warns(UserWarning, match="no CUDA device"):
            net.setPreferableTarget(cvdnn.DNN_TARGET_CUDA)
    net.setInput(np.zeros((1, 3, 227, 227), np.float32))
    assert net.forward().shape == (1, 8)


def test_install_redirects_only_caffe(monkeypatch, age_net):
    cv2 = pytest.importorskip("cv2", reason="OpenCV (cv2) is not installed")
    calls = []
    monkeypatch.setattr(cv2.dnn, "readNet", lambda *a: calls.append(a) or "opencv's net", raising=False)
    # an OpenCV 5 without the Caffe importer
    monkeypatch.delattr(cv2.dnn, "readNetFromCaffe", raising=False)
    try:
        cvdnn.install()
        assert cvdnn.installed()
        assert cv2.dnn.readNetFromCaffe is cvdnn.readNetFromCaffe
        assert cv2.dnn.blobFromImage is cvdnn.blobFromImage
        net = cv2.dnn.readNet(str(age_net[1]), str(age_net[0]))
        assert isinstance(net, cvdnn.Net)
        assert cv2.dnn.readNet("model.onnx") == "opencv's net" and calls == [("model.onnx", "", "")]
        assert cvdnn.NMSBoxes is cv2.dnn.NMSBoxes            # non-Caffe functions are OpenCV's
    finally:
        cvdnn.uninstall()
    assert not hasattr(cv2.dnn, "readNetFromCaffe")
    assert cv2.dnn.readNet("m.onnx") == "opencv's net"


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "converters.cvdnn", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=300)


def test_runner_runs_script_as_main(tmp_path, age_net):
    script = tmp_path / "old_script.py"
    script.write_text(textwrap.dedent("""\
        import sys
        import cv2
        import numpy as np
        net = cv2.dnn.readNetFromCaffe(sys.argv[1], sys.argv[2])
        blob = cv2.dnn.blobFromImage(np.zeros((300, 300, 3), np.uint8), 1.0, (227, 227), (78, 87, 114))
        net.setInput(blob)
        out = net.forward()
        print(__name__, sys.argv[3], type(net).__module__, out.shape)
        sys.exit(3)
        """))
    r = _run(str(script), str(age_net[0]), str(age_net[1]), "extra-arg")
    assert r.returncode == 3, r.stderr
    assert r.stdout.split() == ["__main__", "extra-arg", "converters.cvdnn.net", "(1,", "8)"]


def test_runner_missing_script_is_one_line_exit_2(tmp_path):
    r = _run(str(tmp_path / "nope.py"))
    assert r.returncode == 2
    assert r.stderr.strip() == f"converters.cvdnn: {tmp_path / 'nope.py'}: no such script"
    r = _run()
    assert r.returncode == 2 and r.stderr.startswith("usage:")


# ---------------------------------------------------------------------------- OpenCV's golden files
def test_mobilenet_ssd_golden_outputs_without_opencv():
    """The OpenCV-oracle MobileNet-SSD (recorded with OpenCV 4.14): every recorded layer output through
    the OpenCV names (a Convolution by its top), DetectionOutput as [1, 1, 100, 7]; needs no cv2.dnn."""
    import json
    import os
    folder = Path(os.environ.get("OPENCV_ORACLE_DIR", REPO.parent / "shared" / "opencv-oracle")) / "mobilenet_ssd"
    if not (folder / "expected.npz").is_file():
        pytest.skip(f"OpenCV-oracle fixtures not found at {folder} (set OPENCV_ORACLE_DIR)")
    fx = json.loads((folder / "fixture.json").read_text())
    expected = np.load(folder / "expected.npz")
    net = cvdnn.readNetFromCaffe(folder / "deploy.prototxt", folder / "weights.caffemodel")
    opencv_name = {row["name"]: row["opencv_layer"] for row in fx["layer_table"]}
    assert list(net.getLayerNames()) == [row["opencv_layer"] for row in fx["layer_table"]
                                         if row["type"] != "Input"]
    net.setInput(np.load(folder / "input.npy"))
    keys = [k for k in expected.files if "#" not in k]
    outs = dict(zip(keys, net.forward([opencv_name[k] for k in keys])))
    for key in keys:
        exp, got = expected[key], outs[key]
        assert got.shape == exp.shape, key
        if key == "detection_out":
            continue
        assert np.abs(got - exp).max() <= 1e-4 * np.abs(exp).max() + 1e-5, key

    def rows(a):
        a = a.reshape(-1, 7)
        a = a[np.any(a != 0, axis=1)]
        return a[np.lexsort((a[:, 3], -a[:, 2], a[:, 1], a[:, 0]))]
    a, b = rows(expected["detection_out"]), rows(outs["detection_out"])
    assert outs["detection_out"].shape == (1, 1, 100, 7) and len(a) == len(b) > 0
    assert np.array_equal(a[:, :2], b[:, :2])
    assert np.abs(a[:, 2] - b[:, 2]).max() <= 1e-5 and np.abs(a[:, 3:] - b[:, 3:]).max() <= 1e-4
