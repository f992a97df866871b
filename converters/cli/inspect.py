"""``python -m converters inspect FILE``: say what a Caffe artefact is and what it holds.

What it owns: recognising the kind of a file (net prototxt, solver prototxt, caffemodel,
binaryproto mean, LMDB folder) and printing a summary of it:

* net: a table of layers - name, type, bottoms, tops, output shapes, parameter count and the
  phases (TRAIN/TEST, from :func:`filter_net`) the layer belongs to.  Output shapes come from
  ``converters.infer_shapes`` (the converter's shape inference) when it is available; ``?``
  otherwise.  Parameter counts come from the shapes, or from ``--weights CAFFEMODEL``;
* caffemodel: every layer's blob shapes and parameter count, and the totals;
* solver: its settings;
* mean: shape and per-channel (BGR) means;
* LMDB: entry count, datum shape, label histogram.

All reading goes through :mod:`converters.formats`; errors are CaffeFormatError (one line,
exit 2, printed by ``converters.__main__``).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..formats import (CaffeFormatError, filter_net, lmdb_info, read_blob, read_mean, read_net,
                       read_solver, read_weight_layers)
from ..formats.files import describe_magic
from ..formats.prototxt import _NET_KEYS, _SOLVER_KEYS
from ..formats.weights import _is_repeated

NAME = "inspect"
HELP = "show what a Caffe file holds (net/solver prototxt, caffemodel, mean, LMDB)"

KINDS = ("net", "solver", "caffemodel", "mean", "lmdb")


def add_arguments(parser) -> None:
    parser.add_argument("file", help="a prototxt, .caffemodel, .binaryproto or LMDB folder")
    parser.add_argument("--kind", choices=KINDS, help="skip detection: treat FILE as this kind")
    parser.add_argument("--weights", metavar="CAFFEMODEL",
                        help="(nets) take parameter counts from this caffemodel")
    parser.add_argument("--no-shapes", action="store_true",
                        help="(nets) do not run shape inference")


def run(args) -> int:
    kind = args.kind or detect_kind(args.file)
    if kind == "net":
        print(describe_net(args.file, weights=args.weights, shapes=not args.no_shapes))
    elif kind == "solver":
        print(describe_solver(args.file))
    elif kind == "caffemodel":
        print(describe_caffemodel(args.file))
    elif kind == "mean":
        print(describe_mean(args.file))
    else:
        print(lmdb_info(args.file).describe())
    return 0


# ------------------------------------------------------------------ detection
def detect_kind(path) -> str:
    """``net``, ``solver``, ``caffemodel``, ``mean`` or ``lmdb`` for ``path``.

    Folders (and ``data.mdb``) are LMDBs; ``.caffemodel``/``.binaryproto``/``.prototxt``
    extensions decide; otherwise the content does: text is a prototxt (a solver when it sets
    solver fields and declares no layers), binary is a caffemodel when its first field is a
    NetParameter one and a mean when it is a BlobProto one.
    """
    p = Path(path)
    if not p.exists():
        raise CaffeFormatError(path, "not found")
    if p.is_dir() or p.name == "data.mdb":
        return "lmdb"
    suffix = p.suffix.lower()
    if suffix == ".caffemodel":
        return "caffemodel"
    if suffix == ".binaryproto":
        return "mean"
    try:
        with open(p, "rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise CaffeFormatError(path, f"cannot read: {exc.strerror}") from None
    if not head:
        raise CaffeFormatError(path, "empty file")
    if suffix in (".prototxt", ".pbtxt", ".txt") or _looks_like_text(head):
        return _text_kind(p)
    what = describe_magic(head)
    if what:
        raise CaffeFormatError(path, f"not a Caffe file: this looks like {what}")
    first = head[0]
    field, wire = first >> 3, first & 7
    if (field in (1, 2, 3, 4) and wire == 0) or (field in (5, 6, 7, 8, 9) and wire == 2):
        return "mean"          # BlobProto: num/channels/height/width, data/diff/shape/double
    return "caffemodel"        # NetParameter: name (1), layers (2), ..., layer (100)


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return bool(re.match(r"\s*(#|[A-Za-z_]\w*\s*[:{])", text))


def _text_kind(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise CaffeFormatError(path, f"cannot read: {exc.strerror}") from None
    if _SOLVER_KEYS.search(text) and not _NET_KEYS.search(text):
        return "solver"
    return "net"


# ------------------------------------------------------------------ tables
def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    for row in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def _cap(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _shape_str(shape) -> str:
    return "x".join(str(int(d)) for d in shape) if len(shape) else "scalar"


# ------------------------------------------------------------------ nets
def _infer_blob_shapes(net) -> tuple[dict, str | None]:
    """Blob name -> shape from ``converters.infer_shapes`` for the TEST and TRAIN nets.

    Returns the shapes found and a note when inference was unavailable or failed.
    """
    try:
        from converters import infer_shapes  # the converter's shape inference (lazy)
    except Exception as exc:
        return {}, f"output shapes: '?' (converters.infer_shapes unavailable: {type(exc).__name__})"
    shapes: dict = {}
    notes = []
    for phase in ("TEST", "TRAIN"):
        try:
            result = infer_shapes(filter_net(net, phase))
        except Exception as exc:
            notes.append(f"{phase}: {' '.join(str(exc).split()) or type(exc).__name__}")
            continue
        result = getattr(result, "blob_shapes", result)
        if hasattr(result, "items"):
            for blob, shape in result.items():
                try:
                    shapes.setdefault(blob, tuple(int(d) for d in shape))
                except (TypeError, ValueError):
                    pass
    note = ("output shapes: '?' where inference failed (" + "; ".join(notes) + ")") if notes else None
    return shapes, note


def _param_count(layer, bottom_shapes) -> int | None:
    """Learnable parameter count of a layer from its bottom shapes (None when unknown)."""
    t = layer.type
    if t in ("Convolution", "Deconvolution"):
        p = layer.convolution_param
        if not bottom_shapes or bottom_shapes[0] is None:
            return None
        axis = p.axis if p.HasField("axis") else 1
        cin = bottom_shapes[0][axis]
        nsp = len(bottom_shapes[0]) - axis - 1
        if p.HasField("kernel_h") or p.HasField("kernel_w"):
            ks = [p.kernel_h, p.kernel_w]
        else:
            ks = list(p.kernel_size) or [1]
            ks = ks * nsp if len(ks) == 1 else ks
        k = int(np.prod(ks))
        g = p.group or 1
        w = p.num_output * (cin // g) * k if t == "Convolution" else cin * (p.num_output // g) * k
        return w + (p.num_output if p.bias_term else 0)
    if t == "InnerProduct":
        p = layer.inner_product_param
        if not bottom_shapes or bottom_shapes[0] is None:
            return None
        axis = p.axis if p.HasField("axis") else 1
        k = int(np.prod(bottom_shapes[0][axis:]))
        return p.num_output * k + (p.num_output if p.bias_term else 0)
    if t in ("BatchNorm", "Scale", "Bias", "PReLU", "Embed"):
        if not bottom_shapes or bottom_shapes[0] is None:
            return None
        c = bottom_shapes[0][1] if len(bottom_shapes[0]) > 1 else 1
        if t == "BatchNorm":
            return 2 * c + 1
        if t == "Scale":
            return c * (2 if layer.scale_param.bias_term else 1) if len(layer.bottom) == 1 else (
                c if layer.scale_param.bias_term else 0)
        if t == "Bias":
            return c if len(layer.bottom) == 1 else 0
        if t == "PReLU":
            return 1 if layer.prelu_param.channel_shared else c
        p = layer.embed_param
        return p.input_dim * p.num_output + (p.num_output if p.bias_term else 0)
    return 0


def _membership(net) -> list[list[str]]:
    """For each layer of ``net``, the phases whose filtered net (filter_net) keeps it."""
    member = [[] for _ in net.layer]
    for phase in ("TRAIN", "TEST"):
        kept = filter_net(net, phase).layer
        j = 0
        for i, layer in enumerate(net.layer):
            if j < len(kept) and kept[j] == layer:
                member[i].append(phase)
                j += 1
    return member


def describe_net(path, weights=None, shapes: bool = True) -> str:
    net = read_net(path)
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    v1 = bool(re.search(r"^\s*layers\s*\{", text, re.M))
    blob_shapes, note = _infer_blob_shapes(net) if shapes else ({}, "output shapes: not inferred")
    counts_from_weights = None
    if weights:
        counts_from_weights = {layer.name: sum(a.size for a in layer.blobs)
                               for layer in read_weight_layers(weights)}
    member = _membership(net)
    rows, total, total_known = [], 0, True
    for i, layer in enumerate(net.layer):
        tops = list(layer.top)
        if layer.type == "Input" and not blob_shapes:
            out = [_shape_str(s.dim) for s in layer.input_param.shape]
        else:
            out = [_shape_str(blob_shapes[t]) if t in blob_shapes else "?" for t in tops]
        if counts_from_weights is not None and layer.name in counts_from_weights:
            n = counts_from_weights[layer.name]
        else:
            n = _param_count(layer, [blob_shapes.get(b) for b in layer.bottom])
        if n is None:
            total_known = False
        else:
            total += n
        rows.append([str(i), layer.name, layer.type, _cap(",".join(layer.bottom)) or "-",
                     _cap(",".join(tops)) or "-", " ".join(out) or "-",
                     "?" if n is None else (f"{n:,}" if n else "-"),
                     "+".join(member[i]) or "none"])
    head = [f"net {net.name or '(unnamed)'!r}: {path}",
            f"  syntax      {'V1 layers (upgraded as Caffe does)' if v1 else 'layer'}",
            f"  layers      {len(net.layer)} (TRAIN {sum('TRAIN' in m for m in member)}, "
            f"TEST {sum('TEST' in m for m in member)})",
            f"  parameters  {total:,}" + ("" if total_known else " + unknown (see '?')")]
    if note:
        head.append(f"  note        {note}")
    table = _table(["#", "name", "type", "bottoms", "tops", "output shapes", "params", "phases"],
                   rows)
    return "\n".join(head) + "\n\n" + table


# ------------------------------------------------------------------ others
def describe_caffemodel(path) -> str:
    layers = read_weight_layers(path)
    rows, total = [], 0
    for layer in layers:
        if not layer.blobs:
            continue
        n = sum(a.size for a in layer.blobs)
        total += n
        rows.append([layer.name, layer.type or "?", ", ".join(_shape_str(a.shape) for a in layer.blobs),
                     f"{n:,}"])
    size = Path(path).stat().st_size
    head = [f"caffemodel: {path}", f"  file size   {size:,} bytes",
            f"  layers      {len(layers)} ({len(rows)} with weights)",
            f"  parameters  {total:,} ({total * 4:,} bytes as float32)"]
    return "\n".join(head) + "\n\n" + _table(["layer", "type", "blob shapes", "params"], rows)


def describe_solver(path) -> str:
    from google.protobuf import text_format

    solver = read_solver(path)
    lines = [f"solver: {path}"]
    for fd, value in solver.ListFields():
        values = list(value) if _is_repeated(fd) else [value]
        if fd.message_type is not None:
            text = "; ".join(text_format.MessageToString(v, as_one_line=True) for v in values)
            text = text if len(text) < 200 else text[:197] + "..."
        else:
            text = ", ".join(_fmt(fd, v) for v in values)
        lines.append(f"  {fd.name:<20} {text}")
    return "\n".join(lines)


def _fmt(fd, value) -> str:
    if fd.enum_type is not None:
        return fd.enum_type.values_by_number[value].name
    if isinstance(value, float):
        if fd.type == fd.TYPE_FLOAT:
            # the shortest decimal that reads back as the stored float32 (base_lr 0.001, not
            # 0.00100000005, which is the same float32 printed with double precision)
            return np.format_float_positional(np.float32(value), unique=True, trim="-") \
                if 1e-4 <= abs(value) < 1e16 or value == 0 else \
                np.format_float_scientific(np.float32(value), unique=True, trim="-")
        return repr(value)
    return str(value)


def describe_mean(path) -> str:
    blob = read_blob(path)
    mean = read_mean(path)
    legacy = not blob.HasField("shape")
    per_channel = mean.reshape(mean.shape[0], -1).astype(np.float64).mean(axis=1)
    names = ("B", "G", "R") if mean.shape[0] == 3 else tuple(str(c) for c in range(mean.shape[0]))
    lines = [f"mean: {path}",
             f"  shape       {_shape_str(mean.shape)} (C x H x W"
             + (", BGR" if mean.shape[0] == 3 else "") + ")",
             f"  dims        {'legacy num/channels/height/width' if legacy else 'shape'}",
             "  per channel " + ", ".join(f"{n} {v:.4f}" for n, v in zip(names, per_channel)),
             f"  min / max   {float(mean.min()):.4f} / {float(mean.max()):.4f}"]
    return "\n".join(lines)
