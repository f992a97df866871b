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
        where = _LayerRef(self.caffe_name, self.caffe_type)
        dims = check_blob_shape(where, shape, f"parameter blob {len(self.blob_names)}")
        if filler is not None and (filler.type or "constant") not in FILLER_TYPES:
            # Caffe's GetFiller at layer setup: LOG(FATAL) << "Unknown filler name"
            raise ConversionError(where, f"parameter blob {len(self.blob_names)}: unknown filler "
                                         f"type {filler.type!r} (Caffe knows "
                                         f"{', '.join(FILLER_TYPES)})")
        check_allocatable(where, dims, f"parameter blob {len(self.blob_names)}")
        try:
            data = torch.empty(dims, dtype=torch.float32)
        except (RuntimeError, MemoryError) as exc:   # the allocator's own refusal
            raise ConversionError(where, f"cannot allocate parameter blob {len(self.blob_names)} "
                                         f"of shape {dims} ({_size_text(math.prod(dims))}): "
                                         f"{' '.join(str(exc).split())[:120]}") from None
        param = nn.Parameter(data, requires_grad=requires_grad)
        setattr(self, attr, param)
        self.blob_names = self.blob_names + (attr,)
        self.blob_fillers.append(filler if filler is not None else pb.FillerParameter())
        self.blob_lr_default.append(lr_mult_default)
        return param

    def blobs(self) -> list[nn.Parameter]:
        return [getattr(self, name) for name in self.blob_names]

    def extra_repr(self) -> str:
        return f"caffe_name={self.caffe_name!r}"


# Caffe 1.0 filler names (filler.hpp GetFiller)
FILLER_TYPES = ("constant", "uniform", "gaussian", "positive_unitball", "xavier", "msra", "bilinear")
INT_MAX = 2**31 - 1


class _LayerRef:
    """Name and type of a layer, for ConversionError when only the module is at hand."""

    def __init__(self, name, type_):
        self.name, self.type = name, type_


def _size_text(n: int) -> str:
    gib = n * 4 / (1 << 30)
    return f"{n:,} values, {gib:,.1f} GiB as float32" if gib >= 0.1 else f"{n:,} values"


def check_blob_shape(layer, shape, what: str = "blob") -> tuple[int, ...]:
    """A blob shape as Caffe's Blob::Reshape accepts it: every dim >= 0 and at most INT_MAX
    values in all (``CHECK_GE(shape[i], 0)``, ``CHECK_LE(shape[i], INT_MAX / count_) << "blob
    size exceeds INT_MAX"``).  Returns the dims as Python ints."""
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise ConversionError(layer, f"{what}: shape {shape!r} is not a list of integers") from None
    if any(d < 0 for d in dims):
        raise ConversionError(layer, f"{what}: negative dimension in shape {dims} "
                                     "(Caffe requires every dimension >= 0)")
    n = math.prod(dims)
    if n > INT_MAX:
        raise ConversionError(layer, f"{what}: shape {dims} holds {_size_text(n)}; Caffe refuses "
                                     "blobs over INT_MAX (2147483647) values")
    return dims


def available_memory() -> int | None:
    """Bytes this process can still allocate: MemAvailable, capped by RLIMIT_AS (None if unknown)."""
    limit = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    limit = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            used = 0
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmSize:"):
                        used = int(line.split()[1]) * 1024
                        break
            room = max(soft - used, 0)
            limit = room if limit is None else min(limit, room)
    except (ImportError, OSError, ValueError):
        pass
    return limit


def check_allocatable(layer, dims, what: str = "blob") -> None:
    """Refuse a float32 blob that cannot fit in the memory left (not under ``torch.device('meta')``,
    where nothing is allocated)."""
    nbytes = math.prod(dims) * 4
    if nbytes < (256 << 20) or torch.empty(0).device.type == "meta":
        return
    room = available_memory()
    if room is not None and nbytes > room:
        raise ConversionError(layer, f"{what}: shape {tuple(dims)} needs {nbytes / (1 << 30):,.1f} "
                                     f"GiB, more than the {room / (1 << 30):,.1f} GiB of memory "
                                     "available")


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
