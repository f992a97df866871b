"""Element-wise ("neuron") layers and Dropout: one bottom, one top of the same shape.

Caffe rules honoured (one formula per layer, as in the Caffe sources):
* ReLU: ``max(x, 0) + negative_slope * min(x, 0)``.
* PReLU: the same with a learned slope per channel (``C`` blob; ``1`` blob with ``channel_shared``),
  default filler constant 0.25.
* ELU: ``x > 0 ? x : alpha * (exp(x) - 1)``.  Sigmoid, TanH, AbsVal as named.
* BNLL: ``x > 0 ? x + log(1 + exp(-x)) : log(1 + exp(x))``.
* Power: ``(shift + scale * x) ^ power`` (constant ``power == 0 ? 1 : shift^power`` when
  ``power * scale == 0``).
* Exp: ``base ^ (shift + scale * x)`` (``base = -1`` means e).  Log: ``log_base(shift + scale * x)``.
* Threshold: ``x > threshold ? 1 : 0``.  Clip: ``max(min, min(x, max))``.  Swish: ``x * sigmoid(beta x)``.
* Dropout: identity in TEST; in TRAIN keeps each unit with probability ``1 - dropout_ratio`` and
  scales the kept units by ``1 / (1 - dropout_ratio)`` (active only while the module is in
  ``train()`` mode, so ``model.eval()`` on a TRAIN net disables it).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .base import CaffeLayer, constant_filler, need_bottoms, need_tops
from .registry import ConversionError, register


def _neuron(layer, bottom_shapes):
    need_bottoms(layer, bottom_shapes, 1)
    need_tops(layer, 1)
    return [tuple(bottom_shapes[0])]


class ReLU(CaffeLayer):
    def __init__(self, layer, phase):
        super().__init__(layer, phase)
        self.negative_slope = float(layer.relu_param.negative_slope)
        # Caffe runs ``top == bottom`` ReLUs in place.  We do too, but only under
        # ``torch.inference_mode()`` (autograd and tools that keep every blob, like LRP, need the
        # pre-activation) and never on a net input (CaffeNet clears the flag there).
        self.inplace = len(layer.top) == 1 and len(layer.bottom) == 1 and layer.top[0] == layer.bottom[0]

    def forward(self, x):
        inplace = self.inplace and torch.is_inference_mode_enabled()
        if self.negative_slope == 0.0:
            return F.relu_(x) if inplace else F.relu(x)
        return F.leaky_relu(x, self.negative_slope, inplace=inplace)


class PReLU(CaffeLayer):
    def __init__(self, layer, phase, shape):
        super().__init__(layer, phase)
        p = layer.prelu_param
        self.channel_shared = p.channel_shared
        channels = shape[1] if len(shape) > 1 else 1
        self.add_blob("weight", (1,) if p.channel_shared else (channels,),
                      p.filler if p.HasField("filler") else constant_filler(0.25))

    def forward(self, x):
        if x.dim() == 1:
            return torch.where(x > 0, x, x * self.weight)
        return F.prelu(x, self.weight)


class ELU(CaffeLayer):
    def __init__(self, layer, phase):
        super().__init__(layer, phase)
        self.alpha = float(layer.elu_param.alpha)

    def forward(self, x):
        return F.elu(x, self.alpha)


class Elementwise(CaffeLayer):
    """A parameter-free Caffe neuron layer given by a function."""

    def __init__(self, layer, phase, fn, describe=""):
        super().__init__(layer, phase)
        self.fn, self.describe = fn, describe

    def forward(self, x):
        return self.fn(x)

    def extra_repr(self):
        return f"caffe_name={self.caffe_name!r}" + (f", {self.describe}" if self.describe else "")


def _bnll(x):
    return torch.clamp(x, min=0) + torch.log1p(torch.exp(-torch.abs(x)))


class Power(CaffeLayer):
    def __init__(self, layer, phase):
        super().__init__(layer, phase)
        p = layer.power_param
        self.power, self.scale, self.shift = float(p.power), float(p.scale), float(p.shift)

    def forward(self, x):
        if self.power * self.scale == 0.0:
            # Caffe: value = (power_ == 0) ? 1 : pow(shift_, power_) in float, so 0^-1 is inf,
            # (-8)^0.5 is nan and overflow is inf (Python's ** would raise instead)
            with np.errstate(all="ignore"):
                value = 1.0 if self.power == 0.0 else float(
                    np.power(np.float32(self.shift), np.float32(self.power)))
            return torch.full_like(x, value)
        y = x
        if self.scale != 1.0:
            y = y * self.scale
        if self.shift != 0.0:
            y = y + self.shift
        if self.power != 1.0:
            y = y.pow(self.power)
        return y if y is not x else x.clone()

    def extra_repr(self):
        return f"caffe_name={self.caffe_name!r}, power={self.power}, scale={self.scale}, shift={self.shift}"


class Exp(CaffeLayer):
    def __init__(self, layer, phase):
        super().__init__(layer, phase)
        p = layer.exp_param
        if p.base != -1 and p.base <= 0:
            raise ConversionError(layer, f"base must be strictly positive (or -1 for e), got {p.base}")
        log_base = 1.0 if p.base == -1 else math.log(p.base)
        self.inner_scale = log_base * p.scale
        self.outer_scale = 1.0 if p.shift == 0 else (math.exp(p.shift) if p.base == -1 else p.base ** p.shift)

    def forward(self, x):
        y = torch.exp(x * self.inner_scale if self.inner_scale != 1.0 else x)
        return y * self.outer_scale if self.outer_scale != 1.0 else y


class Log(CaffeLayer):
    def __init__(self, layer, phase):
        super().__init__(layer, phase)
        p = layer.log_param
        if p.base != -1 and p.base <= 0:
            raise ConversionError(layer, f"base must be strictly positive (or -1 for e), got {p.base}")
        self.base_scale = 1.0 if p.base == -1 else 1.0 / math.log(p.base)
        self.scale, self.shift = float(p.scale), float(p.shift)

    def forward(self, x):
        y = x
        if self.scale != 1.0:
            y = y * self.scale
        if self.shift != 0.0:
            y = y + self.shift
        y = torch.log(y)
        return y * self.base_scale if self.base_scale != 1.0 else y


class Dropout(CaffeLayer):
    def __init__(self, layer, phase):
        super().__init__(layer, phase)
        self.ratio = float(layer.dropout_param.dropout_ratio)
        if not 0.0 <= self.ratio < 1.0:
            raise ConversionError(layer, f"dropout_ratio must be in [0, 1), got {self.ratio}")

    def forward(self, x):
        if self.phase == "TRAIN" and self.training and self.ratio > 0:
            return F.dropout(x, self.ratio, training=True)
        return x

    def extra_repr(self):
        active = "in train() mode" if self.phase == "TRAIN" else "never (TEST phase)"
        return f"caffe_name={self.caffe_name!r}, ratio={self.ratio}, active {active}"


@register("ReLU")
def convert_relu(layer, shapes, phase):
    return ReLU(layer, phase), _neuron(layer, shapes)


@register("PReLU")
def convert_prelu(layer, shapes, phase):
    tops = _neuron(layer, shapes)
    return PReLU(layer, phase, tops[0]), tops


@register("ELU")
def convert_elu(layer, shapes, phase):
    return ELU(layer, phase), _neuron(layer, shapes)


@register("Sigmoid")
def convert_sigmoid(layer, shapes, phase):
    return Elementwise(layer, phase, torch.sigmoid), _neuron(layer, shapes)


@register("TanH")
def convert_tanh(layer, shapes, phase):
    return Elementwise(layer, phase, torch.tanh), _neuron(layer, shapes)


@register("AbsVal")
def convert_absval(layer, shapes, phase):
    return Elementwise(layer, phase, torch.abs), _neuron(layer, shapes)


@register("BNLL")
def convert_bnll(layer, shapes, phase):
    return Elementwise(layer, phase, _bnll), _neuron(layer, shapes)


@register("Power")
def convert_power(layer, shapes, phase):
    return Power(layer, phase), _neuron(layer, shapes)


@register("Exp")
def convert_exp(layer, shapes, phase):
    return Exp(layer, phase), _neuron(layer, shapes)


@register("Log")
def convert_log(layer, shapes, phase):
    return Log(layer, phase), _neuron(layer, shapes)


class _Threshold:
    def __init__(self, t):
        self.t = t

    def __call__(self, x):
        return (x > self.t).to(x.dtype)


@register("Threshold")
def convert_threshold(layer, shapes, phase):
    t = float(layer.threshold_param.threshold)
    return Elementwise(layer, phase, _Threshold(t), f"threshold={t}"), _neuron(layer, shapes)


class _Clip:
    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def __call__(self, x):
        return torch.clamp(x, self.lo, self.hi)


@register("Clip")
def convert_clip(layer, shapes, phase):
    p = layer.clip_param
    if not (p.HasField("min") and p.HasField("max")):
        raise ConversionError(layer, "clip_param needs both min and max")
    return Elementwise(layer, phase, _Clip(p.min, p.max), f"min={p.min}, max={p.max}"), _neuron(layer, shapes)


class _Swish:
    def __init__(self, beta):
        self.beta = beta

    def __call__(self, x):
        return x * torch.sigmoid(x * self.beta if self.beta != 1.0 else x)


@register("Swish")
def convert_swish(layer, shapes, phase):
    beta = float(layer.swish_param.beta)
    return Elementwise(layer, phase, _Swish(beta), f"beta={beta}"), _neuron(layer, shapes)


@register("Dropout")
def convert_dropout(layer, shapes, phase):
    return Dropout(layer, phase), _neuron(layer, shapes)
