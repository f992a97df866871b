"""Adience train/val LMDBs built from the raw images and the upstream fold lists (``run.py --train
--adience DIR``), as the upstream ``create_lmdb_*.sh`` scripts do with ``convert_imageset``.

What it owns: which image file a fold-list entry names (coarse-tilt faces are squared first) and the
seeded shuffle; the LMDB writing is :mod:`converters.formats`'.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

from reproduce import sources
from reproduce.options import progress_bar
from reproduce.upstream_rewrite import _LMDB

LANDMARK, COARSE = "landmark_aligned_face", "coarse_tilt_aligned_face"


# ---------------------------------------------------------------------------- raw Adience -> LMDB
def adience_image(adience: Path, rel: str) -> tuple[Path, bool]:
    """Image file of a fold-list entry and whether it must be squared ([r] coarse-tilt faces)."""
    base = os.path.basename(rel)
    if base.startswith(COARSE):
        return Path(adience) / sources.ADIENCE_DIRS["r"] / rel, True
    return Path(adience) / sources.ADIENCE_DIRS["i"] / rel, False


def build_adience_lmdbs(jobs: list, args, store, data_root: Path, progress: bool) -> list[str]:
    """Build the train/val LMDBs the jobs read from raw Adience images and the upstream fold lists.

    As ``create_lmdb_*.sh``: ``convert_imageset --resize_height=256 --resize_width=256 --shuffle``
    (shuffle seeded here; upstream's was not), coarse-tilt faces squared first.  Returns the
    missing-image messages (nothing is built then).
    """
    from converters.formats import write_lmdb
    todo = []
    for job in jobs:
        for split, path in job.rewritten.lmdbs:
            if (path / "data.mdb").is_file():
                continue
            m = _LMDB.search(str(path))
            todo.append((path, m.group("target"), split, job.variant, job.fold))
    todo = list(dict.fromkeys(todo))
    missing = []
    lists = {}
    for path, target, split, variant, fold in todo:
        from converters.formats.lmdb_io import read_imageset_list
        lst = store.fold_list(variant, fold, target, split)
        entries = read_imageset_list(lst)
        lists[path] = entries
        absent = [str(adience_image(args.adience, rel)[0]) for rel, _ in entries
                  if not adience_image(args.adience, rel)[0].is_file()]
        if absent:
            missing.append(f"{len(absent)} of the {len(entries)} Adience images listed in {lst} are missing, "
                           f"e.g. {absent[0]}")
    if missing:
        return missing
    for path, target, split, variant, fold in todo:
        entries = list(lists[path])
        random.Random(f"{variant}/{fold}/{target}/{split}").shuffle(entries)
        bar = progress_bar(len(entries), f"LMDB {path.parent.parent.name}/{path.parent.name}/{path.name}",
                           off=not progress)

        def items():
            for i, (rel, label) in enumerate(entries):
                img, square = adience_image(args.adience, rel)
                bar.update(1)
                yield f"{i:08d}_{rel}", (label, sources.load_adience_image(img, square))

        try:
            write_lmdb(path, items(), overwrite=True)
        finally:
            bar.close()
    return []
