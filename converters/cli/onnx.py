"""``python -m converters onnx PROTOTXT [CAFFEMODEL] -o model.onnx``: export to ONNX and check it.

What it owns: the command line of :mod:`converters.onnx_export`.  The net is converted (or a
``model.pt`` from ``convert`` is loaded), exported with a dynamic batch axis, then run in
onnxruntime beside the PyTorch model on a random batch; the largest difference per output is
printed and the exit code is 1 when one exceeds ``--tolerance * max(1, max|output|)``.
"""
from __future__ import annotations

import sys
import warnings

from . import UserError
from .convert import parse_input_shapes

NAME = "onnx"
HELP = "export a Caffe net (or a converted model.pt) to ONNX and check it in onnxruntime"


def add_arguments(parser) -> None:
    parser.add_argument("prototxt", help="deploy prototxt (new or V1 syntax), or a model.pt written by 'convert'")
    parser.add_argument("caffemodel", nargs="?", help="trained weights (without them: Caffe fillers)")
    parser.add_argument("-o", "--output", required=True, help="output file (model.onnx)")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (>= 13; default 18)")
    parser.add_argument("--static-batch", action="store_true",
                        help="keep the declared batch size instead of a dynamic batch axis")
    parser.add_argument("--input-shape", action="append", default=[], metavar="BLOB=N,C,H,W",
                        help="shape of an input blob (repeatable), e.g. data=1,3,227,227")
    parser.add_argument("--blob", action="append", default=[], metavar="NAME",
                        help="export these blobs as outputs (repeatable; default: the net's outputs)")
    parser.add_argument("--exporter", choices=("auto", "dynamo", "torchscript"), default="auto",
                        help="torch.onnx exporter (auto: dynamo for opset >= 18, else torchscript)")
    parser.add_argument("--phase", choices=("test", "train"), default="test", help="NetState phase (default test)")
    parser.add_argument("--no-check", action="store_true", help="do not run onnxruntime")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="allowed max |onnx - torch| per output, times max(1, max|output|) (default 1e-4)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random check input")


def _load(args, shapes):
    from .. import load_caffe, load_converted

    if args.prototxt.endswith((".pt", ".pth")) and args.caffemodel is None:
        return load_converted(args.prototxt)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_caffe(args.prototxt, args.caffemodel, phase=args.phase, input_shapes=shapes or None)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    return model


def _stages(args):
    """A three-step bar (load, export, check) on stderr; silent when stderr is not a terminal."""
    from tqdm import tqdm

    return tqdm(total=2 if args.no_check else 3, unit="step", leave=False, disable=None,
                file=sys.stderr, bar_format="{desc} [{n_fmt}/{total_fmt}, {elapsed}]")


def _shape_text(shape, dynamic: bool) -> str:
    dims = [str(d) for d in shape]
    if dynamic and dims:
        dims[0] = "batch"
    return "[" + ", ".join(dims) + "]"


def run(args) -> int:
    bar = _stages(args)
    try:
        return _run(args, bar)
    finally:
        bar.close()


def _run(args, bar) -> int:
    from ..onnx_export import (MIN_OPSET, ExportError, check_onnx, export_onnx, onnx_opset,
                               within_tolerance)

    if args.opset < MIN_OPSET:
        raise UserError(f"--opset {args.opset}: ONNX export needs opset >= {MIN_OPSET}")
    if args.tolerance <= 0:
        raise UserError("--tolerance must be > 0")
    from ..outputs import check_output_file

    shapes = parse_input_shapes(args.input_shape)
    check_output_file(args.output, "ONNX file")
    # Where the time goes (cProfile, a 180k-parameter net, 2 CPU cores): importing torch ~3.5 s;
    # the dynamo exporter (torch.export tracing + onnxscript building its torchlib registry)
    # ~8 s of fixed cost whatever the net's size; the TorchScript exporter (--exporter
    # torchscript) ~1.5 s.  The stages are opaque calls, so a bar shows which one runs.
    bar.set_description("onnx: loading the Caffe net")
    model = _load(args, shapes)
    bar.update(1)
    unknown = [b for b in args.blob if b not in model.blob_shapes]
    if unknown:
        raise UserError(f"--blob {', '.join(unknown)}: not a blob of the net")
    dynamo = {"auto": None, "dynamo": True, "torchscript": False}[args.exporter]
    uses_dynamo = dynamo if dynamo is not None else args.opset >= 18
    bar.set_description("onnx: exporting (torch.export + onnxscript, ~10 s)" if uses_dynamo
                        else "onnx: exporting (TorchScript)")
    try:
        export_onnx(model, args.output, opset=args.opset, dynamic_batch=not args.static_batch,
                    outputs=args.blob or None, dynamo=dynamo, input_shapes=shapes or None)
    except ExportError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch.onnx raises many kinds; say which layer set fails
        raise ExportError(f"{args.output}: export failed: {type(exc).__name__}: "
                          f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from exc
    bar.update(1)
    dynamic = not args.static_batch
    outputs = args.blob or model.output_names
    if args.no_check:
        bar.close()     # before the summary lines
    print(f"wrote {args.output}: net {model.net_param.name!r}, opset {onnx_opset(args.output)}, "
          f"{'dynamic' if dynamic else 'static'} batch")
    for name in model.input_names:
        print(f"  input  {name} {_shape_text(shapes.get(name) or model.input_shapes[name], dynamic)}")
    for name in outputs:
        print(f"  output {name} {_shape_text(model.blob_shapes[name], dynamic)}")
    if args.no_check:
        return 0
    batch = 3 if dynamic else None
    bar.set_description("onnx: checking in onnxruntime")
    result = check_onnx(args.output, model, batch=batch or model.input_shapes[model.input_names[0]][0],
                        seed=args.seed, input_shapes=shapes or None)
    bar.update(1)
    bar.close()         # before the summary lines
    print(f"onnxruntime vs PyTorch on a random batch{f' of {batch}' if batch else ''} (seed {args.seed}):")
    ok = True
    for name, (diff, ref) in result.items():
        good = within_tolerance(diff, ref, args.tolerance)
        ok &= good
        print(f"  {name}: max|onnx - torch| = {diff:.3g} (max|torch| = {ref:.3g}) {'ok' if good else 'TOO LARGE'}")
    print("check: OK" if ok else f"check: FAILED (tolerance {args.tolerance:g} x max(1, max|output|))")
    return 0 if ok else 1
