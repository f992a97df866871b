"""Estimated wall time of evaluating all of Tables 2 and 3 (38 cells x 5 folds, 10 crops per image).

    python benchmarks/grid.py [--device cpu|cuda] [--backend auto|torch|onnxruntime] [--sample 20] [--batch B]
                              [--threads 2] [--assets-mirror DIR_OR_URL] [--json out.json]

What it measures, per net family (AdienceNet, CaffeNet, GoogLeNet, VGG-16), on the chosen device:

* seconds per test image: ``reproduce.protocol.evaluate`` (full-mean subtraction, 10 crops, softmax
  average) on ``--sample`` synthetic 256x256 uint8 images, in ``run.py``'s default batch per family,
  through the default inference backend of ``run.py`` (``--backend``), after one untimed batch;
* seconds per fold model: ``converters.load_caffe`` of the full-size deploy with a random caffemodel
  (written once into ``--cache``, shared with ``benchmarks/forward.py``) plus the backend set-up,
  including the onnxruntime graph trace (an upper bound: a cell's five folds share one trace).

The real test image counts come from the upstream fold lists (``<variant>/test_fold_is_K/
<target>_test.txt`` of each cell's test variant, through ``reproduce.assets``), so the estimate is
``sum over cells and folds of (per-model + images x per-image)``.  Reading the test LMDBs is not
included (it overlaps nothing here and is small next to the forward passes).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import forward  # noqa: E402  (benchmarks/forward.py: the deploys with random weights)

FAMILY_KEY = {"adiencenet": "adience", "caffenet": "caffenet", "googlenet": "googlenet", "vgg16": "vgg16"}
FOLDS = range(5)


def default_mirror() -> str | None:
    if os.environ.get("REPRO_ASSETS_MIRROR"):
        return None                         # AssetStore reads it itself
    local = REPO.parent / "shared" / "upstream" / "lapuschkin-2017"
    return str(local) if local.is_dir() else None


def test_counts(cells, store) -> dict:
    """(cell label) -> [test images of fold 0..4] from the upstream fold lists."""
    from reproduce import folds

    counts = {}
    for cell in cells:
        counts[cell.label] = [len(folds.read_list(store.fold_list(cell.test, k, cell.target, "test")))
                              for k in FOLDS]
    return counts


def time_family(family: str, cell, args, cache: Path) -> dict:
    """Per-image and per-model seconds of one family on ``args.device``."""
    import torch

    import converters
    from converters import ort_backend
    from reproduce import protocol, table

    key = FAMILY_KEY[family]
    proto, weights = forward.prepare(key, cache, args.seed)
    t0 = time.perf_counter()
    model = converters.load_caffe(proto, weights).eval().to(args.device)
    runner = ort_backend.for_inference(model, args.backend, args.device, outputs=[cell.output_blob])
    per_model = time.perf_counter() - t0
    backend = "torch" if runner is model else "onnxruntime"
    batch = args.batch or table.DEFAULT_BATCH.get(family, 10)
    rng = np.random.default_rng(args.seed)
    mean = rng.random((3, 256, 256), dtype=np.float32) * 120
    n = max(args.sample, batch)
    data = [(f"{i:08d}", 0, rng.integers(0, 256, (3, 256, 256), dtype=np.uint8)) for i in range(n)]
    protocol.evaluate(runner, data[:batch], mean, cell.input_size, cell.output_blob, batch=batch,
                      device=args.device)            # warm-up (first-call allocations, cuDNN autotune)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    protocol.evaluate(runner, data, mean, cell.input_size, cell.output_blob, batch=batch, device=args.device)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    per_image = (time.perf_counter() - t0) / n
    return {"family": family, "backend": backend, "batch_images": batch, "sample_images": n,
            "s_per_image": per_image, "s_per_model": per_model}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--backend", choices=("auto", "torch", "onnxruntime"), default="auto",
                        help="inference backend as run.py --backend (default auto)")
    parser.add_argument("--sample", type=int, default=20, help="timed synthetic images per family (>= one batch)")
    parser.add_argument("--batch", type=int, default=None,
                        help="images per forward pass (default: run.py's per family: A 50, C 25, G 10, V 4)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--tables", default="2,3", help="tables to estimate (default 2,3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--assets-mirror", default=None, help="upstream files (default ../shared/upstream/"
                                                              "lapuschkin-2017 when present)")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "converters-bench"),
                        help="folder for the random caffemodels (shared with forward.py)")
    parser.add_argument("--json", help="also write the estimate as JSON")
    args = parser.parse_args(argv)

    import torch

    from converters import ort_backend
    from reproduce import grid
    from reproduce.assets import AssetError, AssetStore

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("benchmarks/grid.py: --device cuda skipped: CUDA is not available to PyTorch")
        return 0
    try:
        ort_backend.resolve_backend(args.backend, args.device)
    except ort_backend.BackendError as exc:
        print(f"benchmarks/grid.py: --backend: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    tables = [int(t) for t in args.tables.split(",")]
    cells = [c for t in tables for c in grid.select(t) if not c.empty]
    store = AssetStore(mirror=args.assets_mirror or default_mirror(), progress=False)
    try:
        counts = test_counts(cells, store)
    except (AssetError, OSError, ValueError) as exc:
        print(f"benchmarks/grid.py: cannot read the upstream fold lists: {exc}", file=sys.stderr)
        return 2
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    families = {}
    for cell in cells:
        families.setdefault(cell.family, cell)
    timing = {}
    for family, cell in families.items():
        timing[family] = time_family(family, cell, args, cache)
        t = timing[family]
        print(f"  timed {family}: {t['s_per_image'] * 1000:.1f} ms/image ({t['backend']}, batch "
              f"{t['batch_images']} images, {t['sample_images']} images), {t['s_per_model']:.1f} s per fold model",
              flush=True)
    rows = []
    for cell in cells:
        t = timing[cell.family]
        images = sum(counts[cell.label])
        seconds = images * t["s_per_image"] + len(FOLDS) * t["s_per_model"]
        rows.append({"cell": cell.label, "folder": cell.folder, "family": cell.family, "images": images,
                     "images_per_fold": counts[cell.label], "estimated_s": round(seconds, 1)})
    total = sum(r["estimated_s"] for r in rows)
    print(f"\nTables {', '.join(map(str, tables))}: {len(cells)} cells x {len(FOLDS)} folds, 10 crops per image; "
          f"device {args.device}, {args.threads} CPU thread(s), torch {torch.__version__}")
    print(f"{'family':<11} {'cells':>5} {'test images':>11} {'ms/image':>9} {'s/model':>8} {'estimate':>10}")
    for family, t in timing.items():
        mine = [r for r in rows if r["family"] == family]
        images = sum(r["images"] for r in mine)
        est = sum(r["estimated_s"] for r in mine)
        print(f"{family:<11} {len(mine):>5} {images:>11} {t['s_per_image'] * 1000:>9.1f} {t['s_per_model']:>8.1f} "
              f"{est / 60:>8.1f} m")
    print(f"{'all':<11} {len(rows):>5} {sum(r['images'] for r in rows):>11} {'':>9} {'':>8} {total / 60:>8.1f} m"
          f"  ({total / 3600:.2f} h)")
    if args.json:
        out = {"device": args.device, "threads": args.threads, "tables": tables, "total_s": round(total, 1),
               "families": timing, "cells": rows, "torch": torch.__version__}
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
