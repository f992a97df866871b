"""``python -m converters convert PROTOTXT [CAFFEMODEL] -o model.pt``: a Caffe net to a PyTorch file.

What it owns: the command line of the converter.  The file holds plain data only (``torch.save``
of a dict: ``format``, the filtered ``NetParameter`` as bytes, ``input_shapes``, ``state_dict``),
so ``converters.load_converted(path)`` rebuilds the net with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import re
import sys
import warnings

from . import UserError

NAME = "convert"
HELP = "convert a Caffe net (+ caffemodel) to a PyTorch model file loadable with converters.load_converted"


def add_arguments(parser) -> None:
    parser.add_argument("prototxt", help="net definition (deploy or train_val prototxt, new or V1 syntax)")
    parser.add_argument("caffemodel", nargs="?", help="trained weights (new or legacy V1 caffemodel); "
                                                      "without it the layers keep their Caffe fillers")
    parser.add_argument("-o", "--output", required=True, help="output file (model.pt)")
    parser.add_argument("--phase", choices=("test", "train"), default="test",
                        help="NetState phase used to select layers (default: test)")
    parser.add_argument("--level", type=int, default=0, help="NetState level (default 0)")
    parser.add_argument("--stage", action="append", default=[], help="NetState stage (repeatable)")
    parser.add_argument("--input-shape", action="append", default=[], metavar="BLOB=N,C,H,W",
                        help="shape of an input blob (repeatable), e.g. data=10,3,227,227")
    parser.add_argument("--caffemodel-out", metavar="PATH",
                        help="also write the converted weights back as a caffemodel")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")


def parse_input_shapes(items) -> dict:
    shapes = {}
    for item in items:
        name, sep, dims = item.partition("=")
        try:
            shape = tuple(int(d) for d in re.split(r"[,x]", dims))
        except ValueError:
            shape = ()
        if not sep or not name or not shape or any(d <= 0 for d in shape):
            raise UserError(f"--input-shape {item!r}: expected BLOB=N,C,H,W with positive integers")
        shapes[name] = shape
    return shapes


def run(args) -> int:
    from .. import load_caffe, save_caffemodel, save_converted

    from ..outputs import check_output_file

    shapes = parse_input_shapes(args.input_shape)
    check_output_file(args.output)
    if args.caffemodel_out:
        check_output_file(args.caffemodel_out, "caffemodel")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_caffe(args.prototxt, args.caffemodel, phase=args.phase, level=args.level,
                           stages=args.stage, input_shapes=shapes or None)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    save_converted(model, args.output)
    if args.caffemodel_out:
        save_caffemodel(model, args.caffemodel_out)
    if not args.quiet:
        n_params = sum(p.numel() for _, _, p, _, _ in model.param_specs())
        n_layers = len(model.net_param.layer)
        print(f"wrote {args.output}: net {model.net_param.name!r} ({model.phase}), {n_layers} layers, "
              f"{n_params} parameters")
        print("  inputs:  " + ", ".join(f"{k} {tuple(v)}" for k, v in model.input_shapes.items()))
        print("  outputs: " + ", ".join(f"{k} {model.blob_shapes[k]}" for k in model.output_names))
        if model.missing_weights:
            print(f"  no weights (Caffe fillers): {', '.join(model.missing_weights)}")
        if args.caffemodel_out:
            print(f"wrote {args.caffemodel_out}")
    return 0
