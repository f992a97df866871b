"""Forward-pass speed of the converted nets vs OpenCV's Caffe importer, on the paper's four deploy nets.

    python benchmarks/forward.py [--nets adience,caffenet,googlenet,vgg16] [--runs 7] [--threads 2]
                                 [--device cpu|cuda] [--profile] [--json out.json]

Full-size nets are built from the upstream deploy prototxts
(``$UPSTREAM_DIR/lapuschkin-2017/model_definitions/<folder>/deploy.prototxt``) with random
He-normal weights (seeded), written once as caffemodels into ``--cache`` so that OpenCV and the
converter read the same files.  The input is a real 10-crop batch (``caffe.io.oversample`` of a
random 256 x 256 image, 10 x 3 x S x S).  Both engines run in this process with the same number
of threads, interleaved run by run (so a busy machine slows both alike); the median of ``--runs``
timed runs after ``--warmup`` runs is reported, beside separately published reference figures
(real Caffe 1.0 and OpenCV 4.14 measured on another 2-core machine, and a plain PyTorch VGG-16).  ``--profile`` adds
the slowest layers of the converted net.  ``--device cuda`` times the converted net on the GPU
(OpenCV stays on the CPU); it is skipped when CUDA is unavailable.
"""
from __future__ import annotations

import os

# OpenMP threads that spin while waiting lose badly on a busy machine (OpenCV's pool sleeps);
# must be set before torch is imported.  Export OMP_WAIT_POLICY=ACTIVE to measure the other way.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

NETS = {  # key: (upstream folder, input size, label, reference seconds: Caffe 1.0, OpenCV 4.14)
    "adience": ("age_net_definitions", 227, "AdienceNet", 0.19, 0.14),
    "caffenet": ("age_fromscratch_caffereference", 227, "CaffeNet", 0.18, 0.18),
    "googlenet": ("age_fromscratch_googlenet", 224, "GoogLeNet", 0.70, 0.32),
    "vgg16": ("age_finetuning_vgg16", 224, "VGG-16", 2.86, 1.25),
}
PLAIN_TORCH_VGG16 = 1.80


def upstream_dir() -> Path:
    base = Path(os.environ.get("UPSTREAM_DIR", REPO.parent / "shared" / "upstream"))
    return base / "lapuschkin-2017" / "model_definitions"


def random_weights(model, seed: int) -> None:
    """He-normal weights (std sqrt(2 / fan_in)), biases N(0, 0.01): activations keep their scale."""
    import torch

    rng = np.random.RandomState(seed)
    with torch.no_grad():
        for _, idx, param, _, _ in model.param_specs():
            shape = tuple(param.shape)
            if idx == 0 and len(shape) >= 2:
                fan_in = int(np.prod(shape[1:]))
                value = rng.standard_normal(shape).astype(np.float32) * np.float32(np.sqrt(2.0 / fan_in))
            else:
                value = rng.standard_normal(shape).astype(np.float32) * np.float32(0.01)
            param.copy_(torch.from_numpy(value))


def prepare(key: str, cache: Path, seed: int) -> tuple[Path, Path]:
    """The deploy prototxt and a cached random caffemodel for net ``key``."""
    import converters

    folder, *_ = NETS[key]
    proto = upstream_dir() / folder / "deploy.prototxt"
    if not proto.is_file():
        raise SystemExit(f"benchmarks/forward.py: {proto} not found (set UPSTREAM_DIR)")
    weights = cache / f"{folder}_seed{seed}.caffemodel"
    if not weights.is_file():
        model = converters.load_caffe(proto)
        random_weights(model, seed)
        converters.save_caffemodel(model, weights)
    return proto, weights


def ten_crops(size: int, seed: int) -> np.ndarray:
    from converters.pycaffe import io as caffe_io

    rng = np.random.RandomState(seed)
    image = rng.uniform(-120, 130, (256, 256, 3)).astype(np.float32)    # mean-subtracted BGR-like values
    crops = caffe_io.oversample([image], (size, size))
    return np.ascontiguousarray(crops.transpose(0, 3, 1, 2))            # 10 x 3 x S x S


def profile_layers(model, x, top: int = 6) -> list[tuple[str, float]]:
    """Seconds per Caffe layer type (median of 3 passes), largest first."""
    import torch
    from converters.layers.data import InputLayer

    per_type: dict[str, list[float]] = {}
    layers = list(model.net_param.layer)
    modules = list(model.caffe_layers.values())
    with torch.inference_mode():
        for _ in range(3):
            blobs = {model.input_names[0]: x}
            acc: dict[str, float] = {}
            for layer, module in zip(layers, modules):
                if isinstance(module, InputLayer):
                    continue
                start = time.perf_counter()
                out = module(*[blobs[b] for b in layer.bottom])
                if x.device.type == "cuda":
                    torch.cuda.synchronize()
                acc[layer.type] = acc.get(layer.type, 0.0) + time.perf_counter() - start
                outs = (out,) if isinstance(out, torch.Tensor) else out
                for t, o in zip(layer.top, outs):
                    blobs[t] = o
            for k, v in acc.items():
                per_type.setdefault(k, []).append(v)
    ranked = sorted(((k, statistics.median(v)) for k, v in per_type.items()), key=lambda kv: -kv[1])
    return ranked[:top]


def logits_blob(model) -> str:
    """The blob the main output Softmax normalises (compared instead of saturated probabilities)."""
    out = "loss3/loss3" if "loss3/loss3" in model.output_names else model.output_names[0]
    for layer in model.net_param.layer:
        if out in layer.top and layer.type == "Softmax":
            return layer.bottom[0]
    return out


def opencv_net(proto, weights, threads):
    try:
        import cv2
    except ImportError:
        return None
    if int(cv2.__version__.split(".")[0]) >= 5 or not hasattr(cv2.dnn, "readNetFromCaffe"):
        return None
    cv2.setNumThreads(threads)
    net = cv2.dnn.readNetFromCaffe(str(proto), str(weights))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    return net


def onnx_session(model, key: str, cache: Path, seed: int, threads: int):
    """An onnxruntime session on our own ONNX export of ``model`` (cached next to the caffemodel),
    ``threads`` intra-op threads, sequential execution; None when onnxruntime is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    from converters.onnx_export import export_onnx

    path = cache / f"{NETS[key][0]}_seed{seed}.onnx"
    if not path.is_file():
        tmp = path.with_suffix(f".onnx.{os.getpid()}.part")
        export_onnx(model, tmp)
        os.replace(tmp, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def bench_net(key: str, args, cache: Path) -> dict:
    import torch

    import converters

    folder, size, label, ref_caffe, ref_cv = NETS[key]
    proto, weights = prepare(key, cache, args.seed)
    x_np = ten_crops(size, args.seed)
    device = torch.device(args.device)
    start = time.perf_counter()
    model = converters.load_caffe(proto, weights).to(device)
    load_s = time.perf_counter() - start
    x = torch.from_numpy(x_np).to(device)
    # "ours torch": the converted net as load_caffe gives it (channels-last in TEST);
    # "ours default": what reproduce's evaluation runs by default (converters.ort_backend, auto)
    engines = {"ours torch": lambda: model(x)}
    if args.nchw:
        plain = converters.load_caffe(proto, weights, channels_last=False).to(device)
        engines["ours torch NCHW"] = lambda: plain(x)
    from converters import ort_backend
    out_blob = "loss3/loss3" if key == "googlenet" else model.output_names[0]
    default = ort_backend.for_inference(model, "auto", device, outputs=[out_blob],
                                        threads=args.threads)
    if default is not model:
        engines["ours default"] = lambda: default(x)
    ort_session = None
    if not args.no_onnxruntime and device.type == "cpu":
        ort_session = onnx_session(model, key, cache, args.seed, args.threads)
    if ort_session is not None:
        ort_in = ort_session.get_inputs()[0].name
        ort_out = "loss3/loss3" if key == "googlenet" else ort_session.get_outputs()[0].name
        engines["onnxruntime"] = lambda: ort_session.run([ort_out], {ort_in: x_np})
    cv_net = None if args.no_opencv else opencv_net(proto, weights, args.threads)
    if cv_net is not None:
        out_name = "loss3/loss3" if key == "googlenet" else None

        def run_cv():
            cv_net.setInput(x_np)
            return cv_net.forward(out_name) if out_name else cv_net.forward()
        engines["OpenCV"] = run_cv

    def timed(fn):
        with torch.inference_mode():
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - start

    times = {name: [] for name in engines}
    for _ in range(args.warmup):
        for fn in engines.values():
            timed(fn)
    for _ in range(args.runs):          # interleaved: a busy machine slows every engine alike
        for name, fn in engines.items():
            times[name].append(timed(fn))
    row = {"net": label, "key": key, "input": list(x_np.shape), "device": str(device), "threads": args.threads,
           "load_s": load_s, "ref_caffe_s": ref_caffe, "ref_opencv_s": ref_cv,
           "median_s": {name: statistics.median(v) for name, v in times.items()}, "runs_s": times}
    if cv_net is not None:
        blob = logits_blob(model)
        writer = [layer.name for layer in model.net_param.layer if blob in layer.top][-1]
        with torch.inference_mode():
            ours = model.forward_blobs({model.input_names[0]: x})[blob].float().cpu().numpy()
        cv_net.setInput(x_np)
        theirs = cv_net.forward(writer).reshape(ours.shape)
        row["logits_blob"] = blob
        row["rel_diff_vs_opencv"] = float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-30))
    if args.profile:
        row["profile"] = profile_layers(model, x)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nets", default="adience,caffenet,googlenet,vgg16",
                        help=f"comma-separated subset of {','.join(NETS)}")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per net (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    parser.add_argument("--threads", type=int, default=2, help="torch and OpenCV threads (default 2)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--nchw", action="store_true",
                        help="also time the converted net in torch's default NCHW memory layout")
    parser.add_argument("--no-opencv", action="store_true", help="do not run OpenCV's importer")
    parser.add_argument("--no-onnxruntime", action="store_true",
                        help="do not run onnxruntime on our ONNX export (CPU only)")
    parser.add_argument("--profile", action="store_true", help="time the converted net's layer types")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "converters-bench"),
                        help="folder for the random caffemodels (VGG-16: 540 MB)")
    parser.add_argument("--json", help="also write the results as JSON")
    args = parser.parse_args(argv)

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("benchmarks/forward.py: --device cuda skipped: CUDA is not available to PyTorch")
        return 0
    torch.set_num_threads(args.threads)
    keys = [k.strip() for k in args.nets.split(",") if k.strip()]
    unknown = [k for k in keys if k not in NETS]
    if unknown:
        parser.error(f"unknown net(s) {unknown}; choose from {list(NETS)}")
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    rows = [bench_net(k, args, cache) for k in keys]

    try:
        import cv2
        cv_version = cv2.__version__
    except ImportError:
        cv_version = "-"
    engines = list(rows[0]["median_s"]) if rows else []
    print(f"forward pass of a 10-crop batch, median of {args.runs} interleaved runs, {args.threads} thread(s), "
          f"device {args.device}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; torch {torch.__version__}, "
          f"OpenCV {cv_version}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    head = f"{'net':<11} {'input':<14}" + "".join(f" {name:>{max(10, len(name))}}" for name in engines)
    head += f" {'ours/OpenCV':>11} {'logits rel.diff':>15}   {'ref: Caffe 1.0':>16} {'OpenCV 4.14':>11}"
    print(head)
    for r in rows:
        med = r["median_s"]
        line = f"{r['net']:<11} {'x'.join(map(str, r['input'])):<14}"
        line += "".join(f" {med[name]:>{max(10, len(name)) - 1}.3f}s" for name in engines)
        best = med.get("ours default", med["ours torch"])
        ratio = f"{best / med['OpenCV']:.2f}" if "OpenCV" in med else "-"
        diff = f"{r['rel_diff_vs_opencv']:.1e}" if "rel_diff_vs_opencv" in r else "-"
        line += f" {ratio:>11} {diff:>15}   {r['ref_caffe_s']:>15.2f}s {r['ref_opencv_s']:>10.2f}s"
        print(line)
    if any(r["key"] == "vgg16" for r in rows):
        print(f"(ref: plain PyTorch VGG-16 {PLAIN_TORCH_VGG16:.2f}s.  ours/OpenCV: our default path over OpenCV, "
              f"< 1 is faster)")
    for r in rows:
        if "profile" in r:
            parts = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in r["profile"])
            print(f"  {r['net']} layer types: {parts}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
