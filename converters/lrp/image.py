"""An image file -> the net's input blob, the two ways the paper's code prepared faces.

* ``protocol`` (the evaluation path, as the LMDB + ``caffe.io`` pipeline): OpenCV reads the file
  as BGR, the image is squashed to the mean image's size (256x256 without a mean file) with
  ``cv2.INTER_LINEAR`` (``convert_imageset --resize_height/--resize_width``), the mean is
  subtracted on the 0..255 scale, and the centre ``S x S`` window is cut at offset
  ``(H - S) // 2`` (Caffe's TEST crop; ``caffe.io.oversample``'s centre crop).
* ``demonstrator`` (``lrp_toolbox``'s ``lrp_demo``, which drew the paper's heatmaps with
  ``baseimgsize`` = the net's input size): the image is scaled so that its **longer side** equals
  ``S`` (aspect kept), the shorter side is centre-cropped to ``S`` or, if shorter, padded by
  repeating its first/last row or column, and the centre ``S x S`` window of the mean is
  subtracted.  Upstream resized with ImageMagick; we use ``cv2.INTER_LINEAR``, so pixels differ
  slightly.  For square faces (Adience's aligned crops) both paths differ only in the 256 step.

Returns the input ``(1, C, S, S)`` float32 and the BGR crop as seen (uint8 ``(S, S, 3)``) for
display.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..formats.images import read_image, squash
from converters.errors import InputError

MODES = ("protocol", "demonstrator")


class ImageError(ValueError, InputError):
    """An image that cannot be read or prepared (message names the file)."""


def read_bgr(path) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(2, "No such file", str(p))
    img = read_image(p)
    if img is None:
        raise ImageError(f"{p}: cannot be read as an image")
    return img


def _check_mean(mean, size: int):
    if mean is None:
        return None
    mean = np.asarray(mean, dtype=np.float32)
    if mean.ndim != 3 or mean.shape[0] != 3:
        raise ImageError(f"mean image must be (3, H, W), got shape {mean.shape}")
    if mean.shape[1] < size or mean.shape[2] < size:
        raise ImageError(f"mean image {mean.shape[1]}x{mean.shape[2]} is smaller than the net input {size}x{size}")
    return mean


def centre_window(arr: np.ndarray, size: int) -> np.ndarray:
    """The centre ``size x size`` window of a (C, H, W) array, offset ``(H - size) // 2``."""
    h, w = arr.shape[-2:]
    oy, ox = (h - size) // 2, (w - size) // 2
    return arr[..., oy:oy + size, ox:ox + size]


def prepare_protocol(img_bgr: np.ndarray, size: int, mean=None, resize: int = 256):
    mean = _check_mean(mean, size)
    hw = (mean.shape[1], mean.shape[2]) if mean is not None else (resize, resize)
    if hw[0] < size or hw[1] < size:
        raise ImageError(f"resize {hw[0]}x{hw[1]} is smaller than the net input {size}x{size}")
    img = squash(img_bgr, hw[0], hw[1])
    arr = img.transpose(2, 0, 1).astype(np.float32)
    crop = centre_window(arr, size)
    x = crop - centre_window(mean, size) if mean is not None else crop
    return np.ascontiguousarray(x[None]), np.ascontiguousarray(crop.transpose(1, 2, 0)).astype(np.uint8)


def prepare_demonstrator(img_bgr: np.ndarray, size: int, mean=None):
    import cv2
    mean = _check_mean(mean, size)
    h, w = img_bgr.shape[:2]
    scale = size / float(max(h, w))
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    img = cv2.resize(img_bgr, (nw, nh), interpolation=cv2.INTER_LINEAR).astype(np.float32)

    def fit(a, axis):
        n = a.shape[axis]
        if n >= size:
            off = (n - size) // 2
            return np.take(a, range(off, off + size), axis=axis)
        before = (size - n) // 2
        idx = [0] * before + list(range(n)) + [n - 1] * (size - n - before)
        return np.take(a, idx, axis=axis)

    img = fit(fit(img, 0), 1)
    arr = img.transpose(2, 0, 1)
    x = arr - centre_window(mean, size) if mean is not None else arr
    return np.ascontiguousarray(x[None]), np.clip(img, 0, 255).astype(np.uint8)


def prepare(path_or_image, size: int, mean=None, mode: str = "protocol", resize: int = 256):
    """(input (1, 3, S, S) float32, BGR crop uint8 (S, S, 3)) for a file or a BGR uint8 image."""
    img = read_bgr(path_or_image) if isinstance(path_or_image, (str, Path)) else np.asarray(path_or_image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ImageError(f"expected a BGR image (H, W, 3), got shape {img.shape}")
    if mode == "protocol":
        return prepare_protocol(img, size, mean, resize)
    if mode == "demonstrator":
        return prepare_demonstrator(img, size, mean)
    raise ImageError(f"unknown preprocessing {mode!r} (known: {', '.join(MODES)})")
