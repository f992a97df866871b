"""The offline demo: the paper's whole pipeline, end to end, on a SYNTHETIC Adience stand-in.

    python reproduce/run.py --demo [--demo-out out/demo] [--demo-folds 0,1] [--demo-iters N]
    python -m reproduce.demo [same options]

Steps (each one the package's real code, as for the paper; only the data and the net size differ):

1. :mod:`reproduce.synthetic` writes ``adience/`` (fold_K_data.txt + aligned/ + faces/ JPEGs);
   for [r]/[m] the coarse faces are squared (:mod:`reproduce.squaring`) into ``faces_squared/``;
2. :mod:`reproduce.folds` builds the upstream fold lists (``folds/<variant folder>/test_fold_is_K``);
3. ``convert_imageset`` (resize to 64x64, shuffle) builds ``lmdb*/Test_fold_is_K/{age,gender}_{train,val,test}_lmdb``,
   ``compute_image_mean`` of the **gender** train LMDB gives ``mean_image*/Test_fold_is_K/mean.binaryproto``,
   used for both targets as upstream;
4. the reduced AdienceNet (``reproduce/data/demo_{train_val,solver,deploy}.prototxt``: upstream
   structure, fewer filters, 56x56 crops) is trained per fold and target with the Caffe-exact
   ``converters.solver.Solver`` -> ``models/<t>_net_definitions*/models_test_is_K/caffenet_train_iter_N.caffemodel``;
5. the snapshots are scored with the paper's 10-crop protocol (:mod:`reproduce.protocol`) on the
   test LMDBs; per-fold accuracies are averaged without weights, as upstream.

Outputs under ``out_dir``: results.json (run.py's schema, every record marked ``"synthetic": true``),
results.csv (with a leading ``dataset=SYNTHETIC`` column), results.md, results.png (bar chart),
training_curves.png, predictions/*.csv, the solver logs (``caffenet_train_log.csv``) next to the
caffemodels, and everything the pipeline made on the way.  Torch runs on ``threads`` (default 1)
CPU threads during the demo: on a shared 2-core machine that is faster and, unlike 2 threads,
bit-repeatable run to run.
The published numbers shown beside are the paper's AdienceNet values on the REAL Adience data:
the demo checks that the machinery runs and learns, it does not reproduce them.
"""
from __future__ import annotations

import os
import platform
import shutil
import sys
import time
from pathlib import Path
from string import Template
from converters.errors import InputError

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reproduce import folds as fold_lists  # noqa: E402
from reproduce import synthetic  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
TEMPLATES = {"train_val": DATA / "demo_train_val.prototxt", "solver": DATA / "demo_solver.prototxt",
             "deploy": DATA / "demo_deploy.prototxt"}
N_CLASSES = {"age": 8, "gender": 2}
SUFFIX = {"i": "", "r": "_unaligned", "m": "_mixed"}          # model-folder suffixes as upstream
ROW = {"i": "[i]", "r": "[r]", "m": "[m]"}
TEST_VARIANT = {"i": "i", "r": "r", "m": "r"}                  # [m] models are scored on the [r] test set
TABLE = {"age": 2, "gender": 3}

# The demo's settings (documented in README / results.json).  Sizes are chosen so that the whole
# 5-fold age+gender run takes a few minutes on 2 CPU cores.
DEFAULTS = {
    "seed": 0,
    "rows_per_fold": 120,
    "users_per_fold": 10,
    "image_size": 64,        # stored synthetic JPEGs (aligned ones square, coarse ones not)
    "resize": 64,            # convert_imageset --resize_height/width (upstream: 256)
    "crop": 56,              # crop_size / net input (upstream: 227)
    "batch_size": 50,        # as upstream
    "iters": 500,            # per fold and target (upstream: 50 000)
    "base_lr": 0.0003,       # (upstream: 0.001 with its filler scales)
    "test_interval": 100,
    "threads": 1,            # torch CPU threads while the demo runs (1 is robust on a busy 2-core box)
}


class DemoError(RuntimeError, InputError):
    pass


def _say(progress, msg):
    if progress:
        print(msg, flush=True)


def _fill(template: Path, dest: Path, **values) -> Path:
    text = Template(template.read_text(encoding="utf-8")).substitute(**{k: str(v) for k, v in values.items()})
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text, encoding="utf-8")
    return dest


def _image_root(adience: Path, variant: str) -> Path:
    return adience / fold_lists.VARIANTS[variant].image_root


def prepare_images(adience: Path, variants) -> None:
    """[r]: square the coarse faces; [m]: one folder holding both kinds (squared coarse + aligned)."""
    from reproduce import squaring

    if {"r", "m"} & set(variants) and not (adience / "faces_squared").is_dir():
        squaring.square_faces_folder(adience / "faces", adience / "faces_squared")
    if "m" in variants and not (adience / "mixed").is_dir():
        for src in (adience / "faces_squared", adience / "aligned"):
            shutil.copytree(src, adience / "mixed", dirs_exist_ok=True)


def lmdb_dir(out: Path, variant: str, fold: int) -> Path:
    return out / fold_lists.VARIANTS[variant].lmdb_folder / f"Test_fold_is_{fold}"


def mean_file(out: Path, variant: str, fold: int) -> Path:
    return out / fold_lists.VARIANTS[variant].mean_folder / f"Test_fold_is_{fold}" / "mean.binaryproto"


def build_lmdbs(out: Path, adience: Path, variant: str, fold: int, settings: dict) -> dict:
    """convert_imageset for {age,gender}_{train,val,test} and compute_image_mean of gender_train."""
    from converters.formats.lmdb_io import compute_image_mean, convert_imageset

    counts = {}
    for target in fold_lists.TARGETS:
        for part in ("train", "val", "test"):
            listfile = fold_lists.list_path(out / "folds", variant, fold, target, part)
            dest = lmdb_dir(out, variant, fold) / f"{target}_{part}_lmdb"
            res = convert_imageset(_image_root(adience, variant), listfile, dest,
                                   resize_height=settings["resize"], resize_width=settings["resize"],
                                   shuffle=True, seed=f"{settings['seed']}/{variant}/{fold}/{target}/{part}",
                                   overwrite=True, progress=False)
            if res.skipped:
                raise DemoError(f"{listfile}: {len(res.skipped)} images missing, e.g. {res.skipped[0]}")
            counts[f"{target}_{part}"] = res.count
    mf = mean_file(out, variant, fold)
    mf.parent.mkdir(parents=True, exist_ok=True)
    compute_image_mean(lmdb_dir(out, variant, fold) / "gender_train_lmdb", mf)
    return counts


def model_folder(out: Path, target: str, variant: str) -> Path:
    return out / "models" / f"{target}_net_definitions{SUFFIX[variant]}"


def write_net_files(out: Path, target: str, variant: str, fold: int, settings: dict, val_count: int) -> dict:
    """train_val / solver / deploy prototxts of one fold, upstream names, absolute paths inside."""
    from converters.solver.snapshot import snapshot_filenames  # the solver's own naming of its snapshot

    folder = model_folder(out, target, variant)
    lmdbs = lmdb_dir(out, variant, fold).resolve()
    train_val = _fill(TEMPLATES["train_val"], folder / f"train_val_test_fold_is_{fold}.prototxt",
                      train_source=lmdbs / f"{target}_train_lmdb", val_source=lmdbs / f"{target}_val_lmdb",
                      mean_file=mean_file(out, variant, fold).resolve(), batch_size=settings["batch_size"],
                      crop_size=settings["crop"], num_output=N_CLASSES[target])
    iters = int(settings["iters"])
    interval = max(1, min(int(settings["test_interval"]), iters))
    prefix = (folder / f"models_test_is_{fold}" / "caffenet_train").resolve()
    prefix.parent.mkdir(parents=True, exist_ok=True)
    solver = _fill(TEMPLATES["solver"], folder / f"solver_test_fold_is_{fold}.prototxt",
                   net=train_val.resolve(), test_iter=max(1, -(-val_count // settings["batch_size"])),
                   test_interval=interval, base_lr=settings["base_lr"], stepsize=max(1, (iters * 4) // 5),
                   display=interval, max_iter=iters, snapshot=iters, snapshot_prefix=prefix,
                   random_seed=1000 * int(settings["seed"]) + 10 * fold + (target == "gender"))
    deploy = _fill(TEMPLATES["deploy"], folder / "deploy.prototxt", crop_size=settings["crop"],
                   num_output=N_CLASSES[target])
    return {"train_val": train_val, "solver": solver, "deploy": deploy,
            "caffemodel": Path(snapshot_filenames(str(prefix), iters)[0]), "log": Path(f"{prefix}_log.csv")}


def train(files: dict, progress: bool) -> dict:
    from converters.solver import Solver

    t0 = time.perf_counter()
    # torch's default memory layout: for the demo's 56x56 crops it is faster than channels-last
    solver = Solver(files["solver"], progress=progress and sys.stderr.isatty(), verbose=False, plot=False,
                    channels_last=False)
    solver.solve()
    seconds = time.perf_counter() - t0
    if not files["caffemodel"].is_file():
        raise DemoError(f"training did not write {files['caffemodel']}")
    val = [res[0] for it, res in solver.test_results if res]
    return {"seconds": round(seconds, 3), "final_loss": solver.losses[-1] if solver.losses else None,
            "val_accuracy": (val[-1].get("accuracy") if val else None)}


def evaluate(out: Path, target: str, variant: str, fold: int, settings: dict, device: str):
    """Score the trained fold model of (``target``, ``variant``) with the 10-crop protocol on its
    test LMDB ([m] models on the [r] set).  The model is loaded as every mode loads a cell's fold
    model (:func:`reproduce.cell_model.load_cell_model`): the demo lays its files out as the paper's
    archive (``models/<folder>/deploy.prototxt`` and ``models_test_is_K/``, ``mean_image*/``).
    Returns (predictions, metrics, the loaded :class:`~reproduce.cell_model.CellModel`)."""
    from converters.formats.lmdb_io import iter_lmdb
    from reproduce import cell_model, grid, protocol

    cell = grid.cell(TABLE[target], ROW[variant], "A")
    try:
        loaded = cell_model.load_cell_model(cell, fold, out / "models", iteration=int(settings["iters"]),
                                            means_dir=out, device=device)
    except cell_model.CellModelError as exc:
        raise DemoError(str(exc)) from None
    test_lmdb = lmdb_dir(out, TEST_VARIANT[variant], fold) / f"{target}_test_lmdb"
    preds = protocol.evaluate(loaded.model, iter_lmdb(str(test_lmdb)), loaded.mean, settings["crop"], "prob",
                              batch=50, device=device)
    return preds, protocol.fold_metrics(preds, N_CLASSES[target]), loaded


# ---------------------------------------------------------------------------- outputs
def _records(results: dict, settings: dict) -> list[dict]:
    from reproduce import grid, protocol, report

    records = []
    for (target, variant), folds in results.items():
        cell = grid.cell(TABLE[target], ROW[variant], "A")
        mean, std = protocol.aggregate_folds(folds)
        conf = {}
        for f in folds:
            for k, m in f["confmat"].items():
                conf[k] = m if k not in conf else [[a + b for a, b in zip(r1, r2)] for r1, r2 in zip(conf[k], m)]
        rec = report.cell_record(
            cell, folds, mean, std, source="synthetic demo", iteration=int(settings["iters"]), synthetic=True,
            dataset="SYNTHETIC (reproduce.synthetic), not Adience", net="reduced AdienceNet (demo_*.prototxt)",
            input_size=settings["crop"], upstream_all={m: protocol.upstream_string(mean[m], std[m])
                                                       for m in ("acc", "one_off")}, confmat=conf)
        records.append(rec)
    return records


def write_csv(path: Path, records: list[dict]) -> None:
    """run.py's results.csv columns with a leading ``dataset`` column saying SYNTHETIC."""
    import csv
    import io

    from reproduce.report import CSV_FIELDS, write_csv as report_csv

    tmp = path.with_name(path.name + ".part")
    report_csv(tmp, records)
    rows = list(csv.DictReader(io.StringIO(tmp.read_text(encoding="utf-8"))))
    tmp.unlink()
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["dataset", *CSV_FIELDS], lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({"dataset": "SYNTHETIC", **row})
    path.write_text(buf.getvalue(), encoding="utf-8")


def markdown(records: list[dict], settings: dict) -> str:
    from reproduce.report import pct

    lines = ["**SYNTHETIC demo** - reduced AdienceNet trained and scored on procedurally drawn faces; "
             "the paper column is AdienceNet on the REAL Adience data, shown for orientation only.", "",
             "| table | target | row | paper AdienceNet (real Adience) | demo (SYNTHETIC) mean +- std | "
             "chance | per fold |", "|---|---|---|---|---|---|---|"]
    for r in records:
        paper = (r["published"] or {}).get("paper") or {}
        m, s = r["mean"], r["std"]
        if r["target"] == "age":
            pub = f"{pct(paper.get('acc'))} / {pct(paper.get('one_off'))} (1-off)"
            demo = f"{pct(m['acc'])} +- {pct(s['acc'])} / {pct(m['one_off'])} (1-off)"
            chance = "12.5"
        else:
            pub, demo, chance = pct(paper.get("acc")), f"{pct(m['acc'])} +- {pct(s['acc'])}", "50.0"
        per_fold = " ".join(f"{f['fold']}:{pct(f['acc'])}" for f in r["folds"])
        lines.append(f"| {r['table']} | {r['target']} | {r['row']} A | {pub} | {demo} | {chance} | {per_fold} |")
    return "\n".join(lines)


def bar_chart(path: Path, records: list[dict]) -> Path:
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    bars = []
    for r in records:
        paper = (r["published"] or {}).get("paper") or {}
        bars.append((f"{r['target']} {r['row']}\naccuracy", paper.get("acc"), r["mean"]["acc"], r["std"]["acc"],
                     0.125 if r["target"] == "age" else 0.5))
        if r["target"] == "age":
            bars.append((f"age {r['row']}\n1-off", paper.get("one_off"), r["mean"]["one_off"],
                         r["std"]["one_off"], None))
    fig, ax = plt.subplots(figsize=(1.6 * len(bars) + 2.5, 4.2))
    x = np.arange(len(bars))
    w = 0.38
    pub = [100 * (b[1] if b[1] is not None else np.nan) for b in bars]
    demo = [100 * b[2] for b in bars]
    ax.bar(x - w / 2, pub, w, label="paper: AdienceNet, REAL Adience", color="tab:gray")
    ax.bar(x + w / 2, demo, w, yerr=[100 * b[3] for b in bars], capsize=3, label="demo: reduced net, SYNTHETIC",
           color="tab:orange")
    for i, b in enumerate(bars):
        if b[4] is not None:
            ax.hlines(100 * b[4], i - 0.45, i + 0.45, colors="k", linestyles=":", lw=1)
        for xx, v, err in ((i - w / 2, pub[i], 0.0), (i + w / 2, demo[i], 100 * b[3])):
            if not np.isnan(v):
                ax.annotate(f"{v:.1f}", (xx, v + err + 0.5), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [b[0] for b in bars], fontsize=8)
    ax.set_ylim(0, 109)
    ax.set_ylabel("% (dotted: chance)")
    ax.set_title("SYNTHETIC demo (not a reproduction): 10-crop accuracy, mean over folds", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


SMOOTH = 25  # iterations averaged in training_curves.png


def training_curves(path: Path, logs: dict) -> Path | None:
    """One panel per (target, variant): training loss (smoothed) and val accuracy of every fold."""
    import csv

    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    groups = {}
    for (target, variant, fold), log in sorted(logs.items()):
        if log.is_file():
            with open(log, newline="") as fh:
                groups.setdefault((target, variant), []).append((fold, list(csv.DictReader(fh))))
    if not groups:
        return None
    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 3.8), squeeze=False)
    for ax, ((target, variant), runs) in zip(axes[0], groups.items()):
        ax2 = ax.twinx()
        for i, (fold, rows) in enumerate(runs):
            colour = f"C{i}"
            pts = [(int(r["iter"]), float(r["loss"])) for r in rows if r.get("loss")]
            if pts:
                its, loss = zip(*pts)
                w = min(SMOOTH, len(loss))
                avg = [sum(loss[max(0, j - w + 1):j + 1]) / (j + 1 - max(0, j - w + 1)) for j in range(len(loss))]
                ax.plot(its, avg, color=colour, lw=1.2, label=f"fold {fold}")
            acc = [(int(r["iter"]), float(r["test0/accuracy"])) for r in rows if r.get("test0/accuracy")]
            if acc:
                ax2.plot(*zip(*acc), "o--", color=colour, ms=3, lw=0.8)
        ax.set_xlabel("iteration")
        ax.set_ylabel(f"training loss (mean of last {SMOOTH} iterations)")
        ax2.set_ylabel("val accuracy (dashed)")
        ax2.set_ylim(0, 1)
        ax.set_title(f"{target} {ROW[variant]} - SYNTHETIC demo", fontsize=10)
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------- driver
def run_demo(out_dir="out/demo", folds=(0, 1, 2, 3, 4), iters: int | None = None, device: str = "cpu",
             progress: bool = True, variants=("i",), targets=("age", "gender"), **overrides) -> dict:
    """Run the whole pipeline on the synthetic data; returns the results.json content.

    ``overrides`` change :data:`DEFAULTS` (seed, rows_per_fold, users_per_fold, image_size, resize,
    crop, batch_size, base_lr, test_interval).  Everything is written under ``out_dir``.
    """
    settings = dict(DEFAULTS)
    unknown = set(overrides) - set(settings)
    if unknown:
        raise TypeError(f"unknown demo setting(s): {', '.join(sorted(unknown))}")
    settings.update(overrides)
    if iters is not None:
        settings["iters"] = int(iters)
    folds = [int(k) for k in folds]
    variants = list(variants)
    if int(settings["iters"]) < 1:
        raise DemoError(f"iters must be >= 1, got {settings['iters']}")
    if not folds or not variants or not targets:
        raise DemoError("need at least one fold, one variant and one target")
    if any(not 0 <= k < fold_lists.N_FOLDS for k in folds):
        raise DemoError(f"test folds must be in 0..4, got {folds}")
    for v in variants:
        if v not in fold_lists.VARIANTS:
            raise DemoError(f"unknown variant {v!r} (use i, r or m)")
    for t in targets:
        if t not in N_CLASSES:
            raise DemoError(f"unknown target {t!r} (use age or gender)")
    import torch

    threads_before = torch.get_num_threads()
    if settings["threads"]:
        torch.set_num_threads(int(settings["threads"]))
    try:
        return _run(Path(out_dir), folds, variants, targets, device, progress, settings)
    finally:
        torch.set_num_threads(threads_before)


_RESULT_FILES = ("results.json", "results.csv", "results.md", "results.png", "training_curves.png")


_MARKER = ".reproduce-demo"   # written first by every demo run: the folder is the demo's


def _clear_previous(out: Path) -> list[str]:
    """Remove what an earlier demo run wrote into ``out`` (only the demo's own names), so a
    rerun with other folds or variants never leaves stale fold files beside new results.

    A non-empty folder that no demo run made is refused (DemoError): deleting a ``models``
    folder of the user's is not the demo's business.
    """
    if not out.is_dir() or not any(out.iterdir()):
        return []
    if not (out / _MARKER).exists():
        raise DemoError(f"{out}: folder is not empty and holds no earlier demo run; give an empty "
                        "or new folder (--out)")
    names = {"adience", "folds", "models", "predictions", *_RESULT_FILES}
    for v in fold_lists.VARIANTS.values():
        names |= {v.lmdb_folder, v.mean_folder}
    removed = []
    for name in sorted(names):
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
        else:
            continue
        removed.append(name)
    return removed


def _run(out: Path, folds, variants, targets, device, progress, settings) -> dict:
    removed = _clear_previous(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / _MARKER).write_text("written by reproduce/demo.py; a rerun replaces this folder's demo files\n")
    if removed:
        _say(progress, f"[demo] {out} held an earlier run: removed {', '.join(removed)}")
    t_start = time.perf_counter()
    timings = {}

    # 1. data
    t0 = time.perf_counter()
    adience = out / "adience"
    if adience.exists():
        shutil.rmtree(adience)
    summary = synthetic.generate(adience, seed=settings["seed"], rows_per_fold=settings["rows_per_fold"],
                                 users_per_fold=settings["users_per_fold"], image_size=settings["image_size"])
    needed = sorted(set(variants) | {TEST_VARIANT[v] for v in variants})
    prepare_images(adience, needed)
    timings["dataset"] = time.perf_counter() - t0
    _say(progress, f"[demo] SYNTHETIC Adience-format data: {sum(summary['rows'])} rows in 5 folds -> {adience} "
                   f"({timings['dataset']:.1f} s)")

    # 2. fold lists, 3. LMDBs and means
    t0 = time.perf_counter()
    fold_lists.make_fold_lists(adience, out / "folds", variants=needed, test_folds=folds, seed=settings["seed"])
    counts = {(v, k): build_lmdbs(out, adience, v, k, settings) for v in needed for k in folds}
    timings["lists_lmdbs_means"] = time.perf_counter() - t0
    _say(progress, f"[demo] fold lists, {6 * len(counts)} LMDBs and {len(counts)} mean images "
                   f"({timings['lists_lmdbs_means']:.1f} s)")

    # 4. training, 5. evaluation
    from reproduce import report

    results, logs, runs = {}, {}, []
    t_train = t_eval = 0.0
    for variant in variants:
        for target in targets:
            for k in folds:
                files = write_net_files(out, target, variant, k, settings, counts[(variant, k)][f"{target}_val"])
                info = train(files, progress)
                t_train += info["seconds"]
                logs[(target, variant, k)] = files["log"]
                t0 = time.perf_counter()
                preds, metrics, loaded = evaluate(out, target, variant, k, settings, device)
                if loaded.weights.resolve() != files["caffemodel"].resolve() or \
                        loaded.deploy.resolve() != files["deploy"].resolve():   # the layouts must agree
                    raise DemoError(f"scored {loaded.weights} with {loaded.deploy}, trained {files['caffemodel']} "
                                    f"with {files['deploy']}")
                t_eval += time.perf_counter() - t0
                folder = model_folder(out, target, variant).name
                report.write_predictions(out / "predictions" / f"{folder}_fold{k}.csv", preds)
                results.setdefault((target, variant), []).append(
                    {"fold": k, "iteration": settings["iters"], **metrics, "train_seconds": info["seconds"],
                     "final_train_loss": info["final_loss"], "val_accuracy": info["val_accuracy"],
                     "weights": str(files["caffemodel"]), "mean_file": str(loaded.mean_file),
                     "deploy": str(files["deploy"])})
                extra = f" / 1-off {100 * metrics['one_off']:.1f}" if target == "age" else ""
                _say(progress, f"[demo] {target} {ROW[variant]} fold {k}: trained {settings['iters']} iterations "
                               f"in {info['seconds']:.1f} s, 10-crop test accuracy {100 * metrics['acc']:.1f}"
                               f"{extra} % on {metrics['images']} images")
                runs.append((target, variant, k))
    timings["training"], timings["evaluation"] = t_train, t_eval

    records = _records(results, settings)
    timings["total"] = time.perf_counter() - t_start
    import torch

    data = {
        "generated_by": "reproduce/demo.py", "SYNTHETIC": True,
        "note": ("SYNTHETIC demo: a reduced AdienceNet trained and scored on procedurally drawn faces "
                 "(reproduce.synthetic); the 'published' values are the paper's AdienceNet on the real "
                 "Adience data and are NOT expected to match."),
        "protocol": "10-crop oversampling (reproduce.protocol) at crop %d of %dx%d images" % (
            settings["crop"], settings["resize"], settings["resize"]),
        "settings": {**settings, "folds": folds, "variants": variants, "targets": list(targets), "device": device},
        "summary": {"seconds": {k: round(v, 2) for k, v in timings.items()}, "runs": len(runs),
                    "rows_per_fold": summary["rows"], "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                    "python": platform.python_version()},
        "cells": records,
    }
    report.write_json(out / "results.json", data)
    write_csv(out / "results.csv", records)
    (out / "results.md").write_text(markdown(records, settings) + "\n", encoding="utf-8")
    bar_chart(out / "results.png", records)
    training_curves(out / "training_curves.png", logs)
    _say(progress, "\n" + markdown(records, settings))
    _say(progress, f"\n[demo] total {timings['total']:.1f} s (data {timings['dataset']:.1f}, lists+LMDBs+means "
                   f"{timings['lists_lmdbs_means']:.1f}, training {t_train:.1f}, 10-crop scoring {t_eval:.1f}); "
                   f"wrote {out / 'results.json'}, results.csv, results.md, results.png, training_curves.png, "
                   f"predictions/")
    return data


def add_arguments(parser) -> None:
    """The demo mode's options (``run.py --demo`` / ``run.py demo`` / ``python -m reproduce.demo``)."""
    from reproduce import options
    g = parser.add_argument_group("demo (SYNTHETIC data, offline)")
    g.add_argument("--demo", action="store_true", help="this mode (the flag style's mode flag)")
    g.add_argument("--demo-out", default=None,
                   help="output folder of the demo (default: --out, else out/demo); an earlier demo "
                        "run's files there are replaced")
    g.add_argument("--demo-folds", default="0,1,2,3,4", help="test folds (default 0,1,2,3,4)")
    g.add_argument("--demo-iters", type=int, default=DEFAULTS["iters"],
                   help=f"training iterations per fold and target (default {DEFAULTS['iters']})")
    g.add_argument("--demo-variants", default="i", help="any of i, r, m (default i)")
    g.add_argument("--demo-seed", type=int, default=DEFAULTS["seed"], help="seed of data, splits and training")
    options.add_out_argument(g, "the same as --demo-out")
    options.add_device_argument(g)
    options.add_progress_argument(g)


def main_demo(argv=None, args=None) -> int:
    """``python -m reproduce.demo``: pass ``argv`` (the demo mode's options) or parsed ``args``."""
    from converters.errors import InputError, report
    from reproduce.modes import build_parser
    if args is None:
        try:
            args = build_parser("demo", "python -m reproduce.demo").parse_args(argv)
        except InputError as exc:
            return report("demo", exc)
        except SystemExit as exc:   # --help
            return int(exc.code or 0)
    return run(args)


def run(args) -> int:
    """The demo on the demo mode's parsed options; 0 done, 2 bad options (one line)."""
    from converters.errors import InputError, report
    from converters.outputs import check_output_dir
    from reproduce import options
    try:
        folds = options.parse_folds(args.demo_folds, "--demo-folds")
        out = args.demo_out
        if out and args.out and Path(out) != Path(args.out):
            raise options.UsageError(f"--demo-out {out} and --out {args.out} disagree; give one of them")
        out = out or args.out or "out/demo"
        args.demo_out = out
        check_output_dir(out, "demo output folder")
        options.check_device(args.device)
        data = run_demo(out, folds=folds, iters=args.demo_iters, device=args.device,
                        progress=not args.no_progress, variants=tuple(c for c in args.demo_variants if c not in ", "),
                        seed=args.demo_seed)
    except InputError as exc:
        return report("demo", exc)
    if args.no_progress:
        print(markdown(data["cells"], data["settings"]))
        seconds = data["summary"]["seconds"]["total"]
        print(f"\n[demo] total {seconds:.1f} s; wrote {Path(args.demo_out) / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main_demo())
