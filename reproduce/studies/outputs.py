"""Outputs of a study run: results.json (run.py's ``{"cells": [...]}`` schema), results.csv, the
Markdown table, the fairness breakdown CSV, results.png, and the per-job cache used to resume."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from converters.formats import atomic_write_bytes
from reproduce.report import pct, write_json

CSV_FIELDS = ["study", "dataset", "row", "name", "target", "fold", "images", "acc", "epochs", "best_epoch",
              "published_acc", "published_std", "published_epochs"]


def write_csv(path, records: list[dict]) -> None:
    """One line per (cell, fold) plus ``mean`` and ``std`` lines; published values beside (fractions)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in records:
        pub = (r.get("published") or {}).get("paper") or {}
        base = {"study": r["study"], "dataset": r["dataset"], "row": r["row"], "name": r["name"], "target": r["target"],
                "published_acc": pub.get("acc"), "published_std": pub.get("acc_std"),
                "published_epochs": pub.get("epochs")}
        if r.get("empty") or not r["folds"]:
            w.writerow({**base, "fold": "reference" if r.get("empty") else "not run"})
            continue
        for f in r["folds"]:
            w.writerow({**base, **{k: f.get(k) for k in ("fold", "images", "acc", "epochs", "best_epoch")}})
        for what in ("mean", "std"):
            vals = r.get(what) or {}
            w.writerow({**base, "fold": what, **{k: vals.get(k) for k in ("acc", "epochs", "best_epoch")}})
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


def write_breakdown_csv(path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["dataset", "row", "target", "by", "group", "images", "acc", "published_acc"],
                       lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


def _mean_std(r: dict) -> str:
    m, s = r.get("mean") or {}, r.get("std") or {}
    if m.get("acc") is None:
        return "-"
    if len(r["folds"]) > 1:
        return f"{pct(m['acc'])} +- {pct(s.get('acc'))}"
    return pct(m["acc"])


def _diff(r: dict) -> str:
    pub = ((r.get("published") or {}).get("paper") or {}).get("acc")
    m = (r.get("mean") or {}).get("acc")
    if pub is None or m is None or (isinstance(m, float) and math.isnan(m)):
        return "-"
    return f"{100 * (m - pub):+.1f}"


def markdown(records: list[dict]) -> str:
    lines = ["| dataset | row | target | published | reproduced | diff | epochs published | epochs (mean) | per fold |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        pub = (r.get("published") or {}).get("paper") or {}
        pub_s = "-" if pub.get("acc") is None else (
            f"{pct(pub['acc'])}" + (f" +- {pct(pub['acc_std'])}" if pub.get("acc_std") is not None else ""))
        ep = (r.get("mean") or {}).get("epochs")
        per_fold = " ".join(f"{f['fold']}:{pct(f.get('acc'))}" for f in r["folds"])
        if r.get("empty"):
            per_fold = "reference row (not trained here)"
        lines.append(f"| {r['dataset']} | {r['name']} | {r['target']} | {pub_s} | {_mean_std(r)} | {_diff(r)} | "
                     f"{pub.get('epochs', '-') if pub.get('epochs') is not None else '-'} | "
                     f"{'-' if ep is None else f'{ep:.1f}'} | {per_fold} |")
    return "\n".join(lines)


def breakdown_markdown(title: str, groups: list[str], columns: dict, published: dict | None) -> str:
    """``columns``: label -> {group: (images, acc)}; ``published``: group -> fraction."""
    head = ["group"] + (["published"] if published else []) + list(columns)
    lines = [f"**{title}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in groups:
        cells = [g]
        if published:
            cells.append(pct(published.get(g)) if published.get(g) is not None else "-")
        for col in columns.values():
            n, acc = col.get(g, (0, None))
            cells.append(f"{pct(acc)} (n={n})" if n else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- chart
def chart(path, records: list[dict], title: str, breakdown: dict | None = None) -> Path | None:
    """Published vs reproduced accuracy per cell (error bars: std over folds); with ``breakdown``
    (``{"groups": [...], "series": {label: {group: acc}}}``) a second panel per group."""
    cells = [r for r in records if r["folds"] or ((r.get("published") or {}).get("paper") or {}).get("acc")]
    if not cells:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_panels = 2 if breakdown else 1
    fig, axes = plt.subplots(n_panels, 1, figsize=(max(6.0, 1.0 * len(cells) + 2), 3.8 * n_panels), squeeze=False)
    ax = axes[0, 0]
    x = np.arange(len(cells))
    pub = [100 * ((((r.get("published") or {}).get("paper") or {}).get("acc")) or np.nan) for r in cells]
    pub_err = [100 * ((((r.get("published") or {}).get("paper") or {}).get("acc_std")) or 0.0) for r in cells]
    rep = [100 * ((r.get("mean") or {}).get("acc", np.nan) if r["folds"] else np.nan) for r in cells]
    rep_err = [100 * ((r.get("std") or {}).get("acc") or 0.0) for r in cells]
    w = 0.38
    for off, vals, errs, label in ((-w / 2, pub, pub_err, "published"), (w / 2, rep, rep_err, "reproduced")):
        bars = ax.bar(x + off, vals, w, yerr=errs, capsize=3, label=label, error_kw={"lw": 0.8})
        for b, v in zip(bars, vals):
            if not np.isnan(v):
                ax.annotate(f"{v:.1f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=7)
    several = len({r["dataset"] for r in cells}) > 1
    ax.set_xticks(x, [(f"{r['dataset']}\n" if several else "") + f"{r['row']}\n{r['target']}" for r in cells],
                  fontsize=7)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 109)
    ax.legend(fontsize=8, loc="upper right", ncol=2)
    ax.set_title(title, fontsize=10)
    if breakdown:
        ax = axes[1, 0]
        groups = breakdown["groups"]
        series = breakdown["series"]
        xs = np.arange(len(groups))
        bw = 0.8 / max(1, len(series))
        for i, (label, vals) in enumerate(series.items()):
            ys = [100 * (vals.get(g) if vals.get(g) is not None else np.nan) for g in groups]
            ax.bar(xs + (i - (len(series) - 1) / 2) * bw, ys, bw, label=label)
        ax.set_xticks(xs, groups, fontsize=7)
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 109)
        ax.legend(fontsize=7, loc="upper right", ncol=min(3, len(series)))
        ax.set_title(breakdown.get("title", "per group"), fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------------- cache
def cached(path: Path, fingerprint: dict, needs=()) -> dict | None:
    """The saved result when ``path`` holds the same fingerprint and every file in ``needs`` exists."""
    if not path.is_file() or not all(Path(p).is_file() for p in needs):
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    same = saved.get("fingerprint") == json.loads(json.dumps(fingerprint))      # tuples are lists in JSON
    return saved.get("result") if same else None


def save_cache(path: Path, fingerprint: dict, result: dict) -> None:
    write_json(path, {"fingerprint": fingerprint, "result": result})


def file_stamp(path) -> dict | None:
    if path is None:
        return None
    p = Path(path)
    if not p.exists():
        return {"path": str(p)}
    st = p.stat()
    return {"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def write_predictions(path, keys, labels: dict, probs: dict) -> None:
    """key, then per task: label, prediction, probabilities."""
    tasks = list(probs)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    head = ["key"]
    for t in tasks:
        head += [f"{t}_label", f"{t}_pred"] + [f"{t}_prob_{c}" for c in range(probs[t].shape[1])]
    w.writerow(head)
    for i, key in enumerate(keys):
        row = [key]
        for t in tasks:
            p = probs[t][i]
            row += [int(labels[t][i]), int(np.argmax(p))] + [f"{float(v):.6g}" for v in p]
        w.writerow(row)
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))
