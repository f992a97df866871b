"""The [r] preprocessing: coarse-tilt faces padded to a square by edge replication (quirk Q-D3).

Upstream ``DataPreparationCode/preprocess_faces_to_square.py`` (not mentioned in the paper) pads
every ``coarse_tilt_aligned_face`` image of the Adience ``faces`` folder to a square by repeating
its outermost column/row: for a tall image (height - width = d > 0) ``d // 2`` copies of the first
column go on the left and the remaining ``d - d // 2`` copies of the last column on the right; a
wide image gets its first/last row on top/bottom.  The result keeps the face's aspect ratio when
``convert_imageset`` later squashes every image to 256x256.

Upstream re-encoded the padded images with scikit-image (JPEG); here OpenCV writes them (JPEG
quality 95 unless told otherwise), so pixels differ by JPEG noise only.  Knows nothing about
fold lists or nets.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

COARSE_GLOB = "coarse_tilt_aligned_face.*"


def pad_to_square(image: np.ndarray) -> np.ndarray:
    """Pad an (H, W) or (H, W, C) image to max(H, W) squared by replicating its edge rows/columns."""
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {image.shape}")
    h, w = image.shape[:2]
    d = abs(h - w)
    if d == 0:
        return image.copy()
    before, after = d // 2, d - d // 2
    pad = [(0, 0)] * image.ndim
    pad[1 if h > w else 0] = (before, after)
    return np.pad(image, pad, mode="edge")


def square_image_file(src, dst, jpeg_quality: int = 95) -> tuple[int, int]:
    """Read ``src``, pad it to a square, write ``dst`` (parents created); returns the new (H, W)."""
    import cv2

    image = cv2.imread(str(src), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"{src}: not a readable image")
    squared = pad_to_square(image)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if dst.suffix.lower() in (".jpg", ".jpeg") else []
    if not cv2.imwrite(str(dst), squared, params):
        raise ValueError(f"{dst}: could not be written")
    return squared.shape[:2]


def square_faces_folder(src_root, dst_root, pattern: str = COARSE_GLOB, jpeg_quality: int = 95) -> int:
    """Square every ``<user>/<pattern>`` image of ``src_root`` (Adience ``faces/``) into ``dst_root``
    (upstream ``faces_squared/``), keeping the relative paths.  Returns the number of images."""
    src_root, dst_root = Path(src_root), Path(dst_root)
    if not src_root.is_dir():
        raise FileNotFoundError(f"{src_root}: image folder not found")
    n = 0
    for src in sorted(src_root.glob(f"*/{pattern}")):
        square_image_file(src, dst_root / src.relative_to(src_root), jpeg_quality)
        n += 1
    return n
