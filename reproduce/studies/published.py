"""Published values of the follow-up studies (``reproduce/data/studies.json``) and the result records.

A result record has the keys of ``reproduce.report.cell_record`` (table, target, row, col, folder,
empty, published, folds, mean, std) plus ``study``, ``dataset``, ``name`` and study-specific extras;
``published`` is ``{"paper": {"acc": fraction, "acc_std": fraction, "epochs": n}, "readme": None}``.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "studies.json"


@lru_cache(maxsize=None)
def load(path: str = str(DATA)) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def study(name: str) -> dict:
    return load()["studies"][name]


def to_fraction(value, unit: str):
    if value is None:
        return None
    return round(value / 100.0, 6) if unit == "percent" else float(value)


def published_block(values: dict | None, unit: str, epochs=None) -> dict:
    """``{"paper": {...}, "readme": None}`` for one (row, target) from the printed values."""
    if not values and epochs is None:
        return {"paper": None, "readme": None}
    paper = {}
    if values:
        paper["acc"] = to_fraction(values.get("acc"), unit)
        if values.get("std") is not None:
            paper["acc_std"] = to_fraction(values["std"], unit)
    if epochs is not None:
        paper["epochs"] = epochs
    return {"paper": paper, "readme": None}


def record(study_name: str, dataset: str, row: dict, target: str, unit: str, folds=None, mean=None, std=None,
           epochs=None, **extra) -> dict:
    pub_values = (row.get("published") or {}).get(target)
    rec = {"study": study_name, "table": study_name, "dataset": dataset, "target": target, "row": row["row"],
           "col": target, "name": row["name"], "folder": row.get("model") or row["row"],
           "empty": bool(row.get("reference")) or False,
           "published": published_block(pub_values, unit, row.get("published_epochs") if epochs is None else epochs),
           "folds": folds or [], "mean": mean or {}, "std": std or {}}
    if row.get("notes"):
        rec["notes"] = list(row["notes"])
    rec.update(extra)
    return rec


def fmt_pub(values: dict | None, unit: str) -> str:
    if not values or values.get("acc") is None:
        return "-"
    if unit == "percent":
        s = f"{values['acc']:.1f}"
        return s + (f" +- {values['std']:.1f}" if values.get("std") is not None else "")
    return f"{values['acc']:.3f}"
