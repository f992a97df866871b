"""Softmax, ArgMax and Reduction (Caffe's softmax_layer.cpp, argmax_layer.cpp, reduction_layer.cpp).

Caffe rules honoured:
* Softmax normalises over ``axis`` (default 1, the channel axis, not the last one).
* ArgMax: without ``axis``, over all of ``shape[1:]`` per item, top ``N x (1|2) x top_k`` (padded
  with 1s to the bottom's number of axes, at least 3); ``out_max_val`` adds the values as channel 1.
  With ``axis``: top is the bottom with ``shape[axis] = top_k``, holding indices, or the values
  when ``out_max_val``.  Order: descending value, ties broken towards the larger index (Caffe sorts
  (value, index) pairs with std::greater).  Indices are floats, as in Caffe.
* Reduction: SUM / ASUM / SUMSQ / MEAN over all axes from ``axis`` (default 0) on, times ``coeff``.
"""
from __future__ import annotations

import torch

from ..proto import caffe_pb2 as pb
from .base import CaffeLayer, canonical_axis, count, need_bottoms, need_tops
from .registry import ConversionError, register


class Softmax(CaffeLayer):
    def __init__(self, layer, phase, axis):
        super().__init__(layer, phase)
        self.axis = axis

    def forward(self, x):
        return torch.softmax(x, dim=self.axis)

    def extra_repr(self):
        return f"caffe_name={self.caffe_name!r}, axis={self.axis}"


@register("Softmax")
def convert_softmax(layer, shapes, phase):
    need_bottoms(layer, shapes, 1)
    need_tops(layer, 1)
    x = tuple(shapes[0])
    return Softmax(layer, phase, canonical_axis(layer, layer.softmax_param.axis, len(x))), [x]


def caffe_topk(x: torch.Tensor, k: int, dim: int):
    """Top-k along ``dim`` ordered as Caffe's std::greater on (value, index) pairs."""
    length = x.shape[dim]
    values, idx = torch.sort(x.flip(dim), dim=dim, descending=True, stable=True)
    values, idx = values.narrow(dim, 0, k), idx.narrow(dim, 0, k)
    return values, (length - 1 - idx)


class ArgMax(CaffeLayer):
    def __init__(self, layer, phase, axis, top_k, out_max_val):
        super().__init__(layer, phase)
        self.axis, self.top_k, self.out_max_val = axis, top_k, out_max_val

    def forward(self, x):
        x = x.detach()
        if self.axis is None:
            n = x.shape[0]
            values, idx = caffe_topk(x.reshape(n, -1), self.top_k, 1)
            parts = [idx.to(x.dtype)] + ([values] if self.out_max_val else [])
            out = torch.stack(parts, dim=1)
            return out.reshape(out.shape + (1,) * (max(3, x.dim()) - 3))
        values, idx = caffe_topk(x, self.top_k, self.axis)
        return values if self.out_max_val else idx.to(x.dtype)


@register("ArgMax")
def convert_argmax(layer, shapes, phase):
    need_bottoms(layer, shapes, 1)
    need_tops(layer, 1)
    x = tuple(shapes[0])
    p = layer.argmax_param
    if p.top_k < 1:
        raise ConversionError(layer, "top_k must be >= 1")
    if p.HasField("axis"):
        axis = canonical_axis(layer, p.axis, len(x))
        if p.top_k > x[axis]:
            raise ConversionError(layer, f"top_k ({p.top_k}) must be <= the dimension of axis {axis} ({x[axis]})")
        top = x[:axis] + (p.top_k,) + x[axis + 1:]
    else:
        axis = None
        if p.top_k > count(x, 1):
            raise ConversionError(layer, f"top_k ({p.top_k}) must be <= the number of classes ({count(x, 1)})")
        top = (x[0], 2 if p.out_max_val else 1, p.top_k) + (1,) * (max(3, len(x)) - 3)
    return ArgMax(layer, phase, axis, p.top_k, p.out_max_val), [top]


R = pb.ReductionParameter


class Reduction(CaffeLayer):
    def __init__(self, layer, phase, axis):
        super().__init__(layer, phase)
        p = layer.reduction_param
        self.axis, self.operation, self.coeff = axis, p.operation, float(p.coeff)

    def forward(self, x):
        flat = x.reshape(tuple(x.shape[:self.axis]) + (-1,))
        if self.operation == R.SUM:
            y = flat.sum(-1)
        elif self.operation == R.ASUM:
            y = flat.abs().sum(-1)
        elif self.operation == R.SUMSQ:
            y = (flat * flat).sum(-1)
        else:
            y = flat.mean(-1)
        return y * self.coeff if self.coeff != 1.0 else y


@register("Reduction")
def convert_reduction(layer, shapes, phase):
    need_bottoms(layer, shapes, 1)
    need_tops(layer, 1)
    x = tuple(shapes[0])
    axis = canonical_axis(layer, layer.reduction_param.axis, len(x))
    if layer.reduction_param.operation not in (R.SUM, R.ASUM, R.SUMSQ, R.MEAN):
        raise ConversionError(layer, f"unknown reduction operation {layer.reduction_param.operation}")
    return Reduction(layer, phase, axis), [x[:axis]]
