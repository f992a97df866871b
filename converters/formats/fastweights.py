"""Fast caffemodel I/O straight on the protobuf wire format, for nets of hundreds of megabytes.

What it owns: reading the parameter blobs of a caffemodel (new ``layer`` or legacy V1 ``layers``
NetParameter) into float32 numpy arrays without building protobuf objects, and writing caffemodels
from numpy arrays without Python lists.  Each packed float field is read with ``readinto`` into a
preallocated array, so the file content is held once (peak memory ~ file size); nothing else of the
net (layer parameters, fillers) is decoded.  The results equal
``[blob_to_array(b) for b in read_weights(path).layer[i].blobs]`` (same shapes, including the legacy
4-D dims of V1 blobs, see :func:`converters.formats.blob_shape`).

Wire facts used (caffe.proto): NetParameter ``layer`` = 100 (LayerParameter: ``name`` 1, ``type`` 2,
``blobs`` 7) and V1 ``layers`` = 2 (V1LayerParameter: ``name`` 4, ``type`` 5 enum, ``blobs`` 6,
V0 ``layer`` 1); BlobProto ``num/channels/height/width`` = 1..4, ``data`` = 5 (packed float),
``diff`` = 6, ``shape`` = 7 (BlobShape ``dim`` = 1, packed int64), ``double_data`` = 8,
``double_diff`` = 9.  Non-packed repeated floats/dims are legal protobuf and accepted too.
No torch here.
"""
from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..proto import caffe_pb2 as pb
from .errors import CaffeFormatError
from .files import atomic_writer
from .prototxt import V1_TYPE_NAMES

__all__ = ["LayerWeights", "WeightArrays", "read_weight_layers", "read_weight_arrays",
           "write_weight_arrays", "blob_array_from_bytes", "encode_blob"]

_F32 = np.dtype("<f4")
_F64 = np.dtype("<f8")
# A blob region at most this big is read into memory and decoded there (cheap, and it makes
# non-packed repeated fields fast to decode); larger ones are streamed field by field.
_SMALL = 1 << 20


class _Corrupt(Exception):
    """Internal: wire-format violation (converted to CaffeFormatError with path and layer)."""


# ------------------------------------------------------------------ byte sources
class _FileSource:
    """Sequential reader over a binary file that tracks its position."""

    def __init__(self, fh, size: int):
        self.fh, self.pos, self.size = fh, 0, size

    def read(self, n: int) -> bytes:
        data = self.fh.read(n)
        if len(data) != n:
            raise _Corrupt(f"unexpected end of file at byte {self.pos + len(data)} "
                           f"(needed {n} more bytes; the file is truncated)")
        self.pos += n
        return data

    def byte(self) -> int:
        b = self.fh.read(1)
        if not b:
            raise _Corrupt(f"unexpected end of file at byte {self.pos} (the file is truncated)")
        self.pos += 1
        return b[0]

    def skip(self, n: int) -> None:
        if self.pos + n > self.size:
            raise _Corrupt(f"field of {n} bytes at byte {self.pos} runs past the end of the file "
                           f"({self.size} bytes; truncated)")
        self.fh.seek(n, io.SEEK_CUR)
        self.pos += n

    def array(self, nbytes: int, dtype: np.dtype) -> np.ndarray:
        if self.pos + nbytes > self.size:
            raise _Corrupt(f"field of {nbytes} bytes at byte {self.pos} runs past the end of the "
                           f"file ({self.size} bytes; truncated)")
        arr = np.empty(nbytes // dtype.itemsize, dtype=dtype)
        view = memoryview(arr).cast("B")
        got = 0
        while got < nbytes:   # readinto straight into the array: the bytes are never held twice
            n = self.fh.readinto(view[got:])
            if not n:
                raise _Corrupt(f"unexpected end of file at byte {self.pos + got} (truncated)")
            got += n
        self.pos += nbytes
        return arr

    def sub(self, n: int) -> "_BytesSource":
        """The next ``n`` bytes as an in-memory source (for small messages)."""
        return _BytesSource(self.read(n), base=self.pos - n)


class _BytesSource:
    """The same interface over an in-memory buffer."""

    def __init__(self, buf, base: int = 0):
        self.buf = memoryview(buf).cast("B") if not isinstance(buf, bytes) else buf
        self.pos, self.size, self.base = 0, len(buf), base

    def _need(self, n: int) -> None:
        if self.pos + n > self.size:
            raise _Corrupt(f"field of {n} bytes at byte {self.base + self.pos} runs past the end "
                           "of its enclosing message (truncated or corrupt)")

    def read(self, n: int) -> bytes:
        self._need(n)
        data = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return data

    def byte(self) -> int:
        self._need(1)
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def skip(self, n: int) -> None:
        self._need(n)
        self.pos += n

    def array(self, nbytes: int, dtype: np.dtype) -> np.ndarray:
        self._need(nbytes)
        arr = np.frombuffer(self.buf, dtype=dtype, count=nbytes // dtype.itemsize,
                            offset=self.pos).copy()
        self.pos += nbytes
        return arr

    def sub(self, n: int) -> "_BytesSource":
        self._need(n)
        out = _BytesSource(self.buf[self.pos:self.pos + n], base=self.base + self.pos)
        self.pos += n
        return out


# ------------------------------------------------------------------ wire primitives
def _varint(src) -> int:
    result = shift = 0
    for _ in range(10):
        b = src.byte()
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result
        shift += 7
    raise _Corrupt("malformed varint (more than 10 bytes)")


def _tag(src) -> tuple[int, int]:
    key = _varint(src)
    fnum, wtype = key >> 3, key & 7
    if fnum == 0 or wtype in (6, 7):
        raise _Corrupt(f"invalid field key {key} at byte {_abs(src) - 1} (not protobuf data)")
    return fnum, wtype


def _abs(src) -> int:
    return getattr(src, "base", 0) + src.pos


def _length(src, end: int) -> int:
    n = _varint(src)
    if src.pos + n > end:
        raise _Corrupt(f"length-delimited field of {n} bytes at byte {_abs(src)} runs past the "
                       f"end of its enclosing message (truncated or corrupt)")
    return n


def _skip(src, wtype: int, fnum: int, end: int) -> None:
    """Skip one field value of the given wire type (groups included)."""
    if wtype == 0:
        _varint(src)
    elif wtype == 1:
        src.skip(8)
    elif wtype == 5:
        src.skip(4)
    elif wtype == 2:
        src.skip(_length(src, end))
    elif wtype == 3:
        # iterative, with protobuf's own nesting limit (100): 1,000 bytes of 0x0b are 1,000
        # nested group starts and must not exhaust Python's recursion limit
        open_groups = [fnum]
        while open_groups:
            if src.pos >= end:
                raise _Corrupt(f"unterminated group (field {open_groups[-1]})")
            inner, iw = _tag(src)
            if iw == 4:
                if inner != open_groups[-1]:
                    raise _Corrupt(f"mismatched end of group {inner} (expected {open_groups[-1]})")
                open_groups.pop()
            elif iw == 3:
                open_groups.append(inner)
                if len(open_groups) > _MAX_GROUP_DEPTH:
                    raise _Corrupt(f"groups nested more than {_MAX_GROUP_DEPTH} deep at byte "
                                   f"{_abs(src)} (not a caffemodel)")
            else:
                _skip(src, iw, inner, end)
    else:  # 4: end group without start
        raise _Corrupt(f"unexpected end-group marker for field {fnum} at byte {_abs(src)}")
    if src.pos > end:
        raise _Corrupt(f"field {fnum} runs past the end of its enclosing message")


def _unpacked_run(src, end: int, tag_byte: int, width: int, dtype: np.dtype) -> np.ndarray:
    """Decode a run of consecutive non-packed fixed-width values (``tag value tag value ...``).

    Called right after the first value's one-byte tag was consumed; vectorised so that a
    non-packed file with millions of values still decodes quickly.  The run stops at the first
    record boundary that does not carry ``tag_byte``; the position is left there.
    """
    start = src.pos
    avail = end - start
    if avail < width:
        raise _Corrupt(f"value of {width} bytes at byte {_abs(src)} runs past its message")
    if isinstance(src, _FileSource):
        raw = np.frombuffer(src.read(avail), dtype=np.uint8)
    else:
        src._need(avail)
        raw = np.frombuffer(src.buf, dtype=np.uint8, count=avail, offset=start)
    rec = 1 + width
    nfull = (avail + 1) // rec            # records that fit (the first one's tag is consumed)
    tags = raw[rec - 1::rec][: nfull - 1]  # tag bytes of records 1 .. nfull-1
    bad = np.flatnonzero(tags != tag_byte)
    nrec = 1 + (int(bad[0]) if bad.size else tags.size)
    used = nrec * rec - 1
    rest = raw[width:used].reshape(-1, rec)[:, 1:].reshape(-1)
    values = np.concatenate([raw[:width], rest]).view(dtype).copy()
    if isinstance(src, _FileSource):
        src.fh.seek(start + used)
    src.pos = start + used
    return values


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
_MAX_GROUP_DEPTH = 100   # protobuf's default recursion limit


# ------------------------------------------------------------------ messages
@dataclass
class _Blob:
    dims: list = field(default_factory=list)
    has_shape: bool = False
    legacy: dict = field(default_factory=dict)
    data: list = field(default_factory=list)
    double: list = field(default_factory=list)
    raw: list = field(default_factory=list)        # NVIDIA Caffe raw_data (12) chunks
    raw_type: int | None = None                    # NVIDIA Caffe raw_data_type (10)

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


def _parse_dims(src, end: int, blob: _Blob) -> None:
    while src.pos < end:
        fnum, wt = _tag(src)
        if fnum == 1 and wt == 2:
            n = _length(src, end)
            stop = src.pos + n
            while src.pos < stop:
                blob.dims.append(_signed64(_varint(src)))
            if src.pos != stop:
                raise _Corrupt("packed dims overrun their field")
        elif fnum == 1 and wt == 0:
            blob.dims.append(_signed64(_varint(src)))
        else:
            _skip(src, wt, fnum, end)


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _signed32(v: int) -> int:
    # protobuf int32 fields: the varint is truncated to its low 32 bits, two's complement
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def _parse_blob(src, end: int) -> _Blob:
    blob = _Blob()
    while src.pos < end:
        fnum, wt = _tag(src)
        if fnum == 5 and wt == 2:          # data, packed float
            n = _length(src, end)
            if n % 4:
                raise _Corrupt(f"packed float field of {n} bytes (not a multiple of 4)")
            blob.data.append(src.array(n, _F32))
        elif fnum == 5 and wt == 5:        # data, one non-packed float (and the run after it)
            blob.data.append(_unpacked_run(src, end, 0x2D, 4, _F32))
        elif fnum == 8 and wt == 2:        # double_data, packed
            n = _length(src, end)
            if n % 8:
                raise _Corrupt(f"packed double field of {n} bytes (not a multiple of 8)")
            blob.double.append(src.array(n, _F64))
        elif fnum == 8 and wt == 1:
            blob.double.append(_unpacked_run(src, end, 0x41, 8, _F64))
        elif fnum == 7 and wt == 2:        # shape (BlobShape); repeated occurrences merge
            n = _length(src, end)
            blob.has_shape = True
            sub = src.sub(n)
            _parse_dims(sub, sub.size, blob)
        elif fnum in (1, 2, 3, 4) and wt == 0:
            blob.legacy[fnum] = _signed32(_varint(src))
        elif fnum == 12 and wt == 2:       # NVIDIA Caffe raw_data (bytes)
            blob.raw.append(src.read(_length(src, end)))
        elif fnum == 10 and wt == 0:       # NVIDIA Caffe raw_data_type (enum Type)
            blob.raw_type = _varint(src)
        else:
            _skip(src, wt, fnum, end)
    if src.pos != end:
        raise _Corrupt("blob overruns its enclosing message")
    return blob


@dataclass
class LayerWeights:
    """One layer of a caffemodel: its name, Caffe type string and parameter blobs."""
    name: str
    type: str
    blobs: list[np.ndarray]


def _parse_layer(src, end: int, v1: bool) -> LayerWeights:
    name_f, type_f, blobs_f = (4, 5, 6) if v1 else (1, 2, 7)
    name, typ, blobs = "", "", []
    while src.pos < end:
        fnum, wt = _tag(src)
        if fnum == name_f and wt == 2:
            name = src.read(_length(src, end)).decode("utf-8", "replace")
        elif fnum == type_f and not v1 and wt == 2:
            typ = src.read(_length(src, end)).decode("utf-8", "replace")
        elif fnum == type_f and v1 and wt == 0:
            # Caffe's UpgradeV1LayerType: enum value -> type string
            code = _varint(src)
            try:
                typ = V1_TYPE_NAMES[pb.V1LayerParameter.LayerType.Name(code)]
            except ValueError:
                typ = ""  # unknown enum value: protobuf keeps it as an unknown field
        elif fnum == blobs_f and wt == 2:
            n = _length(src, end)
            try:
                if n <= _SMALL:
                    sub = src.sub(n)
                    blobs.append(_parse_blob(sub, sub.size))
                else:
                    blobs.append(_parse_blob(src, src.pos + n))
            except _Corrupt as exc:
                raise _LayerCorrupt(name, str(exc)) from None
        elif v1 and fnum == 1 and wt == 2:
            raise _LayerCorrupt(name or None, "V0 layer definitions are not supported")
        else:
            _skip(src, wt, fnum, end)
    if src.pos != end:
        raise _LayerCorrupt(name, "layer overruns its enclosing message")
    out = []
    for blob in blobs:
        try:
            out.append(blob.to_array())
        except _Corrupt as exc:
            raise _LayerCorrupt(name, str(exc)) from None
    return LayerWeights(name, typ, out)


# NVIDIA Caffe's Type enum (BlobProto.raw_data_type): DOUBLE 0, FLOAT 1, FLOAT16 2, INT 3, UINT 4
_RAW_DTYPES = {0: np.dtype("<f8"), 1: np.dtype("<f4"), 2: np.dtype("<f2")}


def raw_blob_array(raw: bytes, raw_type, shape) -> np.ndarray:
    """An NVIDIA Caffe ``raw_data`` blob (FP16 weights, e.g. OpenCV's res10 ``*_fp16.caffemodel``) as
    float32 of ``shape`` (None: 1-D)."""
    if raw_type is None:
        raise _Corrupt("blob has raw_data but no raw_data_type")
    dtype = _RAW_DTYPES.get(raw_type)
    if dtype is None:
        raise _Corrupt(f"raw_data_type {raw_type} is not supported (only DOUBLE 0, FLOAT 1, FLOAT16 2)")
    if len(raw) % dtype.itemsize:
        raise _Corrupt(f"raw_data of {len(raw)} bytes is not a whole number of {dtype.itemsize}-byte values")
    arr = np.frombuffer(raw, dtype=dtype).astype(np.float32)
    if shape is None:
        shape = (arr.size,)
    return _shaped(arr, shape)


def _shaped(arr: np.ndarray, shape) -> np.ndarray:
    """``arr`` as a blob of ``shape``: the dims are checked (negative, over INT_MAX values) before
    their product is trusted, then the value count must match."""
    problem = shape_problem(shape)
    if problem:
        raise _Corrupt(problem)
    count = math.prod(shape)
    if arr.size != count:
        raise _Corrupt(f"blob of shape {shape} holds {arr.size} values, expected {count}")
    return arr.reshape(shape)


class _LayerCorrupt(Exception):
    def __init__(self, layer, message):
        super().__init__(message)
        self.layer, self.message = layer, message


_MAGIC = {b"\xff\xd8\xff": "a JPEG image", b"\x89PNG": "a PNG image", b"\x89HDF": "an HDF5 file",
          b"PK\x03\x04": "a zip archive (an .npz or a PyTorch checkpoint?)", b"\x1f\x8b": "gzip data",
          b"\x93NUMPY": "a NumPy .npy file", b"GIF8": "a GIF image"}


def describe_magic(head: bytes) -> str | None:
    """What a file is, from its first bytes, when it is obviously not protobuf (else None)."""
    for magic, what in _MAGIC.items():
        if head.startswith(magic):
            return what
    stripped = head.lstrip()
    if stripped.startswith((b"name", b"layer", b"input", b"#", b"net", b"base_lr", b"train_net")):
        return "a text prototxt"
    return None


def read_weight_layers(path) -> list[LayerWeights]:
    """Every layer of a caffemodel in file order, blobs as float32 arrays (see module doc).

    Raises :class:`CaffeFormatError` naming the file (and layer) for missing, truncated or
    corrupt files and for files that are not caffemodels.
    """
    p = Path(path)
    try:
        fh = open(p, "rb")
    except FileNotFoundError:
        raise CaffeFormatError(path, "file not found") from None
    except IsADirectoryError:
        raise CaffeFormatError(path, "is a directory, expected a binary caffemodel") from None
    except OSError as exc:
        raise CaffeFormatError(path, f"cannot read: {exc.strerror}") from None
    with fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise CaffeFormatError(path, "empty file, expected a binary caffemodel")
        head = fh.read(64)
        fh.seek(0)
        src = _FileSource(fh, size)
        layers: list[LayerWeights] = []
        kinds = set()
        try:
            while src.pos < size:
                fnum, wt = _tag(src)
                if fnum in (100, 2) and wt == 2:
                    n = _length(src, size)
                    kinds.add(fnum)
                    if n <= _SMALL:
                        sub = src.sub(n)
                        layers.append(_parse_layer(sub, sub.size, v1=fnum == 2))
                    else:
                        layers.append(_parse_layer(src, src.pos + n, v1=fnum == 2))
                else:
                    _skip(src, wt, fnum, size)
        except _Corrupt as exc:
            what = describe_magic(head)
            hint = f" (this looks like {what})" if what else ""
            raise CaffeFormatError(path, f"not a valid caffemodel: truncated or corrupt protobuf "
                                         f"({exc}){hint}") from None
        except _LayerCorrupt as exc:
            raise CaffeFormatError(path, f"truncated or corrupt caffemodel: {exc.message}",
                                   layer=exc.layer) from None
    if not layers:
        what = describe_magic(head)
        hint = f" (this looks like {what})" if what else ""
        raise CaffeFormatError(path, f"not a caffemodel: no layers found{hint}")
    if len(kinds) > 1:
        raise CaffeFormatError(path, "net mixes V1 'layers' and new 'layer' fields")
    # no blobs at all is fine: Caffe saves parameter-free nets (crop, slice, pooling) that way
    return layers


class WeightArrays(dict):
    """``dict`` layer name -> list of float32 arrays, plus ``types``: layer name -> type string.

    When a name occurs twice the later layer wins, as in Caffe's CopyTrainedLayersFrom, which
    copies the source layers in order.
    """

    def __init__(self, *args, types: Mapping[str, str] | None = None, **kw):
        super().__init__(*args, **kw)
        self.types = dict(types or {})


def read_weight_arrays(path) -> WeightArrays:
    """Layer name -> parameter blobs (float32 arrays) of a caffemodel, read at disk speed.

    Equals ``{l.name: [blob_to_array(b) for b in l.blobs] for l in read_weights(path).layer}``
    (layers without blobs map to an empty list); ``.types`` gives each layer's type string
    (V1 enum types upgraded, e.g. ``CONVOLUTION`` -> ``"Convolution"``).
    """
    out = WeightArrays()
    for layer in read_weight_layers(path):
        out[layer.name] = layer.blobs
        out.types[layer.name] = layer.type
    return out


def blob_array_from_bytes(data, path=None, layer=None) -> np.ndarray:
    """Decode one serialized BlobProto into a float32 array of its blob shape (fast path)."""
    src = _BytesSource(data)
    try:
        return _parse_blob(src, src.size).to_array()
    except _Corrupt as exc:
        raise CaffeFormatError(path, str(exc), layer=layer) from None


# ------------------------------------------------------------------ writing
def encode_varint(n: int) -> bytes:
    """Protobuf's base-128 varint (negative ints as their 64-bit two's complement)."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


_enc_varint = encode_varint   # the name tests and older callers use


def _key(fnum: int, wtype: int) -> bytes:
    return encode_varint((fnum << 3) | wtype)


def _ld(fnum: int, payload_len: int) -> bytes:
    return _key(fnum, 2) + encode_varint(payload_len)


def field_header(fnum: int, payload_len: int) -> bytes:
    """Tag and length of a length-delimited field (for writers that stream big messages)."""
    return _ld(fnum, payload_len)


def _blob_parts(arr, legacy: bool) -> tuple[list, int]:
    """Serialized BlobProto of ``arr`` as a list of byte chunks (the data chunk is a view).

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
            parts.append(_key(fnum, 0) + encode_varint(int(d)))
    if arr.size:
        parts.append(_ld(5, arr.nbytes))
        parts.append(memoryview(arr.reshape(-1)).cast("B"))
    if not legacy:
        dims = b"".join(encode_varint(int(d)) for d in arr.shape)
        shape = (_ld(1, len(dims)) + dims) if dims else b""
        parts.append(_ld(7, len(shape)) + shape)
    return parts, sum(len(p) for p in parts)


def blob_chunks(arr, legacy: bool = False) -> tuple[list, int]:
    """A serialized BlobProto as byte chunks (the data chunk a view of ``arr``) and their length."""
    return _blob_parts(arr, legacy)


def encode_blob(arr, legacy: bool = False) -> bytearray:
    """The serialized BlobProto holding ``arr`` as float32 (one copy of the data, no lists)."""
    parts, total = _blob_parts(arr, legacy)
    out = bytearray(total)
    pos = 0
    for part in parts:
        out[pos:pos + len(part)] = part
        pos += len(part)
    return out


def _as_layer_list(layers) -> list[tuple[str, str, Sequence]]:
    if isinstance(layers, Mapping):
        types = getattr(layers, "types", {})
        return [(name, types.get(name, ""), blobs) for name, blobs in layers.items()]
    out = []
    for item in layers:
        if isinstance(item, LayerWeights):
            out.append((item.name, item.type, item.blobs))
        else:
            name, typ, blobs = item
            out.append((name, typ, blobs))
    return out


def write_weight_arrays(layers, path, *, net_name: str | None = None, legacy: bool = False) -> int:
    """Write a caffemodel (new ``layer`` syntax) from numpy arrays, streaming, atomically.

    ``layers``: a :class:`WeightArrays`/mapping name -> list of arrays (types from ``.types``),
    or an iterable of :class:`LayerWeights` / ``(name, type, arrays)``.  ``legacy`` writes blobs
    with num/channels/height/width dims instead of ``shape``.  The bytes equal protobuf's
    serialization of the same NetParameter.  Returns the number of bytes written.
    """
    items = _as_layer_list(layers)
    total = 0
    with atomic_writer(path) as fh:
        if net_name is not None:
            raw = net_name.encode("utf-8")
            head = _ld(1, len(raw)) + raw
            fh.write(head)
            total += len(head)
        for name, typ, blobs in items:
            chunks: list = []
            raw_name, raw_type = name.encode("utf-8"), (typ or "").encode("utf-8")
            chunks.append(_ld(1, len(raw_name)) + raw_name)
            if typ:
                chunks.append(_ld(2, len(raw_type)) + raw_type)
            for arr in blobs:
                parts, size = _blob_parts(arr, legacy)
                chunks.append(_ld(7, size))
                chunks.extend(parts)
            body = sum(len(c) for c in chunks)
            head = _ld(100, body)
            fh.write(head)
            for chunk in chunks:
                fh.write(chunk)
            total += len(head) + body
    return total
