"""A small seeded sample of the mutation fuzzer (tests/fuzz.py) in the normal suite.

Every variant of a real Caffe file (or of the project's own generated files when the oracle is
absent) must keep the CLI contract: exit 0 or 2, no traceback, no signal, on exit 2 at most
three stderr lines naming the file, within the 4 GB address-space cap and the time limit.
The full run is ``python tests/fuzz.py --count N``.
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _fuzz():
    spec = importlib.util.spec_from_file_location("converters_fuzz", HERE / "fuzz.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fuzz = _fuzz()


def _run_script(tmp_path, *args):
    """The sample runs in a fresh interpreter: forking this pytest process, whose torch thread pool
    is running after the other tests, can leave a child blocked on a lock held by a pool thread."""
    out = tmp_path / "outcomes.json"
    proc = subprocess.run([sys.executable, str(HERE / "fuzz.py"), *args, "--json", str(out)],
                          capture_output=True, text=True, timeout=1800)
    assert out.is_file(), proc.stdout[-2000:] + proc.stderr[-2000:]
    outcomes = json.loads(out.read_text())
    failures = "\n".join(f"{o['op']} {' '.join(o['argv'])}: {o['status']}: {o['detail']}"
                         for o in outcomes if not o["ok"])
    assert proc.returncode == (1 if failures else 0), proc.stderr[-2000:]
    return outcomes, failures


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the fork runner needs os.fork")
def test_seeded_sample_keeps_the_contract(tmp_path):
    outcomes, failures = _run_script(tmp_path, "--count", "40", "--seed", "13")
    assert len(outcomes) == 40
    assert not failures, failures
    assert {o["status"] for o in outcomes} == {"exit0", "exit2"}     # the sample exercises both answers


def test_generated_seeds_without_the_oracle(tmp_path):
    seeds = fuzz.generated_seeds(tmp_path / "seeds")
    assert {s.kind for s in seeds} == {"caffemodel", "net", "solver", "mean", "lmdb"}
    outcomes, failures = _run_script(tmp_path, "--generated", "--count", "15", "--seed", "7")
    assert len(outcomes) == 15
    assert not failures, failures


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the fork runner needs os.fork")
def test_fork_runner_refuses_a_threaded_parent(tmp_path):
    # this pytest process has run torch work (or at least imported torch): more threads than a fresh
    # interpreter, so forking it could deadlock; the runner must say so instead of hanging
    import threading
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        seed = fuzz.Seed("net", tmp_path / "x.prototxt")
        seed.path.write_text("name: 'x'\n")
        variant = fuzz.Variant(seed, "net-probe", seed.path, ["inspect", str(seed.path)])
        with pytest.raises(RuntimeError, match="fresh process"):
            fuzz.check(variant, runner="fork")
    finally:
        stop.set()
        worker.join()


def test_the_checker_catches_a_broken_contract(tmp_path):
    # a variant whose command crashes must be reported, not passed: the harness itself can fail
    seed = fuzz.Seed("net", tmp_path / "x.prototxt")
    seed.path.write_text("name: 'x'\n")
    variant = fuzz.Variant(seed, "net-probe", seed.path, ["inspect", "--kind"])   # argparse error
    outcome = fuzz.check(variant, runner="subprocess")
    assert not outcome.ok and outcome.status in ("file not named", "stderr too long"), outcome
