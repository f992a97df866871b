"""Outputs of ``run.py``: results.json, results.csv, predictions CSVs, the Markdown table and the bar chart.

Values are fractions in files and percent on screen; published values come from the grid records
(percent as printed) and are converted to fractions in results.json.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from converters.formats import atomic_write_bytes

from .grid import Cell
from .protocol import METRICS


def published_fractions(cell: Cell) -> dict:
    out = {}
    for source in ("paper", "readme"):
        vals = cell.published.get(source)
        out[source] = ({k: (None if v is None else round(v / 100.0, 6)) for k, v in vals.items()}
                       if vals else None)
    return out


def cell_record(cell: Cell, folds: list[dict] | None = None, mean: dict | None = None,
                std: dict | None = None, **extra) -> dict:
    rec = {"table": cell.table, "target": cell.target, "row": cell.row, "col": cell.col,
           "folder": cell.folder, "empty": cell.empty}
    if not cell.empty:
        rec.update({"train": cell.train, "test": cell.test, "mean_image": cell.mean,
                    "input_size": cell.input_size, "output_blob": cell.output_blob})
    rec["published"] = published_fractions(cell) if not cell.empty else None
    rec["folds"] = folds or []
    rec["mean"] = mean or {}
    rec["std"] = std or {}
    if cell.notes:
        rec["notes"] = list(cell.notes)
    rec.update(extra)
    return rec


def write_json(path, data) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=1, allow_nan=True) + "\n").encode("utf-8"))


def write_predictions(path, preds) -> None:
    """key, label, prediction (10-crop), then the averaged probabilities prob_0..prob_{C-1}."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    n = preds.prob.shape[1] if preds.prob.ndim == 2 else 0
    w.writerow(["key", "label", "prediction", "prediction_single", "prediction_centre"]
               + [f"prob_{c}" for c in range(n)])
    for key, label, p, ps, pc, row in zip(preds.keys, preds.labels, preds.pred, preds.pred_single,
                                          preds.pred_centre, preds.prob):
        w.writerow([key, int(label), int(p), int(ps), int(pc)] + [repr(float(v)) for v in row])
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


def read_predictions(path) -> dict:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    probs = [[float(r[k]) for k in r if k.startswith("prob_")] for r in rows]
    return {"keys": [r["key"] for r in rows], "labels": np.array([int(r["label"]) for r in rows]),
            "pred": np.array([int(r["prediction"]) for r in rows]), "prob": np.array(probs, dtype=np.float64)}


CSV_FIELDS = ["table", "target", "row", "col", "folder", "train", "test", "iteration", "fold", "images",
              *METRICS, "paper_acc", "paper_one_off", "readme_acc", "readme_one_off"]


def write_csv(path, records: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for rec in records:
        pub = rec.get("published") or {}
        base = {k: rec.get(k) for k in ("table", "target", "row", "col", "folder", "train", "test")}
        for src in ("paper", "readme"):
            for m in ("acc", "one_off"):
                base[f"{src}_{m}"] = (pub.get(src) or {}).get(m)
        if rec.get("empty"):
            w.writerow({**base, "fold": "empty"})
            continue
        for f in rec["folds"]:
            w.writerow({**base, **{k: f.get(k) for k in ("iteration", "fold", "images", *METRICS)}})
        for what in ("mean", "std"):
            if rec.get(what):
                w.writerow({**base, "fold": what, "iteration": rec.get("iteration"), **rec[what]})
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


# ---------------------------------------------------------------------------- screen
def pct(v, digits=1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{100.0 * v:.{digits}f}"


def _pair(vals: dict | None, target: str, digits=1) -> str:
    if not vals:
        return "-"
    if target == "age":
        return f"{pct(vals.get('acc'), digits)} / {pct(vals.get('one_off'), digits)}"
    return pct(vals.get("acc"), digits)


def _diff(mean: dict, pub: dict | None, target: str) -> str:
    if not pub or not mean or pub.get("acc") is None:
        return "-"

    def d(m):
        if pub.get(m) is None or mean.get(m) is None:
            return "-"
        return f"{100.0 * (mean[m] - pub[m]):+.1f}"
    return f"{d('acc')} / {d('one_off')}" if target == "age" else d("acc")


def markdown(records: list[dict], source: str = "paper") -> str:
    lines = ["| cell | folder | published paper | published README | reproduced | diff vs paper | "
             "diff vs README | per fold (10-crop acc) |", "|---|---|---|---|---|---|---|---|"]
    for r in records:
        name = f"T{r['table']} {r['target']} {r['row']} {r['col']}"
        if r["empty"]:
            lines.append(f"| {name} | (empty in the paper) | | | | | | |")
            continue
        pub = r["published"] or {}
        per_fold = " ".join(f"{f['fold']}:{pct(f['acc'])}" for f in r["folds"])
        lines.append(f"| {name} | {r['folder']} | {_pair(pub.get('paper'), r['target'])} | "
                     f"{_pair(pub.get('readme'), r['target'])} | {_pair(r['mean'], r['target'], 2)} | "
                     f"{_diff(r['mean'], pub.get('paper'), r['target'])} | "
                     f"{_diff(r['mean'], pub.get('readme'), r['target'])} | {per_fold} |")
    filled = [r for r in records if not r["empty"] and r["folds"]]
    if filled:
        lines += ["", "Single-crop figures (not in the paper's tables): upstream score_models.py's 'centre' crop "
                  "is the bottom-right corner (offset 256-S, quirk Q-E1); the true centre is offset (256-S)//2.", "",
                  "| cell | single crop, bottom-right (as upstream) | single crop, true centre | "
                  "10-crop (mean +- std over folds) |", "|---|---|---|---|"]
        for r in filled:
            m, s = r["mean"], r["std"]
            single = {"acc": m.get("acc_single"), "one_off": m.get("one_off_single")}
            centre = {"acc": m.get("acc_centre"), "one_off": m.get("one_off_centre")}
            lines.append(f"| T{r['table']} {r['target']} {r['row']} {r['col']} | {_pair(single, r['target'], 2)} | "
                         f"{_pair(centre, r['target'], 2)} | {pct(m.get('acc'), 2)} +- {pct(s.get('acc'), 2)} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- chart
def bar_chart(path, records: list[dict]) -> Path | None:
    filled = [r for r in records if not r["empty"] and r["folds"]]
    if not filled:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("acc", "accuracy")]
    if any(r["target"] == "age" for r in filled):
        panels.append(("one_off", "1-off accuracy"))
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(5.0, 1.3 * len(filled) + 2), 3.6 * len(panels)),
                             squeeze=False)
    x = np.arange(len(filled))
    width = 0.27
    for ax, (metric, title) in zip(axes[:, 0], panels):
        series = [
            ("paper", [100 * (((r["published"] or {}).get("paper") or {}).get(metric) or np.nan) for r in filled]),
            ("README", [100 * (((r["published"] or {}).get("readme") or {}).get(metric) or np.nan) for r in filled]),
            ("reproduced", [100 * r["mean"].get(metric, np.nan) for r in filled]),
        ]
        for i, (label, vals) in enumerate(series):
            bars = ax.bar(x + (i - 1) * width, vals, width, label=label)
            for b, v in zip(bars, vals):
                if not np.isnan(v):
                    ax.annotate(f"{v:.1f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom",
                                fontsize=7)
        errs = [100 * r["std"].get(metric, 0.0) for r in filled]
        ax.errorbar(x + width, series[2][1], yerr=errs, fmt="none", ecolor="k", capsize=3, lw=0.8)
        ax.set_xticks(x, [f"T{r['table']} {r['row']} {r['col']}" for r in filled], fontsize=8)
        ax.set_ylabel(f"{title} (%)")
        lo = np.nanmin([v for _, s in series for v in s] + [100.0])
        ax.set_ylim(max(0.0, lo - 10), 109)
        ax.legend(fontsize=8, loc="upper left", ncol=3)
        ax.set_title(f"published vs reproduced: {title}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path
