"""Shared pieces of the layer converters: the module base class and Caffe's axis/shape helpers."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..proto import caffe_pb2 as pb
from .registry import ConversionError

FLT_MIN = 1.1754943508222875e-38   # std::numeric_limits<float>::min()
FLT_MAX = 3.4028234663852886e+38


def constant_filler(value: float) -> pb.FillerParameter:
    return pb.FillerParameter(type="constant", value=value)


class CaffeLayer(nn.Module):
    """A converted Caffe layer.

    ``blob_names`` lists the attribute names of its ``nn.Parameter``s in Caffe's blob order
    (``blobs()`` returns them), ``blob_fillers`` the Caffe filler of each blob (used when a
    caffemodel has no weights for the layer).  ``caffe_name``/``caffe_type`` name the layer.
    """

    def __init__(self, layer: pb.LayerParameter, phase: str = "TEST"):
        super().__init__()
        self.caffe_name = layer.name
        self.caffe_type = layer.type
        self.phase = phase
        self.blob_names: tuple[str, ...] = ()
        self.blob_fillers: list = []
        self.blob_lr_default: list[float | None] = []

    def add_blob(self, attr: str, shape, filler: pb.FillerParameter | None = None, *,
                 requires_grad: bool = True, lr_mult_default: float | None = None) -> nn.Parameter:
        param = nn.Parameter(torch.empty(tuple(int(d) for d in shape), dtype=torch.float32),
                             requires_grad=requires_grad)
        setattr(self, attr, param)
        self.blob_names = self.blob_names + (attr,)
        self.blob_fillers.append(filler if filler is not None else pb.FillerParameter())
        self.blob_lr_default.append(lr_mult_default)
        return param

    def blobs(self) -> list[nn.Parameter]:
        return [getattr(self, name) for name in self.blob_names]

    def extra_repr(self) -> str:
        return f"caffe_name={self.caffe_name!r}"


def canonical_axis(layer, axis: int, num_axes: int, what: str = "axis") -> int:
    """Caffe's Blob::CanonicalAxisIndex: -num_axes <= axis < num_axes, negatives count from the end."""
    if not -num_axes <= axis < num_axes:
        raise ConversionError(layer, f"{what} {axis} out of range for a {num_axes}-D blob")
    return axis + num_axes if axis < 0 else axis


def count(shape, start: int = 0, end: int | None = None) -> int:
    return int(math.prod(shape[start:end]))


def same_shapes(layer, shapes, what: str = "bottoms") -> None:
    first = tuple(shapes[0])
    for i, s in enumerate(shapes[1:], 1):
        if tuple(s) != first:
            raise ConversionError(layer, f"{what} must have the same shape: bottom 0 is {first}, "
                                         f"bottom {i} is {tuple(s)}")


def need_bottoms(layer, shapes, n: int | tuple[int, int]) -> None:
    lo, hi = (n, n) if isinstance(n, int) else n
    if not lo <= len(shapes) <= hi:
        want = str(lo) if lo == hi else f"{lo} to {hi}"
        raise ConversionError(layer, f"takes {want} bottom blob(s), got {len(shapes)}")


def need_tops(layer, n: int | tuple[int, int]) -> None:
    lo, hi = (n, n) if isinstance(n, int) else n
    if not lo <= len(layer.top) <= hi:
        want = str(lo) if lo == hi else f"{lo} to {hi}"
        raise ConversionError(layer, f"produces {want} top blob(s), got {len(layer.top)}")
