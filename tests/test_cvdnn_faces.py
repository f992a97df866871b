"""reproduce.faces: the res10 SSD face detector for --predict (packaged architecture, pinned
downloads from a 127.0.0.1 server, detections as OpenCV's sample gets them, FP16 weights, the
detector choice and the Haar fallback)."""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from cvdnn_helpers import DATA, FACE_MEAN, face_ssd_weights, opencv4, photo, random_weights
from reproduce import faces
from reproduce.face_ssd_net import res10_prototxt

cv2 = pytest.importorskip("cv2", reason="OpenCV (cv2) is not installed")
REPO = DATA.parent.parent.parent
UPSTREAM_DEPLOY = Path(os.environ.get("OPENCV_ORACLE_DIR", REPO.parent / "shared" / "opencv-oracle")) / \
    "upstream" / "opencv_face_detector_deploy.prototxt"
SMALL = DATA / "face_ssd_small.prototxt"


# ---------------------------------------------------------------------------- the architecture
def _structure(path):
    from google.protobuf import text_format

    from converters.formats import read_net
    rows = []
    for layer in read_net(str(path)).layer:
        if layer.type == "Input":
            continue
        params = []
        for field, value in layer.ListFields():
            if field.name.endswith("_param"):
                copy = type(value)()
                copy.CopyFrom(value)
                for filler in ("weight_filler", "bias_filler"):     # training-only
                    if hasattr(copy, filler) and copy.HasField(filler):
                        copy.ClearField(filler)
                params.append((field.name, text_format.MessageToString(copy, as_one_line=True)))
        rows.append((layer.name, layer.type, tuple(layer.bottom), tuple(layer.top), tuple(sorted(params))))
    return rows


def test_packaged_deploy_is_the_generator_output_and_the_published_net():
    assert faces.DEPLOY.read_text() == res10_prototxt()
    assert SMALL.read_text() == res10_prototxt(div=8, name="res10_300x300_ssd_small")
    if not UPSTREAM_DEPLOY.is_file():
        pytest.skip(f"the published deploy prototxt is not at {UPSTREAM_DEPLOY} (set OPENCV_ORACLE_DIR)")
    ours, published = _structure(faces.DEPLOY), _structure(UPSTREAM_DEPLOY)
    assert len(ours) == len(published) == 112
    assert ours == published        # names, types, blobs and every parameter but the fillers


# ---------------------------------------------------------------------------- fetching
class _Server:
    def __init__(self, folder: Path):
        self.requests = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=str(folder), **kw)

            def do_GET(self):  # noqa: N802
                outer.requests.append(self.path)
                super().do_GET()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    s = _Server(root)
    yield s, root
    s.close()


def _published(path: Path, url: str, **override) -> faces.Published:
    data = path.read_bytes()
    fields = dict(name="res10_test.caffemodel", url=url, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                  sha1=hashlib.sha1(data).hexdigest())
    fields.update(override)
    return faces.Published(**fields)


def test_fetch_once_verified_atomic(server, tmp_path):
    srv, root = server
    weights = random_weights(SMALL, root / "w.caffemodel", seed=5)
    pub = _published(weights, f"{srv.url}/w.caffemodel")
    cache = tmp_path / "cache"
    assert faces.cached(cache, (pub,)) is None
    got = faces.fetch(pub, cache, progress=False)
    assert got == cache / pub.name and got.read_bytes() == weights.read_bytes()
    assert (got.stat().st_mode & 0o777) == 0o666 & ~_umask()
    assert faces.fetch(pub, cache, progress=False) == got and len(srv.requests) == 1    # second use: no network
    assert faces.cached(cache, (pub,)) == got
    got.write_bytes(b"changed")                                                       # a damaged copy is fetched again
    assert faces.cached(cache, (pub,)) is None
    assert faces.fetch(pub, cache, progress=False).read_bytes() == weights.read_bytes() and len(srv.requests) == 2


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_fetch_refuses_other_files_and_says_why(server, tmp_path):
    srv, root = server
    weights = random_weights(SMALL, root / "w.caffemodel", seed=5)
    cache = tmp_path / "cache"
    wrong = _published(weights, f"{srv.url}/w.caffemodel", sha256="0" * 64)
    with pytest.raises(faces.DetectorError, match=r"not the published file \(sha256 [0-9a-f]{64}, expected 0{64}"):
        faces.fetch(wrong, cache, progress=False)
    assert list(cache.iterdir()) == []                                # nothing half-written left behind
    wrong_sha1 = _published(weights, f"{srv.url}/w.caffemodel", size=None, sha256=None, sha1="1" * 40)
    with pytest.raises(faces.DetectorError, match="sha1"):
        faces.fetch(wrong_sha1, cache, progress=False)
    with pytest.raises(faces.DetectorError, match="HTTP 404"):
        faces.fetch(_published(weights, f"{srv.url}/missing.caffemodel"), cache, progress=False)
    srv.close()
    with pytest.raises(faces.DetectorError, match="cannot download .*--detector-weights"):
        faces.fetch(_published(weights, f"{srv.url}/w.caffemodel"), cache, progress=False, timeout=5)
    srv.httpd = _Dummy()


class _Dummy:
    def shutdown(self):
        pass

    def server_close(self):
        pass


def test_published_pins():
    assert faces.RES10_FP16.size == 5_351_047
    assert faces.RES10_FP16.sha256 == "510ffd2471bd81e3fcc88a5beb4eae4fb445ccf8333ebc54e7302b83f4158a76"
    assert faces.RES10_FP16.sha1 == "31fc22bfdd907567a04bb45b7cfad29966caddc1"
    assert faces.RES10_FP32.sha1 == "15aa726b4d46d9f023526d85537db81cbc8dd566"
    for pub in faces.WEIGHTS:
        assert pub.url.startswith("https://raw.githubusercontent.com/opencv/opencv_3rdparty/dnn_samples_face_detector_")
        assert pub.url.endswith("/" + pub.name)


# ---------------------------------------------------------------------------- detection
@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faces")
    img = photo(21, 360, 480)
    return img, face_ssd_weights(tmp / "face.caffemodel", img, seed=2), tmp


def _fp16_copy(src: Path, dst: Path) -> Path:
    """The caffemodel with every blob as NVIDIA Caffe FP16 raw_data (as the published FP16 file)."""
    from converters.formats import blob_to_array, read_weights, write_weights
    from converters.proto import caffe_pb2 as pb
    net = read_weights(src)
    for layer in net.layer:
        for blob in layer.blobs:
            arr = blob_to_array(blob)
            blob.ClearField("data")
            blob.raw_data_type = pb.FLOAT16
            blob.raw_data = arr.astype("<f2").tobytes()
    write_weights(net, dst)
    return dst


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_ssd_detector_finds_what_opencv4_finds(scene, precision):
    cv = opencv4()
    img, weights, tmp = scene
    if precision == "fp16":
        weights = _fp16_copy(weights, tmp / "face_fp16.caffemodel")
    det = faces.SSDFaceDetector(weights, margin=0.4, min_confidence=0.5, prototxt=SMALL)
    boxes = det.detect(img)
    net = cv.dnn.readNetFromCaffe(str(SMALL), str(weights))     # OpenCV's sample, step by step
    net.setInput(cv.dnn.blobFromImage(cv.resize(img, (300, 300)), 1.0, (300, 300), FACE_MEAN))
    rows = net.forward().reshape(-1, 7)
    rows = rows[rows[:, 2] > 0.5]
    h, w = img.shape[:2]
    ref = sorted((tuple(int(v) for v in (r[3:7] * [w, h, w, h]).round()), float(r[2])) for r in rows)
    assert len(boxes) == len(ref) >= 3
    ours = sorted(((b[0], b[1], b[0] + b[2], b[1] + b[3]), s) for b, s in zip(boxes, det.scores))
    for (ob, os_), (rb, rs) in zip(ours, ref):
        rb = (max(0, rb[0]), max(0, rb[1]), min(w, rb[2]), min(h, rb[3]))
        assert np.abs(np.subtract(ob, rb)).max() <= 1 and abs(os_ - rs) <= 1e-4
    assert [b[0] for b in boxes] == sorted(b[0] for b in boxes)              # left to right
    x, y, bw, bh = boxes[0]
    assert det.crop_box(boxes[0], img.shape) == (max(0, x - round(0.4 * bw)), max(0, y - round(0.4 * bh)),
                                                 min(w, x + bw + round(0.4 * bw)) - max(0, x - round(0.4 * bw)),
                                                 min(h, y + bh + round(0.4 * bh)) - max(0, y - round(0.4 * bh)))


def test_detector_choice(scene, tmp_path, monkeypatch, capsys):
    _, weights, _ = scene
    monkeypatch.setenv("REPRO_ASSETS_DIR", str(tmp_path))
    haar = lambda: "haar"  # noqa: E731
    args = SimpleNamespace(detect_faces=False, detector=None, detector_weights=None, min_neighbors=5,
                           min_confidence=0.5, face_margin=0.4, min_face=30, device="cpu")
    assert faces.make_detector(args, haar) is None
    args.detect_faces = True
    assert faces.make_detector(args, haar) == "haar"                  # auto, no weights here: Haar + a note
    assert "Haar cascade" in capsys.readouterr().err
    folder = tmp_path / faces.FOLDER
    folder.mkdir()
    (folder / faces.RES10_FP16.name).write_bytes(b"not the weights")
    assert faces.make_detector(args, haar) == "haar"                  # a wrong file is not used
    args.detector_weights = str(weights)
    monkeypatch.setattr(faces, "DEPLOY", SMALL)
    assert isinstance(faces.make_detector(args, haar), faces.SSDFaceDetector)
    args.detector = "haar"
    with pytest.raises(faces.DetectorError, match="--detector-weights is for the SSD"):
        faces.make_detector(args, haar)
    args.detector_weights, args.min_neighbors = None, -1
    with pytest.raises(faces.DetectorError, match="--min-neighbors"):
        faces.make_detector(args, haar)
    with pytest.raises(faces.DetectorError, match="--min-confidence"):
        faces.SSDFaceDetector(weights, min_confidence=1.5, prototxt=SMALL)
    with pytest.raises(faces.DetectorError, match="no such file"):
        faces.SSDFaceDetector(tmp_path / "nope.caffemodel")
    (tmp_path / faces.RES10_FP16.name).write_bytes(b"x")
    with pytest.raises(faces.DetectorError, match="not the published"):
        faces.SSDFaceDetector(tmp_path / faces.RES10_FP16.name)


needs_haar = pytest.mark.skipif(not hasattr(__import__("cv2"), "CascadeClassifier"),
                                reason="OpenCV's Haar cascade is not in this OpenCV (5.x moved it to opencv-contrib)")


@needs_haar
def test_haar_fallback_is_alt2_with_min_neighbors():
    from reproduce import predict
    det = predict.FaceDetector(min_neighbors=2)
    assert predict.HAAR_CASCADE == "haarcascade_frontalface_alt2.xml" and not det.cascade.empty()
    assert det.min_neighbors == 2


def test_predict_with_the_ssd_detector(scene, tmp_path, monkeypatch, capsys):
    from reproduce import predict
    img, weights, _ = scene
    pic = tmp_path / "group.png"
    cv2.imwrite(str(pic), img)
    age = DATA / "age_deploy.prototxt"
    age_w = random_weights(age, tmp_path / "age.caffemodel", seed=4)
    monkeypatch.setattr(faces, "DEPLOY", SMALL)          # the small random-weight detector
    out = tmp_path / "out"
    argv = [str(pic), "--deploy", str(age), "--caffemodel", str(age_w), "--mean-value", "104,117,123",
            "--detector", "ssd", "--detector-weights", str(weights), "--min-confidence", "0.6",
            "--out", str(out), "--no-progress"]
    rc = predict.main_predict(argv)
    err = capsys.readouterr().err
    assert rc == 0, err
    recs = json.loads((out / "predictions.json").read_text())
    det = faces.SSDFaceDetector(weights, min_confidence=0.6, min_size=30, prototxt=SMALL)
    boxes = det.detect(img)
    assert boxes and [tuple(r["detection_box"]) for r in recs] == boxes
    assert all(tuple(r["face_box"]) == det.crop_box(tuple(r["detection_box"]), img.shape) for r in recs)
    assert "Haar" not in err
    rc = predict.main_predict(argv[:-1] + ["--min-confidence", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "--min-confidence" in err and len(err.strip().splitlines()) == 1
