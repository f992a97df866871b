#!/usr/bin/env python
"""Age group or gender of your own photos, with the paper's models and its exact 10-crop protocol.

    python reproduce/run.py --predict PHOTO_OR_FOLDER --table 2 --row m,w --weights MODELS [--fold K]
    python reproduce/run.py --predict PHOTO_OR_FOLDER --deploy D.prototxt --caffemodel W.caffemodel \\
        --mean mean.binaryproto [--labels age|gender|FILE] [--output-blob prob]
    python reproduce/run.py predict PHOTO_OR_FOLDER ...   (the subcommand style, the same options)
    python -m reproduce.predict ...   (the same options; images may also be given as positionals)

Model: a paper cell (``--table 2|3 --row R [--col C]``; weights ``DIR/<folder>/models_test_is_K/
caffenet_train_iter_N.caffemodel`` from ``--weights DIR``; ``--fold K`` one fold model, default
``all`` = the probabilities of the 5 fold models averaged; each fold model gets its own fold's mean
image of the cell's mean variant, from ``--means DIR`` or the upstream files via
:mod:`reproduce.assets`), or any Caffe classifier (``--deploy/--caffemodel`` with ``--mean FILE`` or
``--mean-value B,G,R``).

Preprocessing = the protocol (:mod:`reproduce.protocol`): the photo (or the face crop) is read in
colour as BGR (``cv2.imread``, as ``convert_imageset``), squashed to 256x256 (the mean file's size)
with ``cv2.INTER_LINEAR``, taken as float, minus the full 256x256 mean image (a ``--mean-value`` is
broadcast), then ``caffe.io.oversample``'s 10 crops; the 10 rows of the net's softmax output are
averaged (and, with several fold models, those averages again).  Without a mean the numbers are
garbage, so a missing mean is an error (``--no-mean`` to insist).

Faces (``--detect-faces``; ``--detector ssd|haar|auto``, see :mod:`reproduce.faces`): OpenCV's
res10 SSD face detector when its weights are here (``--min-confidence`` 0.5), else OpenCV's
frontal-face Haar cascade
(``cv2.data.haarcascades + 'haarcascade_frontalface_alt2.xml'``, nothing downloaded; scale
factor 1.1, ``--min-neighbors`` 5, faces >= ``--min-face`` 30 px), every detection enlarged by
``--face-margin`` = 40 % of its width/height on each side (the Haar box covers brows to chin; the
Adience crops show the whole head with some background, the face filling roughly half the crop)
and clipped to the photo; each face is predicted on its own.  A photo in which no face is found is
predicted as a whole (``face_box`` null, ``detected`` false) and a note goes to stderr.  Without
``--detect-faces`` the whole photo is one face crop (as an Adience crop would be).

Outputs: a table on stdout; with ``--out DIR``: ``predictions.json`` (a list of ``{"image",
"face", "face_box" [x, y, w, h] | null, "detected", "probs", "label", "label_name", ...}``),
``predictions.csv``, ``annotated/<photo>.png`` (boxes and labels) and, with ``--explain``,
``heatmaps/<photo>_face<i>.png`` (the centre crop beside the LRP relevance of the predicted class,
paper composite, ``black-firered`` colours; averaged over the fold models).  Exit codes: 0 done,
2 bad input (one line on stderr), 130 interrupted.

This module is the mode: its options, the photos (listing, reading, the faces cut out and
squashed), the batched scoring loop, the records, table and CSV, and the run.  The parts live in
:mod:`reproduce.classify` (the nets and their means, class names, LRP of the faces; a paper cell's
fold models come from :mod:`reproduce.cell_model` as in every mode), :mod:`reproduce.faces` (the
SSD and Haar detectors) and :mod:`reproduce.draw` (annotated photos, heatmap pictures); their
names are re-exported here.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib  # noqa: E402
import csv  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections import deque  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402

from reproduce import faces as face_detectors, options  # noqa: E402
from converters.errors import is_input_error, report  # noqa: E402
# the parts of the mode, re-exported: callers and tests use them as reproduce.predict.<name>
from reproduce.classify import (DEFAULT_RESIZE, LABELS, Classifier, Net, PredictError,  # noqa: E402,F401
                                cell_classifier, custom_classifier, explain_faces, load_net, parse_mean_value,
                                read_labels, read_mean_file, select_cell)
from reproduce.draw import annotate, black_firered, heatmap_picture  # noqa: E402,F401
from reproduce.faces import (DETECT_SIDE, FACE_MARGIN, HAAR_CASCADE, MIN_FACE,  # noqa: E402,F401
                             HaarFaceDetector as FaceDetector)

PROG = "predict"
DEFAULT_BATCH = 10         # faces per forward pass (x 10 crops)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
                  ".pbm", ".pnm", ".jp2", ".sr", ".ras"}


# ---------------------------------------------------------------------------- the model
def parse_folds(text) -> list[int]:
    """``--fold``: one fold model, a list, or all (None) = the five fold models."""
    return options.parse_folds(text, "--fold", allow_all=True)


def build_classifier(args) -> Classifier:
    """The classifier described by the parsed options (paper cell or --deploy/--caffemodel)."""
    device = getattr(args, "device", "cpu") or "cpu"
    channels_last = not getattr(args, "contiguous", False)
    no_mean = bool(getattr(args, "no_mean", False))
    deploy = getattr(args, "deploy", None)
    table = getattr(args, "table", None)
    if deploy and table is not None:
        raise PredictError("give either a paper cell (--table/--row/--col) or --deploy/--caffemodel, not both")
    if deploy or getattr(args, "caffemodel", None):
        return custom_classifier(args, device, channels_last, no_mean)
    if table is None:
        raise PredictError("no model: give --table T --row R [--col C] --weights DIR (a paper cell) or "
                           "--deploy PROTOTXT --caffemodel FILE --mean FILE (any Caffe classifier)")
    return cell_classifier(args, parse_folds(getattr(args, "fold", None)), device, channels_last, no_mean)


# ---------------------------------------------------------------------------- images and faces
def list_images(inputs, exclude=None) -> list[Path]:
    """Image files named or found (recursively, sorted) in the folders; ``exclude``: a folder to skip."""
    import cv2
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    excl = Path(exclude).resolve() if exclude else None
    out, named = [], []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                           and not (excl is not None and excl in f.resolve().parents))
            if not found:
                raise PredictError(f"{p}: no images in this folder ({', '.join(sorted(IMAGE_SUFFIXES))})")
            out.extend(found)
        elif p.is_file():
            out.append(p)
            named.append(p)
        else:
            raise PredictError(f"{p}: no such file or folder")
    # a photo named on the command line must be readable; one bad file found in a folder only
    # gets a warning and a row saying why (predict), the others are still scored
    for f in named:
        if not cv2.haveImageReader(str(f)):
            raise PredictError(f"{f}: not an image OpenCV can read")
    return out


def _jpeg_truncated(path) -> bool:
    """A JPEG whose data stops before its end-of-image marker (FF D9): libjpeg decodes what is
    there, fills the rest with grey and prints "Premature end of JPEG file" on stderr."""
    try:
        with open(path, "rb") as fh:
            if fh.read(2) != b"\xff\xd8":
                return False
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 4096))
            tail = fh.read().rstrip(b"\x00\r\n \t")
    except OSError:
        return False
    return not tail.endswith(b"\xff\xd9")


@contextlib.contextmanager
def _quiet_stderr_fd():
    """Silence the C library's stderr (fd 2) for a moment: libjpeg's warnings go there."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class ImageWarning(UserWarning):
    """A photo that was read but is damaged (a truncated JPEG)."""


def read_image(path) -> np.ndarray:
    """The photo as OpenCV reads it in colour: (H, W, 3) uint8 BGR (as convert_imageset).

    Raises PredictError for files that are not images or too large to decode; a truncated JPEG
    is read as libjpeg does (grey where data is missing) with an :class:`ImageWarning`.
    """
    from converters.formats.image_header import check_pixels
    from converters.formats.images import read_image as imread
    try:
        with open(path, "rb") as fh:
            check_pixels(fh.read(65536), str(path))
    except OSError as exc:
        raise PredictError(f"{path}: cannot be read ({exc.strerror})") from None
    except ValueError as exc:
        raise PredictError(str(exc)) from None
    truncated = _jpeg_truncated(path)
    if truncated:
        with _quiet_stderr_fd():
            img = imread(path)
    else:
        img = imread(path)
    if img is None:
        raise PredictError(f"{path}: cannot be read as an image")
    if truncated:
        warnings.warn(f"{path}: truncated JPEG (the data ends before the image does); "
                      "predicted on the partly grey picture libjpeg decodes", ImageWarning, stacklevel=2)
    return img


def to_net_input(img: np.ndarray, size) -> np.ndarray:
    """(H, W, 3) BGR uint8 -> (3, h, w) uint8 squashed to ``size`` = (h, w) with INTER_LINEAR."""
    from converters.formats.images import squash
    img = squash(img, *size)
    return np.ascontiguousarray(img.transpose(2, 0, 1))


@dataclass
class FaceResult:
    index: int
    box: tuple | None               # the crop the net saw (x, y, w, h), None = the whole image
    detection: tuple | None         # the raw Haar box
    array: np.ndarray | None        # uint8 (3, H, W) net input (kept until the image is written)
    probs: np.ndarray | None = None


@dataclass
class ImageResult:
    path: Path
    faces: list
    detected: bool
    image: np.ndarray | None = None  # the photo (kept only for the annotated PNG)
    shape: tuple = ()
    error: str | None = None         # why the photo could not be read (then no faces)
    warning: str | None = None       # read, but damaged (a truncated JPEG)

    @property
    def done(self) -> bool:
        return all(f.probs is not None for f in self.faces)


def prepare(path, size, detector: FaceDetector | None, keep_image: bool) -> ImageResult:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ImageWarning)
        img = read_image(path)
    warning = "; ".join(str(w.message) for w in caught if issubclass(w.category, ImageWarning)) or None
    faces, detected = [], False
    if detector is not None:
        for i, det in enumerate(detector.detect(img)):
            x, y, w, h = detector.crop_box(det, img.shape)
            faces.append(FaceResult(i, (x, y, w, h), det, to_net_input(img[y:y + h, x:x + w], size)))
        detected = bool(faces)
    if not faces:
        faces.append(FaceResult(0, None, None, to_net_input(img, size)))
    return ImageResult(Path(path), faces, detected, img if keep_image else None, tuple(img.shape),
                       warning=warning)


def predict_images(classifier: Classifier, paths, detector: FaceDetector | None = None,
                   batch: int = DEFAULT_BATCH, keep_image: bool = False, keep_faces: bool = False,
                   on_done=None):
    """Yield an :class:`ImageResult` per path, in order, with every face's probabilities.

    Faces of consecutive photos share forward passes of ``batch`` faces (x 10 crops).  ``on_done``
    is called with each finished result (progress bars)."""
    batch = max(1, int(batch))
    pending: deque = deque()
    queue: list = []

    def run(chunk):
        probs = classifier.probabilities(np.stack([f.array for f in chunk]))
        for f, p in zip(chunk, probs):
            f.probs = p
            if not keep_faces:
                f.array = None

    def finished():
        while pending and pending[0].done:
            res = pending.popleft()
            if on_done is not None:
                on_done(res)
            yield res

    for path in paths:
        try:
            res = prepare(path, classifier.resize, detector, keep_image)
        except PredictError as exc:
            # one unreadable photo must not cost the rest of the folder: it gets a row saying why
            res = ImageResult(Path(path), [], False, error=str(exc))
        pending.append(res)
        queue.extend(res.faces)
        while len(queue) >= batch:
            run(queue[:batch])
            queue = queue[batch:]
            yield from finished()
    if queue:
        run(queue)
    yield from finished()


# ---------------------------------------------------------------------------- labels and records
def one_off(probs: np.ndarray, label: int, names) -> tuple[str, str, float]:
    lo, hi = max(0, label - 1), min(len(names) - 1, label + 1)
    return names[lo], names[hi], float(np.sum(probs[lo:hi + 1], dtype=np.float64))


def error_record(res: ImageResult, image_key: str) -> dict:
    """The row of a photo that could not be read."""
    return {"image": image_key, "face": None, "face_box": None, "detected": False, "probs": [],
            "label": None, "label_name": "", "prob": None, "error": res.error}


def face_record(res: ImageResult, face: FaceResult, classifier: Classifier, image_key: str) -> dict:
    probs = face.probs
    label = int(np.argmax(probs))
    rec = {"image": image_key, "face": face.index,
           "face_box": list(face.box) if face.box is not None else None,
           "detected": face.box is not None,
           "probs": [float(v) for v in probs], "label": label, "label_name": classifier.labels[label],
           "prob": float(probs[label])}
    if face.detection is not None:
        rec["detection_box"] = list(face.detection)
    if classifier.target == "age":
        lo, hi, p = one_off(probs, label, classifier.labels)
        rec["one_off_range"] = [lo, hi]
        rec["one_off_prob"] = p
    return rec


def format_table(records: list[dict], target: str | None) -> str:
    head = ["image", "face", "box (x, y, w, h)", target or "class", "p"]
    if target == "age":
        head += ["1-off range", "p(1-off)"]
    rows = []
    for r in records:
        if r.get("error"):
            rows.append([r["image"], "-", "unreadable", "-", "-"] + (["-", "-"] if target == "age" else []))
            continue
        box = ", ".join(map(str, r["face_box"])) if r["face_box"] else "whole image"
        row = [r["image"], str(r["face"]), box, r["label_name"], f"{r['prob']:.3f}"]
        if target == "age":
            lo, hi = r["one_off_range"]
            row += [f"±1 group: {lo}-{hi}", f"{r['one_off_prob']:.3f}"]
        rows.append(row)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def write_csv(path: Path, records: list[dict], labels) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["image", "face", "x", "y", "w", "h", "detected", "label", "label_name", "prob"]
               + [f"prob_{i}" for i in range(len(labels))] + ["error"])
    for r in records:
        if r.get("error"):
            w.writerow([r["image"]] + [""] * (9 + len(labels)) + [r["error"]])
            continue
        box = r["face_box"] or ["", "", "", ""]
        w.writerow([r["image"], r["face"], *box, int(r["detected"]), r["label"], r["label_name"],
                    repr(r["prob"])] + [repr(v) for v in r["probs"]]
                   + [f"warning: {r['warning']}" if r.get("warning") else ""])
    path.write_text(buf.getvalue(), encoding="utf-8")


# ---------------------------------------------------------------------------- command line
def add_arguments(parser) -> None:
    """The predict mode's options: the images (positionals or ``--predict``), :func:`add_predict_arguments`
    and ``--fetch`` (the paper cell's fold models)."""
    parser.add_argument("inputs", nargs="*", metavar="IMAGE_OR_FOLDER", help="photos or folders (also --predict)")
    add_predict_arguments(parser)
    from reproduce import fetch
    fetch.add_fetch_arguments(parser)


def add_predict_arguments(parser) -> None:
    """The predict options (every option :func:`predict` reads; ``parser`` may be any argparse parser)."""
    g = parser.add_argument_group("predict: age or gender of your own photos")
    add = g.add_argument
    add("--predict", nargs="+", metavar="IMAGE_OR_FOLDER",
        help="photos and/or folders of photos (searched recursively) to predict")
    add("--table", type=int, help="paper cell: 2 (age) or 3 (gender); 4/5 name the same models")
    add("--row", action="append", help="paper cell row: i, r, m, i,n, r,n, m,n, i,w, m,w")
    add("--col", action="append", help="paper cell column A, C, G or V (optional when the row has one model)")
    add("--fold", default=None, help="fold model K (0..4), a list (0,3), or all = the 5 fold models' "
                                     "probabilities averaged (default)")
    add("--iter", type=int, help="snapshot iteration (default: the paper's final one)")
    options.add_weights_arguments(g)
    options.add_means_argument(g)
    options.add_asset_arguments(g)
    add("--deploy", help="any Caffe classifier: its deploy prototxt")
    add("--caffemodel", help="... its trained weights")
    add("--mean", help="... the mean.binaryproto it was trained with (images are resized to its size)")
    add("--mean-value", metavar="B,G,R", help="... or a per-channel mean (BGR, 0..255)")
    add("--no-mean", action="store_true", help="subtract nothing (the probabilities are then meaningless)")
    add("--labels", help="class names: age, gender, a file with one name per line or NAME,NAME,... "
                         "(default: the paper's names for a paper cell, 'class 0', 'class 1', ... for --deploy)")
    add("--output-blob", help="the softmax blob (default: the net's only output, else prob / loss3/loss3)")
    add("--resize", type=int, help=f"image side before cropping when no mean file fixes it (default {DEFAULT_RESIZE})")
    add("--detect-faces", action="store_true", help="find faces (see --detector) and predict each one")
    add("--face-margin", type=float, default=FACE_MARGIN,
        help=f"fraction of the face box added on each side (default {FACE_MARGIN})")
    add("--min-face", type=int, default=MIN_FACE, help=f"smallest face in pixels (default {MIN_FACE})")
    face_detectors.add_detector_arguments(add)
    add("--explain", action="store_true", help="LRP heatmap of the predicted class per face (needs --out)")
    add("--contiguous", action="store_true", help="run the net in NCHW instead of channels-last memory layout")
    options.add_out_argument(g, "folder for predictions.json/.csv, annotated/ and heatmaps/")
    add("--batch", type=int, help=f"faces per forward pass, x10 crops (default {DEFAULT_BATCH})")
    options.add_device_argument(g)
    options.add_progress_argument(g)


def _unique_name(stem: str, used: set) -> str:
    name, i = stem, 1
    while name in used:
        i += 1
        name = f"{stem}_{i}"
    used.add(name)
    return name


def _progress(total: int, off: bool):
    return options.progress_bar(total, "predict", off)


def predict(args, defer_explain: bool = False) -> tuple[list[dict], dict]:
    """Run a prediction from parsed options; returns (records, summary).  Raises PredictError.

    With ``--explain`` the heatmaps are drawn after predictions.json/CSV are written; with
    ``defer_explain`` they are left to the caller as ``summary["write_heatmaps"]()`` (run.py
    prints the table first)."""
    inputs = list(getattr(args, "predict", None) or []) + list(getattr(args, "inputs", None) or [])
    if not inputs:
        raise PredictError("nothing to predict: give --predict IMAGE_OR_FOLDER")
    out = Path(args.out) if getattr(args, "out", None) else None
    if out is not None:
        from converters.outputs import OutputPathError, check_output_dir
        try:
            check_output_dir(out, "--out folder")   # before the model loads and the photos are scored
        except OutputPathError as exc:
            raise PredictError(str(exc)) from None
    explain = bool(getattr(args, "explain", False))
    if explain and out is None:
        raise PredictError("--explain writes heatmap pictures: give --out DIR")
    batch = getattr(args, "batch", None) or DEFAULT_BATCH
    if batch <= 0:
        raise PredictError(f"--batch: expected a positive number of faces, got {batch}")
    if explain:
        try:
            import converters.lrp  # noqa: F401 - fail before any work
        except ImportError as exc:
            raise PredictError(f"--explain needs converters.lrp, which cannot be imported here ({exc})") from None
    paths = list_images(inputs, exclude=out)
    try:    # --detector ssd / haar / auto (reproduce.faces)
        detector = face_detectors.make_detector(args)
    except face_detectors.DetectorError as exc:
        raise PredictError(str(exc)) from None
    t0 = time.perf_counter()
    classifier = build_classifier(args)
    load_s = time.perf_counter() - t0

    if out is not None:
        (out / "annotated").mkdir(parents=True, exist_ok=True)
        if explain:
            (out / "heatmaps").mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    used: set = set()
    no_face, unreadable = [], []
    bar = _progress(len(paths), bool(getattr(args, "no_progress", False)))
    t1 = time.perf_counter()
    pending: list = []
    try:
        for res in predict_images(classifier, paths, detector, batch, keep_image=out is not None,
                                  keep_faces=explain, on_done=lambda r: bar.update(1)):
            key = str(res.path)
            if res.error is not None:
                print(f"{PROG}: warning: {res.error}; skipped (a row in predictions.csv says why)",
                      file=sys.stderr)
                unreadable.append(key)
                records.append(error_record(res, key))
                continue
            recs = [face_record(res, f, classifier, key) for f in res.faces]
            if res.warning is not None:
                print(f"{PROG}: warning: {res.warning}", file=sys.stderr)
                for r in recs:
                    r["warning"] = res.warning
            if detector is not None and not res.detected:
                no_face.append(key)
            if out is not None:
                import cv2
                stem = _unique_name(res.path.stem, used)
                pic = out / "annotated" / f"{stem}.png"
                if not cv2.imwrite(str(pic), annotate(res.image, recs)):
                    raise PredictError(f"{pic}: cannot be written")
                for r in recs:
                    r["annotated"] = str(pic)
                if explain:                      # drawn once the predictions are written
                    for f, r in zip(res.faces, recs):
                        r["heatmap"] = str(out / "heatmaps" / f"{stem}_face{f.index}.png")
                        r["heatmap_lrp"] = "toolbox"      # explain_faces: the paper composite, every quirk
                    pending.append((res.faces, recs))
                res.image = None
            records.extend(recs)
    finally:
        bar.close()
    wall = time.perf_counter() - t1
    if unreadable and len(unreadable) == len(paths):
        raise PredictError(f"none of the {len(paths)} image(s) could be read (first: "
                           f"{records[0]['error']})")
    for key in no_face:
        print(f"{PROG}: note: no face found in {key}: predicted the whole image", file=sys.stderr)
    summary = {"images": len(paths), "faces": len(records), "seconds": wall, "load_seconds": load_s,
               "explain_seconds": 0.0,
               "images_per_s": len(paths) / wall if wall > 0 else None,
               "faces_per_s": len(records) / wall if wall > 0 else None,
               "model": classifier.description, "nets": len(classifier.nets), "batch": batch,
               "device": classifier.device, "target": classifier.target, "labels": list(classifier.labels),
               "no_face": no_face, "unreadable": unreadable}
    if out is not None:
        text = "[\n" + ",\n".join(" " + json.dumps(r) for r in records) + "\n]\n"   # one record per line
        (out / "predictions.json").write_text(text, encoding="utf-8")
        write_csv(out / "predictions.csv", records, classifier.labels)
    if pending:
        def write_heatmaps():
            import cv2
            te = time.perf_counter()
            hbar = _progress(sum(len(faces) for faces, _ in pending), bool(getattr(args, "no_progress", False)))
            try:
                for faces, recs in pending:
                    rels = explain_faces(classifier, np.stack([f.array for f in faces]), [r["label"] for r in recs])
                    for f, r, rel in zip(faces, recs, rels):
                        if not cv2.imwrite(r["heatmap"], heatmap_picture(f.array, rel, f"LRP {r['label_name']}")):
                            raise PredictError(f"{r['heatmap']}: cannot be written")
                        f.array = None
                        hbar.update(1)
            finally:
                hbar.close()
            summary["explain_seconds"] = time.perf_counter() - te
        if defer_explain:
            summary["write_heatmaps"] = write_heatmaps
        else:
            write_heatmaps()
    return records, summary


def run(args, prog: str = "run.py") -> int:
    """``run.py --predict`` / ``run.py predict`` (and ``python -m reproduce.predict``): the option
    checks, ``--fetch`` (the paper cell's fold models), then :func:`run_predict`."""
    try:
        options.check_device(args.device)
        if args.iter is not None and args.iter <= 0:
            raise options.UsageError(f"--iter: expected a positive iteration, got {args.iter}")
    except options.UsageError as exc:
        return report(prog, exc)
    from reproduce import fetch
    code = fetch.prepare(args)   # --fetch: the cell's fold models, then --weights points there
    if code is not None:
        return code
    return run_predict(args)


def run_predict(args) -> int:
    """The prediction on parsed options; prints the table, returns the exit code (2: one line for
    an input error)."""
    try:
        records, summary = predict(args, defer_explain=True)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - predict/format/converter/asset errors name the file or layer
        if is_input_error(exc):
            return report(PROG, exc)
        raise
    print(f"Model: {summary['model']}")
    print(format_table(records, summary["target"]))
    rate = summary["images_per_s"] or 0.0
    print(f"\n{summary['images']} image(s), {summary['faces']} face(s) in {summary['seconds']:.2f} s "
          f"({rate:.2f} images/s, {summary['faces_per_s'] or 0.0:.2f} faces/s, "
          f"10 crops x {summary['nets']} net(s) each, "
          f"batch {summary['batch']}, {summary['device']}; model loading {summary['load_seconds']:.1f} s)")
    out = args.out
    if out:
        print(f"Wrote {Path(out) / 'predictions.json'}, predictions.csv, annotated/", flush=True)
    heatmaps = summary.pop("write_heatmaps", None)
    if heatmaps is not None:
        from converters.lrp import LRPError
        try:
            heatmaps()
        except (PredictError, LRPError) as exc:     # the predictions above stay written
            print(f"{PROG}: error: LRP heatmaps: {exc}", file=sys.stderr)
            return 2
        print(f"Wrote {Path(out) / 'heatmaps'}/ (LRP {summary['explain_seconds']:.1f} s)")
    return 0


def build_parser():
    """The predict mode's parser (``python -m reproduce.predict``; ``run.py predict`` has the same)."""
    from reproduce.modes import build_parser as mode_parser
    return mode_parser("predict", "python -m reproduce.predict")


def main_predict(argv=None) -> int:
    """``python -m reproduce.predict [IMAGE_OR_FOLDER ...] [options]``."""
    try:
        args = build_parser().parse_args(argv)
    except options.UsageError as exc:
        return report(PROG, exc)
    except SystemExit as exc:   # --help
        return int(exc.code or 0)
    return run(args, PROG)


if __name__ == "__main__":
    sys.exit(main_predict())
