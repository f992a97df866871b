#!/usr/bin/env python
"""The paper's training runs: ``run.py --table T --row R --col C --train``.

    python reproduce/run.py --table 2 --row m,w --train --lmdb DATA --init INIT [--folds 0] [--out DIR]
    python reproduce/run.py --table 3 --row i --col A --train --adience ADIENCE --iters 5000 --no-eval
    python reproduce/run.py train --table 3 --row i --col A ...   (the subcommand style, same options)
    python -m reproduce.train ...same options...

For every selected cell (deduplicated by model folder: Tables 4/5 reuse the [i]/[r] models) and
every fold K:

1. the upstream ``model_definitions/<folder>/train_val_test_fold_is_K.prototxt`` and
   ``solver_test_fold_is_K.prototxt`` (via :class:`reproduce.assets.AssetStore`) are rewritten
   *as text* into ``<weights>/<folder>/``: every ``source``/``mean_file`` is mapped by its path
   suffix (``lmdb{sfx}/Test_fold_is_K/<t>_<split>_lmdb`` -> ``--lmdb`` DIR;
   ``mean_image{sfx}/Test_fold_is_K/mean.binaryproto`` -> ``--means`` DIR or the upstream mean
   images); a path that cannot be mapped is an error naming file and line.  The solver keeps the
   committed ``base_lr``/``gamma``/``stepsize``/``momentum``/``weight_decay`` (including gamma 0.3
   in folds 1-3 of gender AdienceNet-mixed) and gets the REAL schedule of spec 3.2 instead of the
   committed 950/980/2400 iterations: ``max_iter`` 50k (A, C), 170k (G), 125k (V), x2 for [m];
   snapshots every 1000 (A, C, G) / 2500 (V).  ``--iters N`` replaces the length (snapshots
   every ``min(N, family interval)`` and at the end).
2. Q-G1: the committed gender [m,n] GoogLeNet files are copies of the [r,n] ones (they read
   ``lmdb_unaligned``/``mean_image_unaligned``).  By default this cell is trained on the MIXED data
   (``lmdb_mixed``, ``mean_image_mixed``) as the paper's row says, and the run is flagged;
   ``--q-g1 committed`` trains on what the committed file says.
3. initialisation as ``caffe train --weights``: fillers first, then blobs copied by layer name from
   ``--init DIR``: ``bvlc_reference_caffenet.caffemodel`` (C [*,n]), ``bvlc_googlenet.caffemodel``
   (G [*,n]), ``VGG_ILSVRC_16_layers.caffemodel`` (V [*,n]), ``dex_imdb_wiki.caffemodel`` (V [*,w]);
   renamed classifiers keep their fillers; scratch cells use none.
4. :class:`converters.solver.Solver` trains with working directory
   ``<weights>/<folder>/models_test_is_K/`` and ``snapshot_prefix "caffenet_train"``, i.e. the
   upstream archive layout ``<weights>/<folder>/models_test_is_K/caffenet_train_iter_N.caffemodel``
   (+ ``.solverstate`` and its resume sidecar), a per-iteration ``caffenet_train_log.csv``, a
   ``caffenet_train_curve.png`` and ``train_info.json`` (settings, deviations, flags, timings).
   A rerun resumes from the newest ``.solverstate`` (``--no-resume`` starts again at 0); a fold whose
   final snapshot exists is skipped.  Ctrl-C snapshots and exits 130; rerun to continue.
5. unless ``--no-eval``, the table mode (:func:`reproduce.table.run_table`, called as a function
   with the options :func:`eval_argv` prints) scores the new final snapshots (``--weights
   <weights>``; ``--iter N`` with ``--iters N``) and writes results.json there.

``<weights>`` is ``--weights DIR`` when given, else ``<out>/weights``; ``<out>`` defaults to
``out/table<T>``.  With ``--adience DIR`` instead of ``--lmdb``, the train/val LMDBs are built first
from the raw faces and the upstream fold lists under ``<out>/data/`` (256x256 as convert_imageset,
coarse-tilt faces squared; the shuffle is seeded, upstream's was not).  Options that deviate from the paper (``--iters``, ``--batch-size``,
``--test-iter``, ``--seed``, ``--q-g1 committed``) are recorded in ``train_info.json`` and in the
``training`` entry of results.json.

Spreading a grid over machines: one job per (cell, fold), e.g.
``run.py --table 2 --row i --col G --folds 3 --train --no-eval --lmdb D --init I --weights W``;
jobs of different (folder, fold) write disjoint folders, so they may share ``W`` on a network file
system (a lock file ``models_test_is_K/train.lock`` stops two jobs on the same fold); evaluate once
at the end with ``run.py --table 2 --lmdb D --weights W``.  The Solver is single-process (no
torchrun / DistributedDataParallel support); it runs on the CPU (``--device`` is passed to it only
if its constructor grows a ``device`` argument; the evaluation always honours ``--device``).
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

from reproduce import fetch, grid, options, sources, table  # noqa: E402
from converters.errors import InputError, is_input_error, report as report_error  # noqa: E402
from reproduce.assets import VARIANT_SUFFIX, AssetError, AssetStore  # noqa: E402,F401
# the upstream prototxt rewrite and the Adience LMDB building are modules of their own; their
# names stay importable from here
from reproduce.upstream_rewrite import (INIT_FILES, QG1_FOLDER, SNAPSHOT_PREFIX, SUFFIX_VARIANT,  # noqa: E402,F401
                                        Rewritten, TrainError, init_file, lmdb_dir, rewrite_solver,
                                        rewrite_train_val, training_variant)
from reproduce.adience_lmdb import COARSE, LANDMARK, adience_image, build_adience_lmdbs  # noqa: E402,F401

PROG = "run.py"

# spec 3.2: (final iteration, snapshot interval) per family; x2 iterations for [m]
SCHEDULE = {"adiencenet": (50_000, 1_000), "caffenet": (50_000, 1_000), "googlenet": (170_000, 1_000),
            "vgg16": (125_000, 2_500)}


# ---------------------------------------------------------------------------- options
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The train mode's options: the cells and folds, the data, where the snapshots go, how the
    evaluation runs (the table mode's options) and the training options."""
    options.add_cell_arguments(parser, "what to train")
    inp = options.add_data_arguments(parser)
    options.add_weights_arguments(inp)
    table.add_running_arguments(parser)
    options.add_asset_arguments(parser.add_argument_group("upstream files"))
    fetch.add_fetch_arguments(parser)
    g = parser.add_argument_group("training (see reproduce/train.py)")
    g.add_argument("--train", action="store_true",
                   help="train the selected cells (upstream train_val/solver, the paper's schedule) and then "
                        "evaluate them; snapshots go to --weights DIR or <out>/weights")
    g.add_argument("--init", metavar="DIR",
                   help="folder with the pretrained starting points: bvlc_reference_caffenet.caffemodel (C [*,n]), "
                        "bvlc_googlenet.caffemodel (G [*,n]), VGG_ILSVRC_16_layers.caffemodel (V [*,n]), "
                        "dex_imdb_wiki.caffemodel (V [*,w]); scratch cells need none")
    g.add_argument("--iters", type=int, metavar="N",
                   help="train N iterations instead of the paper's 50k (A, C) / 170k (G) / 125k (V), x2 for [m] "
                        "(DEVIATES from the paper); the evaluation then scores iteration N")
    g.add_argument("--snapshot-every", type=int, metavar="N",
                   help="snapshot interval (default: 1000 for A/C/G, 2500 for V as upstream; with --iters "
                        "min(N, that))")
    g.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue from the newest .solverstate of each fold (default on); --no-resume "
                        "starts again at iteration 0")
    g.add_argument("--no-eval", action="store_true", help="train only, do not evaluate the snapshots")
    g.add_argument("--batch-size", type=int, metavar="N",
                   help="set every Data layer's batch_size to N (tests/debugging; DEVIATES from the paper's "
                        "50/32/10)")
    g.add_argument("--test-iter", type=int, metavar="N",
                   help="validation batches per test pass during training (upstream 1000 for A/C/G, 10 for V); "
                        "0 switches the validation passes off.  Only the log changes, never the weights")
    g.add_argument("--seed", type=int, help="solver random_seed (upstream: unseeded)")
    g.add_argument("--q-g1", choices=("mixed", "committed"), default="mixed",
                   help="gender [m,n] GoogLeNet (quirk Q-G1): train on the mixed data as the paper's row says "
                        "(default) or on the [r] data the committed file points to")
    g.add_argument("--threads", type=int, metavar="N", help="torch CPU threads while training")
    g.add_argument("--quiet", action="store_true", help="no Caffe-style display/test lines from the solver")


# ---------------------------------------------------------------------------- schedule
def schedule(cell) -> tuple[int, int]:
    """(max_iter, snapshot interval) of spec 3.2 for a grid cell: x2 iterations for [m]."""
    final, step = SCHEDULE[cell.family]
    return (2 * final if cell.train == "m" else final), step


def effective_schedule(cell, iters: int | None = None, snapshot_every: int | None = None) -> tuple[int, int]:
    max_iter, step = schedule(cell)
    if iters is not None:
        max_iter = int(iters)
        step = min(step, max_iter)
    if snapshot_every is not None:
        step = int(snapshot_every)
    return max_iter, step


# ---------------------------------------------------------------------------- planning
@dataclass
class TrainJob:
    cell: grid.Cell            # first selected cell of the folder
    fold: int
    variant: str               # data variant trained on
    max_iter: int
    snapshot: int
    init: Path | None
    folder_dir: Path           # <weights>/<folder>
    train_val: Path = None
    solver: Path = None
    rewritten: Rewritten = None
    solver_changes: list = field(default_factory=list)
    flags: list = field(default_factory=list)
    solver_text: str = ""                           # rewritten files, written by write_files()
    train_val_header: str = ""

    @property
    def folder(self) -> str:
        return self.cell.folder

    @property
    def models_dir(self) -> Path:
        return self.folder_dir / f"models_test_is_{self.fold}"

    def snapshot_file(self, it: int, ext: str = "caffemodel") -> Path:
        return self.models_dir / f"{SNAPSHOT_PREFIX}_iter_{it}.{ext}"

    @property
    def label(self) -> str:
        return f"{self.folder} fold {self.fold}"


def unique_folders(cells) -> list:
    seen, out = set(), []
    for c in cells:
        if not c.empty and c.folder not in seen:
            seen.add(c.folder)
            out.append(c)
    return out


def make_jobs(cells, folds, args, weights_root: Path) -> list[TrainJob]:
    jobs = []
    for c in unique_folders(cells):
        max_iter, step = effective_schedule(c, args.iters, args.snapshot_every)
        name = init_file(c)
        init = (Path(args.init) / name if args.init else Path(name)) if name else None
        variant = training_variant(c, args.q_g1)
        for k in folds:
            job = TrainJob(c, k, variant, max_iter, step, init, weights_root / c.folder)
            if c.folder == QG1_FOLDER:
                job.flags.append("Q-G1: the committed train_val of gender_finetuning_googlenet_mixed is a copy of the "
                                 "[r,n] one (lmdb_unaligned, mean_image_unaligned); "
                                 + ("trained on the MIXED data (lmdb_mixed, mean_image_mixed) as the paper's [m,n] row "
                                    "says" if variant == "m" else
                                    "trained on the [r] data as committed (--q-g1 committed)"))
            jobs.append(job)
    return jobs


def prepare(job: TrainJob, args, store: AssetStore, data_root: Path) -> None:
    """Fetch the upstream files of a job and rewrite them (in memory; written by :func:`write_files`)."""
    k = job.fold
    tv_src = store.model_file(job.folder, f"train_val_test_fold_is_{k}.prototxt")
    sv_src = store.model_file(job.folder, f"solver_test_fold_is_{k}.prototxt")

    def mean_path(variant, fold):
        if args.means:
            return sources.mean_path(args.means, variant, fold)
        return store.mean(variant, fold)

    job.rewritten = rewrite_train_val(
        tv_src.read_text(encoding="utf-8"), file=tv_src, fold=k, lmdb_root=data_root, mean_path=mean_path,
        variant=job.variant, remap=job.folder == QG1_FOLDER, batch_size=args.batch_size)
    job.train_val = job.folder_dir / f"train_val_test_fold_is_{k}.prototxt"
    job.solver = job.folder_dir / f"solver_test_fold_is_{k}.prototxt"
    text, job.solver_changes = rewrite_solver(
        sv_src.read_text(encoding="utf-8"), file=f"model_definitions/{job.folder}/{sv_src.name}",
        net=f"../{job.train_val.name}", max_iter=job.max_iter, snapshot=job.snapshot,
        test_iter=args.test_iter, seed=args.seed)
    job.solver_text = text
    job.train_val_header = (f"# model_definitions/{job.folder}/{tv_src.name}, rewritten by reproduce/train.py:\n"
                             + "".join(f"#   upstream {c}\n" for c in job.rewritten.remapped + job.rewritten.changes))


def write_files(job: TrainJob) -> None:
    from converters.formats import atomic_write_bytes, read_net, read_solver
    job.folder_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(job.train_val, (job.train_val_header + job.rewritten.text).encode("utf-8"))
    atomic_write_bytes(job.solver, job.solver_text.encode("utf-8"))
    read_net(job.train_val)      # both must still parse
    read_solver(job.solver)


# ---------------------------------------------------------------------------- inputs
def check_inputs(jobs: list[TrainJob], cells, folds, args) -> tuple[list[str], set]:
    """Missing-input lines and the kinds of inputs they concern ({'lmdb', 'init', 'means', 'adience'})."""
    missing, kinds = [], set()
    if not args.lmdb and not args.adience:
        missing.append("training data: neither --lmdb DIR nor --adience DIR was given")
        kinds.add("lmdb")
    elif args.lmdb:
        need = []
        for job in jobs:
            need += [p for _, p in job.rewritten.lmdbs]
        if not args.no_eval:
            need += [sources.lmdb_path(args.lmdb, c.test, k, c.target) for c in cells if not c.empty for k in folds]
        absent = [p for p in dict.fromkeys(need) if not (Path(p) / "data.mdb").is_file()]
        if absent:
            missing.append(options.listing("LMDB", absent))
            kinds.add("lmdb")
    else:
        variants = {j.variant for j in jobs} | ({c.test for c in cells if not c.empty} if not args.no_eval else set())
        dirs = ([sources.ADIENCE_DIRS["i"]] if variants & {"i", "m"} else []) + \
            ([sources.ADIENCE_DIRS["r"]] if variants & {"r", "m"} else [])
        for d in dirs:
            if not (Path(args.adience) / d).is_dir():
                missing.append(f"raw Adience images: {Path(args.adience) / d} does not exist")
                kinds.add("adience")
    if args.means:
        absent = sorted({p for j in jobs for p in j.rewritten.means if not Path(p).is_file()})
        if absent:
            missing.append(options.listing("mean image", absent))
            kinds.add("means")
    absent = sorted({j.init for j in jobs if j.init is not None and not j.init.is_file()})
    if any(j.init is not None for j in jobs) and not args.init:
        missing.append("pretrained starting points: --init DIR was not given (needed: "
                       + ", ".join(sorted({j.init.name for j in jobs if j.init is not None})) + ")")
        kinds.add("init")
    elif absent:
        missing.append(options.listing("starting-point file", absent))
        kinds.add("init")
    return missing, kinds


def missing_message(cells, missing: list[str], kinds: set) -> str:
    lines = []
    if kinds & {"lmdb", "adience"}:
        lines += [
            "  * training/validation/test LMDBs (as the paper): download the LMDB archive from",
            f"      {sources.LINKS['lmdb']}",
            "    unpack it and pass --lmdb DIR, DIR holding lmdb/, lmdb_unaligned/, lmdb_mixed/ with",
            "    Test_fold_is_K/{age,gender}_{train,val,test}_lmdb inside;",
            "  * or the raw Adience faces (aligned/ and faces/ folders) from",
            f"      {sources.LINKS['adience']}",
            "    and pass --adience DIR: the train/val LMDBs are then built from the upstream fold lists",
            "    under <out>/data/ (256x256, as convert_imageset).",
        ]
    if "init" in kinds:
        lines += [
            "  * pretrained starting points: download them from",
            f"      {sources.LINKS['init']}",
            "    and put them into --init DIR: bvlc_reference_caffenet.caffemodel (C [*,n]), bvlc_googlenet.caffemodel",
            "    (G [*,n]), VGG_ILSVRC_16_layers.caffemodel (V [*,n]), dex_imdb_wiki.caffemodel (V [*,w], IMDB-WIKI",
            f"    DEX model, also {sources.LINKS['imdbwiki']}); cells trained from scratch need none.",
        ]
    if "means" in kinds:
        lines += ["  * mean images: DIR/mean_image{,_unaligned,_mixed}/Test_fold_is_K/mean.binaryproto for --means DIR;",
                  "    without --means the upstream mean images are fetched."]
    filled = [c for c in cells if not c.empty]
    return options.missing_inputs_message(PROG, f"train {options.cells_text(filled)}", missing, lines)


# ---------------------------------------------------------------------------- training one fold
def snapshots(models_dir: Path, ext: str = "solverstate") -> dict[int, Path]:
    rx = re.compile(re.escape(SNAPSHOT_PREFIX) + r"_iter_(\d+)\." + ext + r"\Z")
    found = {}
    if models_dir.is_dir():
        for p in models_dir.iterdir():
            m = rx.match(p.name)
            if m and p.is_file():
                found[int(m.group(1))] = p
    return found


def resume_point(job: TrainJob) -> Path | None:
    """Newest .solverstate (with its caffemodel) below the job's final iteration."""
    states = snapshots(job.models_dir)
    ok = [it for it, p in states.items() if it < job.max_iter and job.snapshot_file(it).is_file()]
    return states[max(ok)] if ok else None


class Lock:
    """``models_test_is_K/train.lock``: one training job per (folder, fold), also across machines."""

    def __init__(self, path: Path):
        self.path = path
        self.held = False

    def __enter__(self):
        if int(os.environ.get("RANK", "0")) > 0:  # torchrun: rank 0 holds the lock for the whole group
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    other = json.loads(self.path.read_text())
                except (OSError, ValueError):
                    other = {}
                if other.get("host") == me["host"] and not _alive(other.get("pid")):
                    self.path.unlink(missing_ok=True)  # stale lock of a dead process on this machine
                    continue
                raise TrainError(f"{self.path}: another job trains this fold ({other.get('host', '?')} pid "
                                 f"{other.get('pid', '?')} since {other.get('since', '?')}); remove the file if "
                                 f"that job is gone") from None
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self.held = True
            return self
        raise TrainError(f"{self.path}: cannot take the lock")

    def __exit__(self, *exc):
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
        return False


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, TypeError, ValueError):
        return False
    return True


def solver_kwargs(args) -> tuple[dict, str | None]:
    """Keyword arguments for Solver beyond the defaults; a note when --device cannot be passed."""
    from converters.solver import Solver
    params = inspect.signature(Solver.__init__).parameters
    kw, note = {}, None
    if "device" in params:
        kw["device"] = args.device
    elif args.device != "cpu":
        note = (f"converters.solver.Solver has no device option: training runs on the CPU "
                f"(--device {args.device} is used for the evaluation)")
    if "distributed" in params and int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under torchrun
        kw["distributed"] = True
    return kw, note


def _last_test(solver) -> dict:
    for it, results in reversed(solver.test_results):
        if results:
            return {"iter": it, **{k: v for k, v in results[0].items()}}
    return {}


def train_job(job: TrainJob, args, extra_kwargs: dict) -> dict:
    """Train one (folder, fold) to ``job.max_iter``; returns the run record (also train_info.json)."""
    from converters.solver import Solver
    final = job.snapshot_file(job.max_iter)
    info_path = job.models_dir / "train_info.json"
    record = {"folder": job.folder, "fold": job.fold, "table_cell": f"{job.cell.row} {job.cell.col}",
              "target": job.cell.target, "family": job.cell.family, "init": job.cell.init,
              "train_variant": job.variant, "max_iter": job.max_iter, "snapshot": job.snapshot,
              "init_weights": str(job.init) if job.init else None, "train_val": str(job.train_val),
              "solver": str(job.solver), "final_snapshot": str(final), "flags": list(job.flags),
              "deviations": deviations(args, job.cell), "solver_changes": job.solver_changes,
              "data": [str(p) for _, p in job.rewritten.lmdbs], "means": sorted({str(p) for p in job.rewritten.means})}
    if args.resume and final.is_file():
        record.update(status="done before", seconds=0.0)
        _say(args, f"[train] {job.label}: {final.name} exists, nothing to do")
        return record
    later = sorted(it for it in snapshots(job.models_dir) if it > job.max_iter)
    if later and args.resume and resume_point(job) is None:
        raise TrainError(f"{job.models_dir} holds snapshots up to iteration {later[-1]}, beyond the requested "
                         f"{job.max_iter}: score one of them with --iter N (without --train), or retrain with "
                         f"--no-resume or another --weights DIR")
    with Lock(job.models_dir / "train.lock"):
        write_files(job)
        resume = resume_point(job) if args.resume else None
        if not args.resume and snapshots(job.models_dir):
            _say(args, f"[train] {job.label}: --no-resume: starting at iteration 0; existing snapshots in "
                       f"{job.models_dir} are overwritten when reached, the log starts afresh")
        start = f"resuming from {resume.name}" if resume else "from " + (
            f"{job.init.name}" if job.init else "scratch (fillers)")
        _say(args, f"[train] {job.label} ({job.cell.row} {job.cell.col}, [{job.variant}] data): "
                   f"{job.max_iter} iterations, snapshots every {job.snapshot}, {start}")
        for f in job.flags:
            _say(args, f"[train]   FLAG {f}")
        t0 = time.perf_counter()
        solver = Solver(str(job.solver), root=job.models_dir, weights=None if resume or not job.init else str(job.init),
                        progress=not args.no_progress, verbose=not args.quiet, **extra_kwargs)
        start_iter = 0
        try:
            if resume is not None:
                solver.restore(str(resume))
                start_iter = solver.iter
            solver.solve()
        except KeyboardInterrupt:
            record.update(status="interrupted", iteration=solver.iter, seconds=round(time.perf_counter() - t0, 3))
            _write_info(info_path, record)
            raise
        finally:
            for feed in [solver.train_feed] + list(solver.test_feeds):
                try:
                    feed.close()
                except Exception:  # noqa: BLE001
                    pass
        seconds = time.perf_counter() - t0
        if not final.is_file():
            raise TrainError(f"training {job.label} ended without writing {final}")
        record.update(status="trained", start_iter=start_iter, iteration=solver.iter, seconds=round(seconds, 3),
                      seconds_per_iter=round(seconds / max(1, solver.iter - start_iter), 4),
                      final_loss=solver.losses[-1] if solver.losses else None, last_test=_last_test(solver),
                      log=str(job.models_dir / f"{SNAPSHOT_PREFIX}_log.csv"), curve=str(job.models_dir / f"{SNAPSHOT_PREFIX}_curve.png"))
        _write_info(info_path, record)
        _say(args, f"[train] {job.label}: done, {final} ({seconds:.1f} s)")
    return record


def _write_info(path: Path, record: dict) -> None:
    if int(os.environ.get("RANK", "0")) > 0:  # torchrun: only rank 0 writes
        return
    from reproduce.report import write_json
    runs = []
    if path.is_file():
        try:
            runs = json.loads(path.read_text(encoding="utf-8")).get("runs", [])
        except (OSError, ValueError):
            runs = []
    write_json(path, {**record, "runs": runs + [{k: record.get(k) for k in
                                                  ("status", "start_iter", "iteration", "seconds", "deviations")}]})


def deviations(args, cell) -> list[str]:
    out = []
    if args.iters is not None:
        out.append(f"--iters {args.iters} (paper: {schedule(cell)[0]} iterations)")
    if args.snapshot_every is not None:
        out.append(f"--snapshot-every {args.snapshot_every} (paper: {schedule(cell)[1]})")
    if args.batch_size is not None:
        out.append(f"--batch-size {args.batch_size} in every Data layer (paper: the committed 50/32/10)")
    if args.test_iter is not None:
        out.append(f"--test-iter {args.test_iter} (validation log only, weights unaffected)")
    if args.seed is not None:
        out.append(f"--seed {args.seed} (upstream unseeded)")
    if cell.folder == QG1_FOLDER and args.q_g1 == "committed":
        out.append("--q-g1 committed: [m,n] G gender trained on the [r] data")
    return out


def _say(args, msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- main
def validate(args) -> None:
    if args.table is None:
        raise TrainError("--train needs --table (and usually --row/--col/--folds)")
    if args.iter is not None:
        raise TrainError("--iter selects a snapshot to score; with --train use --iters N for the training length")
    for name, v in (("iters", args.iters), ("snapshot_every", args.snapshot_every), ("batch_size", args.batch_size),
                    ("threads", args.threads)):
        if v is not None and v <= 0:
            raise TrainError(f"--{name.replace('_', '-')}: expected a positive number, got {v}")
    if args.test_iter is not None and args.test_iter < 0:
        raise TrainError(f"--test-iter: expected 0 or more, got {args.test_iter}")
    if args.init and not Path(args.init).is_dir():
        raise TrainError(f"--init {args.init}: not a folder")


def eval_argv(args, weights_root: Path, out: Path, folds) -> list[str]:
    """The table mode's command line that scores what was trained: the training run's cells, data
    and running options with the trained weights, the output folder, its folds and (with ``--iters``)
    that iteration."""
    argv = ["--table", str(args.table), "--folds", ",".join(map(str, folds)), "--weights", str(weights_root),
            "--out", str(out), "--source", args.source, "--device", args.device]
    for r in args.row or []:
        argv += ["--row", r]
    for c in args.col or []:
        argv += ["--col", c]
    for opt, v in (("lmdb", args.lmdb), ("adience", args.adience), ("means", args.means), ("batch", args.batch),
                   ("assets-mirror", args.assets_mirror), ("assets-dir", args.assets_dir)):
        if v is not None:
            argv += [f"--{opt}", str(v)]
    if args.weights_name != sources.DEFAULT_WEIGHTS_NAME:
        argv += ["--weights-name", args.weights_name]
    if args.backend != "auto":
        argv += ["--backend", args.backend]
    if args.iters is not None:
        argv += ["--iter", str(args.iters)]
    if args.no_progress:
        argv.append("--no-progress")
    return argv


def eval_args(args, weights_root: Path, out: Path, folds) -> argparse.Namespace:
    """The table mode's options for scoring what was trained: :func:`eval_argv` read by the table
    mode's own parser, so the evaluation is exactly the printed ``Evaluate later with`` command."""
    from reproduce.modes import build_parser
    return build_parser("table").parse_args(eval_argv(args, weights_root, out, folds))


def run(args) -> int:
    """``run.py --train`` / ``run.py train``: ``--fetch`` first, then :func:`run_train` evaluating
    with the table mode."""
    try:
        if args.out:
            from converters.outputs import check_output_dir
            check_output_dir(args.out, "--out folder")   # before training: a bad --out must not lose the work
        options.validate(args)
    except InputError as exc:
        return report_error(PROG, exc)
    code = fetch.prepare(args)   # --fetch: the data and starting points, then --lmdb/--init point there
    if code is not None:
        return code
    return run_train(args, evaluate=table.run_table)


def run_train(args, evaluate=None) -> int:
    """``run.py --train``: train the selected cells and folds, then evaluate them with
    ``evaluate(options)`` (the table mode's :func:`reproduce.table.run_table`) unless --no-eval or no
    ``evaluate`` is given."""
    try:
        validate(args)
        options.validate(args)
        cells = grid.select(args.table, args.row, args.col)
        folds = options.parse_folds(args.folds)
    except InputError as exc:
        return report_error(PROG, exc)
    filled = [c for c in cells if not c.empty]
    if not filled:
        print(f"All selected cells of Table {args.table} are empty in the paper: nothing to train.")
        return 0
    out = Path(args.out or f"out/table{args.table}")
    weights_root = Path(args.weights) if args.weights else out / "weights"
    data_root = Path(args.lmdb) if args.lmdb else out / "data"
    store = AssetStore(args.assets_dir, args.assets_mirror, progress=False if args.no_progress else None)
    try:
        jobs = make_jobs(filled, folds, args, weights_root)
        for job in jobs:
            prepare(job, args, store, data_root)
        missing, kinds = check_inputs(jobs, filled, folds, args)
        if missing:
            print(missing_message(filled, missing, kinds), file=sys.stderr)
            return 2
        if args.adience:
            missing = build_adience_lmdbs(jobs, args, store, data_root, not args.no_progress)
            if missing:
                print(missing_message(filled, missing, {"adience"}), file=sys.stderr)
                return 2
    except InputError as exc:
        return report_error(PROG, exc)

    import torch
    threads_before = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    kwargs, note = solver_kwargs(args)
    if note:
        _say(args, f"[train] note: {note}")
    records = []
    t0 = time.perf_counter()
    try:
        for i, job in enumerate(jobs, 1):
            _say(args, f"[train] job {i}/{len(jobs)}")
            records.append(train_job(job, args, kwargs))
    except KeyboardInterrupt:
        print(f"{PROG}: training interrupted; the last iteration was snapshotted. Run the same command again to "
              f"resume.", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - train/format/solver errors name the file or layer
        if is_input_error(exc):
            return report_error(PROG, exc)
        raise
    finally:
        torch.set_num_threads(threads_before)
    if int(os.environ.get("RANK", "0")) > 0:  # torchrun: rank 0 writes the summary and evaluates
        return 0
    summary = {"generated_by": "reproduce/train.py", "table": args.table, "folds": folds,
               "weights": str(weights_root), "wall_seconds": round(time.perf_counter() - t0, 3),
               "solver_device": kwargs.get("device", "cpu"), "notes": [note] if note else [],
               "deviations": sorted({d for r in records for d in r["deviations"]}),
               "flags": sorted({f for r in records for f in r["flags"]}), "runs": records}
    from reproduce.report import write_json
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "training.json", summary)
    for r in records:
        extra = f", last validation {_fmt_test(r.get('last_test'))}" if r.get("last_test") else ""
        print(f"trained {r['folder']} fold {r['fold']}: {r['status']}, iteration {r.get('iteration', r['max_iter'])}"
              f" -> {r['final_snapshot']}{extra}")
    for f in summary["flags"]:
        print(f"FLAG {f}")
    if summary["deviations"]:
        print("DEVIATES from the paper: " + "; ".join(summary["deviations"]))
    print(f"Wrote {out / 'training.json'}")
    if args.no_eval or evaluate is None:
        print(f"Evaluate later with: {PROG} " + " ".join(eval_argv(args, weights_root, out, folds)))
        return 0
    rc = evaluate(eval_args(args, weights_root, out, folds))
    if rc == 0 and (out / "results.json").is_file():
        data = json.loads((out / "results.json").read_text(encoding="utf-8"))
        data["training"] = {k: summary[k] for k in ("weights", "deviations", "flags", "notes", "solver_device")}
        write_json(out / "results.json", data)
    return rc


def _fmt_test(t: dict) -> str:
    keys = [k for k in t if "accuracy" in k or "top-1" in k]
    return ", ".join(f"{k} {t[k]:.3f}" for k in keys[:2]) + f" (iter {t['iter']})" if keys else f"(iter {t['iter']})"


if __name__ == "__main__":
    # ``python -m reproduce.train ...``: ``run.py train ...`` (an entry point: importing run.py here
    # cannot form an import cycle, this module is then ``__main__``)
    from reproduce import run as run_py
    sys.exit(run_py.main(["train", *sys.argv[1:]]))
