"""Convolution and Deconvolution (Caffe's BaseConvolutionLayer geometry).

Caffe rules honoured:
* ``kernel_size``/``pad``/``stride``/``dilation`` are repeated fields: one value for every spatial
  axis or one value per axis; ``kernel_h/_w``, ``pad_h/_w``, ``stride_h/_w`` (2-D only) replace them
  and may not be mixed with them.  Defaults: pad 0, stride 1, dilation 1.
* ``axis`` (default 1) is the channel axis; axes before it are batch axes, after it spatial axes.
* Convolution output: ``(in + 2*pad - (dilation*(kernel-1)+1)) / stride + 1`` (integer division);
  weight ``num_output x C/group x kernel``.
* Deconvolution output: ``stride*(in-1) + dilation*(kernel-1)+1 - 2*pad``; weight
  ``C x num_output/group x kernel`` (the same layout as ``torch.nn.ConvTranspose``).
* ``bias_term`` (default true) adds a ``num_output`` bias as blob 1.
"""
from __future__ import annotations

import torch.nn.functional as F

from ..proto import caffe_pb2 as pb
from .base import CaffeLayer, canonical_axis, need_bottoms
from .registry import ConversionError, register

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_DECONV = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _per_axis(layer, values, n: int, default: int, what: str) -> tuple[int, ...]:
    values = list(values)
    if not values:
        return (default,) * n
    if len(values) == 1:
        return (int(values[0]),) * n
    if len(values) == n:
        return tuple(int(v) for v in values)
    raise ConversionError(layer, f"{what} must be specified once, or once per spatial dimension "
                                 f"({n}); got {len(values)} values")


def _hw(layer, p, n: int, h: str, w: str, repeated: str, default: int | None) -> tuple[int, ...]:
    has_h, has_w = p.HasField(h), p.HasField(w)
    if has_h or has_w:
        if n != 2:
            raise ConversionError(layer, f"{h}/{w} can only be used for 2-D convolution; "
                                         f"this one has {n} spatial axes")
        if len(getattr(p, repeated)):
            raise ConversionError(layer, f"either {repeated} or {h}/{w} should be specified, not both")
        if not (has_h and has_w) and default is None:
            raise ConversionError(layer, f"{h} and {w} must both be given")
        return (getattr(p, h), getattr(p, w))
    if default is None and not len(getattr(p, repeated)):
        raise ConversionError(layer, f"{repeated} (or {h}/{w}) is required")
    return _per_axis(layer, getattr(p, repeated), n, default or 0, repeated)


def conv_geometry(layer, p: pb.ConvolutionParameter, n: int):
    kernel = _hw(layer, p, n, "kernel_h", "kernel_w", "kernel_size", None)
    stride = _hw(layer, p, n, "stride_h", "stride_w", "stride", 1)
    pad = _hw(layer, p, n, "pad_h", "pad_w", "pad", 0)
    dilation = _per_axis(layer, p.dilation, n, 1, "dilation")
    if any(k <= 0 for k in kernel):
        raise ConversionError(layer, f"kernel dimensions must be > 0, got {kernel}")
    if any(s <= 0 for s in stride):
        raise ConversionError(layer, f"stride must be > 0, got {stride}")
    if any(d <= 0 for d in dilation):
        raise ConversionError(layer, f"dilation must be > 0, got {dilation}")
    return kernel, stride, pad, dilation


class Convolution(CaffeLayer):
    """Caffe Convolution/Deconvolution over the axes after ``axis`` (see module docstring)."""

    def __init__(self, layer, phase, in_shape, transposed: bool):
        super().__init__(layer, phase)
        p = layer.convolution_param
        self.axis = canonical_axis(layer, p.axis, len(in_shape))
        n = len(in_shape) - self.axis - 1
        if n not in _CONV:
            raise ConversionError(layer, f"{n} spatial axes (bottom shape {tuple(in_shape)}, axis "
                                         f"{self.axis}); supported: 1, 2 or 3")
        self.kernel, self.stride, self.pad, self.dilation = conv_geometry(layer, p, n)
        self.transposed = transposed
        channels = in_shape[self.axis]
        num_output, group = int(p.num_output), int(p.group)
        if num_output <= 0:
            raise ConversionError(layer, "num_output must be > 0")
        if group <= 0 or channels % group or num_output % group:
            raise ConversionError(layer, f"group {group} must divide the input channels ({channels}) "
                                         f"and num_output ({num_output})")
        self.group, self.num_output, self.channels = group, num_output, channels
        kshape = ((channels, num_output // group) if transposed else (num_output, channels // group))
        self.add_blob("weight", kshape + self.kernel, p.weight_filler if p.HasField("weight_filler") else None)
        self.bias_term = p.bias_term
        if p.bias_term:
            self.add_blob("bias", (num_output,), p.bias_filler if p.HasField("bias_filler") else None)
        else:
            self.bias = None
        self._fn = (_DECONV if transposed else _CONV)[n]

    def output_shape(self, in_shape) -> tuple[int, ...]:
        spatial = []
        for i, size in enumerate(in_shape[self.axis + 1:]):
            extent = self.dilation[i] * (self.kernel[i] - 1) + 1
            if self.transposed:
                out = self.stride[i] * (size - 1) + extent - 2 * self.pad[i]
            else:
                out = (size + 2 * self.pad[i] - extent) // self.stride[i] + 1
            spatial.append(out)
        return tuple(in_shape[:self.axis]) + (self.num_output,) + tuple(spatial)

    def forward(self, *xs):
        if len(xs) == 1:
            return self._forward_one(xs[0])
        return tuple(self._forward_one(x) for x in xs)

    def _forward_one(self, x):
        lead = x.shape[:self.axis]
        if self.axis != 1:
            x = x.reshape((-1,) + tuple(x.shape[self.axis:]))
        y = self._fn(x, self.weight, self.bias, self.stride, self.pad, *(
            (0, self.group, self.dilation) if self.transposed else (self.dilation, self.group)))
        if self.axis != 1:
            y = y.reshape(tuple(lead) + tuple(y.shape[1:]))
        return y

    def extra_repr(self):
        return (f"caffe_name={self.caffe_name!r}, {self.channels}->{self.num_output}, kernel={self.kernel}, "
                f"stride={self.stride}, pad={self.pad}, dilation={self.dilation}, group={self.group}, "
                f"bias={self.bias_term}")


def _convert(layer, bottom_shapes, phase, transposed):
    need_bottoms(layer, bottom_shapes, (1, 1 << 30))
    first = tuple(bottom_shapes[0])
    for i, s in enumerate(bottom_shapes[1:], 1):
        if tuple(s) != first:
            raise ConversionError(layer, f"all bottoms must have the same shape: bottom 0 is {first}, "
                                         f"bottom {i} is {tuple(s)}")
    if len(layer.top) != len(bottom_shapes):
        raise ConversionError(layer, f"needs one top per bottom: {len(bottom_shapes)} bottoms, "
                                     f"{len(layer.top)} tops")
    mod = Convolution(layer, phase, first, transposed)
    out = mod.output_shape(first)
    if any(d <= 0 for d in out[mod.axis + 1:]):
        raise ConversionError(layer, f"output would be empty: bottom {first} gives {out}")
    return mod, [out] * len(bottom_shapes)


@register("Convolution")
def convert_convolution(layer, bottom_shapes, phase):
    return _convert(layer, bottom_shapes, phase, transposed=False)


@register("Deconvolution")
def convert_deconvolution(layer, bottom_shapes, phase):
    return _convert(layer, bottom_shapes, phase, transposed=True)
