"""Layers without bottoms: the data family (the net's inputs) and Parameter.

Data layers are not run: their tops are the converted net's inputs, fed by the caller (the data
pipeline lives elsewhere).  Their shapes, as Caffe would create them:
* Input: ``input_param.shape`` (one shape for every top, or one per top).
* Data / WindowData: ``batch_size x C x crop_size x crop_size`` (C: 3 unless ``input_shapes`` says
  otherwise; without ``crop_size`` the image size comes from the database, so ``input_shapes`` must
  give it); label ``batch_size``.
* ImageData: ``batch_size x (3 | 1 if not is_color) x crop`` or ``new_height x new_width``; label ``batch_size``.
* MemoryData: ``batch_size x channels x height x width`` (or crop), label ``batch_size``.
* DummyData: ``shape`` (or legacy num/channels/height/width); tops with constant fillers are
  generated when the caller does not pass them.
* HDF5Data: shapes only from ``input_shapes``.
Parameter: a learned blob of ``parameter_param.shape`` exposed as its top.
"""
from __future__ import annotations

import torch

from .base import CaffeLayer, need_bottoms
from .registry import ConversionError, register


class InputLayer(CaffeLayer):
    """Stands for a data layer; ``defaults`` holds generated tops (DummyData constant fillers)."""

    def __init__(self, layer, phase, constants=None):
        super().__init__(layer, phase)
        self.constants = dict(constants or {})

    def default(self, top: str, shape):
        if top in self.constants and shape is not None:
            return torch.full(tuple(shape), self.constants[top])
        return None

    def forward(self, *args):
        raise RuntimeError(f"layer '{self.caffe_name}' ({self.caffe_type}) is an input of the converted net; "
                           f"pass its tops to the net instead of running it")

    def extra_repr(self):
        return f"caffe_name={self.caffe_name!r}, input"


def _with_label(layer, data_shape, batch):
    shapes = [data_shape]
    if len(layer.top) >= 2:
        shapes.append((batch,) if batch is not None else None)
    if len(layer.top) > 2:
        raise ConversionError(layer, f"data layers produce at most 2 tops (data, label); got {len(layer.top)}")
    return shapes


@register("Input", input_layer=True)
def convert_input(layer, shapes, phase):
    need_bottoms(layer, shapes, 0)
    given = [tuple(int(d) for d in s.dim) for s in layer.input_param.shape]
    n = len(layer.top)
    if len(given) not in (0, 1, n):
        raise ConversionError(layer, f"must specify 'shape' once, once per top blob ({n}), or not at all; "
                                     f"got {len(given)}")
    tops = [None] * n if not given else (given * n if len(given) == 1 else given)
    return InputLayer(layer, phase), tops


@register("Data", "WindowData", input_layer=True)
def convert_data(layer, shapes, phase):
    need_bottoms(layer, shapes, 0)
    p = layer.window_data_param if layer.type == "WindowData" else layer.data_param
    batch = int(p.batch_size) if p.HasField("batch_size") else None
    crop = layer.transform_param.crop_size
    data = (batch, 3, crop, crop) if crop and batch else None
    return InputLayer(layer, phase), _with_label(layer, data, batch)


@register("ImageData", input_layer=True)
def convert_image_data(layer, shapes, phase):
    need_bottoms(layer, shapes, 0)
    p = layer.image_data_param
    batch, channels = int(p.batch_size), 3 if p.is_color else 1
    crop = layer.transform_param.crop_size
    if crop:
        data = (batch, channels, crop, crop)
    elif p.new_height and p.new_width:
        data = (batch, channels, int(p.new_height), int(p.new_width))
    else:
        data = None
    return InputLayer(layer, phase), _with_label(layer, data, batch)


@register("MemoryData", input_layer=True)
def convert_memory_data(layer, shapes, phase):
    need_bottoms(layer, shapes, 0)
    p = layer.memory_data_param
    crop = layer.transform_param.crop_size
    h, w = (crop, crop) if crop else (p.height, p.width)
    data = (int(p.batch_size), int(p.channels), int(h), int(w))
    return InputLayer(layer, phase), _with_label(layer, data if all(data) else None, int(p.batch_size) or None)


@register("HDF5Data", input_layer=True)
def convert_hdf5_data(layer, shapes, phase):
    need_bottoms(layer, shapes, 0)
    return InputLayer(layer, phase), [None] * len(layer.top)


@register("DummyData", input_layer=True)
def convert_dummy_data(layer, shapes, phase):
    need_bottoms(layer, shapes, 0)
    p = layer.dummy_data_param
    n = len(layer.top)
    if len(p.shape):
        given = [tuple(int(d) for d in s.dim) for s in p.shape]
    elif len(p.num):
        legacy = [list(p.num), list(p.channels), list(p.height), list(p.width)]
        if any(len(v) not in (1, n) for v in legacy):
            raise ConversionError(layer, "num/channels/height/width must be given once or once per top")
        given = [tuple(v[0] if len(v) == 1 else v[i] for v in legacy) for i in range(n)]
    else:
        raise ConversionError(layer, "dummy_data_param needs 'shape' (or num/channels/height/width)")
    if len(given) not in (1, n):
        raise ConversionError(layer, f"give 'shape' once or once per top ({n}); got {len(given)}")
    tops = given * n if len(given) == 1 else given
    fillers = list(p.data_filler)
    if len(fillers) not in (0, 1, n):
        raise ConversionError(layer, f"give data_filler 0, 1 or {n} times; got {len(fillers)}")
    constants = {}
    for i, top in enumerate(layer.top):
        f = fillers[0] if len(fillers) == 1 else (fillers[i] if fillers else None)
        if f is None or f.type == "constant":
            constants[top] = float(f.value) if f is not None else 0.0
    return InputLayer(layer, phase, constants), tops


class Parameter(CaffeLayer):
    def __init__(self, layer, phase, shape):
        super().__init__(layer, phase)
        self.add_blob("weight", shape, None)

    def forward(self):
        return self.weight


@register("Parameter")
def convert_parameter(layer, shapes, phase):
    need_bottoms(layer, shapes, 0)
    if len(layer.top) != 1:
        raise ConversionError(layer, "produces exactly one top")
    shape = tuple(int(d) for d in layer.parameter_param.shape.dim)
    return Parameter(layer, phase, shape), [shape]
