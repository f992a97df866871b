"""Local Response Normalization (Caffe's lrn_layer.cpp).

Caffe rules honoured (``n = local_size``, must be odd; ``pre = (n - 1) / 2``):
* ACROSS_CHANNELS: ``scale_c = k + alpha / n * sum_{c' = c - pre}^{c + pre} x_{c'}^2`` with channels
  outside ``[0, C)`` counted as zero, ``y = x * scale^(-beta)``.  Note alpha is divided by ``n``
  and ``k`` is used (other converters drop one or the other).
* WITHIN_CHANNEL: Caffe builds it from sub-layers: ``x^2`` -> AVE pooling (kernel ``n``, stride 1,
  pad ``pre``) -> Power(power = -beta, scale = alpha, shift = 1) -> product with ``x``.  With this
  geometry every window lies inside the padded extent, so the AVE divisor is always ``n*n``:
  ``y = x * (1 + alpha / n^2 * sum_{n x n window, zero padded} x^2)^(-beta)``.  ``k`` is NOT used
  in WITHIN_CHANNEL (Caffe 1.0 hard-codes the shift to 1).
* Bottom must be 4-D.
"""
from __future__ import annotations

import torch.nn.functional as F

from ..proto import caffe_pb2 as pb
from .base import CaffeLayer, need_bottoms, need_tops
from .registry import ConversionError, register

INT_MAX = 2**31 - 1

ACROSS, WITHIN = pb.LRNParameter.ACROSS_CHANNELS, pb.LRNParameter.WITHIN_CHANNEL


class LRN(CaffeLayer):
    def __init__(self, layer, phase):
        super().__init__(layer, phase)
        p = layer.lrn_param
        self.size, self.alpha, self.beta, self.k = int(p.local_size), float(p.alpha), float(p.beta), float(p.k)
        self.region = p.norm_region
        self.pre = (self.size - 1) // 2

    def forward(self, x):
        n, c, h, w = x.shape
        sq = x * x
        if self.region == ACROSS:
            # Window sums over channels [c - pre, c + pre] (channels outside [0, C) count as zero),
            # accumulated slice by slice in place: several times faster than a pooling kernel on
            # CPU, in any memory layout.
            scale = sq.clone()
            # offsets past C - 1 only reach the zero padding: stopping there is exact and keeps
            # a huge local_size from looping billions of times
            for j in range(1, min(self.pre, c - 1) + 1):
                scale[:, j:].add_(sq[:, :-j])
                scale[:, :-j].add_(sq[:, j:])
            scale.mul_(self.alpha / self.size).add_(self.k)
            return x * scale.pow_(-self.beta)
        else:
            # AVE pooling, kernel n, stride 1, pad pre: divisor n*n everywhere (see docstring).
            reach = min(self.pre, max(h, w) - 1)
            if reach == self.pre:
                mean = F.avg_pool2d(sq, self.size, stride=1, padding=self.pre,
                                    count_include_pad=True)
            else:
                # a window wider than the image: every offset past max(h, w) - 1 lands in the
                # zero padding, so a (2 * reach + 1) window sums the same values; the divisor
                # stays n * n (computed in float, as n * n overflows int for huge n)
                k = 2 * reach + 1
                total = F.avg_pool2d(sq, k, stride=1, padding=reach, count_include_pad=True) * (k * k)
                mean = total / (float(self.size) * float(self.size))
            scale = mean * self.alpha + 1.0
        return x * scale.pow(-self.beta)

    def extra_repr(self):
        region = "ACROSS_CHANNELS" if self.region == ACROSS else "WITHIN_CHANNEL"
        return (f"caffe_name={self.caffe_name!r}, {region}, local_size={self.size}, alpha={self.alpha}, "
                f"beta={self.beta}" + (f", k={self.k}" if self.region == ACROSS else " (k unused)"))


@register("LRN")
def convert_lrn(layer, bottom_shapes, phase):
    need_bottoms(layer, bottom_shapes, 1)
    need_tops(layer, 1)
    shape = tuple(bottom_shapes[0])
    if len(shape) != 4:
        raise ConversionError(layer, f"input must have 4 axes (num, channels, height, width); got {shape}")
    p = layer.lrn_param
    if p.local_size % 2 != 1:
        raise ConversionError(layer, f"LRN only supports odd values for local_size, got {p.local_size}")
    if p.norm_region not in (ACROSS, WITHIN):
        raise ConversionError(layer, f"unknown norm_region {p.norm_region}")
    # Caffe's limits: ACROSS_CHANNELS allocates a padded square blob of (C + local_size - 1) x H
    # x W values (Blob::Reshape: CHECK_LE(count, INT_MAX) "blob size exceeds INT_MAX");
    # WITHIN_CHANNEL passes local_size as a pooling kernel, an int that must be > 0
    if p.norm_region == ACROSS:
        padded = (shape[1] + p.local_size - 1) * shape[2] * shape[3]
        if padded > INT_MAX:
            raise ConversionError(layer, f"local_size {p.local_size} is too large: Caffe's padded "
                                         f"square blob would hold {padded:,} values (more than "
                                         f"INT_MAX)")
    elif p.local_size > INT_MAX:
        raise ConversionError(layer, f"local_size {p.local_size} is too large: Caffe's pooling "
                                     "kernel is an int (at most 2147483647)")
    return LRN(layer, phase), [shape]
