"""Caffemodels (binary NetParameter), binaryproto blobs, and blob <-> numpy conversion.

Legacy V1 caffemodels (``layers`` with num/channels/height/width blobs) are upgraded the way
Caffe loads them: the layers move to ``layer``; the blobs keep their legacy 4-D dims, which
:func:`blob_shape` reports as Caffe's ``Blob::FromProto`` does.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from google.protobuf.message import DecodeError

from ..proto import caffe_pb2 as pb
from .errors import CaffeFormatError
from .prototxt import upgrade_net


def _read_binary(path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise CaffeFormatError(path, "file not found") from None
    except IsADirectoryError:
        raise CaffeFormatError(path, "is a directory, expected a binary protobuf file") from None
    except OSError as exc:
        raise CaffeFormatError(path, f"cannot read: {exc.strerror}") from None


def _parse_binary(path, data: bytes, message, what: str):
    try:
        message.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        hint = ""
        if data[:64].lstrip().startswith((b"name", b"layer", b"input", b"#", b"net")):
            hint = " (this looks like a text prototxt)"
        raise CaffeFormatError(path, f"not a valid {what}: truncated or corrupt protobuf ({exc}){hint}") from None
    return message


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ------------------------------------------------------------------ caffemodels
def parse_weights(data: bytes, path=None) -> pb.NetParameter:
    """Parse caffemodel bytes into an upgraded NetParameter."""
    net = _parse_binary(path, data, pb.NetParameter(), "caffemodel")
    if not len(net.layer) and not len(net.layers):
        raise CaffeFormatError(path, "not a caffemodel: no layers found")
    upgrade_net(net, path)
    if not any(len(layer.blobs) for layer in net.layer):
        raise CaffeFormatError(path, "not a caffemodel: no layer carries weights")
    return net


def read_weights(path) -> pb.NetParameter:
    """Read a caffemodel (new or V1 format) into a NetParameter with ``layer`` entries."""
    return parse_weights(_read_binary(path), path)


def write_weights(net: pb.NetParameter, path) -> None:
    """Write a NetParameter as a binary caffemodel, atomically."""
    atomic_write_bytes(path, net.SerializeToString())


# ------------------------------------------------------------------ blobs
def blob_shape(blob: pb.BlobProto) -> tuple[int, ...]:
    """The blob's shape: ``shape.dim`` if present, else the legacy (num, channels, height, width)."""
    if blob.HasField("shape"):
        return tuple(int(d) for d in blob.shape.dim)
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        return (blob.num, blob.channels, blob.height, blob.width)
    n = len(blob.data) or len(blob.double_data)
    return (n,) if n else ()


def blob_to_array(blob: pb.BlobProto, path=None, layer=None) -> np.ndarray:
    """The blob's data as a float32 array of :func:`blob_shape` (double_data is cast)."""
    shape = blob_shape(blob)
    if len(blob.double_data):
        arr = np.asarray(blob.double_data, dtype=np.float64).astype(np.float32)
    else:
        arr = np.asarray(blob.data, dtype=np.float32)
    count = int(np.prod(shape)) if shape else 1
    if arr.size != count:
        raise CaffeFormatError(path, f"blob of shape {shape} holds {arr.size} values, expected {count}",
                               layer=layer)
    return arr.reshape(shape)


def array_to_blob(arr, legacy: bool = False) -> pb.BlobProto:
    """A BlobProto holding ``arr`` as float32 (``legacy``: 4-D num/channels/height/width dims)."""
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    blob = pb.BlobProto()
    if legacy:
        dims = (1,) * (4 - arr.ndim) + arr.shape
        if len(dims) != 4:
            raise ValueError(f"legacy blobs are 4-D at most, got shape {arr.shape}")
        blob.num, blob.channels, blob.height, blob.width = dims
    else:
        blob.shape.dim.extend(arr.shape)
    blob.data.extend(arr.ravel().tolist()) if arr.size < 1024 else blob.data.extend(arr.ravel())
    return blob


# ------------------------------------------------------------------ mean.binaryproto
def read_blob(path) -> pb.BlobProto:
    blob = _parse_binary(path, _read_binary(path), pb.BlobProto(), "binaryproto blob")
    if not len(blob.data) and not len(blob.double_data):
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
