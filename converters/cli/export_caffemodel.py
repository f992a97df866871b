"""``python -m converters export-caffemodel model.pt -o weights.caffemodel``: the way back to Caffe.

What it owns: the command line of :func:`converters.save_caffemodel` for a ``model.pt`` written
by ``python -m converters convert`` (and possibly fine-tuned in PyTorch since): every layer with
its current blobs, as ``net.save()`` in pycaffe writes them (new-style ``layer`` entries, blobs
with ``shape``), loadable by Caffe, OpenCV and ``converters.load_caffe``.
"""
from __future__ import annotations

NAME = "export-caffemodel"
HELP = "write a converted model.pt back as a Caffe .caffemodel"


def add_arguments(parser) -> None:
    parser.add_argument("model", help="model.pt written by 'python -m converters convert'")
    parser.add_argument("-o", "--output", required=True, help="output .caffemodel")
    parser.add_argument("--prototxt-out", metavar="PATH",
                        help="also write the net definition (the phase-filtered prototxt) as text")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")


def run(args) -> int:
    from google.protobuf import text_format

    from .. import load_converted, save_caffemodel
    from ..formats import atomic_write_bytes

    from ..outputs import check_output_file

    check_output_file(args.output, "caffemodel")
    if args.prototxt_out:
        check_output_file(args.prototxt_out, "prototxt")
    model = load_converted(args.model)
    save_caffemodel(model, args.output)
    if args.prototxt_out:
        atomic_write_bytes(args.prototxt_out, text_format.MessageToString(model.net_param).encode("utf-8"))
    if not args.quiet:
        n_layers = sum(1 for m in model.caffe_layers.values() if getattr(m, "blob_names", ()))
        n_params = sum(p.numel() for _, _, p, _, _ in model.param_specs())
        print(f"wrote {args.output}: net {model.net_param.name!r}, {n_layers} layers with weights, "
              f"{n_params} parameters")
        if args.prototxt_out:
            print(f"wrote {args.prototxt_out}")
    return 0
