"""Scale and Bias (Caffe's scale_layer.cpp, bias_layer.cpp).

Caffe rules honoured:
* One bottom: a learned blob of shape ``bottom.shape[axis : axis + num_axes]`` (``num_axes = -1``:
  every axis from ``axis`` on; ``0``: a scalar), broadcast over the other axes.  Scale's default
  filler is constant 1, Bias's (and Scale's ``bias_filler``) constant 0.
* Two bottoms: the second bottom is the scale (or bias); its shape must equal
  ``bottom0.shape[axis : axis + bottom1.ndim]``; a scalar second bottom uses axis 0.
* Scale with ``bias_term: true`` adds a learned bias blob of the scale's shape (blob 1, or blob 0
  in the two-bottom form).  ``y = x * scale (+ bias)``.
"""
from __future__ import annotations

from .base import CaffeLayer, canonical_axis, constant_filler, need_bottoms, need_tops
from .registry import ConversionError, register


def _param_shape(layer, param, shapes):
    """(axis, blob shape) for a Scale/Bias layer given the bottom shapes."""
    x = tuple(shapes[0])
    if len(shapes) == 2:
        other = tuple(shapes[1])
        axis = 0 if len(other) == 0 else canonical_axis(layer, param.axis, len(x))
        if axis + len(other) > len(x) or x[axis:axis + len(other)] != other:
            raise ConversionError(layer, f"bottom[1] shape {other} must match bottom[0] shape {x} "
                                         f"starting at axis {axis}")
        return axis, other
    axis = canonical_axis(layer, param.axis, len(x)) if len(x) else 0
    num_axes = param.num_axes
    if num_axes < -1:
        raise ConversionError(layer, f"num_axes must be non-negative, or -1 to extend to the end; got {num_axes}")
    if num_axes != -1 and axis + num_axes > len(x):
        raise ConversionError(layer, f"scale blob's shape extends past bottom[0]'s shape when applied "
                                     f"starting with bottom[0] axis = {axis} ({num_axes} axes, bottom {x})")
    end = len(x) if num_axes == -1 else axis + num_axes
    return axis, x[axis:end]


class _Broadcast(CaffeLayer):
    def _view(self, t, x):
        return t.reshape((1,) * self.axis + tuple(t.shape) + (1,) * (x.dim() - self.axis - t.dim()))


class Scale(_Broadcast):
    def __init__(self, layer, phase, shapes):
        super().__init__(layer, phase)
        p = layer.scale_param
        self.axis, shape = _param_shape(layer, p, shapes)
        self.two_bottoms = len(shapes) == 2
        if not self.two_bottoms:
            self.add_blob("weight", shape, p.filler if p.HasField("filler") else constant_filler(1.0))
        self.bias_term = p.bias_term
        if p.bias_term:
            self.add_blob("bias", shape, p.bias_filler if p.HasField("bias_filler") else constant_filler(0.0))

    def forward(self, x, scale=None):
        w = self.weight if scale is None else scale
        y = x * self._view(w, x)
        if self.bias_term:
            y = y + self._view(self.bias, x)
        return y

    def extra_repr(self):
        return f"caffe_name={self.caffe_name!r}, axis={self.axis}, bias={self.bias_term}"


class Bias(_Broadcast):
    def __init__(self, layer, phase, shapes):
        super().__init__(layer, phase)
        p = layer.bias_param
        self.axis, shape = _param_shape(layer, p, shapes)
        if len(shapes) == 1:
            self.add_blob("bias", shape, p.filler if p.HasField("filler") else constant_filler(0.0))

    def forward(self, x, bias=None):
        return x + self._view(self.bias if bias is None else bias, x)

    def extra_repr(self):
        return f"caffe_name={self.caffe_name!r}, axis={self.axis}"


@register("Scale")
def convert_scale(layer, bottom_shapes, phase):
    need_bottoms(layer, bottom_shapes, (1, 2))
    need_tops(layer, 1)
    return Scale(layer, phase, bottom_shapes), [tuple(bottom_shapes[0])]


@register("Bias")
def convert_bias(layer, bottom_shapes, phase):
    need_bottoms(layer, bottom_shapes, (1, 2))
    need_tops(layer, 1)
    return Bias(layer, phase, bottom_shapes), [tuple(bottom_shapes[0])]
