"""``CvdnnError``: what this package raises where OpenCV raises ``cv2.error``.

It subclasses ``cv2.error`` when OpenCV is importable, so a script's ``except cv2.error`` keeps
working; the message is one line naming the file (and layer) or the call that failed.
"""
from __future__ import annotations

from converters.errors import InputError

try:
    import cv2 as _cv2
    _BASE = (_cv2.error,) if isinstance(getattr(_cv2, "error", None), type) else (RuntimeError,)
except ImportError:          # the package itself never needs cv2 for this
    _BASE = (RuntimeError,)


class CvdnnError(*_BASE, InputError):
    """A Caffe model cannot be read or run (cv2.error-compatible)."""
