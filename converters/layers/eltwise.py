"""Eltwise (Caffe's eltwise_layer.cpp).

Caffe rules honoured:
* All bottoms have the same shape; ``operation`` defaults to SUM.
* SUM: ``top = sum_i coeff_i * bottom_i`` (``coeff`` given once per bottom, default all 1),
  accumulated in bottom order.
* PROD: element-wise product.  ``coeff`` is only allowed with SUM.
* MAX: element-wise maximum; the gradient goes to the first bottom holding the maximum (Caffe's
  mask), not split between ties.
"""
from __future__ import annotations

import torch

from ..proto import caffe_pb2 as pb
from .base import CaffeLayer, need_bottoms, need_tops, same_shapes
from .registry import ConversionError, register

PROD, SUM, MAX = pb.EltwiseParameter.PROD, pb.EltwiseParameter.SUM, pb.EltwiseParameter.MAX


class Eltwise(CaffeLayer):
    def __init__(self, layer, phase, n):
        super().__init__(layer, phase)
        p = layer.eltwise_param
        self.operation = p.operation
        self.coeff = [float(c) for c in p.coeff] or [1.0] * n

    def forward(self, *xs):
        if self.operation == SUM:
            out = xs[0] if self.coeff[0] == 1.0 else xs[0] * self.coeff[0]
            for c, x in zip(self.coeff[1:], xs[1:]):
                out = out + x if c == 1.0 else out + c * x
            return out
        if self.operation == PROD:
            out = xs[0]
            for x in xs[1:]:
                out = out * x
            return out
        return torch.stack(xs, dim=0).max(dim=0).values   # first maximum wins, as Caffe's mask

    def extra_repr(self):
        op = {SUM: "SUM", PROD: "PROD", MAX: "MAX"}[self.operation]
        return f"caffe_name={self.caffe_name!r}, {op}" + (f", coeff={self.coeff}" if self.operation == SUM else "")


@register("Eltwise")
def convert_eltwise(layer, shapes, phase):
    need_bottoms(layer, shapes, (2, 1 << 30))
    need_tops(layer, 1)
    same_shapes(layer, shapes)
    p = layer.eltwise_param
    if len(p.coeff) and p.operation != SUM:
        raise ConversionError(layer, "Eltwise layer only takes coefficients for summation")
    if len(p.coeff) not in (0, len(shapes)):
        raise ConversionError(layer, f"Eltwise layer takes one coefficient per bottom blob "
                                     f"({len(shapes)}), got {len(p.coeff)}")
    if p.operation not in (SUM, PROD, MAX):
        raise ConversionError(layer, f"unknown operation {p.operation}")
    return Eltwise(layer, phase, len(shapes)), [tuple(shapes[0])]
