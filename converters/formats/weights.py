"""Caffemodels: binary ``NetParameter``s whose layers carry their parameter blobs, read and written.

What it owns: two readers and the streaming writers of caffemodel files.
:func:`read_weights` / :func:`parse_weights` give an upgraded ``NetParameter`` through protobuf
(legacy V1 ``layers`` move to ``layer`` as Caffe loads them; their blobs keep the legacy 4-D dims,
which :func:`~converters.formats.blobs.blob_shape` reports as Caffe's ``Blob::FromProto`` does).
:func:`read_weight_layers` / :func:`read_weight_arrays` read only names, types and blobs straight
from the wire, for nets of hundreds of megabytes: each packed float field is read with
``readinto`` into a preallocated array, so the file is held once (peak memory ~ file size); the
results equal ``[blob_to_array(b) for b in read_weights(path).layer[i].blobs]``.
:func:`write_weights` (a ``NetParameter``) and :func:`write_weight_arrays` (arrays) write
atomically, one layer in memory at a time; :func:`write_layer` is the one layer-record encoder that
the array writer and the net writer (:func:`converters.caffemodel.write_caffemodel`) share.
Blobs are :mod:`.blobs`', the wire primitives :mod:`.wire`', files :mod:`.files`'.

Wire facts used (caffe.proto): NetParameter ``name`` = 1, ``layer`` = 100 (LayerParameter:
``name`` 1, ``type`` 2, ``blobs`` 7) and V1 ``layers`` = 2 (V1LayerParameter: ``name`` 4,
``type`` 5 enum, ``blobs`` 6, V0 ``layer`` 1).  No torch here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from ..proto import caffe_pb2 as pb
from .blobs import blob_chunks, parse_wire_blob
from .errors import CaffeFormatError
from .files import atomic_writer, describe_magic, open_binary, read_binary
from .prototxt import V1_TYPE_NAMES, upgrade_net
from .wire import (Corrupt, FileSource, field_header, parse_message, read_length, read_tag, read_varint,
                   skip_field)
# blobs and means lived here before the split by job: their old import paths keep working
from .blobs import array_to_blob, blob_shape, blob_to_array, read_blob, read_mean, write_mean  # noqa: F401,E402
from .files import atomic_write_bytes, current_umask  # noqa: F401,E402

# A layer or blob region at most this big is read into memory and decoded there (cheap, and it
# makes non-packed repeated fields fast to decode); larger ones are streamed field by field.
_SMALL = 1 << 20
_V1_LAYERS, _LAYER, _LAYER_BLOBS = 2, 100, 7     # NetParameter.layers, .layer; LayerParameter.blobs


# ------------------------------------------------------------------ caffemodels
def parse_weights(data: bytes, path=None) -> pb.NetParameter:
    """Parse caffemodel bytes into an upgraded NetParameter."""
    net = parse_message(path, data, pb.NetParameter(), "caffemodel")
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
    return parse_weights(read_binary(path, "a binary caffemodel"), path)


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
        for v1 in net.layers:
            raw = v1.SerializeToString()
            fh.write(field_header(_V1_LAYERS, len(raw)))
            fh.write(raw)
        fh.write(high.SerializeToString())
        for layer in net.layer:
            raw = layer.SerializeToString()
            fh.write(field_header(_LAYER, len(raw)))
            fh.write(raw)


def _is_repeated(fd) -> bool:
    # protobuf >= 6 has FieldDescriptor.is_repeated and dropped .label; 4.x has only .label
    flag = getattr(fd, "is_repeated", None)
    return bool(flag) if flag is not None else fd.label == fd.LABEL_REPEATED


# ------------------------------------------------------------------ straight from the wire
@dataclass
class LayerWeights:
    """One layer of a caffemodel: its name, Caffe type string and parameter blobs; ``declared`` holds
    each blob's ``(legacy, dims)`` as the file states them (legacy num/channels/height/width or
    ``shape``), for Caffe's shape check when the blobs are copied into a net."""
    name: str
    type: str
    blobs: list[np.ndarray]
    declared: list[tuple[bool, tuple]] = field(default_factory=list)


def _parse_layer(src, end: int, v1: bool) -> LayerWeights:
    name_f, type_f, blobs_f = (4, 5, 6) if v1 else (1, 2, 7)
    name, typ, blobs = "", "", []
    while src.pos < end:
        fnum, wt = read_tag(src)
        if fnum == name_f and wt == 2:
            name = src.read(read_length(src, end)).decode("utf-8", "replace")
        elif fnum == type_f and not v1 and wt == 2:
            typ = src.read(read_length(src, end)).decode("utf-8", "replace")
        elif fnum == type_f and v1 and wt == 0:
            # Caffe's UpgradeV1LayerType: enum value -> type string
            code = read_varint(src)
            try:
                typ = V1_TYPE_NAMES[pb.V1LayerParameter.LayerType.Name(code)]
            except ValueError:
                typ = ""  # unknown enum value: protobuf keeps it as an unknown field
        elif fnum == blobs_f and wt == 2:
            n = read_length(src, end)
            try:
                if n <= _SMALL:
                    sub = src.sub(n)
                    blobs.append(parse_wire_blob(sub, sub.size))
                else:
                    blobs.append(parse_wire_blob(src, src.pos + n))
            except Corrupt as exc:
                raise _LayerCorrupt(name, str(exc)) from None
        elif v1 and fnum == 1 and wt == 2:
            raise _LayerCorrupt(name or None, "V0 layer definitions are not supported")
        else:
            skip_field(src, wt, fnum, end)
    if src.pos != end:
        raise _LayerCorrupt(name, "layer overruns its enclosing message")
    out, declared = [], []
    for blob in blobs:
        try:
            out.append(blob.to_array())
            declared.append(blob.declared())
        except Corrupt as exc:
            raise _LayerCorrupt(name, str(exc)) from None
    return LayerWeights(name, typ, out, declared)


class _LayerCorrupt(Exception):
    def __init__(self, layer, message):
        super().__init__(message)
        self.layer, self.message = layer, message


def read_weight_layers(path) -> list[LayerWeights]:
    """Every layer of a caffemodel in file order, blobs as float32 arrays (see module doc).

    Raises :class:`CaffeFormatError` naming the file (and layer) for missing, truncated or
    corrupt files and for files that are not caffemodels.
    """
    with open_binary(path, "a binary caffemodel") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise CaffeFormatError(path, "empty file, expected a binary caffemodel")
        head = fh.read(64)
        fh.seek(0)
        src = FileSource(fh, size)
        layers: list[LayerWeights] = []
        kinds = set()
        try:
            while src.pos < size:
                fnum, wt = read_tag(src)
                if fnum in (100, 2) and wt == 2:
                    n = read_length(src, size)
                    kinds.add(fnum)
                    if n <= _SMALL:
                        sub = src.sub(n)
                        layers.append(_parse_layer(sub, sub.size, v1=fnum == 2))
                    else:
                        layers.append(_parse_layer(src, src.pos + n, v1=fnum == 2))
                else:
                    skip_field(src, wt, fnum, size)
        except Corrupt as exc:
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


# ------------------------------------------------------------------ streaming writers
def write_layer(fh, head: bytes, arrays, legacy: bool = False) -> int:
    """Stream one caffemodel layer (a NetParameter ``layer`` field) to ``fh``: ``head`` is the
    serialized LayerParameter without its blobs, ``arrays`` its parameter blobs (float32, each
    encoded by :func:`converters.formats.blobs.blob_chunks` from the array's own bytes).  Returns
    the bytes written.  Every streaming caffemodel writer goes through here."""
    pieces = [head]
    for arr in arrays:
        parts, size = blob_chunks(arr, legacy)
        pieces.append(field_header(_LAYER_BLOBS, size))
        pieces.extend(parts)
    body = sum(len(piece) for piece in pieces)
    record = field_header(_LAYER, body)
    fh.write(record)
    for piece in pieces:
        fh.write(piece)
    return len(record) + body


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
            head = field_header(1, len(raw)) + raw       # NetParameter.name
            fh.write(head)
            total += len(head)
        for name, typ, blobs in items:
            raw_name, raw_type = name.encode("utf-8"), (typ or "").encode("utf-8")
            head = field_header(1, len(raw_name)) + raw_name
            if typ:
                head += field_header(2, len(raw_type)) + raw_type
            total += write_layer(fh, head, blobs, legacy)
    return total
