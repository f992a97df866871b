"""OpenCV 4's ``blobFromImage`` / ``blobFromImages`` / ``imagesFromBlob`` (images <-> NCHW blobs).

What it owns: the preprocessing rules of OpenCV 4.x ``dnn.cpp`` (``blobFromImagesWithParams`` with
the classic arguments), restated here so that scripts get the same blob under OpenCV 5:

* ``size`` (width, height) empty -> the first image's size, used for every image;
* resize when the size differs: ``crop=False`` squashes to ``size`` (INTER_LINEAR); ``crop=True``
  scales by ``max(size.w / w, size.h / h)`` computed in float32 (``cv::resize`` with fx = fy, so
  the output is ``round(w * f)`` wide) and takes the ``size`` rectangle at
  ``(int(0.5 * (W - size.w)), int(0.5 * (H - size.h)))``;
* resizing happens in the image's own depth (an 8-bit image is resized as 8-bit, then converted);
* ``swapRB`` swaps the first and third **mean** values too, so ``mean`` is given in the order of the
  blob's channels; then ``(pixel - mean) * scalefactor`` in float32;
* ``ddepth=CV_8U`` keeps bytes and refuses scaling or mean subtraction, as OpenCV does.

Only ``cv2.resize`` is used from OpenCV (present in every OpenCV version).
"""
from __future__ import annotations

import numbers

import numpy as np
from converters.errors import InputError

CV_8U = 0
CV_32F = 5


class BlobError(ValueError, InputError):
    """Bad arguments to blobFromImage(s) / imagesFromBlob (the message says which)."""


def _scalar4(value, what: str) -> np.ndarray:
    """An OpenCV ``Scalar`` from a number or a sequence of up to 4 numbers (missing values are 0;
    a plain number is its first value, as the Python bindings convert it)."""
    if value is None:
        return np.zeros(4)
    if isinstance(value, numbers.Number):
        return np.array([float(value), 0.0, 0.0, 0.0])
    vals = [float(v) for v in np.asarray(value, dtype=np.float64).ravel()]
    if len(vals) > 4:
        raise BlobError(f"{what}: at most 4 values (an OpenCV Scalar), got {len(vals)}")
    return np.array(vals + [0.0] * (4 - len(vals)))


def _size(size) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise BlobError(f"size: expected (width, height), got {size!r}") from None
    if w < 0 or h < 0:
        raise BlobError(f"size: expected non-negative (width, height), got {size!r}")
    return w, h


def _resized(img: np.ndarray, size: tuple[int, int], crop: bool) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    if (w, h) == size:
        return img
    if crop:
        # float resizeFactor = std::max(size.width / (float)w, size.height / (float)h)
        f = max(np.float32(size[0]) / np.float32(w), np.float32(size[1]) / np.float32(h))
        img = cv2.resize(img, None, fx=float(f), fy=float(f), interpolation=cv2.INTER_LINEAR)
        if img.ndim == 2:
            img = img[:, :, None]
        x0 = int(0.5 * (img.shape[1] - size[0]))     # Point(double, double) truncates
        y0 = int(0.5 * (img.shape[0] - size[1]))
        return img[y0:y0 + size[1], x0:x0 + size[0]]
    out = cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)
    return out[:, :, None] if out.ndim == 2 else out


def blobFromImages(images, scalefactor=1.0, size=(0, 0), mean=(), swapRB=False, crop=False,  # noqa: N802
                   ddepth=CV_32F) -> np.ndarray:
    """A 4-D NCHW blob from a list of HxW(xC) images, as OpenCV 4's ``cv2.dnn.blobFromImages``."""
    if ddepth not in (CV_32F, CV_8U):
        raise BlobError(f"ddepth: blob depth must be CV_32F ({CV_32F}) or CV_8U ({CV_8U}), got {ddepth!r}")
    scale = _scalar4(scalefactor, "scalefactor")
    if isinstance(scalefactor, numbers.Number):
        scale[:] = float(scalefactor)        # a number scales every channel
    m = _scalar4(mean if (mean is not None and np.size(mean)) else None, "mean")
    if ddepth == CV_8U and (np.any(scale != 1.0) or np.any(m != 0.0)):
        raise BlobError("Scaling and mean subtraction are not supported for CV_8U blob depth")
    imgs = [np.asarray(i) for i in images]
    if not imgs:
        raise BlobError("images: expected at least one image")
    target = _size(size)
    planes = []
    for k, img in enumerate(imgs):
        if img.ndim == 2:
            img = img[:, :, None]
        if img.ndim != 3 or img.shape[2] not in (1, 3, 4) or 0 in img.shape:
            raise BlobError(f"image {k}: expected an HxW, HxWx1, HxWx3 or HxWx4 array, got shape {img.shape}")
        if img.dtype not in (np.uint8, np.float32):
            raise BlobError(f"image {k}: expected uint8 or float32 pixels, got {img.dtype}")
        if ddepth == CV_8U and img.dtype != np.uint8:
            raise BlobError(f"image {k}: a CV_8U blob needs uint8 images, got {img.dtype}")
        if target == (0, 0):
            target = (img.shape[1], img.shape[0])
        img = _resized(img, target, bool(crop))
        if planes and img.shape[2] != planes[0].shape[2]:
            raise BlobError(f"image {k}: {img.shape[2]} channels, the first image has {planes[0].shape[2]}")
        if ddepth == CV_32F:
            c = img.shape[2]
            mc, sc = m.copy(), scale.copy()
            if swapRB and c >= 3:       # one-channel images: OpenCV 4.14 swaps neither (checked)
                mc[[0, 2]], sc[[0, 2]] = mc[[2, 0]], sc[[2, 0]]
            x = img.astype(np.float32)
            x -= mc[:c].astype(np.float32)
            x *= sc[:c].astype(np.float32)
            img = x
        if swapRB and img.shape[2] >= 3:
            img = img[:, :, [2, 1, 0] + list(range(3, img.shape[2]))]
        planes.append(img)
    return np.ascontiguousarray(np.stack(planes).transpose(0, 3, 1, 2))


def blobFromImage(image, scalefactor=1.0, size=(0, 0), mean=(), swapRB=False, crop=False,  # noqa: N802
                  ddepth=CV_32F) -> np.ndarray:
    """A 1xCxHxW blob from one image, as OpenCV 4's ``cv2.dnn.blobFromImage``."""
    return blobFromImages([image], scalefactor, size, mean, swapRB, crop, ddepth)


def imagesFromBlob(blob) -> tuple:  # noqa: N802
    """The HxWxC float32 images of a 4-D NCHW blob (OpenCV's ``imagesFromBlob``: no un-swapping,
    no mean added back)."""
    b = np.asarray(blob)
    if b.ndim != 4:
        raise BlobError(f"blob: expected a 4-D NCHW array, got shape {b.shape}")
    return tuple(np.ascontiguousarray(b[i].transpose(1, 2, 0)).astype(np.float32, copy=False)
                 for i in range(b.shape[0]))
