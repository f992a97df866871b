"""Pooling with Caffe's output-size and window rules (pooling_layer.cpp).

Caffe rules honoured:
* Output size: ``pooled = ceil((H + 2*pad - kernel) / stride) + 1`` (``round_mode: FLOOR`` uses floor);
  then, if ``pad > 0`` in either direction, ``if ((pooled - 1) * stride >= H + pad) --pooled`` for
  both axes: the last window must start inside the image, not in the padding.  (So AdienceNet's
  3x3/2 pools give 56 -> 28 -> 14 -> 7 and GoogLeNet 112 -> 56 -> 28 -> 14 -> 7.)
* MAX: window ``[h*stride - pad, h*stride - pad + kernel)`` clipped to the image; padding never
  wins; an empty window (only possible without padding when stride > kernel) gives ``-FLT_MAX``;
  ties go to the first element in row-major order.
* AVE: the divisor is the window clipped to the padded extent ``[-pad, H + pad)`` (padded cells
  inside it count, cells beyond the ceil-mode overhang do not); the sum runs over the part of the
  window inside the image.
* STOCHASTIC (GPU-only in Caffe): in TEST the weighted average ``sum(x^2) / (FLT_MIN + sum(x))``
  over the unpadded window ``[h*stride, min(h*stride + kernel, H))``; TRAIN (random sampling) is
  refused.
* ``global_pooling``: kernel = the bottom's H x W (pad must be 0 and stride 1); recomputed from the
  actual input at every call.
* Bottoms must be 4-D; only one top (the MAX mask top is not supported).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..proto import caffe_pb2 as pb
from .base import FLT_MAX, FLT_MIN, CaffeLayer, need_bottoms, need_tops
from .registry import ConversionError, register

MAX, AVE, STOCHASTIC = pb.PoolingParameter.MAX, pb.PoolingParameter.AVE, pb.PoolingParameter.STOCHASTIC


def caffe_pooled_size(size: int, kernel: int, stride: int, pad: int, any_pad: bool, ceil_mode: bool = True) -> int:
    """Caffe's output size for one axis (``any_pad``: pad_h or pad_w is non-zero)."""
    q = (size + 2 * pad - kernel) / stride
    pooled = int(math.ceil(q) if ceil_mode else math.floor(q)) + 1
    if any_pad and (pooled - 1) * stride >= size + pad:
        pooled -= 1
    return pooled


def _torch_pooled_size(size, kernel, stride, pad, ceil_mode):
    """PyTorch's pooling_output_shape (dilation 1)."""
    num = size + 2 * pad - kernel + ((stride - 1) if ceil_mode else 0)
    out = num // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def ave_divisor(size: int, pooled: int, kernel: int, stride: int, pad: int) -> list[int]:
    """Caffe's AVE divisor per output position along one axis: the window clipped to [-pad, size+pad)."""
    out = []
    for i in range(pooled):
        start = i * stride - pad
        end = min(start + kernel, size + pad)
        out.append(end - start)
    return out


class Pooling(CaffeLayer):
    """Caffe Pooling (MAX / AVE / STOCHASTIC-in-TEST), exact output sizes and divisors."""

    def __init__(self, layer, phase, kernel, stride, pad, method, global_pooling, ceil_mode):
        super().__init__(layer, phase)
        self.kernel, self.stride, self.pad = kernel, stride, pad
        self.method, self.global_pooling, self.ceil_mode = method, global_pooling, ceil_mode
        self._divisors: dict = {}

    def geometry(self, h: int, w: int):
        if self.global_pooling:
            kernel, stride, pad = (h, w), (1, 1), (0, 0)
        else:
            kernel, stride, pad = self.kernel, self.stride, self.pad
        any_pad = pad[0] > 0 or pad[1] > 0
        out = tuple(caffe_pooled_size(s, k, st, p, any_pad, self.ceil_mode)
                    for s, k, st, p in zip((h, w), kernel, stride, pad))
        return kernel, stride, pad, out

    def output_shape(self, shape):
        _, _, _, out = self.geometry(shape[2], shape[3])
        return tuple(shape[:2]) + out

    # ------------------------------------------------------------------ forward
    def forward(self, x):
        if x.dim() != 4:
            raise ConversionError(self.caffe_name, f"Pooling needs a 4-D bottom, got shape {tuple(x.shape)}")
        h, w = x.shape[2], x.shape[3]
        kernel, stride, pad, out = self.geometry(h, w)
        if self.method == STOCHASTIC:
            return self._stochastic_test(x, kernel, stride, out)
        native = all(p <= k // 2 for p, k in zip(pad, kernel)) and all(
            _torch_pooled_size(s, k, st, p, self.ceil_mode) == o
            for s, k, st, p, o in zip((h, w), kernel, stride, pad, out))
        if native:
            # PyTorch's windows, clipping and count_include_pad divisor equal Caffe's here.
            if self.method == MAX:
                return F.max_pool2d(x, kernel, stride, pad, ceil_mode=self.ceil_mode)
            return F.avg_pool2d(x, kernel, stride, pad, ceil_mode=self.ceil_mode, count_include_pad=True)
        xp = self._pad_to_windows(x, kernel, stride, pad, out, -FLT_MAX if self.method == MAX else 0.0)
        if self.method == MAX:
            return F.max_pool2d(xp, kernel, stride)[:, :, :out[0], :out[1]]
        summed = F.avg_pool2d(xp, kernel, stride, divisor_override=1)[:, :, :out[0], :out[1]]
        return summed / self._divisor(h, w, kernel, stride, pad, out, x)

    @staticmethod
    def _pad_to_windows(x, kernel, stride, pad, out, value):
        """Pad left/top by ``pad`` and right/bottom so that every Caffe window lies inside."""
        h, w = x.shape[2], x.shape[3]
        right = [(o - 1) * s + k - (size + p) for o, s, k, size, p in zip(out, stride, kernel, (h, w), pad)]
        if pad[0] == pad[1] == 0 and right[0] <= 0 and right[1] <= 0:
            return x
        return F.pad(x, (pad[1], max(right[1], 0), pad[0], max(right[0], 0)), value=value)

    def _divisor(self, h, w, kernel, stride, pad, out, x):
        key = (h, w, x.device, x.dtype)
        d = self._divisors.get(key)
        if d is None:
            dh = torch.tensor(ave_divisor(h, out[0], kernel[0], stride[0], pad[0]), dtype=x.dtype, device=x.device)
            dw = torch.tensor(ave_divisor(w, out[1], kernel[1], stride[1], pad[1]), dtype=x.dtype, device=x.device)
            d = self._divisors[key] = dh[:, None] * dw[None, :]
        return d

    def _stochastic_test(self, x, kernel, stride, out):
        xp = self._pad_to_windows(x, kernel, stride, (0, 0), out, 0.0)
        num = F.avg_pool2d(xp * xp, kernel, stride, divisor_override=1)[:, :, :out[0], :out[1]]
        den = F.avg_pool2d(xp, kernel, stride, divisor_override=1)[:, :, :out[0], :out[1]] + FLT_MIN
        return num / den

    def extra_repr(self):
        names = {MAX: "MAX", AVE: "AVE", STOCHASTIC: "STOCHASTIC"}
        geo = "global" if self.global_pooling else f"kernel={self.kernel}, stride={self.stride}, pad={self.pad}"
        return (f"caffe_name={self.caffe_name!r}, {names[self.method]}, {geo}, "
                f"round={'CEIL' if self.ceil_mode else 'FLOOR'}")


def pooling_params(layer, p: pb.PoolingParameter):
    """Kernel, stride and pad (each (h, w)) from a PoolingParameter, with Caffe's checks."""
    if p.global_pooling:
        if p.HasField("kernel_size") or p.HasField("kernel_h") or p.HasField("kernel_w"):
            raise ConversionError(layer, "with global_pooling: true, filter size cannot be specified")
        kernel = None
    else:
        if p.HasField("kernel_size") == (p.HasField("kernel_h") or p.HasField("kernel_w")):
            raise ConversionError(layer, "filter size is kernel_size OR kernel_h and kernel_w; not both "
                                         "(and one of them is required)")
        if not p.HasField("kernel_size") and not (p.HasField("kernel_h") and p.HasField("kernel_w")):
            raise ConversionError(layer, "for non-square filters both kernel_h and kernel_w are required")
        kernel = ((p.kernel_size, p.kernel_size) if p.HasField("kernel_size") else (p.kernel_h, p.kernel_w))
        if kernel[0] <= 0 or kernel[1] <= 0:
            raise ConversionError(layer, f"filter dimensions must be > 0, got {kernel}")
    if p.HasField("pad") and (p.HasField("pad_h") or p.HasField("pad_w")):
        raise ConversionError(layer, "pad is pad OR pad_h and pad_w")
    if p.HasField("stride") and (p.HasField("stride_h") or p.HasField("stride_w")):
        raise ConversionError(layer, "stride is stride OR stride_h and stride_w")
    pad = (p.pad, p.pad) if not (p.HasField("pad_h") or p.HasField("pad_w")) else (p.pad_h, p.pad_w)
    if p.HasField("stride_h") != p.HasField("stride_w"):
        raise ConversionError(layer, "stride_h and stride_w must both be given")
    stride = (p.stride, p.stride) if not p.HasField("stride_h") else (p.stride_h, p.stride_w)
    if stride[0] <= 0 or stride[1] <= 0:
        raise ConversionError(layer, f"stride must be > 0, got {stride}")
    if p.global_pooling:
        if pad != (0, 0) or stride != (1, 1):
            raise ConversionError(layer, "with global_pooling: true; only pad = 0 and stride = 1")
    elif pad[0] >= kernel[0] or pad[1] >= kernel[1]:
        raise ConversionError(layer, f"pad {pad} must be smaller than the kernel {kernel}")
    return kernel, stride, pad


@register("Pooling")
def convert_pooling(layer, bottom_shapes, phase):
    need_bottoms(layer, bottom_shapes, 1)
    need_tops(layer, (1, 2))
    if len(layer.top) == 2:
        raise ConversionError(layer, "the second (MAX mask) top of Pooling is not supported")
    shape = tuple(bottom_shapes[0])
    if len(shape) != 4:
        raise ConversionError(layer, f"input must have 4 axes, corresponding to (num, channels, height, "
                                     f"width); got shape {shape}")
    p = layer.pooling_param
    kernel, stride, pad = pooling_params(layer, p)
    if p.pool == STOCHASTIC and phase != "TEST":
        raise ConversionError(layer, "STOCHASTIC pooling is only supported in the TEST phase "
                                     "(weighted average); TRAIN samples randomly")
    if p.pool not in (MAX, AVE, STOCHASTIC):
        raise ConversionError(layer, f"unknown pooling method {p.pool}")
    if p.global_pooling:
        kernel = (shape[2], shape[3])
    mod = Pooling(layer, phase, kernel, stride, pad, p.pool, p.global_pooling,
                  ceil_mode=p.round_mode == pb.PoolingParameter.CEIL)
    out = mod.output_shape(shape)
    if out[2] <= 0 or out[3] <= 0:
        raise ConversionError(layer, f"output would be empty: bottom {shape}, kernel {kernel}, pad {pad}")
    return mod, [out]
