"""Caffemodel weights in and out of a net: Caffe's Net::CopyTrainedLayersFrom and Net::ToProto.

What it owns: the one copy of blobs by layer name (with Caffe's count and shape checks) and the
one caffemodel writer of a net's weights, for every net that lists its learnable blobs: a
:class:`~converters.net.CaffeNet` (each layer's module's ``blobs()``) or any net with
``net_param`` and ``param_specs()`` (the solver accepts such nets).  File-level reading, the
layer-record and blob encoders are :mod:`converters.formats`' (``read_weight_layers``,
``write_layer``).
"""
from __future__ import annotations

import io

import numpy as np
import torch

from .formats import CaffeFormatError, atomic_writer, read_weight_layers, write_layer
from .formats.prototxt import upgrade_net
from .outputs import check_output_file
from .proto import caffe_pb2 as pb

_LEGACY = ("num", "channels", "height", "width")


def layer_blobs(model) -> list[tuple[pb.LayerParameter, list]]:
    """Per layer of ``model.net_param``: Caffe's ``layer->blobs()``, the learnable tensors in order.

    A CaffeNet's modules give them (a layer sharing a blob lists the shared tensor, as Caffe's
    sharing layer does); other nets give ``param_specs()`` (owners only), and a layer whose
    ``param { name: }`` names an owner's blob gets the owner's tensor."""
    plan = getattr(model, "plan", None)
    if plan is not None:                      # a CaffeNet: one module per plan step
        return [(step.layer, list(module.blobs()) if hasattr(module, "blobs") else [])
                for step, module in zip(plan.steps, map(model.module_at, range(len(plan.steps))))]
    mine: dict[str, dict[int, torch.Tensor]] = {}
    for name, idx, param, *_ in model.param_specs():
        mine.setdefault(name, {})[idx] = param
    owners: dict[str, torch.Tensor] = {}
    out = []
    for layer in model.net_param.layer:
        blobs = dict(mine.get(layer.name, {}))
        for idx, spec in enumerate(layer.param):
            if spec.name and idx in blobs:
                owners.setdefault(spec.name, blobs[idx])
        for idx, spec in enumerate(layer.param):
            if spec.name and idx not in blobs and spec.name in owners:
                blobs[idx] = owners[spec.name]
        n = max(blobs) + 1 if blobs else 0
        out.append((layer, [blobs[i] for i in range(n) if i in blobs]))
    return out


# ------------------------------------------------------------------ copying
def shape_equals(blob: pb.BlobProto, shape) -> bool:
    """Caffe's Blob::ShapeEquals: legacy num/channels/height/width compare with the shape padded to 4-D."""
    legacy = any(blob.HasField(f) for f in _LEGACY)
    dims = (blob.num, blob.channels, blob.height, blob.width) if legacy else tuple(blob.shape.dim)
    return _dims_match(legacy, tuple(int(d) for d in dims), tuple(int(d) for d in shape))


def _dims_match(legacy: bool, dims: tuple, shape: tuple) -> bool:
    """``legacy``: the blob states num/channels/height/width (compared with the shape padded to
    4-D), else its ``shape`` (compared as is)."""
    if not legacy:
        return dims == shape
    return len(shape) <= 4 and (1,) * (4 - len(shape)) + shape == dims


def _blob_values(blob: pb.BlobProto) -> np.ndarray:
    if blob.HasField("raw_data"):              # NVIDIA Caffe FP16 (or FP32/FP64) raw bytes
        from .formats import blob_to_array
        return blob_to_array(blob).reshape(-1)
    if len(blob.double_data):
        return np.asarray(blob.double_data, dtype=np.float64).astype(np.float32)
    return np.asarray(blob.data, dtype=np.float32)


def _as_weights(caffemodel: pb.NetParameter) -> pb.NetParameter:
    if len(caffemodel.layers):
        net = pb.NetParameter()
        net.CopyFrom(caffemodel)
        return upgrade_net(net)
    return caffemodel


def _weight_layers(caffemodel):
    """(name, [(legacy, dims, values)]) per caffemodel layer, in file order.

    Paths are read straight from the wire format (``formats.read_weight_layers``: disk speed,
    memory ~ file size), which keeps each blob's declared dims and whether they were legacy
    fields, so both sources get Caffe's exact shape rule.
    """
    if isinstance(caffemodel, pb.NetParameter):
        for layer in _as_weights(caffemodel).layer:
            blobs = []
            for blob in layer.blobs:
                legacy = any(blob.HasField(f) for f in _LEGACY)
                dims = (blob.num, blob.channels, blob.height, blob.width) if legacy else tuple(blob.shape.dim)
                blobs.append((legacy, tuple(int(d) for d in dims), _blob_values(blob)))
            yield layer.name, blobs
        return
    for layer in read_weight_layers(caffemodel):
        yield layer.name, [(legacy, dims, arr) for (legacy, dims), arr in zip(layer.declared, layer.blobs)]


def copy_trained_layers(model, caffemodel, source=None) -> set[str]:
    """Caffe's Net::CopyTrainedLayersFrom: copy blobs by layer name, return the names loaded.

    ``caffemodel``: a path (read straight from the wire: fast, memory ~ file size) or a
    ``NetParameter``; both get the same checks.  Layers of the caffemodel that the net lacks
    are ignored ("Ignoring source layer"); the first net layer of that name receives the blobs.
    Caffe's ``CHECK_EQ(target_blobs.size(), source_layer.blobs_size())`` holds for every matched
    layer, a caffemodel layer with *zero* blobs included (so a layer saved without its weights is
    an error, not silently left at its fillers).  A shape that differs (legacy 4-D dims such as
    ``1 x 1 x N x K`` for an ``N x K`` InnerProduct weight are accepted, as Blob::ShapeEquals
    does) is an error naming the file, the layer and both shapes.
    """
    if source is None:
        source = caffemodel if not isinstance(caffemodel, pb.NetParameter) else "<caffemodel>"
    targets: dict[str, tuple[pb.LayerParameter, list]] = {}
    for layer, blobs in layer_blobs(model):
        targets.setdefault(layer.name, (layer, blobs))
    loaded = set()
    for name, blobs in _weight_layers(caffemodel):
        if name not in targets:
            continue                           # "Ignoring source layer", as Caffe
        layer, target = targets[name]
        if len(target) != len(blobs):
            raise CaffeFormatError(source, f"incompatible number of blobs: the caffemodel has {len(blobs)}, "
                                           f"the net's {layer.type} layer expects {len(target)}", layer=name)
        for j, (param, (legacy, dims, values)) in enumerate(zip(target, blobs)):
            shape = tuple(param.shape)
            if not _dims_match(legacy, dims, shape):
                what = " (legacy num, channels, height, width)" if legacy else ""
                raise CaffeFormatError(source, f"cannot copy param {j} weights; shape mismatch: the caffemodel "
                                               f"has {dims}{what}, the net expects {shape}", layer=name)
            if values.size != param.numel():
                raise CaffeFormatError(source, f"param {j} holds {values.size} values, its shape {dims} needs "
                                               f"{param.numel()}", layer=name)
            with torch.no_grad():
                param.copy_(torch.from_numpy(np.ascontiguousarray(values)).reshape(shape))
        if target:
            loaded.add(name)
    return loaded


# ------------------------------------------------------------------ writing
def write_caffemodel(model, fh) -> None:
    """Stream the net's layers with their current blobs to ``fh`` (Caffe's Net::ToProto + save):
    one layer serialized at a time, each blob's data written from the tensor's own bytes."""
    head = pb.NetParameter()
    head.CopyFrom(model.net_param)
    head.ClearField("layer")
    head.ClearField("layers")
    fh.write(head.SerializeToString())
    for layer, blobs in layer_blobs(model):
        bare = pb.LayerParameter()
        bare.CopyFrom(layer)
        bare.ClearField("blobs")
        write_layer(fh, bare.SerializeToString(),
                    [param.detach().cpu().float().contiguous().numpy() for param in blobs])


def caffemodel_bytes(model) -> bytes:
    buf = io.BytesIO()
    write_caffemodel(model, buf)
    return buf.getvalue()


def save_caffemodel(model, path) -> None:
    """Write the net's weights as a caffemodel (layer names and parameters, blobs with
    ``shape``), atomically; ``load_caffe`` reads it back identically."""
    check_output_file(path)
    with atomic_writer(path) as fh:
        write_caffemodel(model, fh)
