"""The SSD fork's dense layers: Normalize, Permute, PriorBox (weiliu89/caffe, branch ssd) and
OpenCV's PriorBoxClustered.  DetectionOutput lives in :mod:`.detection`.

Rules (weiliu89/caffe ``src/caffe/layers/{normalize,permute,prior_box}_layer.cpp``):
* Normalize: ``across_spatial`` (default true) divides each sample by
  ``sqrt(sum_{c,h,w} x^2 + eps)``, otherwise each pixel by ``sqrt(sum_c x^2 + eps)`` (eps, default
  1e-10, inside the square root); then multiplies by the scale blob: one value when
  ``channel_shared`` (default true), else one per channel (``scale_filler``, default constant 1).
* Permute: ``order`` lists axes; the fork completes a partial order with the missing axes in
  increasing order; duplicates and axes >= the blob's are errors.
* PriorBox: per cell (rows outer, columns inner), per ``min_size``: the min square, the
  ``sqrt(min*max)`` square (when ``max_size``), then ``min*sqrt(ar) x min/sqrt(ar)`` per aspect
  ratio (1 implicit; a ratio within 1e-6 of a kept one skipped; ``flip`` adds 1/ar right after ar).
  The fork truncates min/max sizes to int; image size from ``img_size`` / ``img_h``+``img_w`` or
  bottom[1]; step from ``step`` / ``step_h``+``step_w`` or image/feature size; centre
  ``(w + offset) * step_w``; boxes divided by the image size; ``clip`` (default false) clamps to
  [0, 1]; output ``[1, 2, H*W*P*4]`` with the variances (default 0.1) in channel 1.
OpenCV 4 semantics (``semantics="opencv"``, layers/prior_box_layer.cpp): image size always from
bottom[1], ``clip`` true when absent, float sizes, ``variance`` required.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..proto import caffe_pb2 as pb
from .base import CaffeLayer, need_bottoms, need_tops
from .registry import ConversionError, current_semantics, register


# ------------------------------------------------------------------ Normalize
class Normalize(CaffeLayer):
    def __init__(self, layer, phase, channels):
        super().__init__(layer, phase)
        p = layer.norm_param
        self.across_spatial, self.eps = bool(p.across_spatial), float(p.eps)
        filler = p.scale_filler if p.HasField("scale_filler") else pb.FillerParameter(type="constant", value=1.0)
        self.add_blob("scale", (1,) if p.channel_shared else (channels,), filler)

    def forward(self, x):
        sq = x * x
        if self.across_spatial:
            norm = torch.sqrt(sq.flatten(1).sum(dim=1) + self.eps).reshape((-1,) + (1,) * (x.dim() - 1))
        else:
            norm = torch.sqrt(sq.sum(dim=1, keepdim=True) + self.eps)
        y = x / norm
        scale = self.scale if self.scale.numel() == 1 else self.scale.reshape((1, -1) + (1,) * (x.dim() - 2))
        return y * scale

    def extra_repr(self):
        return f"caffe_name={self.caffe_name!r}, across_spatial={self.across_spatial}, eps={self.eps}"


@register("Normalize", "NormalizeBBox")
def convert_normalize(layer, shapes, phase):
    need_bottoms(layer, shapes, 1)
    need_tops(layer, 1)
    x = tuple(shapes[0])
    if len(x) < 2:
        raise ConversionError(layer, f"needs a bottom with at least 2 axes, got {x}")
    return Normalize(layer, phase, x[1]), [x]


# ------------------------------------------------------------------ Permute
def permute_order(layer, ndim: int) -> list[int]:
    """weiliu89's PermuteLayer::LayerSetUp: listed axes first, then the missing ones in order."""
    order: list[int] = []
    for o in layer.permute_param.order:
        if o >= ndim:
            raise ConversionError(layer, f"order {o} must be less than the input dimension {ndim}")
        if o in order:
            raise ConversionError(layer, f"there are duplicate orders ({list(layer.permute_param.order)})")
        order.append(int(o))
    if current_semantics() == "opencv" and order and len(order) != ndim:
        # OpenCV's permute_layer.cpp asserts a full order (the fork completes it).
        raise ConversionError(layer, f"OpenCV semantics need all {ndim} axes in order, got {order}")
    order += [i for i in range(ndim) if i not in order]
    return order


class Permute(CaffeLayer):
    def __init__(self, layer, phase, order):
        super().__init__(layer, phase)
        self.order = tuple(order)

    def forward(self, x):
        if self.order == tuple(range(x.dim())):
            return x
        return x.permute(self.order).contiguous()

    def extra_repr(self):
        return f"caffe_name={self.caffe_name!r}, order={self.order}"


@register("Permute")
def convert_permute(layer, shapes, phase):
    need_bottoms(layer, shapes, 1)
    need_tops(layer, 1)
    x = tuple(shapes[0])
    order = permute_order(layer, len(x))
    return Permute(layer, phase, order), [tuple(x[i] for i in order)]


# ------------------------------------------------------------------ PriorBox
def aspect_ratios(ratios, flip: bool) -> list[float]:
    out = [1.0]
    for ar in ratios:
        ar = float(ar)
        if any(abs(ar - a) < 1e-6 for a in out):
            continue
        out.append(ar)
        if flip:
            out.append(1.0 / ar)
    return out


def _variances(layer, p, opencv: bool) -> list[float]:
    v = [float(x) for x in p.variance]
    if not v:
        if opencv:
            raise ConversionError(layer, "OpenCV semantics require prior_box_param.variance")
        return [0.1]
    if len(v) not in (1, 4):
        raise ConversionError(layer, f"needs 1 or 4 variance values, got {len(v)}")
    if any(x <= 0 for x in v):
        raise ConversionError(layer, f"variance must be positive, got {v}")
    return v


class PriorBox(CaffeLayer):
    """Prior boxes of one feature map (computed from the bottom shapes only, cached per shape)."""

    def __init__(self, layer, phase, clustered: bool = False):
        super().__init__(layer, phase)
        p = layer.prior_box_param
        self.opencv = current_semantics() == "opencv"
        self.clustered = clustered
        self.variance = _variances(layer, p, self.opencv)
        self.offset = float(p.offset)
        if clustered:
            self.widths = [float(w) for w in p.width]
            self.heights = [float(h) for h in p.height]
            if not self.widths or len(self.widths) != len(self.heights):
                raise ConversionError(layer, f"PriorBoxClustered needs as many width as height values "
                                             f"(>= 1), got {len(self.widths)} and {len(self.heights)}")
        else:
            to_size = float if self.opencv else (lambda v: float(int(v)))   # the fork's int min_size_
            self.min_sizes = [to_size(v) for v in p.min_size]
            self.max_sizes = [to_size(v) for v in p.max_size]
            if not self.min_sizes:
                raise ConversionError(layer, "must provide min_size")
            if any(m <= 0 for m in self.min_sizes):
                raise ConversionError(layer, f"min_size must be positive, got {self.min_sizes}")
            if self.max_sizes:
                if len(self.max_sizes) != len(self.min_sizes):
                    raise ConversionError(layer, f"{len(self.max_sizes)} max_size for {len(self.min_sizes)} "
                                                 f"min_size values (need the same number)")
                for lo, hi in zip(self.min_sizes, self.max_sizes):
                    if hi <= lo:
                        raise ConversionError(layer, f"max_size {hi} must be greater than min_size {lo}")
            self.ratios = aspect_ratios(p.aspect_ratio, p.flip)
        # clip: the fork's proto default false; OpenCV applies true when the field is absent.
        self.clip = bool(p.clip) if p.HasField("clip") else self.opencv
        self.img_h = self.img_w = 0
        if not self.opencv:          # OpenCV ignores img_size / img_h / img_w
            if p.HasField("img_size"):
                if p.HasField("img_h") or p.HasField("img_w"):
                    raise ConversionError(layer, "either img_size or img_h/img_w should be specified; not both")
                self.img_h = self.img_w = int(p.img_size)
            elif p.HasField("img_h") or p.HasField("img_w"):
                if not (p.HasField("img_h") and p.HasField("img_w")):
                    raise ConversionError(layer, "img_h and img_w must both be given")
                self.img_h, self.img_w = int(p.img_h), int(p.img_w)
        self.step_h = self.step_w = 0.0
        if p.HasField("step"):
            if p.HasField("step_h") or p.HasField("step_w"):
                raise ConversionError(layer, "either step or step_h/step_w should be specified; not both")
            self.step_h = self.step_w = float(p.step)
        elif p.HasField("step_h") or p.HasField("step_w"):
            if not (p.HasField("step_h") and p.HasField("step_w")):
                raise ConversionError(layer, "step_h and step_w must both be given")
            self.step_h, self.step_w = float(p.step_h), float(p.step_w)
        self._cache: dict = {}

    @property
    def num_priors(self) -> int:
        if self.clustered:
            return len(self.widths)
        return len(self.ratios) * len(self.min_sizes) + len(self.max_sizes)

    def boxes(self, fh: int, fw: int, ih: int, iw: int) -> np.ndarray:
        """The ``[1, 2, fh*fw*P*4]`` float32 array for a feature map and image size."""
        key = (fh, fw, ih, iw)
        if key in self._cache:
            return self._cache[key]
        img_h, img_w = (self.img_h, self.img_w) if self.img_h else (ih, iw)
        step_h, step_w = (self.step_h, self.step_w) if self.step_h else (img_h / fh, img_w / fw)
        sizes = []               # (box width, box height) per prior, in Caffe's order
        if self.clustered:
            sizes = list(zip(self.widths, self.heights))
        else:
            for i, m in enumerate(self.min_sizes):
                sizes.append((m, m))
                if self.max_sizes:
                    s = math.sqrt(m * self.max_sizes[i])
                    sizes.append((s, s))
                for ar in self.ratios:
                    if abs(ar - 1.0) < 1e-6:
                        continue
                    sizes.append((m * math.sqrt(ar), m / math.sqrt(ar)))
        bw = np.array([s[0] for s in sizes], dtype=np.float64)
        bh = np.array([s[1] for s in sizes], dtype=np.float64)
        cy = (np.arange(fh, dtype=np.float64) + self.offset) * step_h
        cx = (np.arange(fw, dtype=np.float64) + self.offset) * step_w
        cy, cx = np.meshgrid(cy, cx, indexing="ij")            # rows outer, columns inner
        cx, cy = cx[..., None], cy[..., None]
        out = np.stack([(cx - bw / 2) / img_w, (cy - bh / 2) / img_h,
                        (cx + bw / 2) / img_w, (cy + bh / 2) / img_h], axis=-1).reshape(-1)
        out = out.astype(np.float32)
        if self.clip:
            out = np.clip(out, 0.0, 1.0)
        var = np.empty_like(out).reshape(-1, 4)
        var[:] = np.asarray(self.variance if len(self.variance) == 4 else self.variance * 4, dtype=np.float32)
        arr = np.stack([out, var.reshape(-1)])[None]
        self._cache[key] = arr
        return arr

    def forward(self, feature, image=None):
        fh, fw = int(feature.shape[2]), int(feature.shape[3])
        if image is None:
            if not self.img_h:
                raise ConversionError(self.caffe_name, "needs the image blob as bottom[1] (or img_size)")
            ih, iw = self.img_h, self.img_w
        else:
            ih, iw = int(image.shape[2]), int(image.shape[3])
        return torch.from_numpy(self.boxes(fh, fw, ih, iw).copy()).to(feature.device)

    def extra_repr(self):
        return f"caffe_name={self.caffe_name!r}, priors={self.num_priors}, clip={self.clip}"


def _convert_prior_box(layer, shapes, phase, clustered):
    need_bottoms(layer, shapes, (1, 2))
    need_tops(layer, 1)
    for i, s in enumerate(shapes):
        if len(s) != 4:
            raise ConversionError(layer, f"bottom {i} must be 4-D (N, C, H, W), got {tuple(s)}")
    mod = PriorBox(layer, phase, clustered)
    if len(shapes) == 1 and not mod.img_h:
        raise ConversionError(layer, "needs the image blob as bottom[1] (or img_size / img_h + img_w)")
    fh, fw = shapes[0][2], shapes[0][3]
    return mod, [(1, 2, fh * fw * mod.num_priors * 4)]


@register("PriorBox")
def convert_prior_box(layer, shapes, phase):
    return _convert_prior_box(layer, shapes, phase, clustered=False)


@register("PriorBoxClustered")
def convert_prior_box_clustered(layer, shapes, phase):
    return _convert_prior_box(layer, shapes, phase, clustered=True)
