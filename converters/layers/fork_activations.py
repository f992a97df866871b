"""Element-wise layers of the forks: ReLU6 (MobileNet-V2 ports) and Mish (YOLOv4 Caffe ports).

* ReLU6 (``relu6_param``): the MobileNet-V2 ports compute ``min(max(x, 0), 6) + negative_slope *
  min(x, 0)``; OpenCV's ReLU6 (``layers/elementwise_layers.cpp``) reads ``min_value`` (0) and
  ``max_value`` (6) and computes ``min(max(x, min_value), max_value)``: both names are in our
  schema and honoured (bounds first, then the slope below 0 when given).
* Mish: ``x * tanh(softplus(x))`` (no parameters).  Swish is BVLC's (``activations``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .activations import Elementwise, _neuron
from .registry import ConversionError, register


class _ReLU6:
    def __init__(self, lo, hi, slope):
        self.lo, self.hi, self.slope = lo, hi, slope

    def __call__(self, x):
        y = torch.clamp(x, self.lo, self.hi)
        if self.slope:
            y = y + self.slope * torch.clamp(x, max=0)
        return y


@register("ReLU6")
def convert_relu6(layer, shapes, phase):
    p = layer.relu6_param
    lo, hi, slope = float(p.min_value), float(p.max_value), float(p.negative_slope)
    if lo > hi:
        raise ConversionError(layer, f"min_value {lo} exceeds max_value {hi}")
    return Elementwise(layer, phase, _ReLU6(lo, hi, slope), f"min={lo}, max={hi}, slope={slope}"), \
        _neuron(layer, shapes)


def _mish(x):
    return x * torch.tanh(F.softplus(x))


@register("Mish")
def convert_mish(layer, shapes, phase):
    return Elementwise(layer, phase, _mish, "mish"), _neuron(layer, shapes)
