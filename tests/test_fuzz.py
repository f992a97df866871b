"""A small seeded sample of the mutation fuzzer (tests/fuzz.py) in the normal suite.

Every variant of a real Caffe file (or of the project's own generated files when the oracle is
absent) must keep the CLI contract: exit 0 or 2, no traceback, no signal, on exit 2 at most
three stderr lines naming the file, within the 4 GB address-space cap and the time limit.
The full run is ``python tests/fuzz.py --count N``.
"""
import importlib.util
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


def _failures(outcomes):
    return "\n".join(f"{o.variant.op} {' '.join(o.variant.argv)}: {o.status}: {o.detail}"
                     for o in outcomes if not o.ok)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="the fork runner needs os.fork")
def test_seeded_sample_keeps_the_contract(tmp_path):
    outcomes = fuzz.fuzz(40, seed=13, work=tmp_path)
    assert len(outcomes) == 40
    assert not _failures(outcomes), _failures(outcomes)
    statuses = {o.status for o in outcomes}
    assert statuses == {"exit0", "exit2"}     # the sample exercises both answers


def test_generated_seeds_without_the_oracle(tmp_path):
    seeds = fuzz.generated_seeds(tmp_path / "seeds")
    assert {s.kind for s in seeds} == {"caffemodel", "net", "solver", "mean", "lmdb"}
    outcomes = fuzz.fuzz(15, seed=7, work=tmp_path / "work", seeds=seeds)
    assert not _failures(outcomes), _failures(outcomes)


def test_the_checker_catches_a_broken_contract(tmp_path):
    # a variant whose command crashes must be reported, not passed: the harness itself can fail
    seed = fuzz.Seed("net", tmp_path / "x.prototxt")
    seed.path.write_text("name: 'x'\n")
    variant = fuzz.Variant(seed, "net-probe", seed.path, ["inspect", "--kind"])   # argparse error
    outcome = fuzz.check(variant, runner="subprocess")
    assert not outcome.ok and outcome.status in ("file not named", "stderr too long"), outcome
