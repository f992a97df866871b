"""``python -m converters explain PROTOTXT CAFFEMODEL IMAGE... --out DIR``: LRP heatmaps of a Caffe net.

What it owns: the command line of :mod:`converters.lrp`.  Per image it writes, into ``--out``:
``<stem>_relevance.npy`` (the input relevance, float32 (C, H, W), channels as the net's input),
``<stem>_relevance.json`` (class explained, start layer and score, relevance sum, rule per
layer), ``<stem>_black-firered.png`` and ``<stem>_seismic.png`` (channel-summed, centred at 0),
``<stem>_input.png`` (the crop the net saw) and ``<stem>_panel.png`` (input above heatmap).

Defaults are the paper's rules (toolbox formula 102: flat up to Caffe layer ``--flat-upto``,
alpha 2 / beta 1 on convolutions, epsilon 0.1 on inner products, the toolbox's LRN rule) with
the flat part on Caffe layer 0 only; the paper used 0 (CaffeNet), 4 (GoogLeNet), 9 (VGG-16).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from . import UserError

NAME = "explain"
HELP = "LRP heatmaps (the paper's rules by default) of a Caffe net for image files"


def add_arguments(parser) -> None:
    parser.add_argument("prototxt", help="deploy net definition")
    parser.add_argument("caffemodel", help="trained weights")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image file(s) (read with OpenCV as BGR)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--mean", help="mean image (mean.binaryproto), subtracted on the 0..255 scale")
    parser.add_argument("--mean-value", metavar="B,G,R",
                        help="... or a per-channel mean (BGR, 0..255), e.g. 104,117,123; without any mean a "
                             "warning says the heatmap explains raw pixels")
    parser.add_argument("--labels", metavar="FILE|NAME,NAME,...",
                        help="class names (a file with one name per line, or comma-separated), shown with the "
                             "explained class and written into the record")
    parser.add_argument("--class", dest="target", default="predicted", metavar="N|predicted",
                        help="class to explain: an index, or 'predicted' (the top-scoring class; default)")
    parser.add_argument("--composite", default="paper",
                        help="rule set: paper (default), epsilon, alpha-beta, alpha-beta-epsilon, wsquare")
    parser.add_argument("--eps", type=float, default=0.1, help="epsilon of the epsilon rule (default 0.1, "
                                                               "the upstream script; the paper text says 0.01)")
    parser.add_argument("--beta", type=float, default=1.0, help="beta of the alpha-beta rule, alpha = 1 + beta "
                                                                "(default 1)")
    parser.add_argument("--flat-upto", default="0", metavar="K|LAYER|none",
                        help="flat rule on Convolution/InnerProduct layers with Caffe index <= K (or <= the "
                             "index of layer LAYER); 'none' disables it (default 0)")
    parser.add_argument("--flat-mode", choices=("toolbox", "normalized"), default=None,
                        help="flat weights 1/(kh*kw) as lrp_toolbox or conservative normalisation (default: "
                             "as --variant; same as the quirk flat_per_kernel)")
    parser.add_argument("--variant", choices=("toolbox", "corrected"), default="toolbox",
                        help="toolbox: copy every lrp_toolbox quirk (default, the paper's heatmaps); "
                             "corrected: none of them (see docs/lrp.md)")
    parser.add_argument("--no-quirk", action="append", default=[], metavar="NAME",
                        help="switch one toolbox quirk off (repeatable): group0_bias, aux_head_injection, "
                             "flat_per_kernel, avgpool_near_zero, numbering_2015")
    parser.add_argument("--lrn", choices=("taylor", "identity"), default="taylor",
                        help="LRN rule: the toolbox's Taylor-type rule (default) or identity")
    parser.add_argument("--start-layer", help="layer (or its top blob) whose score is explained "
                                              "(default: the last InnerProduct)")
    parser.add_argument("--preprocess", choices=("protocol", "demonstrator"), default="protocol",
                        help="protocol: resize to the mean's size (256x256), subtract the mean, centre crop "
                             "(default); demonstrator: lrp_toolbox's lrp_demo (longer side to the input size)")
    parser.add_argument("--resize", type=int, default=256, help="resize size without --mean (default 256)")
    parser.add_argument("--phase", choices=("test", "train"), default="test", help="NetState phase (default test)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")


def parse_target(text):
    if text is None or str(text).lower() == "predicted":
        return "predicted"
    try:
        value = int(text)
    except ValueError:
        raise UserError(f"--class: expected a class index or 'predicted', got {text!r}") from None
    if value < 0:
        raise UserError(f"--class: class indices start at 0, got {value}")
    return value


def parse_flat_upto(text):
    if text is None or str(text).lower() in ("none", "-1", "off"):
        return None
    try:
        return int(text)
    except ValueError:
        return str(text)


def build_composite(args):
    from ..lrp import get_composite
    if args.eps < 0:
        raise UserError(f"--eps must be >= 0, got {args.eps}")
    if args.beta < 0:
        raise UserError(f"--beta must be >= 0 (alpha = 1 + beta), got {args.beta}")
    from ..lrp import Quirks
    try:
        quirks = Quirks.resolve(getattr(args, "variant", "toolbox"), off=getattr(args, "no_quirk", []) or ())
    except ValueError as exc:
        raise UserError(f"--variant/--no-quirk: {exc}") from None
    params = {"eps": args.eps, "beta": args.beta, "lrn": args.lrn, "quirks": quirks}
    if args.composite == "paper":
        params.update(flat_upto=parse_flat_upto(args.flat_upto), flat_mode=args.flat_mode)
    elif args.composite == "wsquare":
        params.update(flat_upto=parse_flat_upto(args.flat_upto))
    try:
        return get_composite(args.composite, **params)
    except ValueError as exc:
        raise UserError(f"--composite: {exc}") from None


def parse_mean_value(text, size: int):
    """``B,G,R`` -> a constant (3, size, size) float32 mean image."""
    import numpy as np
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 3) or not all(np.isfinite(values)):
        raise UserError(f"--mean-value: expected B,G,R (three numbers, 0..255 scale), got {text!r}")
    values = values * 3 if len(values) == 1 else values
    return np.broadcast_to(np.asarray(values, np.float32)[:, None, None], (3, size, size)).copy()


def read_class_names(spec) -> list[str] | None:
    """``--labels``: a file with one name per line, or comma-separated names."""
    if not spec:
        return None
    p = Path(spec)
    if p.is_file():
        try:
            names = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"--labels {spec}: cannot be read ({exc})") from None
    elif "," in str(spec):
        names = [n.strip() for n in str(spec).split(",")]
        if not all(names):
            raise UserError(f"--labels {spec!r}: an empty name in the comma-separated list")
    else:
        raise UserError(f"--labels: {spec!r} is neither a file nor comma-separated names")
    if not names:
        raise UserError(f"--labels {spec}: no class names in the file")
    return names


def _stems(paths) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for p in paths:
        stem = Path(p).stem or "image"
        k = seen.get(stem, 0)
        seen[stem] = k + 1
        out.append(stem if k == 0 else f"{stem}_{k + 1}")
    return out


def write_outputs(out: Path, stem: str, relevance, record: dict, crop_bgr) -> dict:
    """The files of one explained image; returns name -> path."""
    import numpy as np
    from ..lrp import render
    out.mkdir(parents=True, exist_ok=True)
    r = relevance.detach().cpu().numpy()[0].astype(np.float32)
    files = {"relevance": out / f"{stem}_relevance.npy", "record": out / f"{stem}_relevance.json"}
    np.save(files["relevance"], r)
    hm = {}
    for cmap in render.CMAPS:
        hm[cmap] = render.colorize(r, cmap)
        files[cmap] = render.write_png(out / f"{stem}_{cmap}.png", hm[cmap])
    rgb = render.input_rgb(crop_bgr[..., :])
    files["input"] = render.write_png(out / f"{stem}_input.png", rgb)
    files["panel"] = render.panel(out / f"{stem}_panel.png", [rgb], [[hm["black-firered"]], [hm["seismic"]]],
                                  row_titles=["black-firered", "seismic"],
                                  col_titles=[f"class {record['classes'][0]}" + (
                                      f" {record['label']}" if record.get("label") else "")])
    record = dict(record, files={k: str(v) for k, v in files.items()})
    files["record"].write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return files


def run(args) -> int:
    import warnings

    import torch

    from .. import load_caffe
    from ..formats import read_mean
    from ..lrp import explain
    from ..lrp.image import prepare

    target = parse_target(args.target)
    composite = build_composite(args)
    if args.resize <= 0:
        raise UserError(f"--resize must be positive, got {args.resize}")
    if args.mean and args.mean_value:
        raise UserError("--mean and --mean-value: give one of them")
    names = read_class_names(args.labels)
    for p in [args.prototxt, args.caffemodel] + list(args.images) + ([args.mean] if args.mean else []):
        if not Path(p).is_file():
            raise FileNotFoundError(2, "No such file", str(p))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_caffe(args.prototxt, args.caffemodel, phase=args.phase)
    if not model.input_names:
        raise UserError(f"{args.prototxt}: the net declares no input blob")
    shape = model.input_shapes[model.input_names[0]]
    if len(shape) != 4 or shape[1] != 3 or shape[2] != shape[3]:
        raise UserError(f"{args.prototxt}: input blob '{model.input_names[0]}' has shape {tuple(shape)}; "
                        f"explain needs a square 3-channel image input (N, 3, S, S)")
    size = int(shape[2])
    if args.mean:
        mean, mean_desc = read_mean(args.mean), str(args.mean)
    elif args.mean_value:
        side = size if args.preprocess == "demonstrator" else args.resize
        mean, mean_desc = parse_mean_value(args.mean_value, side), f"B,G,R = {args.mean_value}"
    else:
        mean, mean_desc = None, None
        # Caffe classifiers are trained on mean-subtracted pixels: without the mean the scores
        # (and so the explained class and its heatmap) describe a different input
        print(f"python -m converters {NAME}: warning: no --mean or --mean-value given: raw 0..255 pixels are "
              "fed to the net (the paper's nets expect the training mean subtracted, e.g. --mean-value "
              "104,117,123)",
              file=sys.stderr)
    out = Path(args.out)
    for path, stem in zip(args.images, _stems(args.images)):
        x, crop = prepare(path, size, mean, mode=args.preprocess, resize=args.resize)
        ex = explain(model, torch.from_numpy(x), target, composite, start_layer=args.start_layer)
        relevance, record = ex
        n_classes = int(ex.scores[0].numel())
        if names is not None and len(names) != n_classes:
            raise UserError(f"--labels: {len(names)} names for a start layer ({record['start_layer']}) with "
                            f"{n_classes} outputs")
        label = names[record["classes"][0]] if names is not None else None
        record = dict(record, image=str(path), prototxt=str(args.prototxt), caffemodel=str(args.caffemodel),
                      mean=mean_desc, preprocess=args.preprocess, label=label)
        files = write_outputs(out, stem, relevance, record, crop)
        if not args.quiet:
            shown = f"class {record['classes'][0]}" + (f" ({label})" if label is not None else "")
            print(f"{path}: {shown}, score {record['start_scores'][0]:.4g} at {record['start_layer']}, "
                  f"relevance sum {record['relevance_sums'][0]:.4g}, {record['variant']} LRP -> "
                  f"{files['black-firered']}")
    return 0
