"""InnerProduct (Caffe's inner_product_layer.cpp).

Caffe rules honoured:
* ``axis`` (default 1): the bottom is viewed as ``M x K`` with ``M = prod(shape[:axis])`` and
  ``K = prod(shape[axis:])`` (so a 4-D pool5 is flattened in C, H, W order); the top is
  ``shape[:axis] + (num_output,)``.
* Weight blob ``num_output x K``, or ``K x num_output`` with ``transpose: true``; bias
  ``num_output`` (``bias_term``, default true).  ``top = bottom * W^T + b``.
* Legacy caffemodels store the weight as ``1 x 1 x num_output x K``: the weight loader accepts it
  (Caffe's Blob::ShapeEquals), the parameter keeps Caffe's 2-D shape.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import CaffeLayer, canonical_axis, count, need_bottoms, need_tops
from .registry import ConversionError, register


class InnerProduct(CaffeLayer):
    def __init__(self, layer, phase, in_shape):
        super().__init__(layer, phase)
        p = layer.inner_product_param
        self.axis = canonical_axis(layer, p.axis, len(in_shape))
        self.k = count(in_shape, self.axis)
        self.num_output = int(p.num_output)
        if self.num_output <= 0:
            raise ConversionError(layer, "num_output must be > 0")
        self.transpose = p.transpose
        shape = (self.k, self.num_output) if self.transpose else (self.num_output, self.k)
        self.add_blob("weight", shape, p.weight_filler if p.HasField("weight_filler") else None)
        self.bias_term = p.bias_term
        if p.bias_term:
            self.add_blob("bias", (self.num_output,), p.bias_filler if p.HasField("bias_filler") else None)
        else:
            self.bias = None

    def forward(self, x):
        lead = tuple(x.shape[:self.axis])
        if count(x.shape, self.axis) != self.k:
            raise ConversionError(self.caffe_name, f"input size incompatible with inner product "
                                                   f"parameters: bottom {tuple(x.shape)}, K = {self.k}")
        flat = x.reshape(count(lead), self.k)
        if self.transpose:
            y = torch.addmm(self.bias, flat, self.weight) if self.bias is not None else flat @ self.weight
        else:
            y = F.linear(flat, self.weight, self.bias)
        return y.reshape(lead + (self.num_output,))

    def extra_repr(self):
        return (f"caffe_name={self.caffe_name!r}, {self.k}->{self.num_output}, axis={self.axis}, "
                f"transpose={self.transpose}, bias={self.bias_term}")


@register("InnerProduct")
def convert_inner_product(layer, bottom_shapes, phase):
    need_bottoms(layer, bottom_shapes, 1)
    need_tops(layer, 1)
    shape = tuple(bottom_shapes[0])
    mod = InnerProduct(layer, phase, shape)
    return mod, [shape[:mod.axis] + (mod.num_output,)]
