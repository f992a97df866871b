"""Adience fold files -> the per-fold train/val/test lists of the paper (upstream ``folds/``).

What it owns: reading the original ``fold_K_data.txt`` files (tab-separated, one header line,
12 columns), the upstream label mapping with its quirks, the split procedure of
``DataPreparationCode/create_train_val_txt_files{,_squared_unaligned,_mixed}.py`` and the
folder/file names of the committed lists.  It knows nothing about images, LMDBs or nets.

The procedure, per test fold K (re-implemented from the spec, section 4.2-4.4):

* **test** = the rows of ``fold_K_data.txt``, shuffled;
* **pool** = the rows of the four other folds, concatenated and shuffled; with ``N = len(pool)``:
  ``val = pool[0 : N//10]``, ``train = pool[N//10 + 1 :]``,
  ``train_subset = pool[N//10 + 1 : 2*(N//10)]`` -- the element at ``N//10`` is in no list
  (quirk **Q-D2**);
* each list is then filtered per target: age lists keep the rows whose age string is one of
  :data:`AGE_GROUPS` (label = index), gender lists the rows with ``m`` (0) or ``f`` (1).
  Upstream tries to repair ``(25 23)`` -> ``(25 32)``, but the data spell it ``(25, 23)``, so the
  repair never fires and those rows are dropped from the age lists (quirk **Q-D1**; we keep the
  no-op repair to stay faithful).  Duplicate rows are kept.
* variants: ``i`` = ``landmark_aligned_face`` images, ``r`` = ``coarse_tilt_aligned_face``
  (squared, see :mod:`reproduce.squaring`), ``m`` = both: every row contributes two entries,
  coarse-tilt first, then landmark, to the test list and to the pool *before* shuffling.

Upstream shuffled with Python 2's unseeded ``random``, so its exact split cannot be redrawn: the
committed lists are the only record of it.  Here the shuffles are drawn from ``random.Random``
seeded from ``(seed, variant, K)``; ``seed=None`` reproduces upstream's unseeded behaviour.
Only the test lists (as multisets) and the list sizes before filtering are determined by the
procedure; which rows land in train vs. val depends on the draw.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence
from converters.errors import InputError

FOLD_COLUMNS = ("user_id", "original_image", "face_id", "age", "gender", "x", "y", "dx", "dy",
                "tilt_ang", "fiducial_yaw_angle", "fiducial_score")
N_FOLDS = 5
FOLD_FILE = "fold_{k}_data.txt"
TEST_FOLD_DIR = "test_fold_is_{k}"

AGE_GROUPS = ("(0, 2)", "(4, 6)", "(8, 12)", "(15, 20)", "(25, 32)", "(38, 43)", "(48, 53)", "(60, 100)")
# Upstream's attempted typo repair (Q-D1), spelled as the spec reports it.  The data spell the typo
# "(25, 23)" (with a comma), so this mapping never matches a real row; it is kept only to document
# the upstream behaviour (it cannot change any list built from the real files).
UPSTREAM_AGE_REPAIR = {"(25 23)": "(25 32)"}
GENDER_LABELS = {"m": 0, "f": 1}
TARGETS = ("age", "gender")
PARTS = ("train", "val", "test", "train_subset")

LANDMARK = "landmark_aligned_face"
COARSE = "coarse_tilt_aligned_face"


@dataclass(frozen=True)
class Variant:
    """One preprocessing variant of the paper ([i], [r] or [m]) and its upstream names."""
    key: str
    list_folder: str          # folder under upstream ``folds/``
    prefixes: tuple[str, ...]  # image-name prefixes, in the order they enter the lists
    image_root: str           # image folder the list paths are relative to (upstream ``DATA/<root>``)
    lmdb_folder: str
    mean_folder: str


VARIANTS = {
    "i": Variant("i", "train_val_txt_files_per_fold", (LANDMARK,), "aligned", "lmdb", "mean_image"),
    "r": Variant("r", "squared_unaligned_train_val_txt_files_per_fold", (COARSE,), "faces_squared",
                 "lmdb_unaligned", "mean_image_unaligned"),
    "m": Variant("m", "mixed_train_val_txt_files_per_fold", (COARSE, LANDMARK), "mixed", "lmdb_mixed",
                 "mean_image_mixed"),
}


class FoldFileError(ValueError, InputError):
    """A fold file could not be read; ``str(err)`` is ``<path>:<line>: <what was expected>``."""

    def __init__(self, path, line: int | None, message: str):
        self.path, self.line, self.reason = str(path), line, message
        super().__init__(f"{path}:{line}: {message}" if line is not None else f"{path}: {message}")


@dataclass(frozen=True)
class FaceRow:
    """One row of ``fold_K_data.txt`` (all columns kept as the strings of the file)."""
    user_id: str
    original_image: str
    face_id: str
    age: str
    gender: str
    x: str
    y: str
    dx: str
    dy: str
    tilt_ang: str
    fiducial_yaw_angle: str
    fiducial_score: str

    def image_path(self, prefix: str) -> str:
        """``<user_id>/<prefix>.<face_id>.<original_image>`` (relative to the image root)."""
        return f"{self.user_id}/{prefix}.{self.face_id}.{self.original_image}"


def age_label(age: str) -> int | None:
    """Upstream age label (0..7) of an age string, or ``None`` when the row is dropped (Q-D1)."""
    age = UPSTREAM_AGE_REPAIR.get(age, age)
    try:
        return AGE_GROUPS.index(age)
    except ValueError:
        return None


def gender_label(gender: str) -> int | None:
    """``m`` -> 0, ``f`` -> 1; ``u``, empty and anything else -> ``None`` (dropped)."""
    return GENDER_LABELS.get(gender)


LABELS = {"age": age_label, "gender": gender_label}


def _label_of(row: FaceRow, target: str) -> int | None:
    return LABELS[target](row.age if target == "age" else row.gender)


def parse_fold_text(text: str, path="<fold file>") -> list[FaceRow]:
    """Parse the text of one original fold file; errors name ``path:line``."""
    lines = text.split("\n")
    if not lines or lines[0].rstrip("\r") == "":
        raise FoldFileError(path, 1, "empty file; expected the header line "
                            + "\\t".join(FOLD_COLUMNS))
    header = tuple(c.strip() for c in lines[0].rstrip("\r").split("\t"))
    if header != FOLD_COLUMNS:
        raise FoldFileError(path, 1, f"expected the tab-separated header {list(FOLD_COLUMNS)}, "
                                     f"got {list(header)}")
    rows = []
    for lineno, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(FOLD_COLUMNS):
            raise FoldFileError(path, lineno, f"expected {len(FOLD_COLUMNS)} tab-separated columns "
                                              f"({', '.join(FOLD_COLUMNS)}), got {len(fields)}")
        row = FaceRow(*fields)
        for name in ("user_id", "original_image", "face_id"):
            value = getattr(row, name)
            if not value or value != value.strip() or "/" in value:
                raise FoldFileError(path, lineno, f"column {name!r} must be a non-empty name without "
                                                  f"blanks or '/', got {value!r}")
        if not row.face_id.isdigit():
            raise FoldFileError(path, lineno, f"column 'face_id' must be a non-negative integer, "
                                              f"got {row.face_id!r}")
        rows.append(row)
    return rows


def read_fold_file(path) -> list[FaceRow]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FoldFileError(path, None, "fold file not found") from None
    except UnicodeDecodeError as exc:
        raise FoldFileError(path, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse_fold_text(text, path)


def read_folds(folds_dir) -> list[list[FaceRow]]:
    """The five ``fold_K_data.txt`` files of a directory (e.g. upstream ``folds/original_txt_files``)."""
    return [read_fold_file(Path(folds_dir) / FOLD_FILE.format(k=k)) for k in range(N_FOLDS)]


def _entries(rows: Iterable[FaceRow], variant: Variant) -> list[tuple[FaceRow, str]]:
    return [(row, prefix) for row in rows for prefix in variant.prefixes]


@dataclass
class FoldSplit:
    """The lists of one test fold and variant; ``lists[(target, part)]`` = [(path, label), ...]."""
    test_fold: int
    variant: str
    pool_size: int                      # N (entries, i.e. 2x rows for [m])
    dropped: tuple[str, str]            # (path, "age/gender strings") of the lost element pool[N//10]
    lists: dict[tuple[str, str], list[tuple[str, int]]]

    def lines(self, target: str, part: str) -> list[str]:
        return [f"{path} {label}" for path, label in self.lists[(target, part)]]


def _rng(seed, variant: str, test_fold: int) -> random.Random:
    if seed is None:
        return random.Random()  # unseeded, as upstream
    return random.Random(f"{seed}/{variant}/{test_fold}")


def split_fold(folds: Sequence[Sequence[FaceRow]], test_fold: int, variant: str = "i", seed=0
               ) -> FoldSplit:
    """Upstream split for test fold ``test_fold`` (see module docstring)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}")
    if not 0 <= test_fold < len(folds):
        raise ValueError(f"test fold {test_fold} out of range for {len(folds)} folds")
    var = VARIANTS[variant]
    rng = _rng(seed, variant, test_fold)
    test = _entries(folds[test_fold], var)
    rng.shuffle(test)
    pool = _entries((row for k, fold in enumerate(folds) if k != test_fold for row in fold), var)
    rng.shuffle(pool)
    n10 = len(pool) // 10
    parts = {
        "train": pool[n10 + 1:],          # Q-D2: pool[n10] is in no list
        "val": pool[:n10],
        "test": test,
        "train_subset": pool[n10 + 1:2 * n10],
    }
    lists = {}
    for target in TARGETS:
        for part, entries in parts.items():
            kept = []
            for row, prefix in entries:
                label = _label_of(row, target)
                if label is not None:
                    kept.append((row.image_path(prefix), label))
            lists[(target, part)] = kept
    dropped = ("", "")
    if len(pool) > n10:
        row, prefix = pool[n10]
        dropped = (row.image_path(prefix), f"age={row.age!r} gender={row.gender!r}")
    return FoldSplit(test_fold, variant, len(pool), dropped, lists)


def list_path(out_dir, variant: str, test_fold: int, target: str, part: str) -> Path:
    """``<out_dir>/<variant list folder>/test_fold_is_K/<target>_<part>.txt`` (upstream names)."""
    return (Path(out_dir) / VARIANTS[variant].list_folder / TEST_FOLD_DIR.format(k=test_fold)
            / f"{target}_{part}.txt")


def write_split(split: FoldSplit, out_dir) -> dict[tuple[str, str], Path]:
    """Write the 8 list files of one split (``<path> <label>`` per line, ``\\n`` terminated)."""
    written = {}
    for (target, part) in split.lists:
        path = list_path(out_dir, split.variant, split.test_fold, target, part)
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = split.lines(target, part)
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        written[(target, part)] = path
    return written


def make_fold_lists(folds, out_dir, variants: Iterable[str] = ("i", "r", "m"),
                    test_folds: Iterable[int] = range(N_FOLDS), seed=0) -> dict:
    """Create the upstream ``folds/`` tree under ``out_dir``.

    ``folds`` is a directory holding ``fold_K_data.txt`` or the already parsed rows.  Returns
    ``{(variant, K): FoldSplit}``.
    """
    if not isinstance(folds, (list, tuple)):
        folds = read_folds(folds)
    splits = {}
    for variant in variants:
        for k in test_folds:
            split = split_fold(folds, k, variant, seed)
            write_split(split, out_dir)
            splits[(variant, k)] = split
    return splits


def read_list(path) -> list[tuple[str, int]]:
    """Read a ``<path> <label>`` list file (as written here or committed upstream)."""
    out = []
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, label = line.rpartition(" ")
        if not sep or not label.lstrip("-").isdigit():
            raise FoldFileError(path, lineno, f"expected '<image path> <integer label>', got {line!r}")
        out.append((name, int(label)))
    return out


def main(argv=None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m reproduce.folds", description=(
        "Create the per-fold train/val/test lists of the paper from the original Adience "
        "fold_K_data.txt files (upstream procedure; quirks Q-D1 and Q-D2 kept)."))
    parser.add_argument("folds_dir", help="directory with fold_0_data.txt .. fold_4_data.txt")
    parser.add_argument("out_dir", help="where to create <variant folder>/test_fold_is_K/*.txt")
    parser.add_argument("--variants", default="irm", help="any of i, r, m (default: irm)")
    parser.add_argument("--seed", default="0",
                        help="seed of the shuffles (default 0); 'none' = unseeded like upstream")
    args = parser.parse_args(argv)
    seed = None if args.seed.lower() == "none" else args.seed
    try:
        splits = make_fold_lists(args.folds_dir, args.out_dir, variants=list(args.variants), seed=seed)
    except (FoldFileError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for (variant, k), split in sorted(splits.items()):
        counts = " ".join(f"{t}_{p}={len(split.lists[(t, p)])}" for t in TARGETS for p in PARTS)
        print(f"[{variant}] test_fold_is_{k}: N={split.pool_size} {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
