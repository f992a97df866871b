"""The upstream training prototxts rewritten for a local run (``run.py --train``).

What it owns: mapping the upstream ``source:``/``mean_file:`` paths of a train_val prototxt to the
local LMDBs and means (fold and data variant checked against the file), the test batch size, and the
solver prototxt's schedule and snapshot fields -- line by line, so everything else in the files
stays byte-identical; and what the upstream training setup says per cell: its starting point
(:func:`init_file`) and the data it is trained on (:func:`training_variant`, quirk Q-G1), which
``--fetch`` needs too.  :class:`TrainError` is the training mode's user error.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from reproduce.assets import VARIANT_SUFFIX
from converters.errors import InputError

# spec 3.3: starting points of the upstream training scripts (``--weights ./startingpoint/<file>``)
INIT_FILES = {("imagenet", "caffenet"): "bvlc_reference_caffenet.caffemodel",
              ("imagenet", "googlenet"): "bvlc_googlenet.caffemodel",
              ("imagenet", "vgg16"): "VGG_ILSVRC_16_layers.caffemodel",
              ("imdbwiki", "vgg16"): "dex_imdb_wiki.caffemodel"}
QG1_FOLDER = "gender_finetuning_googlenet_mixed"
SUFFIX_VARIANT = {v: k for k, v in VARIANT_SUFFIX.items()}
SNAPSHOT_PREFIX = "caffenet_train"     # the upstream solvers' snapshot_prefix file part


class TrainError(InputError):
    """A problem the user can fix (bad option, unmappable path, missing input); exit code 2."""


# ---------------------------------------------------------------------------- rewriting
_FIELD = re.compile(r'^(?P<head>\s*(?P<field>source|mean_file)\s*:\s*)"(?P<value>[^"]*)"(?P<tail>.*)$')
_LMDB = re.compile(r"(?:^|/)lmdb(?P<sfx>_unaligned|_mixed)?/Test_fold_is_(?P<fold>\d+)/"
                   r"(?P<name>(?P<target>age|gender)_(?P<split>train|val|test)_lmdb)/*$")
_MEAN = re.compile(r"(?:^|/)mean_image(?P<sfx>_unaligned|_mixed)?/Test_fold_is_(?P<fold>\d+)/mean\.binaryproto$")
_BATCH = re.compile(r"^(?P<head>\s*batch_size\s*:\s*)(?P<value>\d+)(?P<tail>.*)$")
_ABS = re.compile(r'"(/[^"]*)"')


@dataclass
class Rewritten:
    text: str
    lmdbs: list = field(default_factory=list)      # (split, Path) in file order
    means: list = field(default_factory=list)      # Path
    changes: list = field(default_factory=list)    # "line N: field 'old' -> 'new'"
    remapped: list = field(default_factory=list)   # Q-G1 variant changes


def lmdb_dir(root, variant: str, fold: int, name: str) -> Path:
    return Path(root) / f"lmdb{VARIANT_SUFFIX[variant]}" / f"Test_fold_is_{fold}" / name


def rewrite_train_val(text: str, *, file, fold: int, lmdb_root, mean_path: Callable[[str, int], Path],
                      variant: str | None = None, remap: bool = False, batch_size: int | None = None) -> Rewritten:
    """Map the hard-coded ``<ROOT>`` LMDB and mean paths of an upstream train_val to the user's data.

    ``variant``: the data variant the file is expected to read; a path of another variant is an
    error unless ``remap`` (Q-G1), which replaces it by ``variant`` and records it.  ``mean_path``
    gives the mean file of (variant, fold).  ``batch_size`` replaces every ``batch_size`` value.
    """
    out = Rewritten("")
    lines = text.split("\n")
    for n, line in enumerate(lines, 1):
        m = _FIELD.match(line)
        if m:
            fld, value = m.group("field"), m.group("value")
            pat = _LMDB if fld == "source" else _MEAN
            pm = pat.search(value)
            if not pm:
                expect = ("lmdb{,_unaligned,_mixed}/Test_fold_is_K/{age,gender}_{train,val,test}_lmdb" if fld == "source"
                          else "mean_image{,_unaligned,_mixed}/Test_fold_is_K/mean.binaryproto")
                raise TrainError(f"{file}:{n}: cannot map {fld} {value!r} to the local data (expected a path "
                                 f"ending in {expect})")
            k = int(pm.group("fold"))
            if k != fold:
                raise TrainError(f"{file}:{n}: {fld} {value!r} is for fold {k}, the file is for fold {fold}")
            var = SUFFIX_VARIANT[pm.group("sfx") or ""]
            if variant is not None and var != variant:
                if not remap:
                    raise TrainError(f"{file}:{n}: {fld} {value!r} reads the [{var}] data, the model folder "
                                     f"is a [{variant}] model")
                out.remapped.append(f"line {n}: {fld} [{var}] -> [{variant}]")
                var = variant
            if fld == "source":
                new = lmdb_dir(lmdb_root, var, fold, pm.group("name"))
                out.lmdbs.append((pm.group("split"), new))
            else:
                new = Path(mean_path(var, fold))
                out.means.append(new)
            new_s = str(Path(new).resolve())
            if '"' in new_s:
                raise TrainError(f"{new_s}: a path with a double quote cannot be written into a prototxt")
            line = f'{m.group("head")}"{new_s}"{m.group("tail")}'
            out.changes.append(f"line {n}: {fld} {value!r} -> {new_s!r}")
        else:
            am = _ABS.search(line.split("#", 1)[0])
            if am:
                raise TrainError(f"{file}:{n}: cannot map the absolute path {am.group(1)!r} (only source and "
                                 f"mean_file paths are rewritten)")
            bm = _BATCH.match(line) if batch_size is not None else None
            if bm:
                line = f"{bm.group('head')}{int(batch_size)}{bm.group('tail')}"
                out.changes.append(f"line {n}: batch_size {bm.group('value')} -> {int(batch_size)}")
        lines[n - 1] = line
    if not out.lmdbs:
        raise TrainError(f"{file}: no Data layer source found to rewrite")
    out.text = "\n".join(lines)
    return out


_SOLVER_FIELD = re.compile(r"^\s*(?P<field>[A-Za-z_]+)\s*:")


def rewrite_solver(text: str, *, file, net: str, max_iter: int, snapshot: int, test_iter: int | None = None,
                   seed: int | None = None) -> tuple[str, list[str]]:
    """The committed solver with the real schedule; base_lr/gamma/stepsize/momentum/... untouched.

    Returns (new text, list of changes).  ``test_iter`` 0 switches the test passes off
    (``test_interval: 0``, ``test_initialization: false``).
    """
    repl = {"net": f'"{net}"', "max_iter": str(int(max_iter)), "snapshot": str(int(snapshot)),
            "snapshot_prefix": f'"{SNAPSHOT_PREFIX}"'}
    if test_iter is not None:
        if test_iter > 0:
            repl["test_iter"] = str(int(test_iter))
        else:
            repl["test_interval"] = "0"
            repl["test_initialization"] = "false"
    if seed is not None:
        repl["random_seed"] = str(int(seed))
    seen, changes, lines = set(), [], []
    for line in text.split("\n"):
        m = _SOLVER_FIELD.match(line)
        if m and m.group("field") in repl:
            fld = m.group("field")
            old = line.split(":", 1)[1].strip()
            line = f"{fld}: {repl[fld]}"
            if old != repl[fld]:
                changes.append(f"{fld}: {old} -> {repl[fld]}")
            seen.add(fld)
        lines.append(line)
    while lines and not lines[-1].strip():
        lines.pop()
    for fld in repl:
        if fld not in seen:
            lines.append(f"{fld}: {repl[fld]}")
            changes.append(f"{fld}: (unset) -> {repl[fld]}")
    header = [f"# {file}, rewritten by reproduce/train.py:"] + [f"#   {c}" for c in changes]
    return "\n".join(header + lines) + "\n", changes


# ---------------------------------------------------------------------------- the upstream training setup
def init_file(cell) -> str | None:
    """File name of the pretrained starting point of a cell (None for training from scratch)."""
    if cell.init == "scratch":
        return None
    try:
        return INIT_FILES[(cell.init, cell.family)]
    except KeyError:
        raise TrainError(f"{cell.label}: no starting point known for init {cell.init!r} of {cell.family}") from None


def training_variant(cell, q_g1: str = "mixed") -> str:
    """Data variant a cell's model is trained on (Q-G1: the committed [m,n] G gender file says [r])."""
    if cell.folder == QG1_FOLDER and q_g1 == "committed":
        return "r"
    return cell.train
