"""Image files as Caffe's ``convert_imageset`` reads them (io.cpp ReadImageToCVMat).

What it owns: the one image read of the package (``cv::imread`` with ``IMREAD_COLOR`` or
``IMREAD_GRAYSCALE``, BGR channel order) and the one squash (``cv::resize`` to height x width
with INTER_LINEAR, aspect ratio not kept).  The LMDB writer, the LRP image preparation and the
reproduction's photo/face readers all go through it, so their pixels agree bit for bit.
"""
from __future__ import annotations

import numpy as np


def read_image(path, color: bool = True) -> np.ndarray | None:
    """``cv::imread(path, IMREAD_COLOR | IMREAD_GRAYSCALE)``: (H, W, 3) BGR or (H, W) uint8, or
    None when the file cannot be decoded (Caffe logs "Could not open or find file" and skips it)."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR if color else cv2.IMREAD_GRAYSCALE)
    if img is None or img.size == 0:
        return None
    return img


def squash(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """``cv::resize(img, cv::Size(width, height))`` (INTER_LINEAR), as convert_imageset's
    ``--resize_height/--resize_width``; an image already of that size is returned as it is
    (OpenCV's resize to the same size is a copy)."""
    if img.shape[:2] == (height, width):
        return img
    import cv2

    return cv2.resize(img, (int(width), int(height)), interpolation=cv2.INTER_LINEAR)
