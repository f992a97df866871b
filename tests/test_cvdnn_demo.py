"""A tutorial-style OpenCV 4 script (SSD face detection, then age and gender nets on each face)
gives the same detections and probabilities natively under OpenCV 4 and through
``python -m converters.cvdnn`` (random-weight nets: a res10-shaped SSD, small Levi-Hassner nets)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cvdnn_helpers import AGE_MEAN, DATA, face_ssd_weights, opencv4, photo, random_weights

REPO = DATA.parent.parent.parent
PHOTO = Path(os.environ.get("OPENCV_ORACLE_DIR", REPO.parent / "shared" / "opencv-oracle")) / "mobilenet_ssd" / "woman1.jpg"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    import cv2

    from converters import cvdnn

    tmp = tmp_path_factory.mktemp("demo")
    if PHOTO.is_file():
        image = PHOTO
    else:                                   # no oracle photo here: a generated one (same code path)
        image = tmp / "photo.png"
        cv2.imwrite(str(image), photo(7, 480, 640))
    img = cv2.imread(str(image))
    face_w = face_ssd_weights(tmp / "face.caffemodel", img, seed=1)
    face_blob = cvdnn.blobFromImage(cv2.resize(img, (227, 227)), 1.0, (227, 227), AGE_MEAN)
    nets = {"face": (DATA / "face_ssd_small.prototxt", face_w)}
    for kind, seed in (("age", 11), ("gender", 12)):
        proto = DATA / f"{kind}_deploy.prototxt"
        nets[kind] = (proto, random_weights(proto, tmp / f"{kind}.caffemodel", seed=seed,
                                            calibrate={"_input": face_blob, "fc8": 2.0}))
    args = ["--image", str(image)]
    for kind, (proto, weights) in nets.items():
        args += [f"--{kind}", str(proto), str(weights)]
    return tmp, args


def _run(cmd, tmp, name, args):
    out = tmp / f"{name}.json"
    r = subprocess.run(cmd + [str(DATA / "age_gender_demo.py"), *args, "--json", str(out),
                              "--output", str(tmp / f"{name}.png")],
                       capture_output=True, text=True, timeout=600, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(out.read_text())


def _near_integer(v: float, eps: float = 0.05) -> bool:
    return abs(v - round(v)) < eps


def test_demo_same_under_opencv4_and_cvdnn(demo):
    opencv4()
    tmp, args = demo
    native = _run([sys.executable], tmp, "native", args)
    ours = _run([sys.executable, "-m", "converters.cvdnn"], tmp, "cvdnn", args)
    a, b = native["faces"], ours["faces"]
    assert len(a) >= 3, "the calibrated random detector should find several 'faces'"
    assert len(a) == len(b)
    key = lambda f: (-f["score"], f["box"])  # noqa: E731
    compared = 0
    for fa, fb in zip(sorted(a, key=key), sorted(b, key=key)):
        assert abs(fa["score"] - fb["score"]) <= 1e-4
        assert np.abs(np.subtract(fa["box"], fb["box"])).max() <= 1e-3
        if fa["pixels"] != fb["pixels"]:
            # int() of the pixel box may only differ where the float box sits on an integer
            w, h = native["size"]
            assert any(_near_integer(v) for v in np.multiply(fa["box"], [w, h, w, h])), (fa, fb)
            continue
        assert np.abs(np.subtract(fa["gender"], fb["gender"])).max() <= 1e-5
        assert np.abs(np.subtract(fa["age"], fb["age"])).max() <= 1e-5
        compared += 1
    assert compared >= len(a) - 1
    print(f"{len(a)} faces, {compared} with the same pixel box compared")
    assert any(max(f["age"]) < 0.95 for f in a)        # real distributions, not one-hot
    assert (tmp / "cvdnn.png").stat().st_size > 0


def test_demo_runs_without_the_caffe_importer(demo, monkeypatch, tmp_path):
    """The OpenCV 5 situation: no cv2.dnn.readNetFromCaffe at all; the module supplies it."""
    tmp, args = demo
    shim = tmp_path / "sitecustomize.py"
    shim.write_text("import cv2\nfor n in ('readNetFromCaffe',):\n    if hasattr(cv2.dnn, n):\n"
                    "        delattr(cv2.dnn, n)\n")
    native = subprocess.run([sys.executable, str(DATA / "age_gender_demo.py"), *args], capture_output=True,
                            text=True, timeout=600, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"})
    assert native.returncode != 0 and "readNetFromCaffe" in native.stderr
    out = tmp_path / "o.json"
    r = subprocess.run([sys.executable, "-m", "converters.cvdnn", str(DATA / "age_gender_demo.py"), *args,
                        "--json", str(out)], capture_output=True, text=True, timeout=600, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"})
    assert r.returncode == 0, r.stderr[-2000:]
    faces = json.loads(out.read_text())["faces"]
    assert faces and all(len(f["age"]) == 8 and abs(sum(f["gender"]) - 1) < 1e-5 for f in faces)
