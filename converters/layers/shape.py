"""Layers that only move data: Concat, Slice, Split, Flatten, Reshape, Crop, Tile, Silence.

Caffe rules honoured:
* Concat: ``axis`` (default 1; legacy ``concat_dim`` wins when set); all other axes must agree.
* Slice: ``axis`` (default 1; legacy ``slice_dim``); ``slice_point`` gives ``tops - 1`` cut points,
  otherwise the axis is divided equally (must divide exactly).
* Split: every top is a copy of the bottom (Caffe inserts these itself; an explicit one works too).
* Flatten: axes ``axis .. end_axis`` (defaults 1, -1) become one.
* Reshape: ``shape`` replaces the axes ``[axis, axis + num_axes)`` of the bottom (defaults 0, -1);
  a 0 copies the corresponding bottom dimension, one -1 is inferred from the count.  Evaluated
  on the actual bottom at every call, so a different batch size works as in Caffe.
* Crop: bottom 0 is cropped to bottom 1's shape on every axis from ``axis`` (default 2), at
  ``offset`` (none: 0; one: every cropped axis; else one per cropped axis).
* Tile: ``tiles`` copies along ``axis``.  Silence: consumes its bottoms, produces nothing.
"""
from __future__ import annotations

import math

import torch

from .base import CaffeLayer, canonical_axis, count, need_bottoms, need_tops
from .registry import ConversionError, register


class Concat(CaffeLayer):
    def __init__(self, layer, phase, axis):
        super().__init__(layer, phase)
        self.axis = axis

    def forward(self, *xs):
        if len(xs) == 1:
            return xs[0]
        return torch.cat(xs, dim=self.axis)


@register("Concat")
def convert_concat(layer, shapes, phase):
    need_bottoms(layer, shapes, (1, 1 << 30))
    need_tops(layer, 1)
    p = layer.concat_param
    first = tuple(shapes[0])
    axis = p.concat_dim if p.HasField("concat_dim") else canonical_axis(layer, p.axis, len(first))
    if not 0 <= axis < len(first):
        raise ConversionError(layer, f"concat axis {axis} out of range for bottom shape {first}")
    total = 0
    for i, s in enumerate(shapes):
        s = tuple(s)
        if len(s) != len(first) or s[:axis] != first[:axis] or s[axis + 1:] != first[axis + 1:]:
            raise ConversionError(layer, f"all inputs must have the same shape except along the concat "
                                         f"axis {axis}: bottom 0 is {first}, bottom {i} is {s}")
        total += s[axis]
    return Concat(layer, phase, axis), [first[:axis] + (total,) + first[axis + 1:]]


class Slice(CaffeLayer):
    def __init__(self, layer, phase, axis, points, n):
        super().__init__(layer, phase)
        self.axis, self.points, self.n = axis, list(points), n

    def forward(self, x):
        if self.n == 1:
            return x
        dim = x.shape[self.axis]
        if self.points:
            bounds = [0] + self.points + [dim]
            sizes = [b - a for a, b in zip(bounds, bounds[1:])]
        else:
            sizes = [dim // self.n] * self.n
        return tuple(torch.split(x, sizes, dim=self.axis))


@register("Slice")
def convert_slice(layer, shapes, phase):
    need_bottoms(layer, shapes, 1)
    x = tuple(shapes[0])
    p = layer.slice_param
    axis = p.slice_dim if p.HasField("slice_dim") else canonical_axis(layer, p.axis, len(x))
    if not 0 <= axis < len(x):
        raise ConversionError(layer, f"slice axis {axis} out of range for bottom shape {x}")
    n, dim = len(layer.top), x[axis]
    if n == 0:
        raise ConversionError(layer, "needs at least one top")
    if len(p.slice_point):
        points = list(p.slice_point)
        if len(points) != n - 1:
            raise ConversionError(layer, f"{len(points)} slice_point(s) for {n} tops (need {n - 1})")
        bounds = [0] + points + [dim]
        sizes = [b - a for a, b in zip(bounds, bounds[1:])]
        if any(s <= 0 for s in sizes):
            raise ConversionError(layer, f"slice points {points} must increase strictly inside (0, {dim})")
    else:
        if dim % n:
            raise ConversionError(layer, f"number of top blobs ({n}) should evenly divide input slice "
                                         f"axis ({dim})")
        sizes = [dim // n] * n
    return Slice(layer, phase, axis, list(p.slice_point), n), [x[:axis] + (s,) + x[axis + 1:] for s in sizes]


class Split(CaffeLayer):
    def __init__(self, layer, phase, n):
        super().__init__(layer, phase)
        self.n = n

    def forward(self, x):
        return tuple(x for _ in range(self.n)) if self.n != 1 else x


@register("Split")
def convert_split(layer, shapes, phase):
    need_bottoms(layer, shapes, 1)
    return Split(layer, phase, len(layer.top)), [tuple(shapes[0])] * len(layer.top)


def _flatten_shape(layer, x, axis, end_axis):
    start = canonical_axis(layer, axis, len(x))
    end = canonical_axis(layer, end_axis, len(x), "end_axis")
    return x[:start] + (count(x, start, end + 1),) + x[end + 1:]


class Flatten(CaffeLayer):
    def __init__(self, layer, phase):
        super().__init__(layer, phase)
        self.axis, self.end_axis = layer.flatten_param.axis, layer.flatten_param.end_axis

    def forward(self, x):
        return x.reshape(_flatten_shape(self.caffe_name, tuple(x.shape), self.axis, self.end_axis))


@register("Flatten")
def convert_flatten(layer, shapes, phase):
    need_bottoms(layer, shapes, 1)
    need_tops(layer, 1)
    return Flatten(layer, phase), [_flatten_shape(layer, tuple(shapes[0]), layer.flatten_param.axis,
                                                  layer.flatten_param.end_axis)]


def reshape_shape(layer, x, spec, axis, num_axes):
    """Caffe's ReshapeLayer::Reshape for bottom shape ``x``."""
    spec = [int(d) for d in spec]
    if spec.count(-1) > 1:
        raise ConversionError(layer, "new shape contains multiple -1 dims")
    if any(d < -1 for d in spec):
        raise ConversionError(layer, f"invalid dimension in new shape {spec}")
    start = axis if axis >= 0 else len(x) + axis + 1
    if not 0 <= start <= len(x):
        raise ConversionError(layer, f"axis {axis} out of range for bottom shape {x}")
    if num_axes < -1:
        raise ConversionError(layer, "num_axes must be >= 0, or -1 for all")
    end = len(x) if num_axes == -1 else start + num_axes
    if end > len(x):
        raise ConversionError(layer, f"end_axis = axis + num_axes is out of range for bottom shape {x}")
    top = list(x[:start])
    infer = None
    for i, d in enumerate(spec):
        if d == 0:
            if start + i >= len(x):
                raise ConversionError(layer, f"new shape dim {i} copies bottom axis {start + i}, which "
                                             f"does not exist (bottom {x})")
            top.append(x[start + i])
        elif d == -1:
            infer = len(top)
            top.append(1)
        else:
            top.append(d)
    top += list(x[end:])
    total, known = count(x), math.prod(top)
    if infer is not None:
        if known == 0 or total % known:
            raise ConversionError(layer, f"cannot infer the -1 dim: bottom count {total} is not a "
                                         f"multiple of {known} (bottom {x}, new shape {spec})")
        top[infer] = total // known
    elif known != total:
        raise ConversionError(layer, f"output count {known} must match input count {total} "
                                     f"(bottom {x}, new shape {spec})")
    return tuple(top)


class Reshape(CaffeLayer):
    def __init__(self, layer, phase):
        super().__init__(layer, phase)
        p = layer.reshape_param
        self.spec, self.axis, self.num_axes = list(p.shape.dim), p.axis, p.num_axes

    def forward(self, x):
        return x.reshape(reshape_shape(self.caffe_name, tuple(x.shape), self.spec, self.axis, self.num_axes))


@register("Reshape")
def convert_reshape(layer, shapes, phase):
    need_bottoms(layer, shapes, 1)
    need_tops(layer, 1)
    p = layer.reshape_param
    return Reshape(layer, phase), [reshape_shape(layer, tuple(shapes[0]), p.shape.dim, p.axis, p.num_axes)]


def crop_offsets(layer, a, b, axis_param, offsets):
    axis = canonical_axis(layer, axis_param, len(a))
    if len(a) != len(b):
        raise ConversionError(layer, f"bottoms must have the same number of axes: {a} vs {b}")
    n = len(a) - axis
    offsets = list(offsets)
    if len(offsets) not in (0, 1, n):
        raise ConversionError(layer, f"crop offset must be given once or once per cropped axis ({n}); "
                                     f"got {len(offsets)}")
    out, starts = list(a), []
    for i in range(len(a)):
        if i < axis:
            starts.append(0)
            continue
        off = 0 if not offsets else (offsets[0] if len(offsets) == 1 else offsets[i - axis])
        if a[i] - off < b[i]:
            raise ConversionError(layer, f"invalid crop on axis {i}: bottom 0 size {a[i]} minus offset "
                                         f"{off} is smaller than bottom 1 size {b[i]}")
        out[i] = b[i]
        starts.append(off)
    return axis, starts, tuple(out)


class Crop(CaffeLayer):
    def __init__(self, layer, phase):
        super().__init__(layer, phase)
        self.axis_param, self.offsets = layer.crop_param.axis, list(layer.crop_param.offset)

    def forward(self, x, ref):
        axis, starts, out = crop_offsets(self.caffe_name, tuple(x.shape), tuple(ref.shape),
                                         self.axis_param, self.offsets)
        index = tuple(slice(s, s + o) for s, o in zip(starts, out))
        return x[index]


@register("Crop")
def convert_crop(layer, shapes, phase):
    need_bottoms(layer, shapes, 2)
    need_tops(layer, 1)
    _, _, out = crop_offsets(layer, tuple(shapes[0]), tuple(shapes[1]), layer.crop_param.axis,
                             layer.crop_param.offset)
    return Crop(layer, phase), [out]


class Tile(CaffeLayer):
    def __init__(self, layer, phase, axis, tiles):
        super().__init__(layer, phase)
        self.axis, self.tiles = axis, tiles

    def forward(self, x):
        reps = [1] * x.dim()
        reps[self.axis] = self.tiles
        return x.repeat(*reps)


@register("Tile")
def convert_tile(layer, shapes, phase):
    need_bottoms(layer, shapes, 1)
    need_tops(layer, 1)
    x = tuple(shapes[0])
    p = layer.tile_param
    axis = canonical_axis(layer, p.axis, len(x))
    if not p.HasField("tiles") or p.tiles <= 0:
        raise ConversionError(layer, "tile_param.tiles must be given and > 0")
    return Tile(layer, phase, axis, p.tiles), [x[:axis] + (x[axis] * p.tiles,) + x[axis + 1:]]


class Silence(CaffeLayer):
    def forward(self, *xs):
        return ()


@register("Silence")
def convert_silence(layer, shapes, phase):
    need_tops(layer, 0)
    return Silence(layer, phase), []
