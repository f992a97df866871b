"""Caffe's ``BlobProto``: blob <-> float32 array, in both directions, and binaryproto files (means).

What it owns: the one BlobProto encoder (:func:`blob_chunks` / :func:`encode_blob`: wire bytes from
the array's own buffer, never Python lists; every blob the package writes, in caffemodels, means,
solver states, goes through it) and the one decoder of a blob's wire bytes (:func:`parse_wire_blob`,
used by the caffemodel reader, and :func:`blob_to_array` for big blobs); the shape rules
(:func:`blob_shape`: ``shape.dim``, else the legacy num/channels/height/width, as Caffe's
``Blob::FromProto``; :func:`shape_problem`: what Caffe's ``Blob::Reshape`` refuses); NVIDIA Caffe's
``raw_data`` (FP16/FP32/FP64) blobs; ``mean.binaryproto`` read and write.

Wire facts used (caffe.proto): BlobProto ``num/channels/height/width`` = 1..4, ``data`` = 5 (packed
float), ``diff`` = 6, ``shape`` = 7 (BlobShape ``dim`` = 1, packed int64), ``double_data`` = 8,
``double_diff`` = 9, NVIDIA's ``raw_data_type`` = 10 and ``raw_data`` = 12.  Non-packed repeated
floats/dims are legal protobuf and accepted too.  No torch here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..proto import caffe_pb2 as pb
from .errors import CaffeFormatError
from .files import atomic_write_bytes, read_binary
from .wire import (BytesSource, Corrupt, field_header, field_key, encode_varint, parse_message, read_length,
                   read_tag, read_varint, signed32, signed64, skip_field, unpacked_run)

_F32 = np.dtype("<f4")
_F64 = np.dtype("<f8")
_LIST_LIMIT = 4096  # above this many values, blob <-> array goes through wire bytes


def shape_problem(shape) -> str | None:
    """Why Caffe would refuse a blob of this shape (Blob::Reshape: every dim >= 0, at most
    INT_MAX values), or None.  Python ints: a product that wraps in int64 cannot slip through."""
    if any(d < 0 for d in shape):
        return f"blob shape {tuple(shape)} has a negative dimension"
    n = math.prod(shape)
    if n > _INT_MAX:
        return f"blob shape {tuple(shape)} holds {n:,} values, more than Caffe's INT_MAX"
    return None


_INT_MAX = 2**31 - 1


# ------------------------------------------------------------------ decoding wire bytes
@dataclass
class WireBlob:
    """A BlobProto's fields as read from the wire (arrays undecoded until :meth:`to_array`)."""
    dims: list = field(default_factory=list)
    has_shape: bool = False
    legacy: dict = field(default_factory=dict)
    data: list = field(default_factory=list)
    double: list = field(default_factory=list)
    raw: list = field(default_factory=list)        # NVIDIA Caffe raw_data (12) chunks
    raw_type: int | None = None                    # NVIDIA Caffe raw_data_type (10)

    def declared(self) -> tuple[bool, tuple]:
        """``(legacy, dims)`` as the blob states them, what Caffe's ``Blob::ShapeEquals`` compares:
        the legacy num/channels/height/width when any of them is present (absent ones 0), else
        ``shape.dim`` (empty when the blob has no shape)."""
        if self.legacy:
            return True, tuple(self.legacy.get(k, 0) for k in (1, 2, 3, 4))
        return False, tuple(self.dims)

    def to_array(self) -> np.ndarray:
        if self.raw:
            return raw_blob_array(b"".join(self.raw), self.raw_type, self._shape(None))
        return self._values()

    def _shape(self, n):
        if self.has_shape:
            return tuple(self.dims)
        if self.legacy:
            return tuple(self.legacy.get(k, 0) for k in (1, 2, 3, 4))
        return None if n is None else ((n,) if n else ())

    def _values(self) -> np.ndarray:
        # Shape rule of blob_shape(): shape.dim if present, else legacy num/channels/height/width
        # if any is present, else (n,) for n values.
        if self.has_shape:
            shape = tuple(self.dims)
        elif self.legacy:
            shape = tuple(self.legacy.get(k, 0) for k in (1, 2, 3, 4))
        else:
            n = sum(a.size for a in self.data) or sum(a.size for a in self.double)
            shape = (n,) if n else ()
        chunks = self.double if sum(a.size for a in self.double) else self.data
        if len(chunks) == 1:
            arr = chunks[0]
        elif chunks:
            arr = np.concatenate(chunks)
        else:
            arr = np.empty(0, dtype=_F32)
        if arr.dtype != np.float32:
            arr = arr.astype(np.float32)  # double_data is cast, as blob_to_array does
        return _shaped(arr, shape)


def _parse_dims(src, end: int, blob: WireBlob) -> None:
    while src.pos < end:
        fnum, wt = read_tag(src)
        if fnum == 1 and wt == 2:
            n = read_length(src, end)
            stop = src.pos + n
            while src.pos < stop:
                blob.dims.append(signed64(read_varint(src)))
            if src.pos != stop:
                raise Corrupt("packed dims overrun their field")
        elif fnum == 1 and wt == 0:
            blob.dims.append(signed64(read_varint(src)))
        else:
            skip_field(src, wt, fnum, end)


def parse_wire_blob(src, end: int) -> WireBlob:
    blob = WireBlob()
    while src.pos < end:
        fnum, wt = read_tag(src)
        if fnum == 5 and wt == 2:          # data, packed float
            n = read_length(src, end)
            if n % 4:
                raise Corrupt(f"packed float field of {n} bytes (not a multiple of 4)")
            blob.data.append(src.array(n, _F32))
        elif fnum == 5 and wt == 5:        # data, one non-packed float (and the run after it)
            blob.data.append(unpacked_run(src, end, 0x2D, 4, _F32))
        elif fnum == 8 and wt == 2:        # double_data, packed
            n = read_length(src, end)
            if n % 8:
                raise Corrupt(f"packed double field of {n} bytes (not a multiple of 8)")
            blob.double.append(src.array(n, _F64))
        elif fnum == 8 and wt == 1:
            blob.double.append(unpacked_run(src, end, 0x41, 8, _F64))
        elif fnum == 7 and wt == 2:        # shape (BlobShape); repeated occurrences merge
            n = read_length(src, end)
            blob.has_shape = True
            sub = src.sub(n)
            _parse_dims(sub, sub.size, blob)
        elif fnum in (1, 2, 3, 4) and wt == 0:
            blob.legacy[fnum] = signed32(read_varint(src))
        elif fnum == 12 and wt == 2:       # NVIDIA Caffe raw_data (bytes)
            blob.raw.append(src.read(read_length(src, end)))
        elif fnum == 10 and wt == 0:       # NVIDIA Caffe raw_data_type (enum Type)
            blob.raw_type = read_varint(src)
        else:
            skip_field(src, wt, fnum, end)
    if src.pos != end:
        raise Corrupt("blob overruns its enclosing message")
    return blob


_RAW_DTYPES = {0: np.dtype("<f8"), 1: np.dtype("<f4"), 2: np.dtype("<f2")}


def raw_blob_array(raw: bytes, raw_type, shape) -> np.ndarray:
    """An NVIDIA Caffe ``raw_data`` blob (FP16 weights, e.g. OpenCV's res10 ``*_fp16.caffemodel``) as
    float32 of ``shape`` (None: 1-D)."""
    if raw_type is None:
        raise Corrupt("blob has raw_data but no raw_data_type")
    dtype = _RAW_DTYPES.get(raw_type)
    if dtype is None:
        raise Corrupt(f"raw_data_type {raw_type} is not supported (only DOUBLE 0, FLOAT 1, FLOAT16 2)")
    if len(raw) % dtype.itemsize:
        raise Corrupt(f"raw_data of {len(raw)} bytes is not a whole number of {dtype.itemsize}-byte values")
    arr = np.frombuffer(raw, dtype=dtype).astype(np.float32)
    if shape is None:
        shape = (arr.size,)
    return _shaped(arr, shape)


def _shaped(arr: np.ndarray, shape) -> np.ndarray:
    """``arr`` as a blob of ``shape``: the dims are checked (negative, over INT_MAX values) before
    their product is trusted, then the value count must match."""
    problem = shape_problem(shape)
    if problem:
        raise Corrupt(problem)
    count = math.prod(shape)
    if arr.size != count:
        raise Corrupt(f"blob of shape {shape} holds {arr.size} values, expected {count}")
    return arr.reshape(shape)


def blob_array_from_bytes(data, path=None, layer=None) -> np.ndarray:
    """Decode one serialized BlobProto into a float32 array of its blob shape (fast path)."""
    src = BytesSource(data)
    try:
        return parse_wire_blob(src, src.size).to_array()
    except Corrupt as exc:
        raise CaffeFormatError(path, str(exc), layer=layer) from None


# ------------------------------------------------------------------ encoding
def blob_chunks(arr, legacy: bool = False) -> tuple[list, int]:
    """A serialized BlobProto of ``arr`` as byte chunks (the data chunk a view of the array) and
    their total length.

    Fields are emitted in field-number order, exactly as protobuf serializes the same message:
    legacy num/channels/height/width (1-4), data (5, packed), shape (7).
    """
    arr = np.ascontiguousarray(arr, dtype=_F32)
    parts: list = []
    if legacy:
        dims = (1,) * (4 - arr.ndim) + tuple(arr.shape)
        if len(dims) != 4:
            raise ValueError(f"legacy blobs are 4-D at most, got shape {arr.shape}")
        for fnum, d in zip((1, 2, 3, 4), dims):
            parts.append(field_key(fnum, 0) + encode_varint(int(d)))
    if arr.size:
        parts.append(field_header(5, arr.nbytes))
        parts.append(memoryview(arr.reshape(-1)).cast("B"))
    if not legacy:
        dims = b"".join(encode_varint(int(d)) for d in arr.shape)
        shape = (field_header(1, len(dims)) + dims) if dims else b""
        parts.append(field_header(7, len(shape)) + shape)
    return parts, sum(len(p) for p in parts)


def encode_blob(arr, legacy: bool = False) -> bytearray:
    """The serialized BlobProto holding ``arr`` as float32 (one copy of the data, no lists)."""
    parts, total = blob_chunks(arr, legacy)
    out = bytearray(total)
    pos = 0
    for part in parts:
        out[pos:pos + len(part)] = part
        pos += len(part)
    return out


# ------------------------------------------------------------------ BlobProto messages <-> arrays
def blob_shape(blob: pb.BlobProto) -> tuple[int, ...]:
    """The blob's shape: ``shape.dim`` if present, else the legacy (num, channels, height, width)."""
    if blob.HasField("shape"):
        return tuple(int(d) for d in blob.shape.dim)
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        return (blob.num, blob.channels, blob.height, blob.width)
    n = len(blob.data) or len(blob.double_data)
    if not n and blob.HasField("raw_data"):
        n = len(blob.raw_data) // {pb.DOUBLE: 8, pb.FLOAT: 4, pb.FLOAT16: 2}.get(blob.raw_data_type, 1)
    return (n,) if n else ()


def blob_to_array(blob: pb.BlobProto, path=None, layer=None) -> np.ndarray:
    """The blob's data as a float32 array of :func:`blob_shape` (double_data is cast; NVIDIA Caffe's
    ``raw_data`` of ``raw_data_type`` FLOAT16 / FLOAT / DOUBLE is decoded and cast)."""
    if blob.HasField("raw_data") or len(blob.data) + len(blob.double_data) > _LIST_LIMIT:
        # Iterating a protobuf repeated field costs ~0.2 s per million values; decoding the
        # serialized packed bytes is memcpy speed.
        return blob_array_from_bytes(blob.SerializeToString(), path, layer)
    shape = blob_shape(blob)
    if len(blob.double_data):
        arr = np.asarray(blob.double_data, dtype=np.float64).astype(np.float32)
    else:
        arr = np.asarray(blob.data, dtype=np.float32)
    problem = shape_problem(shape)
    if problem:
        raise CaffeFormatError(path, problem, layer=layer)
    count = math.prod(shape)
    if arr.size != count:
        raise CaffeFormatError(path, f"blob of shape {shape} holds {arr.size} values, expected {count}",
                               layer=layer)
    return arr.reshape(shape)


def array_to_blob(arr, legacy: bool = False, out: pb.BlobProto | None = None) -> pb.BlobProto:
    """A BlobProto holding ``arr`` as float32 (``legacy``: 4-D num/channels/height/width dims).

    The blob is built by parsing wire bytes we encode ourselves (tags, lengths and the array's
    raw little-endian bytes), never through Python lists: ~0.2 s for 100M floats.  Pass
    ``out=layer.blobs.add()`` to fill a blob inside a net in place; appending a finished big blob
    to ``layer.blobs`` makes protobuf copy it again.
    """
    blob = pb.BlobProto() if out is None else out
    # a memoryview: protobuf 4.x refuses bytearray, and bytes() would copy the data once more
    blob.ParseFromString(memoryview(encode_blob(arr, legacy=legacy)))
    return blob


# ------------------------------------------------------------------ mean.binaryproto
def read_blob(path) -> pb.BlobProto:
    blob = parse_message(path, read_binary(path), pb.BlobProto(), "binaryproto blob")
    if not len(blob.data) and not len(blob.double_data) and not blob.HasField("raw_data"):
        raise CaffeFormatError(path, "not a binaryproto blob: no data values")
    return blob


def read_mean(path) -> np.ndarray:
    """A ``mean.binaryproto`` as a float32 (C, H, W) array in the file's (BGR) channel order."""
    blob = read_blob(path)
    arr = blob_to_array(blob, path)
    if arr.ndim == 4:
        if arr.shape[0] != 1:
            raise CaffeFormatError(path, f"mean blob has num={arr.shape[0]}, expected 1")
        arr = arr[0]
    if arr.ndim != 3:
        raise CaffeFormatError(path, f"mean blob has shape {arr.shape}, expected (1, C, H, W)")
    return arr


def write_mean(array, path) -> None:
    """Write a (C, H, W) float array as ``compute_image_mean`` does (legacy 1xCxHxW dims)."""
    arr = np.asarray(array, dtype=np.float32)
    if arr.ndim != 3:
        raise ValueError(f"mean must be (C, H, W), got shape {arr.shape}")
    atomic_write_bytes(path, array_to_blob(arr[None], legacy=True).SerializeToString())
