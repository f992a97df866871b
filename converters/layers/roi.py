"""Region pooling of the detection forks: ROIPooling (rbgirshick/caffe-fast-rcnn) and PSROIPooling
(daijifeng001/caffe-rfcn).

ROIPooling (``roi_pooling_layer.cpp``, CPU code): rois ``[R, 5]`` = (batch index, x1, y1, x2, y2) in
image pixels; ``start = round(x1 * spatial_scale)``, ``end = round(x2 * spatial_scale)`` (C's
round: half away from zero); size ``max(end - start + 1, 1)``; bin ``size / pooled`` (float32); bin
``[start + floor(i*bin), start + ceil((i+1)*bin))`` clamped to the map; maximum; an empty bin is 0.
Output ``[R, C, pooled_h, pooled_w]``.
PSROIPooling (``psroi_pooling_layer.cu``): ``x0 = round(x1) * scale``, ``x1' = (round(x2) + 1) *
scale``, size ``max(x1' - x0, 0.1)``, bin ``size / group_size``; bin ``[floor(x0 + j*bin),
ceil(x0 + (j+1)*bin))`` clamped; average; output channel k, bin (i, j) reads input channel
``(k*group_size + i)*group_size + j``; empty bin 0.  Output ``[R, output_dim, group_size, group_size]``;
the input must have ``output_dim * group_size^2`` channels.  OpenCV 4 computes both identically.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .base import CaffeLayer, need_bottoms, need_tops
from .registry import ConversionError, register


def c_round(v: float) -> int:
    """C's round(): half away from zero."""
    return int(math.floor(v + 0.5)) if v >= 0 else -int(math.floor(-v + 0.5))


class ROIPooling(CaffeLayer):
    def __init__(self, layer, phase, ph, pw, scale):
        super().__init__(layer, phase)
        self.ph, self.pw, self.scale = ph, pw, np.float32(scale)

    def forward(self, x, rois):
        n, c, h, w = x.shape
        r = rois.detach().to("cpu", torch.float32).reshape(-1, 5).numpy()
        out = x.new_zeros((r.shape[0], c, self.ph, self.pw))
        for k, (b, x1, y1, x2, y2) in enumerate(r):
            b = int(b)
            if not 0 <= b < n:
                raise ConversionError(self.caffe_name, f"roi {k} names batch index {b}, the input has {n}")
            sw, sh = c_round(float(x1 * self.scale)), c_round(float(y1 * self.scale))
            ew, eh = c_round(float(x2 * self.scale)), c_round(float(y2 * self.scale))
            bh = np.float32(max(eh - sh + 1, 1)) / np.float32(self.ph)
            bw = np.float32(max(ew - sw + 1, 1)) / np.float32(self.pw)
            for i in range(self.ph):
                hs = min(max(int(math.floor(np.float32(i) * bh)) + sh, 0), h)
                he = min(max(int(math.ceil(np.float32(i + 1) * bh)) + sh, 0), h)
                for j in range(self.pw):
                    ws = min(max(int(math.floor(np.float32(j) * bw)) + sw, 0), w)
                    we = min(max(int(math.ceil(np.float32(j + 1) * bw)) + sw, 0), w)
                    if he > hs and we > ws:
                        out[k, :, i, j] = x[b, :, hs:he, ws:we].amax(dim=(1, 2))
        return out


@register("ROIPooling")
def convert_roi_pooling(layer, shapes, phase):
    need_bottoms(layer, shapes, 2)
    need_tops(layer, 1)
    p = layer.roi_pooling_param
    x, rois = tuple(shapes[0]), tuple(shapes[1])
    if p.pooled_h <= 0 or p.pooled_w <= 0:
        raise ConversionError(layer, f"pooled_h and pooled_w must be > 0, got {p.pooled_h}, {p.pooled_w}")
    if len(x) != 4 or int(np.prod(rois)) % 5:
        raise ConversionError(layer, f"needs a 4-D feature map and rois [R, 5], got {x} and {rois}")
    return (ROIPooling(layer, phase, int(p.pooled_h), int(p.pooled_w), float(p.spatial_scale)),
            [(int(np.prod(rois)) // 5, x[1], int(p.pooled_h), int(p.pooled_w))])


class PSROIPooling(CaffeLayer):
    def __init__(self, layer, phase, output_dim, group, scale):
        super().__init__(layer, phase)
        self.output_dim, self.group, self.scale = output_dim, group, np.float32(scale)

    def forward(self, x, rois):
        n, c, h, w = x.shape
        g, s = self.group, self.scale
        r = rois.detach().to("cpu", torch.float32).reshape(-1, 5).numpy()
        out = x.new_zeros((r.shape[0], self.output_dim, g, g))
        chan = torch.arange(self.output_dim, device=x.device) * g * g
        for k, (b, x1, y1, x2, y2) in enumerate(r):
            b = int(b)
            if not 0 <= b < n:
                raise ConversionError(self.caffe_name, f"roi {k} names batch index {b}, the input has {n}")
            sw, sh = np.float32(c_round(float(x1))) * s, np.float32(c_round(float(y1))) * s
            ew, eh = np.float32(c_round(float(x2)) + 1) * s, np.float32(c_round(float(y2)) + 1) * s
            bh = max(eh - sh, np.float32(0.1)) / np.float32(g)
            bw = max(ew - sw, np.float32(0.1)) / np.float32(g)
            for i in range(g):
                hs = min(max(int(math.floor(np.float32(i) * bh + sh)), 0), h)
                he = min(max(int(math.ceil(np.float32(i + 1) * bh + sh)), 0), h)
                for j in range(g):
                    ws = min(max(int(math.floor(np.float32(j) * bw + sw)), 0), w)
                    we = min(max(int(math.ceil(np.float32(j + 1) * bw + sw)), 0), w)
                    if he > hs and we > ws:
                        region = x[b, chan + i * g + j, hs:he, ws:we]
                        out[k, :, i, j] = region.sum(dim=(1, 2)) / float((he - hs) * (we - ws))
        return out


@register("PSROIPooling")
def convert_psroi_pooling(layer, shapes, phase):
    need_bottoms(layer, shapes, 2)
    need_tops(layer, 1)
    p = layer.psroi_pooling_param
    for f in ("spatial_scale", "output_dim", "group_size"):
        if not p.HasField(f):
            raise ConversionError(layer, f"psroi_pooling_param.{f} is required")
    x, rois = tuple(shapes[0]), tuple(shapes[1])
    g, dim = int(p.group_size), int(p.output_dim)
    if g <= 0 or dim <= 0:
        raise ConversionError(layer, f"output_dim and group_size must be > 0, got {dim}, {g}")
    if len(x) != 4 or x[1] != dim * g * g:
        raise ConversionError(layer, f"input channels must equal output_dim * group_size^2 = {dim * g * g}, "
                                     f"got bottom {x}")
    if int(np.prod(rois)) % 5:
        raise ConversionError(layer, f"rois must be [R, 5], got {rois}")
    return PSROIPooling(layer, phase, dim, g, float(p.spatial_scale)), [(int(np.prod(rois)) // 5, dim, g, g)]
