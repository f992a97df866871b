"""Channel rearrangements of the forks: ShuffleChannel (farmingyard/ShuffleNet) and Reorg (YOLOv2).

ShuffleChannel: ``group`` g (default 1): view ``[N, g, C/g, H, W]``, swap axes 1 and 2, view back.
Reorg (``reorg_param { stride }``, default 2): Darknet's reorg as OpenCV's ``reorg_layer.cpp``
computes it: ``[N, C, H, W]`` viewed as ``[N, C*H/s^2, s, W, s]`` ... see :class:`Reorg`;
output ``[N, C*s^2, H/s, W/s]``.  ``reverse`` is not supported.
"""
from __future__ import annotations

from .base import CaffeLayer, need_bottoms, need_tops
from .registry import ConversionError, register


class ShuffleChannel(CaffeLayer):
    def __init__(self, layer, phase, group):
        super().__init__(layer, phase)
        self.group = group

    def forward(self, x):
        n, c = x.shape[0], x.shape[1]
        rest = tuple(x.shape[2:])
        return x.reshape((n, self.group, c // self.group) + rest).transpose(1, 2).reshape(x.shape)

    def extra_repr(self):
        return f"caffe_name={self.caffe_name!r}, group={self.group}"


@register("ShuffleChannel")
def convert_shuffle_channel(layer, shapes, phase):
    need_bottoms(layer, shapes, 1)
    need_tops(layer, 1)
    x = tuple(shapes[0])
    g = int(layer.shuffle_channel_param.group)
    if len(x) < 2 or g < 1 or x[1] % g:
        raise ConversionError(layer, f"group {g} must divide the channels of {x}")
    return ShuffleChannel(layer, phase, g), [x]


class Reorg(CaffeLayer):
    """Darknet reorg (OpenCV's): view [N, C*H/s^2... as documented in the module docstring."""

    def __init__(self, layer, phase, stride):
        super().__init__(layer, phase)
        self.stride = stride

    def forward(self, x):
        n, c, h, w = x.shape
        s = self.stride
        y = x.reshape(n, c * h // (s * s), s, w, s).permute(0, 2, 4, 1, 3)
        return y.reshape(n, c * s * s, h // s, w // s)


@register("Reorg")
def convert_reorg(layer, shapes, phase):
    need_bottoms(layer, shapes, 1)
    need_tops(layer, 1)
    x = tuple(shapes[0])
    p = layer.reorg_param
    s = int(p.stride) if p.HasField("stride") else 2
    if p.reverse:
        raise ConversionError(layer, "reorg_param.reverse is not supported")
    if len(x) != 4 or s < 1 or x[2] % s or x[3] % s or (x[1] * x[2]) % (s * s):
        raise ConversionError(layer, f"stride {s} must divide the height and width of the 4-D bottom {x}")
    return Reorg(layer, phase, s), [(x[0], x[1] * s * s, x[2] // s, x[3] // s)]
