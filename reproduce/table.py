"""The table mode: score the paper's trained fold models with the exact fold files and the 10-crop
protocol, and show the published numbers beside the reproduced ones (Tables 2-5).

    python reproduce/run.py --table 2 --row m,w --lmdb DATA --weights MODELS   (or: run.py table ...)
    python reproduce/run.py --table 2 --row m,w --fetch [--dry-run] [--remote URL] [--data-dir DIR]
    python reproduce/run.py --list [--table T]                                 (or: run.py list ...)
    python reproduce/run.py --fetch-assets [--assets-mirror DIR_OR_URL]        (or: run.py fetch ...)

What it owns: the table mode's options (:func:`add_arguments`), the plan of a run (which (cell,
fold) jobs, which inputs are missing: :func:`plan`, :func:`missing_message`), the per-(cell, fold)
scoring with its cache (:class:`Runner`) and :func:`run_table`, which ``run.py --train`` also calls
to evaluate what it trained.

``--row`` and ``--col`` may be repeated (``--row i --row m,n``) or take ``all``; ``;`` also separates
rows (``--row "i;m,n"``).  Results go to ``--out`` (default ``out/table<T>``): results.json,
results.csv, predictions/<folder>_fold<K>.csv, results.png and a per-(cell, fold) cache (``cache/``)
from which an interrupted run resumes.  Exit codes: 0 done, 2 bad arguments or missing inputs.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from reproduce import cell_model, fetch, grid, options, protocol, report, sources
from converters.errors import InputError, is_input_error, report as report_error
from reproduce.assets import AssetStore
from reproduce.options import MissingInputs, UsageError, parse_folds, validate
from converters.outputs import check_output_dir

PROTOCOL_VERSION = 1  # bump when the scoring changes so cached fold results are recomputed
DEFAULT_BATCH = {"adiencenet": 50, "caffenet": 25, "googlenet": 10, "vgg16": 4}  # images (x10 crops)
PROG = "run.py"


def add_running_arguments(parser, out_help: str = "output folder (default out/table<T>)"):
    """--out/--batch/--device/--backend/--no-progress of a mode that scores fold models (table, train);
    returns the group so the mode can add its own running options."""
    run = parser.add_argument_group("running")
    options.add_out_argument(run, out_help)
    run.add_argument("--batch", type=int, help="images per forward pass, x10 crops "
                                               "(default per net: A 50, C 25, G 10, V 4)")
    options.add_device_argument(run)
    options.add_backend_argument(run)
    options.add_progress_argument(run)
    return run


def add_arguments(parser) -> None:
    """The table mode's options (also ``--list`` and ``--fetch-assets``, which it runs first)."""
    options.add_cell_arguments(parser)
    options.add_weights_arguments(options.add_data_arguments(parser))
    add_running_arguments(parser)
    misc = parser.add_argument_group("other")
    misc.add_argument("--list", action="store_true", help="print every cell of Tables 2-5 (or --table T) and exit")
    misc.add_argument("--fetch-assets", action="store_true", help="fetch all upstream files (prototxt/, folds/, "
                                                                   "mean_images/) first (and exit without --table)")
    options.add_asset_arguments(misc)
    fetch.add_fetch_arguments(parser)


def run(args) -> int:
    """``run.py [table] ...``: ``--fetch`` first (the data the cells need), then :func:`run_table`."""
    try:
        if args.out:
            # before any scoring or download: a bad --out must not lose the work at its last step
            check_output_dir(args.out, "--out folder")
        validate(args)
    except InputError as exc:
        return report_error(PROG, exc)
    code = fetch.prepare(args)  # --fetch: download what the run needs, then --weights/--lmdb point there
    if code is not None:
        return code
    return run_table(args)


# ---------------------------------------------------------------------------- planning
@dataclass
class Job:
    cell: grid.Cell
    fold: int
    iteration: int
    weights: Path


def readme_iterations(cell: grid.Cell, args, folds) -> list[int]:
    """Snapshots scored for the README figure: multiples of the snapshot interval up to
    min(final, 100k) present for every fold."""
    limit = min(cell.final_iter, grid.readme_max_iter())
    common = None
    for fold in folds:
        its = {i for i in sources.available_snapshots(args.weights, cell.folder, fold, args.weights_name)
               if i <= limit and i % cell.snapshot_step == 0}
        common = its if common is None else common & its
    return sorted(common or ())


def plan(cells, args, folds) -> tuple[list[Job], list[str]]:
    """Jobs to run and the missing-input messages (empty when everything is there)."""
    missing = []
    jobs = []
    if not args.lmdb and not args.adience:
        missing.append("test data: neither --lmdb DIR nor --adience DIR was given")
    elif args.lmdb:
        absent = [sources.lmdb_path(args.lmdb, c.test, k, c.target) for c in cells for k in folds]
        absent = [p for p in absent if not (p / "data.mdb").is_file()]
        if absent:
            missing.append(options.listing("test LMDB", absent))
    else:
        for v in sorted({c.test for c in cells}):
            d = Path(args.adience) / sources.ADIENCE_DIRS[v]
            if not d.is_dir():
                missing.append(f"raw Adience images: {d} does not exist (needs the Adience "
                               f"'{sources.ADIENCE_DIRS[v]}' folder for [{v}] test images)")
    if args.means:
        absent = sorted({sources.mean_path(args.means, c.mean, k) for c in cells for k in folds})
        absent = [p for p in absent if not p.is_file()]
        if absent:
            missing.append(options.listing("mean image", absent))
    if not args.weights:
        missing.append("trained weights: --weights DIR was not given (DIR/<folder>/models_test_is_K/"
                       f"{args.weights_name})")
    else:
        absent = []
        for c in cells:
            if args.source == "readme":
                its = readme_iterations(c, args, folds)
                if not its:
                    absent.append(sources.weights_path(args.weights, c.folder, folds[0],
                                                       min(c.final_iter, grid.readme_max_iter()), args.weights_name))
                    continue
            else:
                its = [args.iter or c.final_iter]
            for it in its:
                for k in folds:
                    w = sources.weights_path(args.weights, c.folder, k, it, args.weights_name)
                    if w.is_file():
                        jobs.append(Job(c, k, it, w))
                    else:
                        absent.append(w)
        if absent:
            missing.append(options.listing("weights file", absent))
    return jobs, missing


def missing_message(cells, missing: list[str]) -> str:
    return options.missing_inputs_message(PROG, f"evaluate {options.cells_text(cells)}", missing, [
        "  * all at once: add --fetch to this command; it downloads exactly the files these cells and folds",
        f"    need from the shares below into {fetch.default_data_dir()} (--data-dir DIR; --dry-run lists them).",
        "  * test LMDBs (as the paper): download the LMDB archive from",
        f"      {sources.LINKS['lmdb']}",
        "    unpack it and pass --lmdb DIR, DIR holding lmdb/, lmdb_unaligned/ (and lmdb_mixed/) with",
        "    Test_fold_is_K/{age,gender}_test_lmdb inside.",
        "  * or the raw Adience faces (aligned/ and faces/ folders) from",
        f"      {sources.LINKS['adience']}",
        "    and pass --adience DIR (the fold lists come from the upstream folds/ files).",
        "  * trained weights: download the model archive from",
        f"      {sources.LINKS['weights']}",
        "    and pass --weights DIR, DIR holding <folder>/models_test_is_K/caffenet_train_iter_N.caffemodel",
        "    (other file names: --weights-name PATTERN with {iter}, {fold}).",
        "  * mean images: fetched from the upstream repository unless --means DIR is given",
        "    (DIR/mean_image{,_unaligned,_mixed}/Test_fold_is_K/mean.binaryproto).",
    ])


# ---------------------------------------------------------------------------- cache
def _file_stamp(path) -> dict:
    p = Path(path)
    st = p.stat()
    return {"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cache_name(job: Job) -> str:
    c = job.cell
    return f"{c.folder}__test-{c.test}__iter{job.iteration}__fold{job.fold}.json"


def predictions_name(job: Job, source: str) -> str:
    c = job.cell
    default_test = "r" if c.train == "m" else c.train
    name = c.folder if c.test == default_test else f"{c.folder}_vs_{c.test}"
    if source == "readme":
        return f"{name}_fold{job.fold}_iter{job.iteration}.csv"
    return f"{name}_fold{job.fold}.csv"


# ---------------------------------------------------------------------------- evaluation
class Runner:
    def __init__(self, args, out: Path, store: AssetStore):
        self.args = args
        self.out = out
        self.store = store
        self.images = 0
        self.seconds = 0.0
        self.cached = 0

    def data(self, cell, fold):
        """(samples iterator, count or None, fingerprint)."""
        if self.args.lmdb:
            path = sources.lmdb_path(self.args.lmdb, cell.test, fold, cell.target)
            fetch.check_recorded(path / "data.mdb")  # a fetched LMDB must still be the downloaded one
            return (sources.lmdb_samples(path), sources.lmdb_count(path),
                    {"lmdb": _file_stamp(path / "data.mdb")})
        lst = self.store.fold_list(cell.test, fold, cell.target, "test")
        files = sources.adience_files(self.args.adience, cell.test, lst)
        absent = [str(p) for _, _, p in files if not p.is_file()]
        if absent:
            raise MissingInputs(f"{len(absent)} of the {len(files)} Adience images listed in {lst} are missing, "
                                f"e.g. {absent[0]} (get them from {sources.LINKS['adience']})")
        return (sources.adience_samples(self.args.adience, cell.test, lst), len(files),
                {"adience": str(Path(self.args.adience).resolve()), "list_sha256": _sha256(lst)})

    def run_job(self, job: Job) -> dict:
        cell, args = job.cell, self.args
        # the one resolution of "the model of cell X, fold K" every mode uses (deploy override or
        # upstream deploy, --weights-name pattern, --means or the upstream mean)
        files = cell_model.resolve_cell_files(cell, job.fold, args.weights, weights_name=args.weights_name,
                                              iteration=job.iteration, means_dir=args.means, store=self.store)
        deploy, mean_file = files.deploy, files.mean
        samples, count, data_fp = self.data(cell, job.fold)
        weights_sha256 = fetch.verified_sha256(job.weights)  # named in results.json; checked against a data manifest
        fingerprint = {"protocol": PROTOCOL_VERSION, "deploy_sha256": _sha256(deploy),
                       "weights": _file_stamp(job.weights), "mean_sha256": _sha256(mean_file),
                       "input_size": cell.input_size, "output_blob": cell.output_blob, **data_fp}
        cache = self.out / "cache" / cache_name(job)
        pred_file = self.out / "predictions" / predictions_name(job, args.source)
        if cache.is_file() and pred_file.is_file():
            try:
                saved = json.loads(cache.read_text(encoding="utf-8"))
                if saved.get("fingerprint") == fingerprint:
                    self.cached += 1
                    return {**saved["result"], "weights_sha256": weights_sha256}
            except (ValueError, KeyError):
                pass  # unreadable cache entry: score again

        loaded = cell_model.load_cell_files(files, device=args.device, backend=args.backend)
        model, mean = loaded.model, loaded.mean
        batch = args.batch or DEFAULT_BATCH.get(cell.family, 10)
        bar = options.progress_bar(count, f"{cell.folder} fold {job.fold} iter {job.iteration}", args.no_progress)
        t0 = time.perf_counter()
        preds = protocol.evaluate(model, samples, mean, cell.input_size, cell.output_blob, batch=batch,
                                  device=args.device, progress=bar.update)
        wall = time.perf_counter() - t0
        bar.close()
        result = protocol.fold_metrics(preds, cell.n_classes)
        result = {"fold": job.fold, "iteration": job.iteration, **result,
                  "seconds": round(wall, 3), "forward_seconds": round(preds.seconds, 3),
                  "weights": str(job.weights), "weights_sha256": weights_sha256, "mean_file": str(mean_file),
                  "deploy": str(deploy)}
        self.images += len(preds)
        self.seconds += wall
        report.write_predictions(pred_file, preds)
        report.write_json(cache, {"fingerprint": fingerprint, "result": result})
        del model
        return result

    def run_cell(self, cell, jobs: list[Job]) -> dict:
        by_iter = {}
        for job in jobs:
            by_iter.setdefault(job.iteration, []).append(self.run_job(job))
        summaries = {it: protocol.aggregate_folds(folds) for it, folds in by_iter.items()}
        if self.args.source == "readme":
            best_acc = max(by_iter, key=lambda it: (summaries[it][0]["acc"], -it))
            best_one = max(by_iter, key=lambda it: (summaries[it][0]["one_off"], -it))
            mean, std = dict(summaries[best_acc][0]), dict(summaries[best_acc][1])
            mean["one_off"], std["one_off"] = summaries[best_one][0]["one_off"], summaries[best_one][1]["one_off"]
            extra = {"source": "readme", "iteration": best_acc, "iteration_one_off": best_one,
                     "snapshots": [{"iteration": it, "mean": summaries[it][0], "std": summaries[it][1]}
                                   for it in sorted(by_iter)]}
            folds = by_iter[best_acc]
        else:
            (it, folds), = by_iter.items()
            mean, std = summaries[it]
            extra = {"source": "paper" if self.args.iter is None else "iteration", "iteration": it}
        conf = {}
        for f in folds:
            for k, m in f["confmat"].items():
                conf[k] = m if k not in conf else [[a + b for a, b in zip(r1, r2)] for r1, r2 in zip(conf[k], m)]
        extra["upstream_all"] = {m: protocol.upstream_string(mean[m], std[m]) for m in ("acc", "one_off")}
        extra["confmat"] = conf
        return report.cell_record(cell, folds, mean, std, **extra)


def run_table(args) -> int:
    """The table mode on parsed options: score the selected cells' fold models (``--fetch-assets``
    and ``--list`` first); 0 done, 2 bad options or missing inputs.  The train mode calls it on the
    table parser's reading of its "evaluate later" command (:func:`reproduce.train.eval_args`) to
    score what it trained."""
    try:
        validate(args)
        store = AssetStore(args.assets_dir, args.assets_mirror, progress=False if args.no_progress else None)
        if args.fetch_assets:
            paths = store.fetch_all()
            print(f"{len(paths)} upstream files verified under {store.root}")
            if args.table is None:
                return 0
        if args.list:
            print(grid.format_listing((args.table,) if args.table else grid.TABLES))
            return 0
        if args.table is None:
            raise UsageError("one of --table, --list or --fetch-assets is required")
        cells = grid.select(args.table, args.row, args.col)
        folds = parse_folds(args.folds)
        filled = [c for c in cells if not c.empty]
        out = Path(args.out or f"out/table{args.table}")
        check_output_dir(out, "output folder")
    except InputError as exc:
        return report_error(PROG, exc)
    records = {}
    if filled:
        jobs, missing = plan(filled, args, folds)
        if missing:
            print(missing_message(filled, missing), file=sys.stderr)
            return 2
        runner = Runner(args, out, store)
        t0 = time.perf_counter()
        try:
            for c in filled:
                records[c] = runner.run_cell(c, [j for j in jobs if j.cell == c])
        except MissingInputs as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 2
        except Exception as exc:  # noqa: BLE001 - input errors (asset, data, converter) name the file/layer
            if is_input_error(exc):
                return report_error(PROG, exc)
            raise
        wall = time.perf_counter() - t0
    all_records = [records.get(c) or report.cell_record(c) for c in cells]
    md = report.markdown(all_records, args.source)
    print(md)
    if not filled:
        print(f"\nAll selected cells of Table {args.table} are empty in the paper: nothing to evaluate.")
        return 0
    summary = {"images": runner.images, "seconds": round(runner.seconds, 3),
               "images_per_s": round(runner.images / runner.seconds, 2) if runner.seconds else None,
               "cached_fold_results": runner.cached, "wall_seconds": round(wall, 3), "device": args.device}
    settings = {"table": args.table, "rows": sorted({c.row for c in cells}, key=grid.ROWS[args.table].index),
                "cols": sorted({c.col for c in cells}), "folds": folds, "source": args.source, "iter": args.iter,
                "lmdb": args.lmdb, "adience": args.adience, "means": args.means, "weights": args.weights,
                "weights_name": args.weights_name, "batch": args.batch, "device": args.device}
    out.mkdir(parents=True, exist_ok=True)
    report.write_json(out / "results.json", {
        "generated_by": "reproduce/run.py", "protocol": protocol.__doc__.strip().split("\n\n")[0],
        "settings": settings, "summary": summary, "cells": all_records})
    report.write_csv(out / "results.csv", all_records)
    chart = report.bar_chart(out / "results.png", all_records)
    notes = []
    if folds != list(range(5)):
        notes.append(f"only folds {','.join(map(str, folds))}: means are over these folds, the paper uses all 5")
    if args.source == "readme":
        notes.append("README source: best snapshot <= 100k iterations, accuracy and 1-off maximised independently")
    for c in filled:
        notes += [f"{c.row} {c.col}: {n}" for n in c.notes]
    if notes:
        print("\nNotes:\n" + "\n".join(f"* {n}" for n in notes))
    rate = f"{summary['images_per_s']} images/s" if summary["images_per_s"] else "all fold results from the cache"
    print(f"\nScored {runner.images} images in {runner.seconds:.1f} s ({rate}, 10 crops each, device "
          f"{args.device}); {runner.cached} fold result(s) reused from {out / 'cache'}.")
    print(f"Wrote {out / 'results.json'}, {out / 'results.csv'}, {out / 'predictions'}"
          + (f", {chart}" if chart else ""))
    return 0


