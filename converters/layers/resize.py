"""Resizing layers of the forks: Interp (PSPNet / DeepLab v2) and Upsample (SegNet, YOLOv3 ports).

Interp (hszhao/PSPNet ``interp_layer.cpp``): the input, cropped by ``pad_beg``/``pad_end`` (both
<= 0), is resized bilinearly with corners aligned (``src = dst * (in - 1) / (out - 1)``, 0 for an
output of size 1).  Output size: ``shrink_factor`` then ``zoom_factor`` when both are given
(``(in-1)/shrink + 1``, then ``out + (out-1)*(zoom-1)``), either alone likewise, else
``height``/``width``, else the size of bottom[1].  OpenCV 4 ignores shrink_factor and the pads and
takes one bottom only; with ``semantics="opencv"`` shrink_factor and the pads are ignored too.
Upsample, two bottoms (SegNet, alexgkendall/caffe-segnet ``upsample_layer.cpp``): max-unpooling;
bottom[1] holds, per value, its flat index in the output plane; output ``upsample_h x upsample_w``
or ``in * scale - pad_out`` (scale default 2; ``scale_h``/``scale_w`` per axis).  Upsample, one
bottom (YOLOv3 Caffe ports): nearest neighbour, ``out = in * scale`` (scale default 1).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import CaffeLayer, need_bottoms, need_tops
from .registry import ConversionError, current_semantics, register


class Interp(CaffeLayer):
    def __init__(self, layer, phase, pad_beg, pad_end, size_fn):
        super().__init__(layer, phase)
        self.pad_beg, self.pad_end, self.size_fn = pad_beg, pad_end, size_fn

    def forward(self, x, ref=None):
        h, w = int(x.shape[2]), int(x.shape[3])
        if self.pad_beg or self.pad_end:
            x = x[:, :, -self.pad_beg:h + self.pad_end, -self.pad_beg:w + self.pad_end]
        out = self.size_fn(int(x.shape[2]), int(x.shape[3]), ref)
        if tuple(out) == (int(x.shape[2]), int(x.shape[3])):
            return x.clone()
        return F.interpolate(x, size=out, mode="bilinear", align_corners=True)


@register("Interp")
def convert_interp(layer, shapes, phase):
    need_bottoms(layer, shapes, (1, 2))
    need_tops(layer, 1)
    x = tuple(shapes[0])
    if len(x) != 4:
        raise ConversionError(layer, f"needs a 4-D bottom, got {x}")
    p = layer.interp_param
    opencv = current_semantics() == "opencv"
    pad_beg, pad_end = (0, 0) if opencv else (int(p.pad_beg), int(p.pad_end))
    if pad_beg > 0 or pad_end > 0:
        raise ConversionError(layer, f"only cropping (pad_beg, pad_end <= 0) is supported, got {pad_beg}, {pad_end}")
    zoom = p.HasField("zoom_factor")
    shrink = p.HasField("shrink_factor") and not opencv
    if zoom and p.zoom_factor < 1:
        raise ConversionError(layer, f"zoom_factor must be positive, got {p.zoom_factor}")
    if shrink and p.shrink_factor < 1:
        raise ConversionError(layer, f"shrink_factor must be positive, got {p.shrink_factor}")
    z, s = int(p.zoom_factor), int(p.shrink_factor)
    if opencv and len(shapes) == 2:
        raise ConversionError(layer, "OpenCV semantics take one bottom (the two-bottom form is PSPNet's)")
    if zoom or shrink:
        def size_fn(h, w, ref=None):
            if shrink:
                h, w = (h - 1) // s + 1, (w - 1) // s + 1
            if zoom:
                h, w = h + (h - 1) * (z - 1), w + (w - 1) * (z - 1)
            return h, w
    elif p.HasField("height") and p.HasField("width"):
        hh, ww = int(p.height), int(p.width)

        def size_fn(h, w, ref=None):
            return hh, ww
    elif len(shapes) == 2:
        def size_fn(h, w, ref=None):
            return int(ref.shape[2]), int(ref.shape[3])
    else:
        raise ConversionError(layer, "needs zoom_factor, shrink_factor, height and width, or a second bottom")
    ref_shape = shapes[1] if len(shapes) == 2 else None

    class _Ref:
        shape = ref_shape
    h_eff, w_eff = x[2] + pad_beg + pad_end, x[3] + pad_beg + pad_end
    if h_eff <= 0 or w_eff <= 0:
        raise ConversionError(layer, f"pads {pad_beg}, {pad_end} leave nothing of {x}")
    oh, ow = size_fn(h_eff, w_eff, _Ref if ref_shape is not None else None)
    if oh <= 0 or ow <= 0:
        raise ConversionError(layer, f"output size {oh}x{ow} must be positive")
    return Interp(layer, phase, pad_beg, pad_end, size_fn), [(x[0], x[1], oh, ow)]


class UpsampleNearest(CaffeLayer):
    def __init__(self, layer, phase, scale):
        super().__init__(layer, phase)
        self.scale = scale

    def forward(self, x):
        return x.repeat_interleave(self.scale, dim=2).repeat_interleave(self.scale, dim=3)


class Unpool(CaffeLayer):
    def __init__(self, layer, phase, size_fn):
        super().__init__(layer, phase)
        self.size_fn = size_fn

    def forward(self, x, mask):
        n, c, h, w = x.shape
        oh, ow = self.size_fn(int(h), int(w))
        out = x.new_zeros((n, c, oh * ow))
        idx = mask.reshape(n, c, -1).to(torch.int64)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= oh * ow):
            raise ConversionError(self.caffe_name, f"upsample index out of range [0, {oh * ow})")
        out.scatter_(2, idx, x.reshape(n, c, -1))
        return out.reshape(n, c, oh, ow)


@register("Upsample")
def convert_upsample(layer, shapes, phase):
    need_bottoms(layer, shapes, (1, 2))
    need_tops(layer, 1)
    x = tuple(shapes[0])
    if len(x) != 4:
        raise ConversionError(layer, f"needs a 4-D bottom, got {x}")
    p = layer.upsample_param
    if len(shapes) == 1:
        scale = int(p.scale) if p.HasField("scale") else 1
        if scale < 1:
            raise ConversionError(layer, f"scale must be positive, got {scale}")
        return UpsampleNearest(layer, phase, scale), [(x[0], x[1], x[2] * scale, x[3] * scale)]
    if tuple(shapes[1]) != x:
        raise ConversionError(layer, f"the mask bottom must have the data's shape {x}, got {tuple(shapes[1])}")
    if p.HasField("upsample_h") and p.HasField("upsample_w"):
        uh, uw = int(p.upsample_h), int(p.upsample_w)

        def size_fn(h, w):
            return uh, uw
    else:
        scale = int(p.scale) if p.HasField("scale") else 2
        sh = int(p.scale_h) if p.HasField("scale_h") else scale
        sw = int(p.scale_w) if p.HasField("scale_w") else scale
        ph, pw = int(p.pad_out_h), int(p.pad_out_w)
        if (ph and sh != 2) or (pw and sw != 2):
            raise ConversionError(layer, "pad_out_h/pad_out_w are only defined for scale 2")

        def size_fn(h, w):
            return h * sh - ph, w * sw - pw
    oh, ow = size_fn(x[2], x[3])
    if oh < x[2] or ow < x[3]:
        raise ConversionError(layer, f"output {oh}x{ow} smaller than the input {x[2]}x{x[3]}")
    return Unpool(layer, phase, size_fn), [(x[0], x[1], oh, ow)]
