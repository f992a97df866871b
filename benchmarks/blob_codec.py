"""Benchmark: converters.formats.array_to_blob + blob_to_array on 20M floats (5000 x 4000).

Through Python float lists this takes seconds; the package copies the wire bytes.  Prints the
time of each direction (best of --repeat).

Usage: ``python benchmarks/blob_codec.py [--repeat 3]``
"""
import argparse
import time

import numpy as np

from converters.formats import array_to_blob, blob_to_array


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    arr = np.random.default_rng(1).standard_normal(20_000_000, dtype=np.float32).reshape(5000, 4000)
    enc, dec = [], []
    for _ in range(args.repeat):
        t = time.perf_counter()
        blob = array_to_blob(arr)
        enc.append(time.perf_counter() - t)
        t = time.perf_counter()
        back = blob_to_array(blob)
        dec.append(time.perf_counter() - t)
        assert np.array_equal(back, arr)
    print(f"array_to_blob {min(enc):.3f} s, blob_to_array {min(dec):.3f} s (20M float32, best of {args.repeat})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
