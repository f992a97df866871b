"""Benchmark: wall time of the offline demo (reproduce.demo) with the settings its test uses.

Two folds, 300 iterations per fold and target, synthetic data; prints the seconds and the mean
accuracies (the test asserts only that it learns, tests/test_demo.py).

Usage: ``python benchmarks/demo.py [--folds 0 1] [--iters 300]``
"""
import argparse
import tempfile
import time

from reproduce import demo


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--folds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--iters", type=int, default=300)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        data = demo.run_demo(out, folds=tuple(args.folds), iters=args.iters, progress=False)
        seconds = time.perf_counter() - t0
    for cell in data["cells"]:
        print(f"{cell['target']:<7} acc {cell['mean']['acc']:.3f}  1-off {cell['mean']['one_off']:.3f}")
    print(f"demo, {len(args.folds)} fold(s) x {args.iters} iterations: {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
