"""Benchmark: images/s of the paper's 10-crop test protocol per net family, and the share of the
forward speed it keeps.

For each family the full-size upstream deploy net (AdienceNet ``age_net_definitions``, CaffeNet
``age_fromscratch_caffereference``, GoogLeNet ``age_fromscratch_googlenet``, VGG16
``age_finetuning_vgg16``; fetched on demand through ``reproduce.assets``) is converted with
``converters.load_caffe``, given random weights and run through ``--backend`` (default auto, as
``run.py``); random 256x256 uint8 images go through ``reproduce.protocol.evaluate`` (full-mean
subtraction, 10 crops, softmax average) in batches of ``--batch`` images (default ``run.py``'s per
family).  The same batches' crops, built beforehand, also go through the net alone ("forward-only");
the two are timed interleaved ``--rounds`` times and the medians compared ("protocol / forward
speed": 100 % = the protocol costs nothing beyond the forward passes).  One warm-up batch first.

Usage: ``python benchmarks/protocol.py [--families A,C,G,V] [--images N] [--batch B] [--rounds 3]
[--device cpu,cuda] [--backend auto|torch|onnxruntime] [--assets-mirror DIR_OR_URL] [--json FILE]``
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reproduce import protocol, table  # noqa: E402
from reproduce.assets import AssetStore  # noqa: E402

FAMILY_KEYS = {"A": "adiencenet", "C": "caffenet", "G": "googlenet", "V": "vgg16"}  # table.DEFAULT_BATCH keys
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


def bench(col: str, device: str, images: int, batch: int, store: AssetStore, backend: str = "auto",
          rounds: int = 3) -> dict:
    """Protocol images/s and, on the same batches, the forward pass alone (crops prepared beforehand),
    both through ``backend``, interleaved ``rounds`` times (medians): ``protocol_vs_forward`` is the
    share of the forward speed the whole protocol keeps."""
    from converters import ort_backend

    name, folder, size, blob = FAMILIES[col]
    model = random_model(store.deploy(folder)).to(device)
    runner = ort_backend.for_inference(model, backend, device, outputs=[blob])
    rng = np.random.default_rng(0)
    mean = rng.random((3, 256, 256), dtype=np.float32) * 120
    data = [(f"{i:08d}", 0, rng.integers(0, 256, (3, 256, 256), dtype=np.uint8)) for i in range(images)]
    layout = protocol.input_layout(runner)
    crops = []
    for i in range(0, images, batch):
        imgs = np.stack([d[2] for d in data[i:i + batch]])
        x = protocol.oversample(torch.from_numpy(imgs).float() - torch.from_numpy(mean), size, layout)
        crops.append(x.reshape(-1, *x.shape[2:]).to(device))

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def forward_only():
        t0 = time.perf_counter()
        with torch.inference_mode(), protocol.strict_float32():
            for x in crops:
                protocol.output_of(runner, x, blob).cpu()
        sync()
        return time.perf_counter() - t0

    def whole_protocol():
        t0 = time.perf_counter()
        protocol.evaluate(runner, data, mean, size, blob, batch=batch, device=device)
        sync()
        return time.perf_counter() - t0

    protocol.evaluate(runner, data[:batch], mean, size, blob, batch=batch, device=device)  # warm-up
    sync()
    fwd, prot = [], []
    for _ in range(rounds):                 # interleaved: machine load hits both alike
        fwd.append(forward_only())
        prot.append(whole_protocol())
    wall, fwd_s = statistics.median(prot), statistics.median(fwd)
    return {"family": name, "col": col, "folder": folder, "device": device,
            "backend": "torch" if runner is model else "onnxruntime", "images": images,
            "batch_images": batch, "crops_per_forward": 10 * batch, "rounds": rounds, "seconds": round(wall, 3),
            "forward_seconds": round(fwd_s, 3), "images_per_s": round(images / wall, 2),
            "crops_per_s": round(10 * images / wall, 1), "protocol_vs_forward": round(fwd_s / wall, 3),
            "protocol_runs_s": prot, "forward_runs_s": fwd}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", default="A,C,G,V")
    p.add_argument("--images", type=int, default=None,
                   help="timed images per family and device (default: two batches)")
    p.add_argument("--batch", type=int, default=None,
                   help="images per forward pass, x10 crops (default: run.py's per family: A 50, C 25, G 10, V 4)")
    p.add_argument("--backend", choices=("auto", "torch", "onnxruntime"), default="auto",
                   help="inference backend as run.py --backend (default auto)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved forward/protocol rounds (medians)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
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
    torch.set_num_threads(args.threads)
    store = AssetStore(mirror=args.assets_mirror)
    results = []
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} CPU threads" + (f", {torch.cuda.get_device_name()}" if
                                                       torch.cuda.is_available() else ""))
    print("| family | device | backend | images | batch (images) | protocol s | forward-only s | images/s | "
          "protocol / forward speed |")
    print("|---|---|---|---|---|---|---|---|---|")
    for col in args.families.split(","):
        col = col.strip().upper()
        batch = args.batch or table.DEFAULT_BATCH[FAMILY_KEYS[col]]
        for dev in devices:
            n = args.cpu_images if (dev == "cpu" and args.cpu_images) else (args.images or 2 * batch)
            r = bench(col, dev, max(n, 1), min(batch, max(n, 1)), store, args.backend, args.rounds)
            results.append(r)
            print(f"| {r['family']} | {dev} | {r['backend']} | {r['images']} | {r['batch_images']} | {r['seconds']} | "
                  f"{r['forward_seconds']} | {r['images_per_s']} | {100 * r['protocol_vs_forward']:.1f} % |",
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
