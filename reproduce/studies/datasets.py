"""Data of the follow-up studies: Adience through the 2017 fold lists, FairFace, UTKFace.

Readers (errors name the file and the line or file name; :class:`DatasetError`):

* **FairFace** label CSVs ``fairface_label_{train,val}.csv``: header ``file,age,gender,race[,service_test]``,
  ``file`` relative to the dataset folder (``train/1.jpg``), age one of :data:`FAIRFACE_AGES`, gender
  ``Male``/``Female``, race one of :data:`FAIRFACE_RACES`, service_test ``True``/``False``.
* **UTKFace** file names ``<age>_<gender>_<race>_<date&time>.jpg`` (the aligned & cropped release adds
  ``.chip.jpg``): age 0..116, gender 0 male / 1 female, race 0..4 = :data:`UTK_RACES`.  Ages are
  binned into FairFace's nine groups.
* **Adience** ([i] in-plane aligned faces): the 2017 paper's per-fold lists
  ``train_val_txt_files_per_fold/test_fold_is_K/{age,gender}_{train,val,test}.txt`` (upstream files
  through :class:`reproduce.assets.AssetStore`, or a folder made by :mod:`reproduce.folds`), images
  from ``<adience>/aligned`` squashed to 256x256 as the LMDBs stored them
  (:func:`reproduce.sources.load_adience_image`), or the LMDBs ``<lmdb>/lmdb/Test_fold_is_K/{t}_{part}_lmdb``.
  The age and gender lists of a split are joined on the image path (a multiset join: duplicates
  kept); a face missing from one list has label -1 for that task.

Every item is (key, image, labels task -> int); :class:`ImageDataset` turns items into training or
evaluation tensors (resize, random or centre crop / 10 crops, flip, brightness, normalisation).
"""
from __future__ import annotations

import csv
import re
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from converters.errors import InputError

# ---------------------------------------------------------------------------- label sets
GENDERS = ("male", "female")                       # 0, 1 everywhere (Adience m = 0, f = 1)
FAIRFACE_AGES = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70")
FAIRFACE_GENDERS = ("Male", "Female")
FAIRFACE_RACES = ("East Asian", "Indian", "Black", "White", "Middle Eastern", "Latino_Hispanic", "Southeast Asian")
FAIRFACE_COLUMNS = ("file", "age", "gender", "race", "service_test")
FAIRFACE_FILES = {"train": "fairface_label_train.csv", "val": "fairface_label_val.csv"}
UTK_RACES = ("White", "Black", "Asian", "Indian", "Others")
UTK_MAX_AGE = 116
UTK_NAME = re.compile(r"^(?P<age>\d+)_(?P<gender>\d+)_(?P<race>\d+)_(?P<date>\d+)\.jpg(\.chip\.jpg)?$", re.I)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
ADIENCE_AGES = ("(0, 2)", "(4, 6)", "(8, 12)", "(15, 20)", "(25, 32)", "(38, 43)", "(48, 53)", "(60, 100)")
ADIENCE_LIST_DIR = "train_val_txt_files_per_fold"


class DatasetError(ValueError, InputError):
    """Data that cannot be read; ``str(err)`` starts with ``<file>:<line>:`` or ``<file>:``."""

    def __init__(self, path, line: int | None, message: str):
        self.path, self.line, self.reason = str(path), line, message
        super().__init__(f"{path}:{line}: {message}" if line is not None else f"{path}: {message}")


@dataclass
class Item:
    key: str                        # relative path (unique up to duplicates)
    path: Path | None               # image file, or None when the pixels are in memory
    labels: dict                    # task -> int (-1: not annotated)
    image: np.ndarray | None = field(default=None, repr=False)   # uint8 (C, H, W) BGR when in memory


def age_group(age: int) -> int:
    """FairFace's nine age groups for an age in years: 0-2, 3-9, 10-19, ..., 60-69, 70+."""
    if age <= 2:
        return 0
    if age <= 9:
        return 1
    return min(8, age // 10 + 1)


# ---------------------------------------------------------------------------- FairFace
def read_fairface_csv(path, root=None) -> list[Item]:
    """Rows of a FairFace label CSV as items with labels gender/age/race (image = ``root/file``)."""
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    try:
        fh = open(path, newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise DatasetError(path, None, "label file not found") from None
    items = []
    with fh:
        reader = csv.reader(fh)
        try:
            header = next(reader, None)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DatasetError(path, 1, f"not a CSV text file ({exc})") from None
        header = [h.strip() for h in header or []]
        if header[:4] != list(FAIRFACE_COLUMNS[:4]) or header[4:] not in ([], ["service_test"]):
            raise DatasetError(path, 1, f"expected the header {','.join(FAIRFACE_COLUMNS)}, got {','.join(header)!r}")
        ncol = len(header)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except (csv.Error, UnicodeDecodeError) as exc:
                raise DatasetError(path, reader.line_num, f"unreadable CSV row ({exc})") from None
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != ncol:
                raise DatasetError(path, line, f"expected {ncol} comma-separated columns ({','.join(header)}), "
                                               f"got {len(row)}: {','.join(row)!r}")
            file, age, gender, race = (c.strip() for c in row[:4])
            if not file or file.startswith("/") or ".." in Path(file).parts:
                raise DatasetError(path, line, f"column 'file' must be a relative image path, got {file!r}")
            if age not in FAIRFACE_AGES:
                raise DatasetError(path, line, f"unknown age group {age!r}; expected one of {list(FAIRFACE_AGES)}")
            if gender not in FAIRFACE_GENDERS:
                raise DatasetError(path, line, f"unknown gender {gender!r}; expected Male or Female")
            if race not in FAIRFACE_RACES:
                raise DatasetError(path, line, f"unknown race {race!r}; expected one of {list(FAIRFACE_RACES)}")
            if ncol == 5 and row[4].strip() not in ("True", "False"):
                raise DatasetError(path, line, f"column 'service_test' must be True or False, got {row[4]!r}")
            items.append(Item(file, root / file, {"gender": FAIRFACE_GENDERS.index(gender),
                                                  "age": FAIRFACE_AGES.index(age), "race": FAIRFACE_RACES.index(race)}))
    if not items:
        raise DatasetError(path, None, "no data rows")
    return items


# ---------------------------------------------------------------------------- UTKFace
def parse_utk_name(name: str, where=None) -> dict:
    """Labels of one UTKFace file name; :class:`DatasetError` naming the file when it does not parse."""
    where = where or name
    m = UTK_NAME.match(name)
    if not m:
        raise DatasetError(where, None, "file name does not parse as <age>_<gender>_<race>_<date&time>.jpg "
                                        "(e.g. 25_0_2_20170116174525125.jpg.chip.jpg)")
    age, gender, race = int(m["age"]), int(m["gender"]), int(m["race"])
    if age > UTK_MAX_AGE:
        raise DatasetError(where, None, f"age {age} outside 0..{UTK_MAX_AGE}")
    if gender not in (0, 1):
        raise DatasetError(where, None, f"gender {gender} is not 0 (male) or 1 (female)")
    if race >= len(UTK_RACES):
        raise DatasetError(where, None, f"race {race} outside 0..{len(UTK_RACES) - 1} ({', '.join(UTK_RACES)})")
    return {"gender": gender, "age": age_group(age), "race": race, "age_years": age}


def read_utkface_dir(root, skip_malformed: bool = False) -> tuple[list[Item], list[str]]:
    """Every image under ``root`` (recursively, sorted) as an item; returns (items, skipped names).

    A name that does not parse is an error naming it unless ``skip_malformed`` (then it is listed in
    the second value; the public aligned release has three such names, without the race field).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(root, None, "UTKFace folder not found")
    items, skipped = [], []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.name.startswith(".") or not p.name.lower().endswith(IMAGE_SUFFIXES):
            continue
        try:
            labels = parse_utk_name(p.name, p)
        except DatasetError as exc:
            if not skip_malformed:
                raise DatasetError(p, None, f"{exc.reason} (pass --skip-malformed to leave such files out)") from None
            skipped.append(str(p.relative_to(root)))
            continue
        labels.pop("age_years")
        items.append(Item(str(p.relative_to(root)), p, labels))
    if not items:
        raise DatasetError(root, None, "no UTKFace images (<age>_<gender>_<race>_<date>.jpg) found")
    return items, skipped


def split_items(items: list, fractions: tuple, seed) -> list[list]:
    """Seeded random split into consecutive parts of the given fractions (the last takes the rest)."""
    rng = np.random.default_rng(abs(hash_seed(seed)))
    order = rng.permutation(len(items))
    out, start = [], 0
    for i, f in enumerate(fractions):
        stop = len(items) if i == len(fractions) - 1 else start + int(round(f * len(items)))
        out.append([items[j] for j in order[start:stop]])
        start = stop
    return out


def hash_seed(seed) -> int:
    import zlib
    return zlib.crc32(str(seed).encode())


# ---------------------------------------------------------------------------- Adience
def fold_list_dir(fold_lists) -> Path:
    """``fold_lists`` may be the folder holding ``train_val_txt_files_per_fold`` (upstream ``folds/``,
    or the output of ``python -m reproduce.folds``), or that folder itself."""
    d = Path(fold_lists)
    return d if d.name == ADIENCE_LIST_DIR or not (d / ADIENCE_LIST_DIR).is_dir() else d / ADIENCE_LIST_DIR


def adience_list_file(fold_lists, fold: int, target: str, part: str, store=None) -> Path:
    if fold_lists is not None:
        return fold_list_dir(fold_lists) / f"test_fold_is_{fold}" / f"{target}_{part}.txt"
    return store.fold_list("i", fold, target, part)


def read_adience_list(path) -> list[tuple[str, int]]:
    from reproduce.folds import FoldFileError, read_list
    try:
        return read_list(path)
    except FileNotFoundError:
        raise DatasetError(path, None, "fold list not found") from None
    except FoldFileError as exc:
        raise DatasetError(exc.path, exc.line, exc.reason) from None


def join_targets(lists: dict) -> list[tuple[str, dict]]:
    """``{task: [(key, label), ...]}`` -> ``[(key, {task: label or -1})]``: a multiset join on the key
    (the first unmatched occurrence of a key in one list pairs with the next one in another)."""
    tasks = list(lists)
    out: list[tuple[str, dict]] = []
    open_slots: dict = defaultdict(lambda: defaultdict(deque))   # task -> key -> indices still without it
    for t in tasks:
        for key, label in lists[t]:
            slots = open_slots[t][key]
            if slots:
                out[slots.popleft()][1][t] = int(label)
            else:
                out.append((key, {u: -1 for u in tasks}))
                out[-1][1][t] = int(label)
                for u in tasks:
                    if u != t:
                        open_slots[u][key].append(len(out) - 1)
    return out


def adience_items(adience, fold_lists, fold: int, part: str, tasks=("gender", "age"), store=None) -> list[Item]:
    """Items of one split of the [i] lists, images under ``<adience>/aligned``."""
    lists = {t: read_adience_list(adience_list_file(fold_lists, fold, t, part, store)) for t in tasks}
    base = Path(adience) / "aligned"
    return [Item(key, base / key, labels) for key, labels in join_targets(lists)]


def adience_lmdb_path(lmdb_root, fold: int, target: str, part: str) -> Path:
    return Path(lmdb_root) / "lmdb" / f"Test_fold_is_{fold}" / f"{target}_{part}_lmdb"


def lmdb_items(lmdb_root, fold: int, part: str, tasks=("gender", "age")) -> list[Item]:
    """Items of one split read from the [i] LMDBs (pixels kept in memory; key ``%08d_<path>`` -> path)."""
    from converters.formats import CaffeFormatError
    from converters.formats.lmdb_io import iter_lmdb

    lists, pixels = {}, {}
    for t in tasks:
        path = adience_lmdb_path(lmdb_root, fold, t, part)
        entries = []
        try:
            for key, label, arr in iter_lmdb(str(path)):
                rel = key.split("_", 1)[1] if re.match(r"^\d{8}_", key) else key
                entries.append((rel, label))
                pixels.setdefault(rel, arr)
        except CaffeFormatError as exc:
            raise DatasetError(path, None, str(exc).split(": ", 1)[-1]) from None
        lists[t] = entries
    return [Item(key, None, labels, pixels[key]) for key, labels in join_targets(lists)]


# ---------------------------------------------------------------------------- images -> tensors
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)


class Normalizer:
    """float32 BGR 0..255 (C, H, W) -> the network input.

    ``scale``: x / 255 (the mtl2022 nets trained from scratch); ``caffe``: (x - mean_bgr) * scale (Caffe
    backbones, BGR); ``imagenet``: RGB, (x/255 - mean) / std (torchvision-style ResNet weights)."""

    def __init__(self, mode: str = "scale", mean=(104.0, 117.0, 123.0), scale: float = 1.0):
        if mode not in ("scale", "caffe", "imagenet"):
            raise ValueError(f"unknown normalisation {mode!r}")
        self.mode = mode
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.scale = float(scale)
        self.im_mean = torch.tensor(IMAGENET_MEAN_RGB).view(3, 1, 1)
        self.im_std = torch.tensor(IMAGENET_STD_RGB).view(3, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "scale":
            return x / 255.0
        if self.mode == "caffe":
            return (x - self.mean) * self.scale
        return (x.flip(-3) / 255.0 - self.im_mean) / self.im_std


def load_image(path: Path, size: int) -> np.ndarray:
    """BGR uint8 (C, size, size): OpenCV colour read squashed with INTER_LINEAR (as convert_imageset)."""
    from reproduce.sources import SourceError, load_adience_image
    try:
        return load_adience_image(path, square=False, size=size)
    except SourceError as exc:
        raise DatasetError(path, None, "cannot be read as an image") from exc


class ImageDataset(torch.utils.data.Dataset):
    """Items -> ``(image tensor, {task: label})``.

    Images are squashed to ``resize`` x ``resize``; training takes a random ``crop`` (plus a random
    horizontal flip and a brightness factor in [1 - b, 1 + b] when enabled), evaluation the centre
    crop at ((resize - crop) // 2) or, with ``ten_crop``, the 10 crops of the 2017 protocol
    (``reproduce.protocol.oversample``), giving (10, C, S, S).
    """

    def __init__(self, items: list[Item], tasks, resize: int, crop: int, train: bool, normalizer: Normalizer,
                 flip: bool = False, brightness: float = 0.0, ten_crop: bool = False, cache: bool = False):
        if crop > resize:
            raise ValueError(f"crop {crop} larger than the resized image {resize}")
        self.items, self.tasks = items, tuple(tasks)
        self.resize, self.crop, self.train = resize, crop, train
        self.norm, self.flip, self.brightness, self.ten_crop = normalizer, flip, brightness, ten_crop
        self.cache = {} if cache else None

    def __len__(self):
        return len(self.items)

    def pixels(self, i: int) -> np.ndarray:
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        item = self.items[i]
        if item.image is not None:
            img = item.image
            if img.shape[1:] != (self.resize, self.resize):
                import cv2
                img = cv2.resize(img.transpose(1, 2, 0), (self.resize, self.resize),
                                 interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
        else:
            img = load_image(item.path, self.resize)
        if self.cache is not None:
            self.cache[i] = img
        return img

    def __getitem__(self, i):
        x = torch.from_numpy(np.ascontiguousarray(self.pixels(i))).float()
        s, r = self.crop, self.resize
        if self.train:
            top, left = (int(v) for v in torch.randint(0, r - s + 1, (2,)))
            x = x[:, top:top + s, left:left + s]
            if self.flip and bool(torch.rand(()) < 0.5):
                x = x.flip(-1)
            if self.brightness:
                x = (x * float(1.0 + (torch.rand(()) * 2 - 1) * self.brightness)).clamp(0, 255)
            x = self.norm(x)
        elif self.ten_crop:
            from reproduce.protocol import oversample
            x = torch.stack([self.norm(c) for c in oversample(x[None], s)[0]])
        else:
            o = (r - s) // 2
            x = self.norm(x[:, o:o + s, o:o + s])
        labels = self.items[i].labels
        return x.contiguous(), {t: torch.tensor(labels.get(t, -1), dtype=torch.long) for t in self.tasks}


def repeat_to(items: list, n: int, seed) -> list:
    """``items`` repeated to ``n`` entries (whole copies, then a seeded random subset for the rest):
    a gender's half of a training set brought back to the full size; the random augmentation makes
    the copies differ."""
    if not items:
        return []
    k, rest = divmod(n, len(items))
    rng = np.random.default_rng(hash_seed(seed))
    return list(items) * k + [items[j] for j in sorted(rng.choice(len(items), rest, replace=False))]


def loader(dataset, batch: int, shuffle: bool, workers: int = 0, seed: int = 0):
    g = torch.Generator()
    g.manual_seed(int(seed))
    return torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=shuffle, num_workers=workers,
                                       generator=g, drop_last=False, persistent_workers=workers > 0)


def missing_images(items: list[Item], show: int = 3) -> tuple[int, list[str]]:
    absent = [str(it.path) for it in items if it.image is None and not Path(it.path).is_file()]
    return len(absent), absent[:show]
