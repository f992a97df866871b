"""The Caffe subset of ``cv2.dnn`` with OpenCV 4's semantics, running on this package's converter.

OpenCV 5 removed ``cv2.dnn.readNetFromCaffe``; scripts written for OpenCV 4 keep running with
``python -m converters.cvdnn script.py ARGS`` (or :func:`install` from code), which puts these
functions into ``cv2.dnn``:

* ``readNetFromCaffe(prototxt, caffeModel=None)``, ``readNet(model, config)`` (Caffe pairs in either
  order; any other format goes on to OpenCV's own ``readNet``);
* ``blobFromImage``, ``blobFromImages``, ``imagesFromBlob`` (OpenCV 4's preprocessing);
* :class:`Net` (``setInput``, ``forward``, layer names and ids, backends and targets, ...).

Anything else asked of this module (``NMSBoxes``, ...) comes from the installed ``cv2.dnn``.
What it owns: the public API and the redirection; the net is in :mod:`.net`, blobs in :mod:`.blob`.
"""
from __future__ import annotations

import inspect
import os
import warnings

from . import constants
from .blob import CV_8U, CV_32F, BlobError, blobFromImage, blobFromImages, imagesFromBlob
from .constants import *  # noqa: F401,F403  (DNN_BACKEND_*, DNN_TARGET_*)
from .errors import CvdnnError
from .net import Layer, Net

error = CvdnnError

__all__ = ["readNetFromCaffe", "readNet", "blobFromImage", "blobFromImages", "imagesFromBlob", "Net",
           "Layer", "install", "uninstall", "installed", "is_caffe_pair", "CvdnnError", "error", "BlobError",
           "CV_8U", "CV_32F", *constants.NAMES]

CAFFE_TEXT = (".prototxt", ".pbtxt", ".txt")
CAFFE_BINARY = (".caffemodel",)


def _path(p) -> str | None:
    if p is None:
        return None
    if isinstance(p, (bytes, bytearray)):
        p = p.decode()
    return os.fspath(p)


def readNetFromCaffe(prototxt, caffeModel=None) -> Net:  # noqa: N802,N803
    """A Caffe net (deploy prototxt + optional caffemodel) as a :class:`Net`, OpenCV 4 semantics."""
    from ..convert import load_caffe
    from ..formats import CaffeFormatError
    from ..layers import ConversionError

    proto, weights = _path(prototxt), _path(caffeModel)
    if not proto:
        raise CvdnnError("readNetFromCaffe: a prototxt path is required")
    for p in (proto, weights):
        if p and not os.path.isfile(p):
            raise CvdnnError(f"{p}: no such file (readNetFromCaffe)")
    kwargs = {}
    if "semantics" in inspect.signature(load_caffe).parameters:
        kwargs["semantics"] = "opencv"        # OpenCV 4's rules for the SSD fork layers
    try:
        with warnings.catch_warnings():
            # OpenCV loads layers the caffemodel lacks without a word; so do we
            warnings.simplefilter("ignore")
            model = load_caffe(proto, weights, phase="test", **kwargs)
    except (CaffeFormatError, ConversionError) as exc:
        raise CvdnnError(str(exc)) from None
    return Net(model, source=os.path.basename(proto))


def is_caffe_pair(model, config="", framework: str = "") -> bool:
    """Whether ``readNet(model, config, framework)`` names a Caffe model (OpenCV's rule: the
    framework is "caffe", or either file ends in .caffemodel, or either is a .prototxt)."""
    if str(framework).lower() == "caffe":
        return True
    names = [str(_path(p) or "").lower() for p in (model, config)]
    return any(n.endswith(CAFFE_BINARY) or n.endswith(".prototxt") for n in names)


def _caffe_order(model, config):
    m, c = _path(model) or "", _path(config) or ""
    if m.lower().endswith(CAFFE_BINARY) or (c and c.lower().endswith(CAFFE_TEXT)):
        return c, m or None            # readNet(weights, prototxt): OpenCV swaps them
    return m, c or None


def readNet(model, config="", framework=""):  # noqa: N802
    """OpenCV's ``readNet``: Caffe pairs load here (either order); other formats go to the
    installed OpenCV's ``readNet``."""
    if is_caffe_pair(model, config, framework):
        proto, weights = _caffe_order(model, config)
        return readNetFromCaffe(proto, weights)
    original = _ORIGINALS.get("readNet") or getattr(_cv2_dnn(), "readNet", None)
    if original is None or original is readNet:
        raise CvdnnError(f"readNet: {model!r} is not a Caffe model and the installed OpenCV has no readNet")
    return original(model, config, framework)


# ---------------------------------------------------------------------------- installing into cv2.dnn
_ORIGINALS: dict = {}
_MISSING = object()
_REPLACED = {
    "readNetFromCaffe": readNetFromCaffe, "readNet": readNet, "blobFromImage": blobFromImage,
    "blobFromImages": blobFromImages, "imagesFromBlob": imagesFromBlob,
}


def _cv2_dnn():
    try:
        import cv2
    except ImportError:
        raise CvdnnError("converters.cvdnn: OpenCV (cv2) is not installed: pip install opencv-python-headless") \
            from None
    dnn = getattr(cv2, "dnn", None)
    if dnn is None:
        raise CvdnnError(f"converters.cvdnn: this OpenCV ({cv2.__version__}) has no dnn module")
    return dnn


def installed() -> bool:
    return bool(_ORIGINALS)


def install() -> None:
    """Put the Caffe functions into ``cv2.dnn`` (OpenCV 4 or 5): Caffe models load through the
    converter, every other ``cv2.dnn`` function and format stays OpenCV's.  Idempotent."""
    dnn = _cv2_dnn()
    if _ORIGINALS:
        return
    for name, fn in _REPLACED.items():
        _ORIGINALS[name] = getattr(dnn, name, _MISSING)
        setattr(dnn, name, fn)
    for name, value in constants.NAMES.items():      # OpenCV 5 may lack some of the enums
        if not hasattr(dnn, name):
            _ORIGINALS[name] = _MISSING
            setattr(dnn, name, value)
    _ORIGINALS["readNet"] = _ORIGINALS["readNet"] if _ORIGINALS["readNet"] is not _MISSING else None


def uninstall() -> None:
    """Undo :func:`install` (restores OpenCV's own functions)."""
    if not _ORIGINALS:
        return
    dnn = _cv2_dnn()
    for name, original in _ORIGINALS.items():
        if original is _MISSING or original is None:
            if hasattr(dnn, name):
                delattr(dnn, name)
        else:
            setattr(dnn, name, original)
    _ORIGINALS.clear()


def __getattr__(name):
    """Non-Caffe parts of cv2.dnn (NMSBoxes, readNetFromONNX, ...) come from the installed OpenCV."""
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        dnn = _cv2_dnn()
    except CvdnnError:
        raise AttributeError(f"module 'converters.cvdnn' has no attribute {name!r} (and cv2.dnn is missing)") \
            from None
    if name in _ORIGINALS and _ORIGINALS[name] not in (_MISSING, None):
        return _ORIGINALS[name]
    try:
        return getattr(dnn, name)
    except AttributeError:
        raise AttributeError(f"module 'converters.cvdnn' has no attribute {name!r}, nor has cv2.dnn") from None
