"""Mutation fuzzer for the CLI's bad-input contract (see ``docs/robustness.md``).

What it owns: taking real Caffe files as seeds (``../shared/caffe-oracle`` or
``$CAFFE_ORACLE_DIR``: caffemodels, binaryprotos, net and solver prototxts, an LMDB; files the
project writes itself when that folder is absent), breaking them in seeded random ways (bit
flips, truncation, spliced and repeated bytes, extreme numbers in text, huge blank runs), running
each variant through ``python -m converters`` (``inspect``, ``convert``) and checking the
contract:

* exit code 0 or 2, never a signal (SIGBUS, SIGSEGV, SIGKILL);
* no ``Traceback`` on stderr, and on exit 2 at most three lines, one naming the file;
* within the address-space cap (``RLIMIT_AS``, 4 GB by default) and the time limit (60 CPU
  seconds, ``RLIMIT_CPU``; wall clock 10x that, so a loaded machine does not fail a variant).

Each variant runs in a child process.  The default ``fork`` runner imports the package once and
forks a child per variant (about 20x faster than a fresh interpreter); ``--runner subprocess``
starts a real ``python -m converters`` for every variant.  Both apply the same limits.

    python tests/fuzz.py --count 2000 --seed 1 --keep /tmp/fuzz-failures

prints a summary (variants, outcomes per seed kind and command) and exits 1 when any variant
broke the contract.  ``tests/test_fuzz.py`` runs a small seeded sample in the normal suite.
"""
from __future__ import annotations

import argparse
import json
import io
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MEM_CAP = 4 << 30           # bytes of address space per child
TIME_LIMIT = 60.0           # CPU seconds per variant (RLIMIT_CPU; a busy loop ends there)
WALL_FACTOR = 10            # wall-clock safety net: a loaded CI machine stretches wall time, not CPU time
MAX_STDERR_LINES = 3
TEXT_NUMBERS = ["0", "-1", "1", "2147483647", "2147483648", "4294967295", "-2147483648",
                "18446744073709551615", "1e308", "-1e308", "nan", "inf", "-0", "1e-45", "65535",
                "3"]


# ------------------------------------------------------------------ seeds
@dataclass
class Seed:
    kind: str                 # caffemodel, mean, net, solver, lmdb
    path: Path                # a file, or the LMDB folder
    partner: Path | None = None   # the prototxt of a caffemodel (for `convert`)


def oracle_dir() -> Path | None:
    env = os.environ.get("CAFFE_ORACLE_DIR")
    p = Path(env) if env else REPO.parent / "shared" / "caffe-oracle"
    return p if p.is_dir() else None


def oracle_seeds(root: Path) -> list[Seed]:
    """Small real files of every kind from the oracle folder (the smallest of each, so a run
    stays fast)."""
    seeds = []
    nets = root / "nets"
    gender = root / "protocol" / "models" / "gender_net_definitions"
    pairs = [(gender / "models_test_is_0" / "weights.caffemodel", gender / "deploy.prototxt"),
             (nets / "v1_caffemodel" / "weights_v1.caffemodel", nets / "v1_caffemodel" / "deploy.prototxt"),
             (root / "solver" / "sgd_step_itersize2" / "init.caffemodel",
              root / "solver" / "sgd_step_itersize2" / "train_val.prototxt")]
    for model, proto in pairs:
        if model.is_file() and proto.is_file():
            seeds.append(Seed("caffemodel", model, proto))
            seeds.append(Seed("net", proto))
    for proto in (nets / "googlenet_age" / "deploy.prototxt", nets / "v1_caffemodel" / "weights_v1_structure.prototxt",
                  root / "transform" / "train_val.prototxt"):
        if proto.is_file():
            seeds.append(Seed("net", proto))
    for solver in sorted((root / "solver").glob("*/solver.prototxt"))[:2]:
        seeds.append(Seed("solver", solver))
    for mean in sorted((root / "protocol" / "mean_image").glob("*/mean.binaryproto"))[:1]:
        seeds.append(Seed("mean", mean))
    for db in sorted((root / "protocol" / "lmdb").glob("*/*_lmdb"))[:1]:
        if (db / "data.mdb").is_file():
            seeds.append(Seed("lmdb", db))
    return seeds


def generated_seeds(folder: Path) -> list[Seed]:
    """Tiny files of every kind written by the project itself (no oracle needed)."""
    import numpy as np

    from converters.formats import write_lmdb, write_mean
    from converters.proto import caffe_pb2 as pb

    folder.mkdir(parents=True, exist_ok=True)
    net_text = ('name: "tiny"\ninput: "data"\ninput_shape { dim: 1 dim: 3 dim: 12 dim: 12 }\n'
                'layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"\n'
                '  convolution_param { num_output: 4 kernel_size: 3 stride: 1 pad: 1 } }\n'
                'layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }\n'
                'layer { name: "norm1" type: "LRN" bottom: "conv1" top: "norm1"\n'
                '  lrn_param { local_size: 3 alpha: 0.0001 beta: 0.75 } }\n'
                'layer { name: "pool1" type: "Pooling" bottom: "norm1" top: "pool1"\n'
                '  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n'
                'layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc"\n'
                '  inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }\n'
                'layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }\n')
    (folder / "net.prototxt").write_text(net_text)
    rng = np.random.default_rng(0)
    net = pb.NetParameter(name="tiny")
    for name, shapes in (("conv1", [(4, 3, 3, 3), (4,)]), ("fc", [(2, 144), (2,)])):
        layer = net.layer.add(name=name, type="Convolution" if name == "conv1" else "InnerProduct")
        for shape in shapes:
            blob = layer.blobs.add()
            blob.shape.dim.extend(shape)
            blob.data.extend(rng.standard_normal(int(np.prod(shape))).astype(np.float32).tolist())
    (folder / "weights.caffemodel").write_bytes(net.SerializeToString())
    (folder / "solver.prototxt").write_text(
        'net: "net.prototxt"\nbase_lr: 0.001\nlr_policy: "step"\ngamma: 0.1\nstepsize: 100\n'
        'momentum: 0.9\nweight_decay: 0.0005\nmax_iter: 1000\nsnapshot_prefix: "snap"\n')
    write_mean(rng.uniform(0, 255, (3, 8, 8)).astype(np.float32), folder / "mean.binaryproto")
    import cv2
    items = []
    for i in range(4):
        img = rng.integers(0, 255, (3, 8, 8), dtype=np.uint8)
        if i % 2:
            datum = pb.Datum(encoded=True, label=i,
                             data=cv2.imencode(".png", img.transpose(1, 2, 0))[1].tobytes())
            items.append((f"{i:08d}_img{i}.png", datum))
        else:
            items.append((f"{i:08d}_img{i}.jpg", (i, img)))
    db = folder / "train_lmdb"
    if not db.exists():
        write_lmdb(db, items)
    return _generated_seed_list(folder)


def _generated_seed_list(folder: Path) -> list[Seed]:
    return [Seed("caffemodel", folder / "weights.caffemodel", folder / "net.prototxt"),
            Seed("net", folder / "net.prototxt"), Seed("solver", folder / "solver.prototxt"),
            Seed("mean", folder / "mean.binaryproto"), Seed("lmdb", folder / "train_lmdb")]


def generated_seeds_for_fork(folder: Path) -> list[Seed]:
    """``generated_seeds`` written by a child process, so that the fork runner's parent keeps a
    single thread (OpenCV's encoder starts a thread pool)."""
    if not hasattr(os, "fork"):
        return generated_seeds(folder)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        rc = 1
        try:
            generated_seeds(folder)
            rc = 0
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(rc)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise RuntimeError(f"could not write the generated seed files into {folder}")
    return _generated_seed_list(folder)


# ------------------------------------------------------------------ mutations
def _binary_mutation(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    b = bytearray(data)
    n = len(b)
    op = rng.choice(["flip", "flip", "byte", "truncate", "truncate", "insert", "delete", "repeat",
                     "varint", "splice"])
    if n == 0:
        return bytes(rng.randrange(256) for _ in range(16)), "random"
    if op == "flip":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(n)
            b[i] ^= 1 << rng.randrange(8)
    elif op == "byte":
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(n)] = rng.choice([0x00, 0xFF, 0x7F, 0x80, 0x0B, 0x0A, 0x12])
    elif op == "truncate":
        b = b[:rng.randrange(n)]
    elif op == "insert":
        i = rng.randrange(n)
        junk = rng.choice([b"\x0b" * rng.randint(1, 2000), b"\xff" * rng.randint(1, 16),
                           bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))])
        b[i:i] = junk
    elif op == "delete":
        i = rng.randrange(n)
        del b[i:i + rng.randint(1, 256)]
    elif op == "repeat":
        i = rng.randrange(n)
        chunk = b[i:i + rng.randint(1, 512)]
        b[i:i] = chunk * rng.randint(1, 8)
    elif op == "varint":
        # an overlong / huge varint: where a length or a dim is read, it becomes absurd
        i = rng.randrange(n)
        b[i:i + 1] = rng.choice([b"\xff\xff\xff\xff\x0f", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
                                 b"\x80\x80\x80\x80\x08"])
    else:
        i, j = rng.randrange(n), rng.randrange(n)
        b[i:i + 64] = b[j:j + 64]
    return bytes(b), op


def _text_mutation(text: str, rng: random.Random) -> tuple[str, str]:
    import re

    op = rng.choice(["number", "number", "number", "line_delete", "line_repeat", "brace",
                     "truncate", "blanks", "string", "bytes"])
    lines = text.split("\n")
    if op == "number":
        nums = list(re.finditer(r"(?<![\w.])-?\d+(\.\d+)?(e-?\d+)?", text))
        if nums:
            m = rng.choice(nums)
            return text[:m.start()] + rng.choice(TEXT_NUMBERS) + text[m.end():], op
        op = "line_delete"
    if op == "line_delete" and len(lines) > 1:
        i = rng.randrange(len(lines))
        return "\n".join(lines[:i] + lines[i + 1:]), op
    if op == "line_repeat":
        i = rng.randrange(len(lines))
        return "\n".join(lines[:i] + [lines[i]] * rng.randint(2, 5) + lines[i:]), op
    if op == "brace":
        pos = rng.randrange(len(text) + 1)
        return text[:pos] + rng.choice(["{", "}", "{ {", ":", '"']) + text[pos:], op
    if op == "truncate":
        return text[:rng.randrange(len(text) + 1)], op
    if op == "blanks":
        pos = rng.randrange(len(text) + 1)
        return text[:pos] + " " * rng.choice([10_000, 1_000_000, 4_000_000]) + text[pos:], op
    if op == "string":
        strings = list(re.finditer(r'"[^"\n]*"', text))
        if strings:
            m = rng.choice(strings)
            new = rng.choice(['""', '"\\377\\376"', '"' + "x" * 5000 + '"', '"no such thing"',
                              '"-1"', '"Tile"', '"LRN"', '"Power"', '"inv"', '"poly"'])
            return text[:m.start()] + new + text[m.end():], op
    pos = rng.randrange(len(text) + 1)
    return text[:pos] + rng.choice(["\x00", "\xff", "\udcff", "é", "\t"]) + text[pos:], "bytes"


# Layers whose parameters are easy to make absurd from a prototxt: appended to net seeds.
HOSTILE_LAYERS = [
    'layer {{ name: "lrn_x" type: "LRN" bottom: "{b}" top: "lrn_x" lrn_param {{ local_size: {n} }} }}',
    'layer {{ name: "tile_x" type: "Tile" bottom: "{b}" top: "tile_x" tile_param {{ tiles: {n} }} }}',
    'layer {{ name: "pow_x" type: "Power" bottom: "{b}" top: "pow_x" power_param {{ power: -1 scale: 0 }} }}',
    'layer {{ name: "fc_x" type: "InnerProduct" bottom: "{b}" top: "fc_x" inner_product_param {{ num_output: {n} }} }}',
    'layer {{ name: "fill_x" type: "InnerProduct" bottom: "{b}" top: "fill_x" inner_product_param '
    '{{ num_output: 2 weight_filler {{ type: "no_such_filler" }} }} }}',
    'layer {{ name: "rs_x" type: "Reshape" bottom: "{b}" top: "rs_x" reshape_param {{ shape {{ dim: {n} dim: -1 }} }} }}',
]


def _last_top(text: str) -> str | None:
    import re

    tops = re.findall(r'\btop\s*:\s*"([^"]+)"', text) or re.findall(r'\binput\s*:\s*"([^"]+)"', text)
    return tops[-1] if tops else None


@dataclass
class Variant:
    seed: Seed
    op: str
    path: Path                # the mutated file or LMDB folder
    argv: list[str] = field(default_factory=list)
    command: str = "inspect"


def make_variant(seed: Seed, rng: random.Random, work: Path, index: int) -> Variant:
    out = work / f"v{index:05d}"
    out.mkdir(parents=True, exist_ok=True)
    if seed.kind == "lmdb":
        db = out / seed.path.name
        db.mkdir()
        data, op = _binary_mutation((seed.path / "data.mdb").read_bytes(), rng)
        (db / "data.mdb").write_bytes(data)
        return Variant(seed, "lmdb-" + op, db, ["inspect", str(db)])
    raw = seed.path.read_bytes()
    target = out / seed.path.name
    if seed.kind in ("net", "solver"):
        text = raw.decode("utf-8", "replace")
        if seed.kind == "net" and rng.random() < 0.25:
            b = _last_top(text)
            layer = rng.choice(HOSTILE_LAYERS).format(b=b or "data", n=rng.choice(
                ["4294967295", "2147483647", "2147483648", "0", "1", "65537"]))
            text, op = text + "\n" + layer + "\n", "hostile-layer"
        else:
            text, op = _text_mutation(text, rng)
        target.write_bytes(text.encode("utf-8", "surrogateescape"))
    else:
        data, op = _binary_mutation(raw, rng)
        target.write_bytes(data)
    argv = ["inspect", str(target)]
    command = "inspect"
    if seed.kind == "caffemodel" and seed.partner is not None and rng.random() < 0.3:
        argv = ["convert", str(seed.partner), str(target), "-o", str(out / "model.pt"), "-q"]
        command = "convert"
    elif seed.kind == "net" and rng.random() < 0.3:
        argv = ["convert", str(target), "-o", str(out / "model.pt"), "-q"]
        command = "convert"
    return Variant(seed, f"{seed.kind}-{op}", target, argv, command)


# ------------------------------------------------------------------ running
@dataclass
class Outcome:
    variant: Variant
    status: str               # exit0, exit2, or the broken rule
    detail: str = ""
    seconds: float = 0.0
    maxrss_mb: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status in ("exit0", "exit2")


def _limits(mem_cap: int, time_limit: float) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (mem_cap, mem_cap))
    cpu = int(time_limit) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _run_forked(argv, out_file, err_file, mem_cap, time_limit):
    """Fork; the child runs ``converters.__main__.main(argv)`` with the limits and stdout/stderr
    redirected.  Returns (wait status, rusage, seconds)."""
    from converters import __main__ as cli

    threads = _os_threads()
    if threads > FORK_SAFE_THREADS:
        # A thread of the parent (torch's OpenMP pool after any tensor work, a prefetcher, ...) may
        # hold a lock at the moment of the fork; the child then waits on it for ever.  Seen in the
        # test suite: a convert variant blocked in a futex.  Only a fresh process may fork variants.
        raise RuntimeError(f"the fork runner needs a fresh process, this one runs {threads} threads: "
                           f"run `python tests/fuzz.py` (it forks from a fresh interpreter) or use "
                           f"runner='subprocess'")
    sys.stdout.flush()
    sys.stderr.flush()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:       # child
        rc = 1
        try:
            _limits(mem_cap, time_limit)
            fd_out = os.open(out_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            fd_err = os.open(err_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd_out, 1)
            os.dup2(fd_err, 2)
            sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False), write_through=True)
            sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", closefd=False), write_through=True)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(int(time_limit * WALL_FACTOR) + 1)   # a blocked (not busy) hang
            try:
                rc = cli.main(list(argv))
            except SystemExit as exc:
                rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:
                import traceback
                traceback.print_exc()
                rc = 1
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(int(rc) & 0xFF)
    _, status, usage = os.wait4(pid, 0)
    return status, usage, time.monotonic() - start


FORK_SAFE_THREADS = 2        # the main thread and the one that importing torch starts


def _os_threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:            # no /proc: count what Python knows of
        import threading
        return threading.active_count()


def _run_subprocess(argv, out_file, err_file, mem_cap, time_limit):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.monotonic()
    with open(out_file, "wb") as fo, open(err_file, "wb") as fe:
        proc = subprocess.Popen([sys.executable, "-m", "converters", *argv], stdout=fo, stderr=fe,
                                env=env, cwd=str(REPO),
                                preexec_fn=lambda: _limits(mem_cap, time_limit))
        try:
            proc.wait(timeout=time_limit * WALL_FACTOR + 5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return -1, None, time.monotonic() - start
    _, status, usage = proc.pid, None, None
    rc = proc.returncode
    # encode like a wait status for one code path below
    status = (-rc) if rc < 0 else (rc << 8)
    return status, resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic() - start


def _prewarm() -> None:
    """Import what the commands import, once, so each forked child starts warm."""
    import converters  # noqa: F401
    import converters.convert  # noqa: F401
    from converters import __main__ as cli

    cli.discover()


def check(variant: Variant, runner: str = "fork", mem_cap: int = MEM_CAP,
          time_limit: float = TIME_LIMIT) -> Outcome:
    out_file = variant.path.parent / "stdout.txt"
    err_file = variant.path.parent / "stderr.txt"
    run = _run_forked if runner == "fork" else _run_subprocess
    status, usage, seconds = run(variant.argv, out_file, err_file, mem_cap, time_limit)
    maxrss = (usage.ru_maxrss / 1024.0) if usage is not None else 0.0
    err = err_file.read_bytes().decode("utf-8", "replace") if err_file.exists() else ""
    # time is judged in CPU seconds where the runner knows them (fork: the child's own rusage)
    cpu = usage.ru_utime + usage.ru_stime if (usage is not None and runner == "fork") else None
    if status == -1 or (cpu if cpu is not None else seconds / WALL_FACTOR) > time_limit:
        return Outcome(variant, "timeout", f"{seconds:.1f} s wall"
                       + (f", {cpu:.1f} s CPU" if cpu is not None else ""), seconds, maxrss)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return Outcome(variant, f"signal {name}", err[-300:], seconds, maxrss)
    rc = os.WEXITSTATUS(status)
    if "Traceback (most recent call last)" in err:
        last = [line for line in err.strip().splitlines() if line.strip()][-1:]
        return Outcome(variant, "traceback", last[0] if last else "", seconds, maxrss)
    if rc not in (0, 2):
        return Outcome(variant, f"exit {rc}", err[-300:], seconds, maxrss)
    if rc == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        if len(lines) > MAX_STDERR_LINES:
            return Outcome(variant, "stderr too long", f"{len(lines)} lines: {lines[0][:200]}",
                           seconds, maxrss)
        names = [str(variant.path), variant.path.name]
        if variant.seed.partner is not None and str(variant.seed.partner) in variant.argv:
            names.append(str(variant.seed.partner))
        if not any(n in line for line in lines for n in names):
            return Outcome(variant, "file not named", (lines[-1] if lines else "")[:300],
                           seconds, maxrss)
        return Outcome(variant, "exit2", lines[-1][:300] if lines else "", seconds, maxrss)
    return Outcome(variant, "exit0", "", seconds, maxrss)


def fuzz(count: int, seed: int = 0, runner: str = "fork", work: Path | None = None,
         mem_cap: int = MEM_CAP, time_limit: float = TIME_LIMIT, seeds: list[Seed] | None = None,
         keep: Path | None = None, progress: bool = False) -> list[Outcome]:
    """Run ``count`` seeded variants; returns their outcomes (work files are removed unless
    ``keep`` names a folder for the failing ones)."""
    own_work = work is None
    work = Path(tempfile.mkdtemp(prefix="converters-fuzz.")) if own_work else Path(work)
    try:
        if seeds is None:
            root = oracle_dir()
            seeds = oracle_seeds(root) if root is not None else []
            if not seeds:
                seeds = generated_seeds_for_fork(work / "seeds") if runner == "fork" else \
                    generated_seeds(work / "seeds")
        if runner == "fork":
            _prewarm()
        rng = random.Random(seed)
        outcomes = []
        bar = None
        if progress:
            from tqdm import tqdm
            tqdm.monitor_interval = 0   # no monitor thread: the parent forks, so it keeps one thread
            bar = tqdm(total=count, desc="fuzz", unit="variant", disable=None)
        for i in range(count):
            variant = make_variant(seeds[i % len(seeds)], rng, work, i)
            outcome = check(variant, runner, mem_cap, time_limit)
            outcomes.append(outcome)
            if not outcome.ok and keep is not None:
                dest = Path(keep) / variant.path.parent.name
                shutil.rmtree(dest, ignore_errors=True)
                shutil.copytree(variant.path.parent, dest)
                (dest / "argv.txt").write_text(" ".join(variant.argv) + "\n")
            shutil.rmtree(variant.path.parent, ignore_errors=True)
            if bar is not None:
                bar.update(1)
                if not outcome.ok:
                    bar.write(f"FAIL {variant.op} ({' '.join(variant.argv[:1])}): {outcome.status}: "
                              f"{outcome.detail[:160]}")
        if bar is not None:
            bar.close()
        return outcomes
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)


def summary(outcomes: list[Outcome]) -> str:
    by_status = Counter(o.status for o in outcomes)
    by_kind: dict[str, Counter] = {}
    for o in outcomes:
        by_kind.setdefault(f"{o.variant.seed.kind}/{o.variant.command}", Counter())[o.status] += 1
    slowest = max(outcomes, key=lambda o: o.seconds) if outcomes else None
    biggest = max(outcomes, key=lambda o: o.maxrss_mb) if outcomes else None
    lines = [f"variants   {len(outcomes)}",
             "outcomes   " + ", ".join(f"{k}: {v}" for k, v in sorted(by_status.items()))]
    for kind, c in sorted(by_kind.items()):
        lines.append(f"  {kind:<22} " + ", ".join(f"{k}: {v}" for k, v in sorted(c.items())))
    if slowest is not None:
        lines.append(f"slowest    {slowest.seconds:.2f} s ({slowest.variant.op})")
        lines.append(f"max RSS    {biggest.maxrss_mb:.0f} MB ({biggest.variant.op})")
    failures = [o for o in outcomes if not o.ok]
    lines.append(f"failures   {len(failures)}")
    for o in failures[:40]:
        lines.append(f"  {o.variant.op:<28} {o.status}: {o.detail[:200]}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="number of variants (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--runner", choices=("fork", "subprocess"), default="fork")
    parser.add_argument("--mem-gb", type=float, default=MEM_CAP / (1 << 30),
                        help="address-space cap per variant in GiB (default 4)")
    parser.add_argument("--time-limit", type=float, default=TIME_LIMIT,
                        help="CPU seconds per variant (default 60; wall clock: 10x that)")
    parser.add_argument("--generated", action="store_true",
                        help="use the project's own generated seed files even when the oracle exists")
    parser.add_argument("--keep", metavar="DIR", help="copy failing variants (and argv.txt) here")
    parser.add_argument("--json", metavar="FILE", help="also write every outcome to FILE as JSON")
    parser.add_argument("--kind", action="append", choices=("caffemodel", "net", "solver", "mean", "lmdb"),
                        help="only seeds of this kind (repeatable)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    seeds = None
    with tempfile.TemporaryDirectory(prefix="converters-fuzz-seeds.") as tmp:
        make = generated_seeds_for_fork if args.runner == "fork" else generated_seeds
        if args.generated:
            seeds = make(Path(tmp))
        elif args.kind:
            root = oracle_dir()
            seeds = oracle_seeds(root) if root is not None else make(Path(tmp))
        if args.kind:
            seeds = [s for s in seeds if s.kind in args.kind]
            if not seeds:
                parser.error(f"no seed files of kind {', '.join(args.kind)}")
        outcomes = fuzz(args.count, args.seed, args.runner, mem_cap=int(args.mem_gb * (1 << 30)),
                        time_limit=args.time_limit, seeds=seeds,
                        keep=Path(args.keep) if args.keep else None, progress=True)
    print(summary(outcomes))
    if args.json:
        Path(args.json).write_text(json.dumps(
            [{"op": o.variant.op, "kind": o.variant.seed.kind, "command": o.variant.command,
              "argv": list(o.variant.argv), "status": o.status, "ok": o.ok, "detail": o.detail}
             for o in outcomes], indent=1) + "\n")
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
