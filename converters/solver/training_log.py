"""The solver's training log: one CSV row per displayed/tested iteration, and its curve as a PNG.

What it owns: the CSV columns (train loss, learning rate, test outputs), truncating the log when a
run resumes from an earlier snapshot, and the matplotlib plot (never fatal).
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from ..formats import atomic_write_bytes


class TrainingLog:
    """Per-iteration CSV log (written incrementally) and a training-curve PNG."""

    def __init__(self, csv_path, test_columns: list[str]):
        self.csv_path = Path(csv_path) if csv_path else None
        self.columns = ["iter", "loss", "smoothed_loss", "lr"] + test_columns
        self.rows: list[dict] = []
        self._on_disk: list[dict] = []     # rows of an earlier run, kept for truncate() after a restore
        if self.csv_path is not None:
            self.csv_path.parent.mkdir(parents=True, exist_ok=True)
            if self.csv_path.exists():
                with open(self.csv_path, newline="") as fh:
                    reader = csv.DictReader(fh)
                    if reader.fieldnames == self.columns:
                        self._on_disk = [r for r in reader if r["iter"]]
            self._rewrite()

    def _rewrite(self):
        tmp = self.csv_path.with_name(self.csv_path.name + ".tmp")
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.columns)
            writer.writeheader()
            for row in self.rows:
                writer.writerow(row)
        os.replace(tmp, self.csv_path)

    def truncate(self, iteration: int):
        """Forget rows at or after ``iteration`` (a restored run redoes them); keeps older rows on disk."""
        if not self.rows:
            self.rows = self._on_disk
        self.rows = [r for r in self.rows if int(r["iter"]) < iteration]
        if self.csv_path is not None:
            self._rewrite()

    def add(self, row: dict):
        row = {k: ("" if row.get(k) is None else row[k]) for k in self.columns}
        self.rows.append(row)
        if self.csv_path is not None:
            new = not self.csv_path.exists()
            with open(self.csv_path, "a", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=self.columns)
                if new:
                    writer.writeheader()
                writer.writerow(row)

    def plot(self, path, title: str = ""):
        """Training loss and test accuracy vs iteration (the paper's Figure 1 style), atomically."""
        import matplotlib
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        def series(col):
            xs, ys = [], []
            for r in self.rows:
                if r.get(col) not in ("", None):
                    xs.append(int(r["iter"]))
                    ys.append(float(r[col]))
            return xs, ys

        fig, ax = plt.subplots(figsize=(7, 4.2))
        x, y = series("loss")
        ax.plot(x, y, color="tab:blue", lw=0.8, alpha=0.5, label="training loss")
        xs, ys = series("smoothed_loss")
        smoothing = any(r.get("loss") not in ("", None) and r.get("smoothed_loss") not in ("", None)
                        and float(r["loss"]) != float(r["smoothed_loss"]) for r in self.rows)
        if xs and smoothing:
            ax.plot(xs, ys, color="tab:blue", lw=1.5, label="training loss (smoothed)")
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss")
        acc_cols = [c for c in self.columns if c.startswith("test") and "accuracy" in c]
        loss_cols = [c for c in self.columns if c.startswith("test") and "accuracy" not in c]
        for col in loss_cols:
            xs, ys = series(col)
            if xs:
                ax.plot(xs, ys, "s--", color="tab:orange", ms=3, lw=1, label=col)
        handles, labels = ax.get_legend_handles_labels()
        if acc_cols:
            ax2 = ax.twinx()
            for i, col in enumerate(acc_cols):
                xs, ys = series(col)
                if xs:
                    ax2.plot(xs, ys, "o-", ms=3, lw=1.2, color=["tab:red", "tab:green", "tab:purple"][i % 3],
                             label=col)
            ax2.set_ylabel("test accuracy")
            h2, l2 = ax2.get_legend_handles_labels()
            handles, labels = handles + h2, labels + l2
        if handles:
            ax.legend(handles, labels, loc="best", fontsize=8)
        if title:
            ax.set_title(title)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        atomic_write_bytes(path, buf.getvalue())


# ---------------------------------------------------------------------------- the solver
