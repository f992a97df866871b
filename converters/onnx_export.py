"""Export a converted Caffe net to ONNX with Caffe's semantics made explicit, and check it in onnxruntime.

What it owns: an export-only view of a :class:`~converters.net.CaffeNet` (:class:`OnnxExportable`)
that replaces the layers whose PyTorch form does not survive ONNX export faithfully, the call of
``torch.onnx.export`` (dynamic batch axis, opset >= 13) and the onnxruntime check.

How Caffe's rules are written in the graph (so that any ONNX runtime computes what Caffe does):

* Pooling: Caffe's output size (ceil, then "the last window must start inside the image or the
  left padding") is computed here, and the graph gets an explicit ``Pad`` (``-FLT_MAX`` for MAX,
  0 for AVE) to exactly the extent the Caffe windows cover, followed by an *unpadded, floor-mode*
  pool, then a slice if the padded extent holds more windows.  No runtime-specific ``ceil_mode``
  or ``count_include_pad`` behaviour is relied on.  AVE divides by Caffe's divisor (the window
  clipped to ``[-pad, H + pad)``): the unpadded pool's ``kernel_h * kernel_w`` divisor is
  corrected with a constant factor where it differs (only at the ceil-mode overhang).
* LRN ACROSS_CHANNELS: the ONNX ``LRN`` operator (``bias = k``, ``alpha``, ``beta``, ``size``),
  whose definition is Caffe's (alpha divided by size, zero-padded channel window).
  WITHIN_CHANNEL (no ONNX operator): ``x * (1 + alpha * AveragePool_nxn(Pad(x^2)))^-beta``.
* InnerProduct: flattening with ``-1`` for the batch, so the batch axis stays dynamic.
* Fork layers: PriorBox / PriorBoxClustered become a constant (their output depends only on the
  bottom shapes); Interp (bilinear, corners aligned) and the YOLOv3 Upsample (nearest) become
  ``Resize``; Permute, Normalize, ShuffleChannel, Reorg, Axpy, ReLU6, Mish and the depthwise
  convolutions are plain tensor operations.  DetectionOutput, Proposal, ROIPooling, PSROIPooling, YOLOv2's
  Region and SegNet's Upsample (max-unpooling) are not exportable: the error names the layer; export the net
  up to their bottoms with ``outputs=[...]`` (layers that feed no requested output are left out).
Every other layer is exported as the converter built it.  The layers run in the order and over the
blobs of the net's :class:`~converters.graph.ExecutionPlan` (Caffe's in-place rule included).
"""
from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .layers.base import FLT_MAX
from .layers.data import InputLayer
from .layers.inner_product import InnerProduct
from .layers.lrn import ACROSS, LRN
from .layers.pooling import AVE, MAX, Pooling, ave_divisor
from .layers.resize import UpsampleNearest
from converters.errors import InputError

MIN_OPSET = 13
DEFAULT_OPSET = 18


class ExportError(ValueError, InputError):
    """The net cannot be exported (message names the layer or the option)."""


# ---------------------------------------------------------------------------- export-friendly layers
class _InnerProduct(nn.Module):
    def __init__(self, layer: InnerProduct):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        ip = self.layer
        flat = x.reshape(-1, ip.k) if ip.axis == 1 or x.dim() == ip.axis + 1 else x.flatten(ip.axis).reshape(-1, ip.k)
        if ip.transpose:
            y = flat @ ip.weight
            if ip.bias is not None:
                y = y + ip.bias
        else:
            y = F.linear(flat, ip.weight, ip.bias)
        if ip.axis == 1:
            return y
        return y.reshape(tuple(x.shape[:ip.axis]) + (ip.num_output,))


class _Pooling(nn.Module):
    """Caffe pooling as Pad + unpadded floor-mode pool (+ slice, + divisor correction)."""

    def __init__(self, layer: Pooling):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        layer = self.layer
        if layer.method not in (MAX, AVE):
            return layer(x)                       # STOCHASTIC (TEST): plain tensor ops already
        h, w = int(x.shape[2]), int(x.shape[3])
        kernel, stride, pad, out = layer.geometry(h, w)
        right = [(o - 1) * s + k - (size + p) for o, s, k, size, p in zip(out, stride, kernel, (h, w), pad)]
        pads = (pad[1], max(right[1], 0), pad[0], max(right[0], 0))
        if any(pads):
            x = F.pad(x, pads, value=-FLT_MAX if layer.method == MAX else 0.0)
        if layer.method == MAX:
            y = F.max_pool2d(x, kernel, stride)
        else:
            y = F.avg_pool2d(x, kernel, stride)
        if tuple(y.shape[2:]) != tuple(out):
            y = y[:, :, :out[0], :out[1]]
        if layer.method == AVE:
            dh = ave_divisor(h, out[0], kernel[0], stride[0], pad[0])
            dw = ave_divisor(w, out[1], kernel[1], stride[1], pad[1])
            full = kernel[0] * kernel[1]
            factor = np.outer(dh, dw).astype(np.float64)
            if np.any(factor != full):
                y = y * torch.tensor(full / factor, dtype=y.dtype, device=y.device)
        return y


class _LRN(nn.Module):
    def __init__(self, layer: LRN, native: bool):
        super().__init__()
        self.layer = layer
        self.native = native

    def forward(self, x):
        lrn = self.layer
        if lrn.region == ACROSS:
            if self.native and torch.onnx.is_in_onnx_export():
                return torch.onnx.ops.symbolic(
                    "LRN", (x,), dict(alpha=lrn.alpha, beta=lrn.beta, bias=lrn.k, size=lrn.size),
                    dtype=x.dtype, shape=x.shape, version=13)
            sq = (x * x).unsqueeze(1)
            sq = F.pad(sq, (0, 0, 0, 0, lrn.pre, lrn.pre))
            mean = F.avg_pool3d(sq, (lrn.size, 1, 1), stride=1).squeeze(1)
            return x * (mean * lrn.alpha + lrn.k).pow(-lrn.beta)
        sq = F.pad(x * x, (lrn.pre, lrn.pre, lrn.pre, lrn.pre))
        mean = F.avg_pool2d(sq, lrn.size, stride=1)
        return x * (mean * lrn.alpha + 1.0).pow(-lrn.beta)


class _Constant(nn.Module):
    """A layer whose output depends only on the bottom shapes (PriorBox), as a constant."""

    def __init__(self, value: np.ndarray):
        super().__init__()
        self.register_buffer("value", torch.from_numpy(np.ascontiguousarray(value)), persistent=False)

    def forward(self, *xs):
        return self.value


class _NearestUpsample(nn.Module):
    def __init__(self, layer: UpsampleNearest):
        super().__init__()
        self.scale = layer.scale

    def forward(self, x):
        return F.interpolate(x, scale_factor=float(self.scale), mode="nearest")


SHAPE_ONLY = ("PriorBox", "PriorBoxClustered")     # read only the shapes of their bottoms

NOT_EXPORTABLE = {
    "DetectionOutput": "per-class NMS with data-dependent output rows",
    "Proposal": "anchor decoding + NMS with data-dependent output rows",
    "ROIPooling": "per-ROI max pooling over data-dependent windows",
    "PSROIPooling": "position-sensitive pooling over data-dependent windows",
    "Upsample": "SegNet's max-unpooling (scatter by the mask bottom)",
    "Region": "YOLOv2 region decoding with per-class NMS on the decoded boxes",
}


def _fork_export_layer(layer, module, blob_shapes):
    from .layers.ssd import PriorBox

    if isinstance(module, PriorBox):
        feat = blob_shapes[layer.bottom[0]]
        img = blob_shapes[layer.bottom[1]] if len(layer.bottom) > 1 else (0, 0, module.img_h, module.img_w)
        return _Constant(module.boxes(int(feat[2]), int(feat[3]), int(img[2]), int(img[3])))
    if isinstance(module, UpsampleNearest):
        return _NearestUpsample(module)
    if layer.type in NOT_EXPORTABLE:
        raise ExportError(f"layer '{layer.name}' ({layer.type}) is not exportable to ONNX "
                          f"({NOT_EXPORTABLE[layer.type]}); export the net up to its bottoms "
                          f"({', '.join(layer.bottom)}) with outputs=[...] and run it outside the graph")
    return None


def _export_layer(module: nn.Module, native_lrn: bool) -> nn.Module:
    if isinstance(module, InnerProduct):
        return _InnerProduct(module)
    if isinstance(module, Pooling):
        return _Pooling(module)
    if isinstance(module, LRN):
        return _LRN(module, native_lrn)
    return module


class OnnxExportable(nn.Module):
    """A CaffeNet as a module with positional inputs (``input_names``) and a tuple of outputs
    (``output_names``), using export-friendly layers; it shares the net's parameters."""

    def __init__(self, net, outputs=None, native_lrn: bool = True):
        super().__init__()
        self.net = net
        self.input_names = list(net.input_names)
        self.output_names = list(outputs) if outputs else list(net.output_names)
        steps_of_plan = list(net.plan.steps)
        # only the layers that feed a requested output (so a net can be exported up to the bottoms
        # of a layer ONNX cannot express, e.g. SSD up to DetectionOutput)
        needed, used = set(self.output_names), [False] * len(steps_of_plan)
        for step in reversed(steps_of_plan):
            if needed & set(step.tops):
                used[step.position] = True
                if step.type not in SHAPE_ONLY:
                    needed |= set(step.bottoms)
        # inputs nothing exported reads (a blob only PriorBox looks at, for its shape) are left out
        self.input_names = [n for n in self.input_names if n in needed]
        produced = set(net.input_names)
        steps = []
        self.export_layers = nn.ModuleList()
        for step in steps_of_plan:
            module = net.module_at(step.position)
            if isinstance(module, InputLayer):
                continue
            if not used[step.position]:
                produced.update(step.tops)
                continue
            fork = _fork_export_layer(step.layer, module, net.blob_shapes)
            self.export_layers.append(fork if fork is not None else _export_layer(module, native_lrn))
            steps.append((() if step.type in SHAPE_ONLY else step.bottoms, step.tops))
            produced.update(step.tops)
        missing = [o for o in self.output_names if o not in produced]
        if missing:
            raise ExportError(f"unknown output blob(s) {missing}; the net's blobs are {sorted(produced)}")
        self._steps = steps

    def forward(self, *inputs):
        blobs = dict(zip(self.input_names, inputs))
        for module, (bottoms, tops) in zip(self.export_layers, self._steps):
            out = module(*[blobs[b] for b in bottoms])
            if isinstance(out, torch.Tensor):
                blobs[tops[0]] = out
            else:
                for t, o in zip(tops, out):
                    blobs[t] = o
        return tuple(blobs[o] for o in self.output_names)


# ---------------------------------------------------------------------------- export
def example_inputs(net, batch: int | None = 2, seed: int = 0, input_shapes: dict | None = None) -> tuple:
    """Random float32 inputs for every input blob (``batch`` items, or the declared batch for None;
    the rest of the shape from the net or ``input_shapes``), uniform in [-128, 128) like
    mean-subtracted pixels."""
    rng = np.random.RandomState(seed)
    arrays = []
    for name in net.input_names:
        shape = tuple((input_shapes or {}).get(name) or net.input_shapes[name])
        if batch is not None and shape:
            shape = (batch,) + tuple(shape[1:])
        arrays.append(torch.from_numpy(rng.uniform(-128, 128, shape).astype(np.float32)))
    return tuple(arrays)


def export_onnx(net, path, opset: int = DEFAULT_OPSET, dynamic_batch: bool = True, outputs=None,
                dynamo: bool | None = None, input_shapes: dict | None = None, verbose: bool = False) -> Path:
    """Write ``net`` (a CaffeNet in eval mode) as an ONNX model; returns the path.

    Graph inputs/outputs keep the Caffe blob names.  ``dynamic_batch``: axis 0 of every input and
    output is symbolic (``batch``).  ``dynamo``: the torch.export-based exporter (default); the
    TorchScript one otherwise (LRN is then written with primitive ops); by default the former for
    opset >= 18 (its native opset) and the latter below (the ONNX version converter cannot take
    the torch.export graph below 18).
    """
    opset = int(opset)
    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old: Caffe's layers need opset >= {MIN_OPSET}")
    if dynamo is None:
        dynamo = opset >= 18
    path = Path(path)
    net.eval()
    module = OnnxExportable(net, outputs=outputs, native_lrn=dynamo).eval()
    # batch 2: torch.export specializes dimensions of size 0 and 1
    args = example_inputs(net, batch=2 if dynamic_batch else None, input_shapes=input_shapes)
    args = tuple(a for name, a in zip(net.input_names, args) if name in module.input_names)
    in_names, out_names = module.input_names, module.output_names
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = dict(input_names=in_names, output_names=out_names, opset_version=opset)
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)      # e.g. "torchvision is not installed. Skipping torchvision::nms"
    try:
        _export(module, args, path, dynamo, dynamic_batch, verbose, kwargs)
    finally:
        quiet.setLevel(level)
    _annotate(path, net)
    return path


def _export(module, args, path, dynamo, dynamic_batch, verbose, kwargs):
    in_names, out_names = kwargs["input_names"], kwargs["output_names"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            dynamic = None
            if dynamic_batch:
                batch = torch.export.Dim("batch")
                dynamic = (tuple({0: batch} for _ in args),)   # forward(*inputs): one entry, a tuple
            program = torch.onnx.export(module, args, dynamo=True, dynamic_shapes=dynamic, verbose=verbose,
                                        external_data=False, report=False, optimize=True, **kwargs)
            program.save(str(path))
        else:
            axes = {n: {0: "batch"} for n in in_names + out_names} if dynamic_batch else None
            torch.onnx.export(module, args, str(path), dynamo=False, dynamic_axes=axes,
                              do_constant_folding=True, verbose=verbose, **kwargs)


def _annotate(path: Path, net) -> None:
    """Name the graph after the Caffe net and record where it came from."""
    import onnx

    model = onnx.load(str(path))
    model.graph.name = net.net_param.name or "caffe_net"
    model.producer_name = "converters (Caffe -> PyTorch -> ONNX)"
    model.doc_string = (f"Caffe net {net.net_param.name!r} converted with Caffe's pooling (ceil + clip, "
                        "explicit padding) and LRN semantics; inputs are Caffe blobs (N x C x H x W, BGR "
                        "as in the caffemodel's training data)")
    onnx.save(model, str(path))


# ---------------------------------------------------------------------------- checking
def onnx_opset(path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def check_onnx(path, net, batch: int = 3, seed: int = 1, input_shapes: dict | None = None) -> dict:
    """Run the ONNX file in onnxruntime and the PyTorch net on the same random batch.

    Returns ``{output name: (max |onnx - torch|, max |torch|)}``; ``batch`` differs from the export
    example on purpose, to exercise the dynamic batch axis.
    """
    import onnxruntime as ort

    inputs = example_inputs(net, batch=batch, seed=seed, input_shapes=input_shapes)
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    by_name = {name: x.numpy() for name, x in zip(net.input_names, inputs)}
    # by name: an input only PriorBox reads (its shape) is constant-folded away from the graph
    feed = {i.name: by_name[i.name] for i in session.get_inputs()}
    names = [o.name for o in session.get_outputs()]
    got = session.run(names, feed)
    net.eval()
    with torch.no_grad():
        blobs = net.forward_blobs(dict(zip(net.input_names, inputs)))
    result = {}
    for name, value in zip(names, got):
        ref = blobs[name].detach().cpu().numpy()
        if ref.shape != value.shape:
            raise ExportError(f"output {name!r}: onnxruntime gives shape {value.shape}, PyTorch {ref.shape}")
        result[name] = (float(np.abs(value.astype(np.float64) - ref).max()) if ref.size else 0.0,
                        float(np.abs(ref).max()) if ref.size else 0.0)
    return result


def within_tolerance(diff: float, ref_max: float, tol: float = 1e-4) -> bool:
    """``diff <= tol * max(1, max|ref|)``: absolute ``tol`` for probabilities, relative for big outputs."""
    return math.isfinite(diff) and diff <= tol * max(1.0, ref_max)
