"""Benchmark: parse a full-size VGG-16 caffemodel.

Writes a VGG_ILSVRC_16_layers caffemodel with random weights (1000 classes, 138M parameters,
~553 MB) and its deploy prototxt into a temporary folder with our streaming writer, then times,
each in a fresh subprocess (so peak RSS is per reader):

* ours:      ``converters.formats.read_weight_arrays`` (wire-format walker, readinto numpy)
* protobuf:  ``NetParameter.ParseFromString`` of the file bytes (no numpy conversion), and
             ``read_weights`` + ``blob_to_array`` for every blob (our protobuf path)
* OpenCV:    ``cv2.dnn.readNetFromCaffe(prototxt, caffemodel)``

Peak memory is the child's ``ru_maxrss`` (whole process, interpreter and imports included),
compared with the file size; the part above the RSS after imports is shown too.  Reference figures measured
separately on another machine: OpenCV 4.14 3.4 s, real Caffe 4.0 s.

Usage: ``python benchmarks/parse_caffemodel.py [--repeat 3] [--keep DIR] [--skip-opencv]``
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# VGG_ILSVRC_16_layers: (layer name, weight shape); every layer also has a bias of shape (out,)
VGG16 = [
    ("conv1_1", (64, 3, 3, 3)), ("conv1_2", (64, 64, 3, 3)),
    ("conv2_1", (128, 64, 3, 3)), ("conv2_2", (128, 128, 3, 3)),
    ("conv3_1", (256, 128, 3, 3)), ("conv3_2", (256, 256, 3, 3)), ("conv3_3", (256, 256, 3, 3)),
    ("conv4_1", (512, 256, 3, 3)), ("conv4_2", (512, 512, 3, 3)), ("conv4_3", (512, 512, 3, 3)),
    ("conv5_1", (512, 512, 3, 3)), ("conv5_2", (512, 512, 3, 3)), ("conv5_3", (512, 512, 3, 3)),
    ("fc6", (4096, 25088)), ("fc7", (4096, 4096)), ("fc8", (1000, 4096)),
]


def deploy_prototxt() -> str:
    out = ['name: "VGG_ILSVRC_16_layers"', 'input: "data"',
           "input_shape { dim: 1 dim: 3 dim: 224 dim: 224 }"]
    bottom = "data"
    for name, shape in VGG16:
        if name.startswith("conv"):
            out.append(f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}" '
                       f"convolution_param {{ num_output: {shape[0]} pad: 1 kernel_size: 3 }} }}")
        else:
            out.append(f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{name}" '
                       f"inner_product_param {{ num_output: {shape[0]} }} }}")
        bottom = name
        if name != "fc8":
            relu = "relu" + name[len("conv"):] if name.startswith("conv") else "relu" + name[2:]
            out.append(f'layer {{ name: "{relu}" type: "ReLU" bottom: "{name}" top: "{name}" }}')
        if name in ("conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3"):
            pool = "pool" + name[4]
            out.append(f'layer {{ name: "{pool}" type: "Pooling" bottom: "{name}" top: "{pool}" '
                       "pooling_param { pool: MAX kernel_size: 2 stride: 2 } }")
            bottom = pool
    out.append(f'layer {{ name: "prob" type: "Softmax" bottom: "{bottom}" top: "prob" }}')
    return "\n".join(out) + "\n"


def write_vgg16(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    from converters.formats import write_weight_arrays

    rng = np.random.default_rng(seed)
    layers = []
    for name, shape in VGG16:
        typ = "Convolution" if name.startswith("conv") else "InnerProduct"
        w = rng.standard_normal(shape, dtype=np.float32)
        w *= 0.01
        layers.append((name, typ, [w, rng.standard_normal(shape[0], dtype=np.float32)]))
    model = folder / "VGG_ILSVRC_16_layers.caffemodel"
    proto = folder / "VGG_ILSVRC_16_layers_deploy.prototxt"
    write_weight_arrays(layers, model, net_name="VGG_ILSVRC_16_layers")
    proto.write_text(deploy_prototxt())
    return model, proto


CHILD = r'''
import json, resource, sys, time
sys.path.insert(0, {root!r})
kind, model, proto = sys.argv[1:4]
def rss_kb():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
import numpy as np
if kind == "ours":
    from converters.formats import read_weight_arrays
elif kind in ("protobuf", "protobuf+numpy"):
    from converters.proto import caffe_pb2 as pb
    from converters.formats import read_weights, blob_to_array
elif kind == "opencv":
    import cv2
    if not hasattr(cv2.dnn, "readNetFromCaffe"):
        raise SystemExit(f"OpenCV {{cv2.__version__}} has no Caffe importer (OpenCV 4.x only)")
base = rss_kb()
t = time.perf_counter()
if kind == "ours":
    arrays = read_weight_arrays(model)
    n = sum(a.size for blobs in arrays.values() for a in blobs)
elif kind == "protobuf":
    net = pb.NetParameter()
    with open(model, "rb") as fh:
        net.ParseFromString(fh.read())
    n = sum(len(b.data) for l in net.layer for b in l.blobs)
elif kind == "protobuf+numpy":
    net = read_weights(model)
    arrays = {{l.name: [blob_to_array(b) for b in l.blobs] for l in net.layer}}
    n = sum(a.size for blobs in arrays.values() for a in blobs)
elif kind == "opencv":
    net = cv2.dnn.readNetFromCaffe(proto, model)
    n = len(net.getLayerNames())
wall = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"wall": wall, "peak_kb": peak, "base_kb": base, "n": n}}))
'''


def evict(path: Path) -> None:
    """Drop the file's pages from the OS page cache (a cold read), where the OS allows it."""
    if hasattr(os, "posix_fadvise"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def run_child(kind: str, model: Path, proto: Path, cold: bool = False) -> dict:
    if cold:
        evict(model)
    code = CHILD.format(root=str(ROOT))
    res = subprocess.run([sys.executable, "-c", code, kind, str(model), str(proto)],
                         capture_output=True, text=True)
    if res.returncode:
        return {"error": (res.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs per reader (best wall is shown)")
    ap.add_argument("--keep", type=Path, help="write the model here and keep it")
    ap.add_argument("--skip-opencv", action="store_true")
    ap.add_argument("--skip-slow", action="store_true", help="skip protobuf+numpy (slow)")
    ap.add_argument("--cold", action="store_true",
                    help="evict the file from the page cache before every run (default: warm "
                         "runs, plus one cold run of ours)")
    args = ap.parse_args(argv)

    tmp = None
    if args.keep:
        folder = args.keep
        folder.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="vgg16-bench-")
        folder = Path(tmp.name)
    t = time.perf_counter()
    model, proto = write_vgg16(folder)
    write_s = time.perf_counter() - t
    size = model.stat().st_size
    print(f"wrote {model.name}: {size / 1e6:.1f} MB ({size / 2**20:.1f} MiB) in {write_s:.2f} s "
          f"with write_weight_arrays")

    kinds = ["ours", "protobuf"]
    if not args.skip_slow:
        kinds.append("protobuf+numpy")
    if not args.skip_opencv:
        kinds.append("opencv")
    rows = []
    plan = [(kind, args.cold) for kind in kinds]
    if not args.cold:
        plan.insert(1, ("ours", True))
    for kind, cold in plan:
        nrun = 1 if (kind == "protobuf+numpy" or (cold and not args.cold)) else args.repeat
        runs = [run_child(kind, model, proto, cold) for _ in range(nrun)]
        ok = [r for r in runs if "error" not in r]
        note = "cold page cache" if cold else "warm page cache"
        if not ok:
            rows.append((kind, None, None, runs[0]["error"]))
            continue
        best = min(ok, key=lambda r: r["wall"])
        peak_mb = max(r["peak_kb"] for r in ok) * 1024 / 1e6
        extra_mb = max(r["peak_kb"] - r["base_kb"] for r in ok) * 1024 / 1e6
        rows.append((kind, best["wall"], (peak_mb, extra_mb),
                     note + (f", best of {nrun}" if nrun > 1 else "")))

    print()
    print("| reader | wall (s) | peak RSS (MB) | x file size | above import baseline (MB) | note |")
    print("|---|---|---|---|---|---|")
    for kind, wall, mem, note in rows:
        if wall is None:
            print(f"| {kind} | - | - | - | - | failed: {note} |")
            continue
        peak, extra = mem
        print(f"| {kind} | {wall:.2f} | {peak:.0f} | {peak * 1e6 / size:.2f} | {extra:.0f} | {note} |")
    print("| reference: OpenCV 4.14 readNetFromCaffe | 3.4 | | | | |")
    print("| reference: real Caffe | 4.0 | | | | |")
    print("| target (ours) | <= 1.5 | | <= 1.5 | | |")
    ours = [r for r in rows if r[0] == "ours"]
    met = all(r[1] is not None and r[1] <= 1.5 and r[2][0] * 1e6 / size <= 1.5 for r in ours)
    print(f"\ntargets met: {met}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
