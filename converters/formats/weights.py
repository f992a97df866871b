"""Caffemodels (binary NetParameter), binaryproto blobs, and blob <-> numpy conversion.

Legacy V1 caffemodels (``layers`` with num/channels/height/width blobs) are upgraded the way
Caffe loads them: the layers move to ``layer``; the blobs keep their legacy 4-D dims, which
:func:`blob_shape` reports as Caffe's ``Blob::FromProto`` does.

Big nets: :func:`array_to_blob` and :func:`blob_to_array` never go through Python lists (they
encode/decode the packed wire bytes themselves), and :func:`write_weights` streams layer by layer.
For reading a full-size caffemodel's arrays use :func:`converters.formats.read_weight_arrays`
(``fastweights``), which never builds protobuf objects at all.
"""
from __future__ import annotations

import math

import numpy as np
from google.protobuf.message import DecodeError

from ..proto import caffe_pb2 as pb
from .errors import CaffeFormatError
from .fastweights import blob_array_from_bytes, describe_magic, encode_blob, encode_varint, shape_problem
from .files import atomic_write_bytes, atomic_writer, current_umask, read_binary as _read_binary  # noqa: F401
from .prototxt import upgrade_net

_LIST_LIMIT = 4096  # above this many values, blob <-> array goes through wire bytes


def _parse_binary(path, data: bytes, message, what: str):
    if not data:
        raise CaffeFormatError(path, f"empty file, expected a {what}")
    try:
        message.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        what_it_is = describe_magic(data[:64])
        hint = f" (this looks like {what_it_is})" if what_it_is else ""
        why = " ".join(str(exc).split())
        raise CaffeFormatError(path, f"not a valid {what}: truncated or corrupt protobuf ({why}){hint}") from None
    return message


# ------------------------------------------------------------------ caffemodels
def parse_weights(data: bytes, path=None) -> pb.NetParameter:
    """Parse caffemodel bytes into an upgraded NetParameter."""
    net = _parse_binary(path, data, pb.NetParameter(), "caffemodel")
    if not len(net.layer) and not len(net.layers):
        raise CaffeFormatError(path, "not a caffemodel: no layers found")
    # A net without parameters (crop, slice, pooling only) is saved by Caffe with no blobs at all,
    # and Caffe loads it: such a file is a valid caffemodel.
    try:
        upgrade_net(net, path)
        bad = next((layer.name for layer in net.layer if not isinstance(layer.name, str)), None)
    except UnicodeDecodeError as exc:
        # protobuf declares names as UTF-8 strings; Caffe (C++ std::string) never checks
        raise CaffeFormatError(path, f"a layer name or type is not UTF-8 text ({exc.reason} "
                                     f"at byte {exc.start} of {bytes(exc.object[:40])!r})") from None
    if bad is not None:
        raise CaffeFormatError(path, f"layer name {bytes(bad)!r} is not UTF-8 text")
    return net


def read_weights(path) -> pb.NetParameter:
    """Read a caffemodel (new or V1 format) into a NetParameter with ``layer`` entries."""
    return parse_weights(_read_binary(path), path)


def write_weights(net: pb.NetParameter, path) -> None:
    """Write a NetParameter as a binary caffemodel, atomically, one layer at a time.

    The bytes equal ``net.SerializeToString()`` (fields in field-number order: ``name``, V1
    ``layers``, the other net fields, then ``layer``), but only one layer is serialized in memory
    at a time, so a 500 MB net is never held twice.
    """
    low, high = pb.NetParameter(), pb.NetParameter()
    for fd, value in net.ListFields():
        if fd.name in ("layer", "layers"):
            continue
        target = low if fd.number < 2 else high
        if _is_repeated(fd):
            getattr(target, fd.name).extend(value)
        elif fd.message_type is not None:
            getattr(target, fd.name).CopyFrom(value)
        else:
            setattr(target, fd.name, value)
    with atomic_writer(path) as fh:
        fh.write(low.SerializeToString())
        for v1 in net.layers:             # field 2
            raw = v1.SerializeToString()
            fh.write(b"\x12" + encode_varint(len(raw)))
            fh.write(raw)
        fh.write(high.SerializeToString())
        for layer in net.layer:           # field 100: key bytes a2 06
            raw = layer.SerializeToString()
            fh.write(b"\xa2\x06" + encode_varint(len(raw)))
            fh.write(raw)


def _is_repeated(fd) -> bool:
    # protobuf >= 6 has FieldDescriptor.is_repeated and dropped .label; 4.x has only .label
    flag = getattr(fd, "is_repeated", None)
    return bool(flag) if flag is not None else fd.label == fd.LABEL_REPEATED


# ------------------------------------------------------------------ blobs
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
    blob = _parse_binary(path, _read_binary(path), pb.BlobProto(), "binaryproto blob")
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
