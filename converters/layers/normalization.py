"""BatchNorm and MVN (Caffe's batch_norm_layer.cpp, mvn_layer.cpp).

Caffe rules honoured:
* BatchNorm has three blobs: running mean ``C``, running variance ``C`` and a scale factor ``1``.
  With global statistics Caffe uses ``mean = blob0 / s`` and ``var = blob1 / s`` with
  ``s = blob2[0]`` (a factor 0 when ``s == 0``): ``y = (x - mean) / sqrt(var + eps)``.  There is no
  affine part (Caffe nets follow BatchNorm with a Scale layer).
* ``use_global_stats`` defaults to true in TEST and false in TRAIN.  Without global statistics the
  batch mean and biased variance over N and the spatial axes are used and the blobs are updated as
  Caffe does: ``s = s * maf + 1``, ``mean_blob = mean_blob * maf + mean``,
  ``var_blob = var_blob * maf + m / (m - 1) * var`` (``maf = moving_average_fraction``,
  ``m = N * spatial``).
* The blobs are parameters with ``lr_mult`` 0 (Caffe forces it); they are not trained.
* MVN: ``y = (x - mean) / (sqrt(E[(x - mean)^2]) + eps)`` per (n, c) or per n (``across_channels``);
  ``normalize_variance: false`` only subtracts the mean.
"""
from __future__ import annotations

import torch

from .base import CaffeLayer, constant_filler, need_bottoms, need_tops
from .registry import ConversionError, register


class BatchNorm(CaffeLayer):
    def __init__(self, layer, phase, shape):
        super().__init__(layer, phase)
        p = layer.batch_norm_param
        self.use_global_stats = p.use_global_stats if p.HasField("use_global_stats") else phase == "TEST"
        self.maf, self.eps = float(p.moving_average_fraction), float(p.eps)
        channels = shape[1] if len(shape) > 1 else 1
        for i, name in enumerate(("mean", "variance", "scale_factor")):
            if i < len(layer.param) and layer.param[i].lr_mult != 0:
                raise ConversionError(layer, "cannot configure batch normalization statistics as layer "
                                             "parameters (lr_mult must be 0)")
            self.add_blob(name, (channels,) if i < 2 else (1,), constant_filler(0.0),
                          requires_grad=False, lr_mult_default=0.0)

    def _view(self, t, x):
        return t.reshape((1, -1) + (1,) * (x.dim() - 2)) if x.dim() > 1 else t

    def forward(self, x):
        if self.use_global_stats:
            s = self.scale_factor[0]
            factor = torch.where(s == 0, torch.zeros_like(s), 1.0 / s)
            mean, var = self.mean * factor, self.variance * factor
            return (x - self._view(mean, x)) / self._view(torch.sqrt(var + self.eps), x)
        dims = [0] + list(range(2, x.dim()))
        mean = x.mean(dim=dims)
        centered = x - self._view(mean, x)
        var = (centered * centered).mean(dim=dims)
        with torch.no_grad():
            m = x.numel() // (x.shape[1] if x.dim() > 1 else 1)
            correction = m / (m - 1) if m > 1 else 1.0
            self.scale_factor.mul_(self.maf).add_(1.0)
            self.mean.mul_(self.maf).add_(mean.detach())
            self.variance.mul_(self.maf).add_(var.detach() * correction)
        return centered / self._view(torch.sqrt(var + self.eps), x)

    def extra_repr(self):
        return (f"caffe_name={self.caffe_name!r}, use_global_stats={self.use_global_stats}, "
                f"eps={self.eps}, moving_average_fraction={self.maf}")


class MVN(CaffeLayer):
    def __init__(self, layer, phase):
        super().__init__(layer, phase)
        p = layer.mvn_param
        self.normalize_variance, self.across_channels, self.eps = p.normalize_variance, p.across_channels, p.eps

    def forward(self, x):
        start = 1 if self.across_channels else 2
        dims = list(range(start, x.dim()))
        centered = x - x.mean(dim=dims, keepdim=True)
        if not self.normalize_variance:
            return centered
        std = torch.sqrt((centered * centered).mean(dim=dims, keepdim=True))
        return centered / (std + self.eps)


@register("BatchNorm")
def convert_batch_norm(layer, bottom_shapes, phase):
    need_bottoms(layer, bottom_shapes, 1)
    need_tops(layer, 1)
    shape = tuple(bottom_shapes[0])
    return BatchNorm(layer, phase, shape), [shape]


@register("MVN")
def convert_mvn(layer, bottom_shapes, phase):
    need_bottoms(layer, bottom_shapes, 1)
    need_tops(layer, 1)
    shape = tuple(bottom_shapes[0])
    if len(shape) < 2:
        raise ConversionError(layer, f"needs at least 2 axes, got {shape}")
    return MVN(layer, phase), [shape]
