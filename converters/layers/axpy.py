"""Axpy (hujie-frank/SENet ``axpy_layer.cpp``): ``top = a * X + Y``.

Fork: bottom[0] = a ``[N, C]`` or ``[N, C, 1, 1]`` (the excitation), bottom[1] = X ``[N, C, H, W]``,
bottom[2] = Y (same shape as X).  OpenCV 4 (``semantics="opencv"``; its importer turns Axpy into
Scale + Eltwise) computes ``bottom[0] * bottom[2] + bottom[1]``: the roles of X and Y swapped.
"""
from __future__ import annotations

from .base import CaffeLayer, need_bottoms, need_tops
from .registry import ConversionError, current_semantics, register


class Axpy(CaffeLayer):
    def __init__(self, layer, phase, opencv):
        super().__init__(layer, phase)
        self.opencv = opencv

    def forward(self, a, x, y):
        if self.opencv:
            x, y = y, x
        a = a.reshape(tuple(a.shape[:2]) + (1,) * (x.dim() - 2))
        return a * x + y

    def extra_repr(self):
        return f"caffe_name={self.caffe_name!r}, order={'opencv' if self.opencv else 'SENet'}"


@register("Axpy")
def convert_axpy(layer, shapes, phase):
    need_bottoms(layer, shapes, 3)
    need_tops(layer, 1)
    a, x, y = (tuple(s) for s in shapes)
    if x != y:
        raise ConversionError(layer, f"bottoms 1 and 2 must have the same shape, got {x} and {y}")
    if len(x) < 2 or a[:2] != x[:2] or any(d != 1 for d in a[2:]):
        raise ConversionError(layer, f"bottom 0 must be [N, C] or [N, C, 1, 1] matching {x[:2]}, got {a}")
    return Axpy(layer, phase, current_semantics() == "opencv"), [x]
