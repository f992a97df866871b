"""Benchmark: images/s of the paper's 10-crop test protocol per net family.

For each family the full-size upstream deploy net (AdienceNet ``age_net_definitions``, CaffeNet
``age_fromscratch_caffereference``, GoogLeNet ``age_fromscratch_googlenet``, VGG16
``age_finetuning_vgg16``; fetched on demand through ``reproduce.assets``) is converted with
``converters.load_caffe`` and given random weights; random 256x256 uint8 images go through
``reproduce.protocol.evaluate`` (full-mean subtraction, 10 crops, softmax average) in batches of
``--batch`` images (= 10 x batch crops per forward pass).  One warm-up batch is not timed.

Usage: ``python benchmarks/protocol.py [--families A,C,G,V] [--images 40] [--batch 20]
[--device cpu,cuda] [--assets-mirror DIR_OR_URL] [--json FILE]``
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reproduce import protocol  # noqa: E402
from reproduce.assets import AssetStore  # noqa: E402

FAMILIES = {  # column -> (name, upstream folder, input size, output blob)
    "A": ("AdienceNet", "age_net_definitions", 227, "prob"),
    "C": ("CaffeNet", "age_fromscratch_caffereference", 227, "prob"),
    "G": ("GoogLeNet", "age_fromscratch_googlenet", 224, "loss3/loss3"),
    "V": ("VGG16", "age_finetuning_vgg16", 224, "prob"),
}


def random_model(deploy: Path, seed: int = 0):
    import converters
    model = converters.load_caffe(str(deploy), None, phase="test")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            fan_in = int(np.prod(p.shape[1:])) if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=g) * (2.0 / fan_in) ** 0.5 if p.dim() > 1
                    else torch.zeros(p.shape))
    return model.eval()


def bench(col: str, device: str, images: int, batch: int, store: AssetStore) -> dict:
    name, folder, size, blob = FAMILIES[col]
    model = random_model(store.deploy(folder)).to(device)
    rng = np.random.default_rng(0)
    mean = rng.random((3, 256, 256), dtype=np.float32) * 120
    data = [(f"{i:08d}", 0, rng.integers(0, 256, (3, 256, 256), dtype=np.uint8)) for i in range(images)]
    protocol.evaluate(model, data[:batch], mean, size, blob, batch=batch, device=device)  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    preds = protocol.evaluate(model, data, mean, size, blob, batch=batch, device=device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    return {"family": name, "col": col, "folder": folder, "device": device, "images": len(preds),
            "batch_images": batch, "crops_per_forward": 10 * batch, "seconds": round(wall, 3),
            "images_per_s": round(len(preds) / wall, 2), "crops_per_s": round(10 * len(preds) / wall, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", default="A,C,G,V")
    p.add_argument("--images", type=int, default=40, help="timed images per family and device")
    p.add_argument("--batch", type=int, default=20, help="images per forward pass (x10 crops)")
    p.add_argument("--device", default=None, help="comma separated; default cpu, plus cuda when available")
    p.add_argument("--cpu-images", type=int, default=None, help="timed images on CPU (default --images)")
    p.add_argument("--assets-mirror", default=None)
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    devices = args.device.split(",") if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if any(d.startswith("cuda") for d in devices) and not torch.cuda.is_available():
        print("benchmarks/protocol.py: --device cuda skipped: CUDA is not available to PyTorch")
        devices = [d for d in devices if not d.startswith("cuda")]
        if not devices:
            return 0
    store = AssetStore(mirror=args.assets_mirror)
    results = []
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} CPU threads" + (f", {torch.cuda.get_device_name()}" if
                                                       torch.cuda.is_available() else ""))
    print("| family | device | images | batch (images) | s | images/s | crops/s |")
    print("|---|---|---|---|---|---|---|")
    for col in args.families.split(","):
        for dev in devices:
            n = args.cpu_images if (dev == "cpu" and args.cpu_images) else args.images
            r = bench(col.strip().upper(), dev, max(n, 1), min(args.batch, max(n, 1)), store)
            results.append(r)
            print(f"| {r['family']} | {dev} | {r['images']} | {r['batch_images']} | {r['seconds']} | "
                  f"{r['images_per_s']} | {r['crops_per_s']} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
