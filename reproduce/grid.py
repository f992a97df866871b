"""Every cell of the paper's Tables 2-5 as a data record (``reproduce/data/paper_tables.json``).

Owns: which model folder fills which cell, the train / test / mean data variants, the input size,
the output blob, the final snapshot and the published values (paper = fixed final snapshot;
upstream README = best snapshot up to 100k iterations).  Knows nothing of how a cell is scored.

Tables 2/3 (age/gender): rows [i] [r] [m] [i,n] [r,n] [m,n] [i,w] [r,w] [m,w] x columns A C G V,
19 filled cells each.  Tables 4/5 (test-set swapping): rows [i] [r] [i,n] [r,n] x A C G, the [i]
model scored on the [r] test LMDB and vice versa, 10 filled cells each.  [m] models are scored on
the [r] test LMDB; the mean image is always the model's training variant (as score_models.py).
Quirk Q-G1 (gender [m,n] G) is recorded in the cell's ``notes``.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from converters.errors import InputError

DATA = Path(__file__).resolve().parent / "data" / "paper_tables.json"
TABLES = (2, 3, 4, 5)
TARGET = {2: "age", 3: "gender", 4: "age", 5: "gender"}
ROWS = {2: ("[i]", "[r]", "[m]", "[i,n]", "[r,n]", "[m,n]", "[i,w]", "[r,w]", "[m,w]"),
        4: ("[i]", "[r]", "[i,n]", "[r,n]")}
ROWS[3], ROWS[5] = ROWS[2], ROWS[4]
COLUMNS = {2: "ACGV", 3: "ACGV", 4: "ACG", 5: "ACG"}
COLUMN_NAMES = {"A": "AdienceNet", "C": "CaffeNet", "G": "GoogLeNet", "V": "VGG16"}
VARIANT_NAMES = {"i": "in-plane aligned", "r": "rotation aligned (squared)", "m": "mixed"}


class GridError(ValueError, InputError):
    """A table/row/column selection that does not exist in the paper."""


@dataclass(frozen=True)
class Cell:
    table: int
    target: str
    row: str
    col: str
    empty: bool
    folder: str | None = None
    family: str | None = None
    init: str | None = None
    train: str | None = None
    test: str | None = None
    mean: str | None = None
    input_size: int | None = None
    output_blob: str | None = None
    final_iter: int | None = None
    snapshot_step: int | None = None
    published: dict = field(default_factory=dict, hash=False, compare=False)
    notes: tuple = ()

    @property
    def label(self) -> str:
        return f"T{self.table} {self.target} {self.row} {self.col}"

    @property
    def n_classes(self) -> int:
        return 8 if self.target == "age" else 2

    def published_value(self, source: str = "paper", metric: str = "acc"):
        """Published value in percent (as printed) or None."""
        return (self.published.get(source) or {}).get(metric)


@lru_cache(maxsize=None)
def _load(path: str = str(DATA)) -> tuple[dict, tuple[Cell, ...]]:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    cells = []
    for rec in data["cells"]:
        rec = dict(rec)
        rec["notes"] = tuple(rec.get("notes", ()))
        rec["published"] = rec.get("published") or {}
        cells.append(Cell(**rec))
    head = {k: v for k, v in data.items() if k != "cells"}
    return head, tuple(cells)


def all_cells() -> tuple[Cell, ...]:
    return _load()[1]


def readme_max_iter() -> int:
    return int(_load()[0]["readme_max_iter"])


def normalize_row(text: str) -> str:
    """``m,w`` / ``[m,w]`` / ``M, W`` -> ``[m,w]``."""
    inner = re.sub(r"\s+", "", text).strip("[]").lower()
    return f"[{inner}]"


def parse_rows(values, table: int) -> list[str]:
    """Rows from repeated ``--row`` values (``i``, ``m,w``, ``[i,n]``, ``all``); ``;`` also separates."""
    if not values:
        return list(ROWS[table])
    rows = []
    for value in values:
        for part in str(value).split(";"):
            if not part.strip():
                continue
            if part.strip().lower() == "all":
                rows.extend(ROWS[table])
                continue
            row = normalize_row(part)
            if row not in ROWS[table]:
                raise GridError(f"row {part.strip()!r} is not in Table {table} (rows: {' '.join(ROWS[table])})")
            rows.append(row)
    return list(dict.fromkeys(rows))


def parse_cols(values, table: int) -> list[str]:
    if not values:
        return list(COLUMNS[table])
    cols = []
    for value in values:
        for part in re.split(r"[,;\s]+", str(value)):
            if not part:
                continue
            col = part.upper()
            if col not in COLUMNS[table]:
                raise GridError(f"column {part!r} is not in Table {table} (columns: {' '.join(COLUMNS[table])})")
            cols.append(col)
    return list(dict.fromkeys(cols))


def cell(table: int, row: str, col: str) -> Cell:
    table = int(table)
    if table not in TABLES:
        raise GridError(f"table {table} is not one of {', '.join(map(str, TABLES))}")
    row, col = normalize_row(row), col.upper()
    for c in all_cells():
        if c.table == table and c.row == row and c.col == col:
            return c
    raise GridError(f"no cell {row} {col} in Table {table}")


def select(table: int, rows=None, cols=None) -> list[Cell]:
    """Cells of ``table`` in paper order (row-major), restricted to ``rows`` and ``cols``."""
    table = int(table)
    if table not in TABLES:
        raise GridError(f"table {table} is not one of {', '.join(map(str, TABLES))}")
    rows, cols = parse_rows(rows, table), parse_cols(cols, table)
    return [cell(table, r, c) for r in rows for c in cols]


def cells_of_folder(folder: str) -> list[Cell]:
    return [c for c in all_cells() if c.folder == folder]


def _fmt(values: dict | None, target: str) -> str:
    if not values:
        return "-"
    acc = values.get("acc")
    if target == "age" and values.get("one_off") is not None:
        return f"{acc} / {values['one_off']}"
    return f"{acc}"


def format_listing(tables=TABLES) -> str:
    """The grid as Markdown (``run.py --list``)."""
    lines = []
    for t in tables:
        kind = "test-set swapping" if t in (4, 5) else "10-crop oversampling"
        lines.append(f"## Table {t} ({TARGET[t]}, {kind}); published: paper | README, "
                     f"{'accuracy / 1-off' if TARGET[t] == 'age' else 'accuracy'} in %")
        lines.append("")
        lines.append("| row | col | folder | train | test | mean | input | output blob | final iter | paper | README |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for c in select(t):
            if c.empty:
                lines.append(f"| {c.row} | {c.col} | (empty in the paper) | | | | | | | | |")
                continue
            lines.append(
                f"| {c.row} | {c.col} | {c.folder} | {c.train} | {c.test} | {c.mean} | {c.input_size} | "
                f"{c.output_blob} | {c.final_iter} | {_fmt(c.published.get('paper'), c.target)} | "
                f"{_fmt(c.published.get('readme'), c.target)} |")
        notes = [(c, n) for c in select(t) for n in c.notes]
        if notes:
            lines.append("")
            lines.extend(f"* {c.row} {c.col}: {n}" for c, n in notes)
        lines.append("")
    lines.append("Variants: i = in-plane (landmark) aligned, r = rotation-only faces padded to square "
                 "(upstream '_unaligned'), m = mixed i+r training, tested on r. Row suffix: n = ImageNet "
                 "initialisation, w = IMDB-WIKI. The mean image is the model's training variant. README values "
                 f"are the best snapshot up to {readme_max_iter()} iterations; the paper's are the final snapshot.")
    return "\n".join(lines)
