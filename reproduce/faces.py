"""Face detectors for ``--predict``: OpenCV's res10 SSD face detector through our converter, or the
Haar cascade as the offline fallback.

What it owns:
* the published files of the res10 300x300 SSD detector (URLs in opencv/opencv_3rdparty as listed by
  OpenCV's ``samples/dnn`` model lists, pinned by size and hash), fetched on first use into
  ``<asset root>/face_detector/`` (the asset root of :mod:`reproduce.assets`), verified every load;
* :class:`SSDFaceDetector`: OpenCV's sample preprocessing (the photo squashed to 300x300, mean
  B,G,R = 104, 177, 123, no scaling, no channel swap), the net run by :mod:`converters.cvdnn`
  (OpenCV 4's semantics: detections ``[1, 1, N, 7]``), faces with a score above ``--min-confidence``
  (default 0.5, as OpenCV's sample), boxes in pixels clipped to the photo, left to right;
* :class:`HaarFaceDetector`: OpenCV's frontal-face Haar cascade (``cv2.data.haarcascades`` +
  :data:`HAAR_CASCADE`, nothing downloaded; OpenCV 4.x only), on a grey equalised copy scaled to
  at most :data:`DETECT_SIDE` pixels, faces >= ``--min-face`` 30 px;
* both enlarge every detection by ``--face-margin`` (40 %) of its width/height on each side and
  clip it to the photo (:class:`MarginBox`);
* which detector ``--detect-faces`` uses (:func:`make_detector`): ``--detector ssd`` (fetches the
  weights if needed), ``haar``, or ``auto`` (default: the SSD when its weights are here - fetched
  before or given with ``--detector-weights`` - else the Haar cascade, with a note).
The deploy prototxt is packaged (``reproduce/data/res10_300x300_ssd_deploy.prototxt``, written by
:mod:`reproduce.face_ssd_net`); the weights are not redistributed.
"""
from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from converters.errors import InputError

DEPLOY = Path(__file__).resolve().parent / "data" / "res10_300x300_ssd_deploy.prototxt"
SSD_SIZE = (300, 300)
SSD_MEAN = (104.0, 177.0, 123.0)        # OpenCV's samples/dnn face detector: B, G, R
MIN_CONFIDENCE = 0.5
DETECTORS = ("auto", "ssd", "haar")
CHUNK = 1 << 16
FOLDER = "face_detector"
FACE_MARGIN = 0.4          # fraction of the detection's width/height added on each side
MIN_FACE = 30              # pixels, smallest face the Haar cascade looks for
DETECT_SIDE = 1280         # larger photos are searched for Haar faces on a copy scaled to this longer side
HAAR_CASCADE = "haarcascade_frontalface_alt2.xml"   # the default cascade gave false boxes on real photos


class DetectorError(RuntimeError, InputError):
    """A face detector cannot be set up (one line naming the file, URL or option)."""


@dataclass(frozen=True)
class Published:
    """A published file: where it is and how to recognise it (size / SHA-256 / SHA-1 where known)."""
    name: str
    url: str
    size: int | None = None
    sha256: str | None = None
    sha1: str | None = None


_3RDPARTY = "https://raw.githubusercontent.com/opencv/opencv_3rdparty"
RES10_FP16 = Published(
    "res10_300x300_ssd_iter_140000_fp16.caffemodel",
    f"{_3RDPARTY}/dnn_samples_face_detector_20180205_fp16/res10_300x300_ssd_iter_140000_fp16.caffemodel",
    size=5_351_047, sha256="510ffd2471bd81e3fcc88a5beb4eae4fb445ccf8333ebc54e7302b83f4158a76",
    sha1="31fc22bfdd907567a04bb45b7cfad29966caddc1")
RES10_FP32 = Published(
    "res10_300x300_ssd_iter_140000.caffemodel",
    f"{_3RDPARTY}/dnn_samples_face_detector_20170830/res10_300x300_ssd_iter_140000.caffemodel",
    sha1="15aa726b4d46d9f023526d85537db81cbc8dd566")
WEIGHTS = (RES10_FP16, RES10_FP32)      # looked for in this order; the FP16 one is fetched


# ---------------------------------------------------------------------------- files
def default_folder() -> Path:
    from reproduce.assets import default_root
    return default_root() / FOLDER


def mismatch(path: Path, pub: Published) -> str | None:
    """Why ``path`` is not ``pub`` (size or hash), or None when it is."""
    size = path.stat().st_size
    if pub.size is not None and size != pub.size:
        return f"{size} bytes, expected {pub.size}"
    h256, h1 = hashlib.sha256(), hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK * 16), b""):
            h256.update(chunk)
            h1.update(chunk)
    if pub.sha256 and h256.hexdigest() != pub.sha256:
        return f"sha256 {h256.hexdigest()}, expected {pub.sha256}"
    if pub.sha1 and h1.hexdigest() != pub.sha1:
        return f"sha1 {h1.hexdigest()}, expected {pub.sha1}"
    return None


def cached(folder=None, published=WEIGHTS) -> Path | None:
    """The first of ``published`` present in ``folder`` with the right hash, else None (no network)."""
    folder = Path(folder) if folder is not None else default_folder()
    for pub in published:
        path = folder / pub.name
        if path.is_file() and mismatch(path, pub) is None:
            return path
    return None


def fetch(pub: Published = RES10_FP16, folder=None, progress: bool | None = None, timeout: float = 60.0) -> Path:
    """``pub`` in ``folder`` (downloaded once, verified, renamed into place atomically)."""
    folder = Path(folder) if folder is not None else default_folder()
    dest = folder / pub.name
    if dest.is_file() and mismatch(dest, pub) is None:
        return dest
    folder.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        req = urllib.request.Request(pub.url, headers={"User-Agent": "caffe-agegender-repro"})
        with urllib.request.urlopen(req, timeout=timeout) as resp, open(part, "wb") as fh:
            total = pub.size or int(resp.headers.get("Content-Length") or 0) or None
            bar = _bar(total, pub.name, progress)
            try:
                for chunk in iter(lambda: resp.read(CHUNK), b""):
                    fh.write(chunk)
                    bar.update(len(chunk))
            finally:
                bar.close()
    except urllib.error.HTTPError as exc:
        part.unlink(missing_ok=True)
        raise DetectorError(f"{pub.name}: HTTP {exc.code} {exc.reason} from {pub.url}") from None
    except (urllib.error.URLError, OSError) as exc:
        part.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise DetectorError(f"{pub.name}: cannot download {pub.url} ({reason}); give the file with "
                            f"--detector-weights or use --detector haar") from None
    bad = mismatch(part, pub)
    if bad is not None:
        part.unlink()
        raise DetectorError(f"{pub.name}: the download from {pub.url} is not the published file ({bad}); "
                            f"it was removed")
    os.replace(part, dest)
    return dest


def _bar(total, name, progress):
    from tqdm import tqdm
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr, desc=name,
                disable=None if progress is None else not progress, leave=False)


# ---------------------------------------------------------------------------- detectors
class MarginBox:
    """Boxes enlarged by ``margin`` of their width/height on every side, clipped to the photo."""
    margin: float

    def crop_box(self, det, shape) -> tuple[int, int, int, int]:
        x, y, w, h = det
        mx, my = int(round(self.margin * w)), int(round(self.margin * h))
        x0, y0 = max(0, x - mx), max(0, y - my)
        x1, y1 = min(shape[1], x + w + mx), min(shape[0], y + h + my)
        return x0, y0, x1 - x0, y1 - y0


class SSDFaceDetector(MarginBox):
    """OpenCV's res10 300x300 SSD face detector on :mod:`converters.cvdnn`."""

    name = "ssd"

    def __init__(self, weights, margin: float = FACE_MARGIN, min_confidence: float = MIN_CONFIDENCE, min_size: int = 1,
                 device: str = "cpu", prototxt=None):
        from converters import cvdnn

        if margin < 0:
            raise DetectorError(f"--face-margin: expected >= 0, got {margin}")
        if not 0.0 <= min_confidence < 1.0:
            raise DetectorError(f"--min-confidence: expected a score in [0, 1), got {min_confidence}")
        weights = Path(weights)
        if not weights.is_file():
            raise DetectorError(f"{weights}: no such file (--detector-weights)")
        known = next((p for p in WEIGHTS if p.name == weights.name), None)
        if known is not None:       # a file named as a published one must be that file
            bad = mismatch(weights, known)
            if bad is not None:
                raise DetectorError(f"{weights}: not the published {known.name} ({bad})")
        try:
            self.net = cvdnn.readNetFromCaffe(str(prototxt or DEPLOY), str(weights))
        except cvdnn.CvdnnError as exc:
            raise DetectorError(f"face detector: {exc}") from None
        if str(device).startswith("cuda"):
            self.net.setPreferableBackend(cvdnn.DNN_BACKEND_CUDA)
            self.net.setPreferableTarget(cvdnn.DNN_TARGET_CUDA)
        self.weights = weights
        self.margin, self.min_confidence, self.min_size = float(margin), float(min_confidence), int(min_size)
        self.scores: list[float] = []        # of the last detect(), in the order of its boxes

    def detections(self, img: np.ndarray) -> np.ndarray:
        """The net's rows ``[image, label, score, xmin, ymin, xmax, ymax]`` (normalised) above the
        confidence threshold, as OpenCV's sample gets them."""
        import cv2

        from converters import cvdnn

        blob = cvdnn.blobFromImage(cv2.resize(img, SSD_SIZE), 1.0, SSD_SIZE, SSD_MEAN)
        self.net.setInput(blob)
        rows = self.net.forward().reshape(-1, 7)
        return rows[rows[:, 2] > self.min_confidence]

    def detect(self, img: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Face boxes (x, y, w, h) in the photo's pixels, clipped, left to right."""
        h, w = img.shape[:2]
        found = []
        for row in self.detections(img):
            x0, y0, x1, y1 = (row[3:7] * np.array([w, h, w, h])).round().astype(int)
            x0, y0 = max(0, x0), max(0, y0)
            x1, y1 = min(w, x1), min(h, y1)
            if x1 - x0 >= self.min_size and y1 - y0 >= self.min_size:
                found.append(((int(x0), int(y0), int(x1 - x0), int(y1 - y0)), float(row[2])))
        found.sort(key=lambda f: (f[0][0], f[0][1]))
        self.scores = [s for _, s in found]
        return [b for b, _ in found]


class HaarFaceDetector(MarginBox):
    """OpenCV's frontal-face Haar cascade (the offline fallback); boxes enlarged by ``margin`` on each side, clipped
    (``MarginBox.crop_box``, shared with the SSD detector)."""

    name = "haar"

    def __init__(self, margin: float = FACE_MARGIN, min_size: int = MIN_FACE, scale_factor: float = 1.1,
                 min_neighbors: int = 5):
        import cv2
        if margin < 0:
            raise DetectorError(f"--face-margin: expected >= 0, got {margin}")
        if not hasattr(cv2, "CascadeClassifier"):
            # OpenCV 5 moved the Haar cascades out of the main package (into opencv-contrib's xobjdetect)
            raise DetectorError(f"the Haar face detector needs OpenCV 4.x (installed: OpenCV {cv2.__version__}); "
                               f"use --detector ssd")
        path = str(Path(cv2.data.haarcascades) / HAAR_CASCADE)
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise DetectorError(f"{path}: OpenCV's face cascade cannot be loaded")
        self.margin, self.min_size = float(margin), int(min_size)
        self.scale_factor, self.min_neighbors = scale_factor, min_neighbors

    def detect(self, img: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Raw detections (x, y, w, h) in the photo's pixels, left to right.  Photos larger than
        DETECT_SIDE are searched on a downscaled grey copy (the boxes are scaled back)."""
        import cv2
        grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        scale = min(1.0, DETECT_SIDE / max(grey.shape))
        if scale < 1.0:
            grey = cv2.resize(grey, (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale))),
                              interpolation=cv2.INTER_AREA)
        grey = cv2.equalizeHist(grey)
        side = max(1, int(round(self.min_size * scale)))
        found = self.cascade.detectMultiScale(grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                              minSize=(side, side))
        boxes = []
        for box in found:
            x, y, w, h = (int(round(float(v) / scale)) for v in box)
            w, h = min(w, img.shape[1] - x), min(h, img.shape[0] - y)
            boxes.append((x, y, w, h))
        return sorted(boxes, key=lambda b: (b[0], b[1]))


def make_detector(args, haar=None):
    """The detector ``--predict`` uses, or None without ``--detect-faces`` / ``--detector``.

    ``haar()`` builds the Haar-cascade detector (default: :class:`HaarFaceDetector` with
    ``--face-margin``, ``--min-face``, ``--min-neighbors``).  Raises DetectorError for bad options
    or weights that cannot be had."""
    choice = getattr(args, "detector", None)
    if not getattr(args, "detect_faces", False) and choice is None:
        return None
    choice = choice or "auto"
    if haar is None:
        def haar():
            return HaarFaceDetector(getattr(args, "face_margin", FACE_MARGIN), getattr(args, "min_face", MIN_FACE),
                                    min_neighbors=getattr(args, "min_neighbors", 5))
    if choice not in DETECTORS:
        raise DetectorError(f"--detector: expected one of {', '.join(DETECTORS)}, got {choice!r}")
    given = getattr(args, "detector_weights", None)
    if getattr(args, "min_neighbors", 0) < 0:
        raise DetectorError(f"--min-neighbors: expected >= 0, got {args.min_neighbors}")
    if choice == "haar":
        if given:
            raise DetectorError("--detector-weights is for the SSD detector (--detector ssd or auto)")
        return haar()
    weights = Path(given) if given else cached()
    if weights is None and choice == "ssd":
        weights = fetch(RES10_FP16, progress=None if not getattr(args, "no_progress", False) else False)
    if weights is None:
        print(f"note: face detection with the Haar cascade: the SSD face detector's weights are not in "
              f"{default_folder()} (--detector ssd fetches them once, 5.4 MB)", file=sys.stderr)
        return haar()
    return SSDFaceDetector(weights, margin=getattr(args, "face_margin", FACE_MARGIN),
                           min_confidence=getattr(args, "min_confidence", MIN_CONFIDENCE),
                           min_size=getattr(args, "min_face", 1) or 1, device=getattr(args, "device", "cpu"))


def add_detector_arguments(add) -> None:
    """The detector options (``add`` = an argparse ``add_argument``)."""
    add("--detector", choices=DETECTORS, default=None,
        help="face detector for --detect-faces (implies it): ssd = OpenCV's res10 SSD (weights fetched once), "
             "haar = Haar cascade alt2 (offline), auto = ssd when its weights are here, else haar (default)")
    add("--detector-weights", metavar="CAFFEMODEL",
        help="the SSD detector's caffemodel (res10_300x300_ssd_iter_140000[_fp16].caffemodel) instead of fetching")
    add("--min-confidence", type=float, default=MIN_CONFIDENCE,
        help=f"SSD detector: smallest face score kept (default {MIN_CONFIDENCE})")
    add("--min-neighbors", type=int, default=5,
        help="Haar cascade: overlapping detections a face needs (default 5; fewer finds more, and more false boxes)")


def main(argv=None) -> int:
    """``python -m reproduce.faces [--fp32] [--folder DIR]``: fetch the SSD detector's weights."""
    import argparse
    ap = argparse.ArgumentParser(description="fetch the res10 SSD face detector's published weights")
    ap.add_argument("--fp32", action="store_true", help="the FP32 caffemodel instead of the FP16 one")
    ap.add_argument("--folder", help=f"where to put it (default {default_folder()})")
    args = ap.parse_args(argv)
    try:
        path = fetch(RES10_FP32 if args.fp32 else RES10_FP16, args.folder)
    except DetectorError as exc:
        print(f"reproduce.faces: error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
