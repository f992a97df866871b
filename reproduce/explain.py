"""LRP heatmaps of the paper's table cells (Figures 2, 4, 5): every fold model of a cell explains
the same face images, the channel-summed heatmaps are averaged over the folds, and panels put the
input above the heatmaps of several models.

    explain_cells(grid.select(3, ["m,n"], ["G"]), ["a.jpg", "b.jpg"], weights_dir="models",
                  folds=range(5), out_dir="out/explain", class_mode="predicted")

Owns the paper's choices, as data: the Caffe layer index up to which the flat rule is used, per
network family (:data:`FLAT_UPTO`: the upstream heatmap script's 0 for CaffeNet, 4 for GoogLeNet,
9 for VGG-16; AdienceNet, which upstream did not configure, gets 0 like CaffeNet: the same
early layout -- a large strided first convolution, pooling and LRN -- so only the first
convolution is flat), epsilon 0.1 (:data:`EPS`, the upstream script; the paper text says 0.01),
alpha 2 / beta 1, the toolbox's LRN rule; relevance starts at the main head's pre-softmax
score (GoogLeNet: ``loss3/classifier``).  The images are prepared as the test protocol did:
OpenCV BGR read, [r] cells' faces padded to a square by edge replication, 256x256
``INTER_LINEAR``, minus the fold's mean, centre crop.

Output, under ``out_dir``: per cell ``<cell>/<image>/fold<K>_relevance.{npy,json}``,
``fold<K>_black-firered.png``, ``average_relevance.npy`` (channel-summed mean over the folds, no
per-fold normalisation, as upstream's "fAVG"), ``average_{black-firered,seismic}.png``;
``<cell>/panel.png`` (images x folds + average) and ``panel.png`` (images x cells, fold averages);
``explain.json`` (what was explained, classes, scores, relevance sums).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from . import cell_model, sources
from converters.errors import InputError

FLAT_UPTO = {"caffenet": 0, "googlenet": 4, "vgg16": 9, "adiencenet": 0}
EPS = 0.1
BETA = 1.0
CLASS_MODES = ("predicted", "true")


class ExplainError(ValueError, InputError):
    """Bad selection or missing inputs (the message says what and where)."""


def parse_class_mode(text):
    """``predicted`` | ``true`` | a class index."""
    t = str(text).strip().lower()
    if t in CLASS_MODES:
        return t
    try:
        value = int(t)
    except ValueError:
        raise ExplainError(f"--class: expected predicted, true or a class index, got {text!r}") from None
    if value < 0:
        raise ExplainError(f"--class: class indices start at 0, got {value}")
    return value


def parse_images(items) -> list[tuple[Path, int | None]]:
    """``path`` or ``path:label`` (the label is needed by ``--class true``)."""
    out = []
    for item in items:
        if isinstance(item, (tuple, list)):
            out.append((Path(item[0]), None if item[1] is None else int(item[1])))
            continue
        text = str(item)
        path, sep, label = text.rpartition(":")
        if sep and path and re.fullmatch(r"\d+", label):
            out.append((Path(path), int(label)))
        else:
            out.append((Path(text), None))
    return out


def flat_upto_for(cell) -> int:
    try:
        return FLAT_UPTO[cell.family]
    except KeyError:
        raise ExplainError(f"{cell.label}: no flat-rule layer index declared for family {cell.family!r}") from None


def cell_slug(cell) -> str:
    row = cell.row.strip("[]").replace(",", "-")
    return f"table{cell.table}_{row}_{cell.col}_{cell.folder}"


def _image_stems(images) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for path, _ in images:
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", path.stem) or "image"
        k = seen.get(stem, 0)
        seen[stem] = k + 1
        out.append(stem if k == 0 else f"{stem}_{k + 1}")
    return out


def _target(class_mode, label, n_classes: int, image: Path):
    if class_mode == "predicted":
        return "predicted"
    if class_mode == "true":
        if label is None:
            raise ExplainError(f"{image}: --class true needs the image's label (give it as {image}:LABEL)")
        target = label
    else:
        target = int(class_mode)
    if not 0 <= target < n_classes:
        raise ExplainError(f"{image}: class {target} out of range for a {n_classes}-class net")
    return target


def prepare_image(path: Path, cell, mean, preprocess: str = "protocol"):
    """(input (1, 3, S, S), BGR crop) for ``cell``: [r] faces squared first, as the LMDB pipeline did."""
    from converters.lrp.image import prepare, read_bgr
    img = read_bgr(path)
    if cell.test == "r" and preprocess == "protocol":
        from .squaring import pad_to_square
        img = pad_to_square(img)
    return prepare(img, cell.input_size, mean, mode=preprocess)


def explain_cells(cells, images, weights_dir, folds=(0, 1, 2, 3, 4), out_dir="out/explain",
                  class_mode="predicted", *, means_dir=None, store=None, eps: float = EPS, lrn: str = "taylor",
                  flat_mode: str | None = "toolbox", preprocess: str = "protocol", variant: str = "toolbox",
                  weights_name: str = sources.DEFAULT_WEIGHTS_NAME, iteration: int | None = None,
                  progress=None) -> dict:
    """Heatmaps of every (cell, fold) model for ``images``; returns the summary written to explain.json.

    ``cells``: :class:`reproduce.grid.Cell` records (empty cells are skipped); ``images``: paths or
    ``path:label`` / ``(path, label)``; ``weights_dir``: ``<folder>/models_test_is_K/<weights_name>``
    (a ``<folder>/deploy.prototxt`` there replaces the upstream deploy); ``means_dir``: folder of
    ``mean_image{sfx}/Test_fold_is_K/mean.binaryproto`` (default: the upstream means via ``store``);
    ``class_mode``: ``"predicted"``, ``"true"`` (labels from the images) or a class index;
    ``iteration``: snapshot to use instead of the cell's final one; ``variant``: "toolbox" (every
    lrp_toolbox quirk, as the paper's heatmaps) or "corrected" (none; ``flat_mode`` None then
    follows the variant), recorded in explain.json and every per-fold record.
    """
    from converters.lrp import explain, paper_composite, render

    say = progress or (lambda msg: None)
    class_mode = parse_class_mode(class_mode) if not isinstance(class_mode, int) else class_mode
    images = parse_images(images)
    if not images:
        raise ExplainError("no images to explain")
    missing = [str(p) for p, _ in images if not p.is_file()]
    cells = [c for c in cells if not c.empty]
    if not cells:
        raise ExplainError("no filled table cell selected")
    folds = sorted(set(int(f) for f in folds))
    if not folds or any(f not in range(5) for f in folds):
        raise ExplainError(f"folds are 0..4, got {folds}")
    jobs = []
    for cell in cells:
        for fold in folds:
            w = cell_model.weights_file(cell, fold, weights_dir, weights_name, iteration)
            if not w.is_file():
                missing.append(str(w))
            jobs.append((cell, fold, w))
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise ExplainError(f"{len(missing)} input file(s) missing: {shown}")

    out = Path(out_dir)
    stems = _image_stems(images)
    summary = {"what": "LRP heatmaps (paper rules: toolbox formula 102)", "eps": eps, "alpha": 1 + BETA,
               "beta": BETA, "lrn": lrn, "flat_mode": flat_mode, "preprocess": preprocess,
               "class_mode": class_mode, "folds": folds, "images": [str(p) for p, _ in images], "cells": []}
    try:
        summary.update(paper_composite(0, eps=eps, beta=BETA, lrn=lrn, flat_mode=flat_mode,
                                       variant=variant).quirks.describe())
    except ValueError as exc:
        raise ExplainError(str(exc)) from None
    averages: dict[str, list] = {}
    crops: dict[str, np.ndarray] = {}
    for cell in cells:
        slug, flat = cell_slug(cell), flat_upto_for(cell)
        composite = paper_composite(flat_upto=flat, eps=eps, beta=BETA, lrn=lrn, flat_mode=flat_mode,
                                    variant=variant)
        entry = {"cell": cell.label, "folder": cell.folder, "family": cell.family, "flat_upto": flat,
                 "deploy": None, "folds": {}}
        per_image: dict[str, list] = {s: [] for s in stems}
        fold_maps: dict[int, dict[str, np.ndarray]] = {}
        for c, fold, _ in jobs:
            if c is not cell:
                continue
            try:
                if store is None:   # one store for all the fold models (it fetches only what is asked)
                    from .assets import AssetStore
                    store = AssetStore(progress=False)
                loaded = cell_model.load_cell_model(cell, fold, weights_dir, weights_name=weights_name,
                                                    iteration=iteration, means_dir=means_dir, store=store)
            except cell_model.CellModelError as exc:
                raise ExplainError(str(exc)) from None
            model, mean, weights, mean_file, deploy = (loaded.model, loaded.mean, loaded.weights, loaded.mean_file,
                                                       loaded.deploy)
            entry["deploy"] = str(deploy)
            say(f"{cell.label} fold {fold}: {weights}")
            fold_entry = {"weights": str(weights), "mean": str(mean_file), "images": {}}
            fold_maps[fold] = {}
            for (path, label), stem in zip(images, stems):
                import torch
                x, crop = prepare_image(path, cell, mean, preprocess)
                crops.setdefault(stem, crop)
                target = _target(class_mode, label, cell.n_classes, path)
                relevance, record = explain(model, torch.from_numpy(x), target, composite)
                r = relevance.detach().numpy()[0].astype(np.float32)
                d = out / slug / stem
                d.mkdir(parents=True, exist_ok=True)
                np.save(d / f"fold{fold}_relevance.npy", r)
                record = dict(record, image=str(path), label=label, cell=cell.label, fold=fold,
                              weights=str(weights), mean=str(mean_file), deploy=str(deploy))
                (d / f"fold{fold}_relevance.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
                render.write_png(d / f"fold{fold}_black-firered.png", render.colorize(r, "black-firered"))
                per_image[stem].append(r)
                fold_maps[fold][stem] = render.colorize(r, "black-firered")
                fold_entry["images"][stem] = {"class": record["classes"][0], "label": label,
                                              "score": record["start_scores"][0],
                                              "relevance_sum": record["relevance_sums"][0]}
            entry["folds"][fold] = fold_entry
            del model
        avg_row = []
        for stem in stems:
            avg = render.average(per_image[stem]).astype(np.float32)
            d = out / slug / stem
            np.save(d / "average_relevance.npy", avg)
            for cmap in render.CMAPS:
                render.write_png(d / f"average_{cmap}.png", render.colorize(avg, cmap))
            avg_row.append(render.colorize(avg, "black-firered"))
        averages[cell.label] = avg_row
        inputs = [render.input_rgb(crops[s]) for s in stems]
        rows = [[fold_maps[f][s] for s in stems] for f in folds] + [avg_row]
        entry["panel"] = str(render.panel(out / slug / "panel.png", inputs, rows,
                                          row_titles=[f"fold {f}" for f in folds] + ["fold average"],
                                          col_titles=stems, title=f"{cell.label} ({cell.folder})"))
        summary["cells"].append(entry)
    inputs = [render.input_rgb(crops[s]) for s in stems]
    summary["panel"] = str(render.panel(out / "panel.png", inputs, [averages[c.label] for c in cells],
                                        row_titles=[c.label for c in cells], col_titles=stems,
                                        title="LRP, fold averages (black-firered)"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "explain.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary
