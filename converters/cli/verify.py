"""``python -m converters verify PROTOTXT CAFFEMODEL``: compare the conversion with OpenCV's Caffe importer.

What it owns: an independent check of a conversion without Caffe.  The net is converted (TEST
phase) and loaded by ``cv2.dnn.readNetFromCaffe`` (OpenCV 4.x; the importer is gone in OpenCV 5);
both run on the same random input (uniform in [-128, 128), like mean-subtracted pixels) and the
largest difference of every output blob is printed - with ``--blobs`` also of every intermediate
blob OpenCV exposes (a blob is compared with the output of the last layer writing it, so in-place
ReLUs are included).  Exit code 1 when a difference exceeds
``--rtol * max|opencv| + --atol`` (default 1e-4 and 1e-5, the golden-file tolerance).

OpenCV's known deviations handled here:
* it ignores LRN ``k`` (computes k = 1): when a net uses ACROSS_CHANNELS LRN with k != 1 the
  comparison is made against our net with k = 1 in those layers, and the output says so;
* it has no NetState rules: it is given the phase-filtered net (written to a temporary prototxt)
  whenever filtering changes the net;
* fork layers (SSD, R-FCN, ...): our net is built with ``semantics="opencv"`` (OpenCV 4's
  definitions where they deviate from the forks: docs/layers.md); DetectionOutput rows are compared
  after dropping OpenCV's zero padding and sorting (image, label, -score), with the golden-file
  rule (same rows, score within 1e-5, box within 1e-4);
* OpenCV names a Convolution (and ConvolutionDepthwise) layer after its top blob.
Without an importable OpenCV < 5 the command says so and exits 0.
"""
from __future__ import annotations

import os
import sys
import tempfile
import warnings

import numpy as np

from . import UserError

NAME = "verify"
HELP = "compare the converted net with OpenCV's Caffe importer on a random input"


def add_arguments(parser) -> None:
    parser.add_argument("prototxt", help="deploy prototxt (new or V1 syntax)")
    parser.add_argument("caffemodel", help="trained weights (new or legacy V1 caffemodel)")
    parser.add_argument("--input-shape", action="append", default=[], metavar="[BLOB=]N,C,H,W",
                        help="input shape (repeatable; BLOB= may be left out for a single-input net)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random input (default 0)")
    parser.add_argument("--blobs", action="store_true", help="also compare the intermediate blobs")
    parser.add_argument("--input-range", default="-128,128", metavar="LO,HI",
                        help="range of the uniform random input (default -128,128: mean-subtracted pixels; "
                             "use -1,1 for nets fed (pixel - 127.5) / 127.5 such as MobileNet-SSD, whose "
                             "softmax and NMS are ill-conditioned on pixel-scale input)")
    parser.add_argument("--rtol", type=float, default=1e-4, help="relative tolerance (default 1e-4)")
    parser.add_argument("--atol", type=float, default=1e-5, help="absolute tolerance (default 1e-5)")


def _parse_shapes(items, input_names) -> dict:
    shapes = {}
    for item in items:
        name, sep, dims = item.rpartition("=")
        if not sep:
            if len(input_names) != 1:
                raise UserError(f"--input-shape {item!r}: the net has inputs {input_names}; write BLOB=N,C,H,W")
            name = input_names[0]
        try:
            shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
        except ValueError:
            shape = ()
        if not shape or any(d <= 0 for d in shape):
            raise UserError(f"--input-shape {item!r}: expected [BLOB=]N,C,H,W with positive integers")
        if name not in input_names:
            raise UserError(f"--input-shape {item!r}: {name!r} is not an input of the net {input_names}")
        shapes[name] = shape
    return shapes


def opencv_status():
    """``(cv2 module or None, message)``: OpenCV with a Caffe importer, or why there is none."""
    try:
        import cv2
    except ImportError:
        return None, "OpenCV (cv2) is not installed: pip install 'opencv-python-headless<5'"
    version = getattr(cv2, "__version__", "?")
    try:
        major = int(version.split(".")[0])
    except ValueError:
        major = 0
    if major >= 5 or not hasattr(getattr(cv2, "dnn", None), "readNetFromCaffe"):
        return None, (f"OpenCV {version} has no Caffe importer (removed in OpenCV 5); verify compares "
                      "against OpenCV 4.x: pip install 'opencv-python-headless<5' (running Caffe models "
                      "needs no OpenCV 4: see python -m converters.cvdnn)")
    return cv2, f"OpenCV {version} cv2.dnn.readNetFromCaffe"


def _lrn_k_layers(net_param) -> list:
    from ..proto import caffe_pb2 as pb

    return [(layer.name, layer.lrn_param.k) for layer in net_param.layer
            if layer.type == "LRN" and layer.lrn_param.norm_region == pb.LRNParameter.ACROSS_CHANNELS
            and layer.lrn_param.k != 1.0]


def _with_k1(net_param):
    from ..proto import caffe_pb2 as pb

    copy = pb.NetParameter()
    copy.CopyFrom(net_param)
    for layer in copy.layer:
        if layer.type == "LRN":
            layer.lrn_param.k = 1.0
    return copy


_NAMED_BY_TOP = ("Convolution", "ConvolutionDepthwise")   # caffe_importer.cpp names them after top 0


def _writers(net_param) -> dict:
    """blob -> (OpenCV's name of the last layer writing it, top index)."""
    out = {}
    for layer in net_param.layer:
        name = layer.top[0] if layer.type in _NAMED_BY_TOP and len(layer.top) else layer.name
        for i, top in enumerate(layer.top):
            out[top] = (name, i)
    return out


def _detection_rows(a: np.ndarray) -> np.ndarray:
    rows = a.reshape(-1, 7)
    rows = rows[np.any(rows != 0, axis=1)]
    return rows[np.lexsort((rows[:, 6], rows[:, 5], rows[:, 4], rows[:, 3], -rows[:, 2], rows[:, 1], rows[:, 0]))]


def _compare_detections(mine: np.ndarray, ref: np.ndarray) -> tuple[bool, str]:
    a, b = _detection_rows(mine), _detection_rows(ref)
    if a.shape != b.shape:
        return False, f"{len(a)} detections, OpenCV {len(b)}"
    if not np.array_equal(a[:, :2], b[:, :2]):
        return False, "image/label columns differ"
    ds = float(np.abs(a[:, 2] - b[:, 2]).max(initial=0))
    db = float(np.abs(a[:, 3:] - b[:, 3:]).max(initial=0))
    return ds <= 1e-5 and db <= 1e-4, f"{len(a)} detections, score diff {ds:.2g}, box diff {db:.2g}"


def _opencv_forward(cv2, prototxt, caffemodel, inputs: dict, layer_names: list) -> dict:
    net = cv2.dnn.readNetFromCaffe(prototxt, caffemodel)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    if len(layer_names) > 1:
        # fused layers (conv+ReLU, branches written straight into a Concat buffer) do not keep
        # their own outputs: without fusion every requested layer output is its own blob
        net.enableFusion(False)
    for name, arr in inputs.items():
        net.setInput(arr, name)
    known = set(net.getLayerNames())
    wanted = [n for n in layer_names if n in known]
    outs = net.forward(wanted) if wanted else []
    return dict(zip(wanted, outs))


def run(args) -> int:
    import torch

    from .. import load_caffe
    from ..formats import filter_net, read_net

    cv2, status = opencv_status()
    if cv2 is None:
        print(f"verify: not run - {status}")
        return 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw = read_net(args.prototxt)
        model = load_caffe(raw, args.caffemodel, phase="test", semantics="opencv")
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    shapes = _parse_shapes(args.input_shape, model.input_names)
    for name, shape in shapes.items():
        declared = model.input_shapes[name]
        if len(shape) != len(declared):
            raise UserError(f"--input-shape: {name!r} has {len(declared)} axes {tuple(declared)}, got {shape}")
    try:
        lo, hi = (float(v) for v in args.input_range.split(","))
    except ValueError:
        raise UserError(f"--input-range {args.input_range!r}: expected LO,HI (two numbers)") from None
    if not lo < hi:
        raise UserError(f"--input-range {args.input_range!r}: LO must be below HI")
    rng = np.random.RandomState(args.seed)
    inputs = {}
    for name in model.input_names:
        shape = shapes.get(name) or model.input_shapes[name]
        inputs[name] = rng.uniform(lo, hi, tuple(shape)).astype(np.float32)

    notes = []
    from ..layers.registry import is_fork_type
    forks = sorted({layer.type for layer in model.net_param.layer if is_fork_type(layer.type)})
    if forks:
        notes.append(f"fork layer types {', '.join(forks)} built with OpenCV 4 semantics "
                     f"(semantics='opencv'; their differences from the forks: docs/layers.md)")
    k_layers = _lrn_k_layers(model.net_param)
    reference_model = model
    if k_layers:
        listing = ", ".join(f"{n!r} (k={k:g})" for n, k in k_layers)
        notes.append(f"OpenCV ignores LRN k: layer(s) {listing} are compared against our net with k = 1 "
                     f"(the converted model keeps Caffe's k)")
        reference_model = load_caffe(_with_k1(model.net_param), args.caffemodel, phase="test",
                                     semantics="opencv")
    with torch.no_grad():
        ours = reference_model.forward_blobs({k: torch.from_numpy(v) for k, v in inputs.items()})

    writers = _writers(model.net_param)
    outputs = list(model.output_names)
    if args.blobs:
        blob_names = [b for b in model.blob_shapes if b not in inputs]
    else:
        blob_names = outputs
    tmpdir = None
    prototxt = args.prototxt
    filtered = filter_net(raw, "TEST")
    if len(filtered.layer) != len(raw.layer):
        from google.protobuf import text_format
        tmpdir = tempfile.TemporaryDirectory(prefix="converters-verify-")
        prototxt = os.path.join(tmpdir.name, "filtered_test.prototxt")
        with open(prototxt, "w") as fh:
            fh.write(text_format.MessageToString(model.net_param))
        notes.append("OpenCV was given the TEST-phase filtered net (it has no include/exclude rules)")
    try:
        layer_names = list(dict.fromkeys(writers[b][0] for b in blob_names))
        try:
            theirs = _opencv_forward(cv2, prototxt, args.caffemodel, inputs, layer_names)
        except cv2.error as exc:
            first = next((ln for ln in str(exc).splitlines() if "error:" in ln), str(exc).strip().splitlines()[-1])
            print(f"verify: not run - OpenCV cannot load or run this net: {first.strip()}")
            return 0
    finally:
        if tmpdir is not None:
            tmpdir.cleanup()

    shape_text = ", ".join(f"{k} {tuple(v.shape)}" for k, v in inputs.items())
    print(f"verify: {args.prototxt} + {args.caffemodel}")
    print(f"  net {model.net_param.name!r} (TEST), input {shape_text}, seed {args.seed}, uniform in [{lo:g}, {hi:g})")
    print(f"  reference: {status}")
    for note in notes:
        print(f"  note: {note}")
    width = max([len(b) for b in blob_names] + [4])
    print(f"  {'blob':<{width}}  {'shape':<18} {'max|ours-opencv|':>16} {'max|opencv|':>12} {'tolerance':>10}  status")
    failed, compared, skipped = [], 0, []
    worst = 0.0
    types = {layer.name: layer.type for layer in model.net_param.layer}
    for blob in blob_names:
        layer, index = writers[blob]
        ref = theirs.get(layer)
        if ref is None or index != 0:
            skipped.append(blob)
            continue
        mine = ours[blob].detach().cpu().numpy()
        if types.get(layer) == "DetectionOutput":
            ok, text = _compare_detections(mine, ref)
            compared += 1
            if not ok:
                failed.append(blob)
            print(f"  {blob:<{width}}  {str(tuple(mine.shape)):<18} {text}  {'ok' if ok else 'TOO LARGE'}")
            continue
        if ref.size != mine.size:
            print(f"  {blob:<{width}}  {str(tuple(mine.shape)):<18} shape differs: OpenCV {tuple(ref.shape)}")
            failed.append(blob)
            continue
        ref = ref.reshape(mine.shape)
        diff = float(np.abs(mine.astype(np.float64) - ref).max()) if mine.size else 0.0
        scale = float(np.abs(ref).max()) if ref.size else 0.0
        tol = args.rtol * scale + args.atol
        ok = diff <= tol
        compared += 1
        worst = max(worst, diff / tol if tol > 0 else 0.0)
        if not ok:
            failed.append(blob)
        if blob in outputs or args.blobs:
            tag = "ok" if ok else "TOO LARGE"
            if blob in outputs and args.blobs:
                tag += " (output)"
            print(f"  {blob:<{width}}  {str(tuple(mine.shape)):<18} {diff:>16.3g} {scale:>12.4g} {tol:>10.3g}  {tag}")
    if skipped:
        print(f"  not exposed by OpenCV (not compared): {', '.join(skipped)}")
    if compared == 0:
        print("verify: not run - OpenCV exposes none of the requested blobs")
        return 0
    if failed:
        print(f"result: FAILED - {len(failed)} of {compared} blob(s) beyond tolerance: {', '.join(failed)}")
        return 1
    print(f"result: OK - {compared} blob(s) within tolerance (largest difference {worst:.2g} of the tolerance)")
    return 0
