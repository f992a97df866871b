"""Where the evaluation inputs live and how test images are read.

Layouts (as the upstream scripts and archives use them; ``sfx`` = '' | '_unaligned' | '_mixed' for
the variants i | r | m):

* test LMDBs: ``<lmdb>/lmdb{sfx}/Test_fold_is_K/{age,gender}_test_lmdb`` (Nextcloud LMDB archive);
* raw Adience: ``<adience>/aligned/<user>/landmark_aligned_face.<face>.<image>`` ([i]) and
  ``<adience>/faces/<user>/coarse_tilt_aligned_face.<face>.<image>`` ([r]), listed by the upstream
  fold files ``folds/<variant folder>/test_fold_is_K/{t}_test.txt``;
* means: ``<means>/mean_image{sfx}/Test_fold_is_K/mean.binaryproto`` (upstream ``mean_images/``);
* weights: ``<weights>/<folder>/models_test_is_K/caffenet_train_iter_N.caffemodel`` (Nextcloud model
  archive; the file name pattern is configurable); ``<weights>/<folder>/deploy.prototxt``, if present,
  replaces the upstream deploy.

Raw Adience images are turned into what the upstream LMDB pipeline stored: [r] faces are padded to
a square by edge replication (``preprocess_faces_to_square.py``: floor(d/2) copies of the first
column on the left, the rest of the last column on the right; rows likewise), then every image is
read by OpenCV (BGR) and squashed to 256x256 with ``cv2.INTER_LINEAR`` (``convert_imageset
--resize_height=256 --resize_width=256``), stored as uint8 (C, H, W).  Not reproduced: upstream
re-encoded the squared faces as JPEG before building the LMDB, so [r] pixels from raw images differ
slightly from the archive's LMDB.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import numpy as np

from .assets import VARIANT_SUFFIX
from .squaring import pad_to_square  # noqa: F401 - the [r] squaring, used by load_adience_image
from converters.errors import InputError

SIZE = 256
DEFAULT_WEIGHTS_NAME = "caffenet_train_iter_{iter}.caffemodel"
ADIENCE_DIRS = {"i": "aligned", "r": "faces"}

LINKS = {
    "lmdb": "https://datacloud.hhi.fraunhofer.de/s/n6BLLnGPzinbe55",
    "weights": "https://datacloud.hhi.fraunhofer.de/s/TQnGNJmQZLWkQ7X",
    "init": "https://datacloud.hhi.fraunhofer.de/s/rakPNNWAQbeGCPx",
    "adience": "https://talhassner.github.io/home/projects/Adience/Adience-data.html#agegender",
    "imdbwiki": "https://data.vision.ee.ethz.ch/cvl/rrothe/imdb-wiki/",
}


class SourceError(ValueError, InputError):
    """An input that exists but cannot be used (message names the file)."""


# ---------------------------------------------------------------------------- paths
def lmdb_path(root, variant: str, fold: int, target: str) -> Path:
    return Path(root) / f"lmdb{VARIANT_SUFFIX[variant]}" / f"Test_fold_is_{fold}" / f"{target}_test_lmdb"


def mean_path(root, variant: str, fold: int) -> Path:
    return Path(root) / f"mean_image{VARIANT_SUFFIX[variant]}" / f"Test_fold_is_{fold}" / "mean.binaryproto"


def weights_path(root, folder: str, fold: int, iteration: int, name: str = DEFAULT_WEIGHTS_NAME) -> Path:
    return Path(root) / folder / f"models_test_is_{fold}" / name.format(iter=iteration, fold=fold, folder=folder)


def deploy_override(root, folder: str) -> Path | None:
    p = Path(root) / folder / "deploy.prototxt" if root else None
    return p if p is not None and p.is_file() else None


def available_snapshots(root, folder: str, fold: int, name: str = DEFAULT_WEIGHTS_NAME) -> dict[int, Path]:
    """Iteration -> weights file for every snapshot of ``folder``/fold matching the name pattern."""
    if "{iter}" not in name:
        return {}
    d = Path(root) / folder / f"models_test_is_{fold}"
    pattern = re.escape(name.format(iter="\0", fold=fold, folder=folder)).replace("\\\0", "\0").replace(
        "\0", r"(\d+)")
    regex = re.compile(pattern + r"\Z")
    found = {}
    if d.is_dir():
        for p in d.iterdir():
            m = regex.match(p.name)
            if m and p.is_file():
                found[int(m.group(1))] = p
    return found


# ---------------------------------------------------------------------------- LMDB
def lmdb_samples(path) -> Iterator:
    """(key, label, uint8 (C, H, W) BGR) in LMDB key order."""
    try:
        from converters.formats import iter_lmdb
    except ImportError:  # older checkouts export it from the submodule only
        from converters.formats.lmdb_io import iter_lmdb
    yield from iter_lmdb(str(path))


def lmdb_count(path) -> int | None:
    try:
        from converters.formats.lmdb_io import shared_env
        return int(shared_env(path).stat()["entries"])
    except Exception:  # noqa: BLE001 - only a progress hint
        return None


# ---------------------------------------------------------------------------- raw Adience
def load_adience_image(path, square: bool, size: int = SIZE) -> np.ndarray:
    """One face as the LMDB stored it: OpenCV colour read (BGR), optional squaring, 256x256 INTER_LINEAR,
    uint8 (C, H, W)."""
    from converters.formats.images import read_image, squash
    img = read_image(path)
    if img is None:
        raise SourceError(f"{path}: cannot be read as an image")
    if square:
        img = pad_to_square(img)
    img = squash(img, size, size)
    return np.ascontiguousarray(img.transpose(2, 0, 1))


def adience_files(root, variant: str, list_file) -> list[tuple[str, int, Path]]:
    base = Path(root) / ADIENCE_DIRS[variant]
    from converters.formats.lmdb_io import read_imageset_list
    return [(rel, label, base / rel) for rel, label in read_imageset_list(list_file)]


def adience_samples(root, variant: str, list_file) -> Iterator:
    """(key, label, uint8 (C, 256, 256)) for the faces of an upstream test list; key = ``%08d_<path>``
    like convert_imageset (list order)."""
    square = variant == "r"
    for i, (rel, label, path) in enumerate(adience_files(root, variant, list_file)):
        yield f"{i:08d}_{rel}", label, load_adience_image(path, square)
