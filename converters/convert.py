"""Loading Caffe nets and weights into :class:`~converters.net.CaffeNet`, and writing them back.

What it owns: building a converted net from a prototxt and a caffemodel (:func:`load_caffe`), filler
initialisation of layers without weights (fillers from :mod:`converters.fillers`), shape inference,
and the ``python -m converters convert`` file format (``model.pt``).  Copying and writing
caffemodel weights is :mod:`converters.caffemodel`'s (re-exported here).
"""
from __future__ import annotations

import contextlib
import os
import warnings

import torch

from .caffemodel import (caffemodel_bytes, copy_trained_layers, save_caffemodel, shape_equals,  # noqa: F401
                         write_caffemodel)
from .fillers import fill
from .formats import CaffeFormatError, atomic_writer, filter_net, read_net
from .formats.files import describe_magic, open_binary
from .formats.prototxt import upgrade_net
from .layers import ConversionError
from .net import CaffeNet, phase_name
from .outputs import check_output_file
from .proto import caffe_pb2 as pb

FORMAT = "converters.CaffeNet/1"


def _as_net(prototxt) -> pb.NetParameter:
    if isinstance(prototxt, pb.NetParameter):
        net = pb.NetParameter()
        net.CopyFrom(prototxt)
        return upgrade_net(net)
    return read_net(prototxt)


def _filtered(net: pb.NetParameter, phase, level, stages) -> pb.NetParameter:
    return filter_net(net, phase_name(phase), level, tuple(stages))


@contextlib.contextmanager
def _naming_file(prototxt):
    """Net-level errors (a layer's ConversionError) name the prototxt they come from.

    The layers only know their own name; the entry points that were given a path prefix it, so
    the one line a user sees says which file and which layer (the exception keeps its type).
    """
    try:
        yield
    except ConversionError as exc:
        if isinstance(prototxt, (str, os.PathLike)):
            path = os.fspath(prototxt)
            text = str(exc)
            if not text.startswith(path):
                exc.args = (f"{path}: {text}",)
                exc.path = path
        raise


def load_caffe(prototxt, caffemodel=None, phase="test", level: int = 0, stages=(),
               input_shapes: dict | None = None, channels_last: bool | None = None,
               semantics: str = "fork") -> CaffeNet:
    """A Caffe net as a ``CaffeNet`` (an ``nn.Module``), weights copied by layer name.

    ``prototxt``/``caffemodel``: paths or ``NetParameter``s (V1 or new syntax).  ``phase``,
    ``level`` and ``stages`` select layers by Caffe's include/exclude rules.  ``input_shapes``
    (blob -> shape) overrides or supplies the shapes of input blobs (data layers without
    ``crop_size``, HDF5Data, or another batch size).  Layers with parameters that the caffemodel
    does not provide keep their Caffe filler values and are listed in ``model.missing_weights``.
    ``channels_last`` (default: on in the TEST phase) runs 4-D blobs in channels-last memory
    layout, 1.3-2x faster on CPU with the same values; Caffe's N x C x H x W indexing is unchanged.
    ``semantics``: ``"fork"`` (default) builds the fork layers (SSD, R-FCN, ...) as the fork that
    defined them; ``"opencv"`` as OpenCV 4's dnn module computes them where it deviates
    (docs/layers.md: DetectionOutput's zero-padded ``[1, 1, keep_top_k*N, 7]``, PriorBox's clip
    default and image size, Axpy's bottom order, ...).
    """
    net = _filtered(_as_net(prototxt), phase, level, stages)
    with _naming_file(prototxt):
        model = CaffeNet(net, input_shapes, semantics=semantics)
    loaded: set[str] = set()
    source = None
    if caffemodel is not None:
        source = caffemodel if not isinstance(caffemodel, pb.NetParameter) else "<caffemodel>"
        loaded = copy_trained_layers(model, caffemodel, source)
    layers = model.caffe_layers
    missing = [name for name, mod in layers.items() if getattr(mod, "blob_names", ()) and name not in loaded]
    # Caffe fills every blob before copying; filling only what was not copied gives the same
    # values (a blob shared with a loaded layer keeps the loaded values).
    fill_layers(model, missing, skip={id(p) for name in loaded for p in layers[name].blobs()})
    model.missing_weights = missing
    if caffemodel is not None and missing:
        warnings.warn(f"{source}: no weights for layer(s) {', '.join(repr(m) for m in missing)}; "
                      f"they keep Caffe filler values", stacklevel=2)
    model.eval() if model.phase == "TEST" else model.train()
    if channels_last if channels_last is not None else model.phase == "TEST":
        model.use_channels_last()
    return model


def infer_shapes(net_param, input_shapes: dict | None = None, phase=None) -> dict[str, tuple]:
    """Every blob's shape as Caffe computes it, without allocating weights or running the net.

    ``net_param``: a path or ``NetParameter``; it is filtered with its own NetState (``phase``
    overrides the state's phase).
    """
    net = _as_net(net_param)
    state = net.state
    with _naming_file(net_param), torch.device("meta"):
        model = CaffeNet(_filtered(net, phase if phase is not None else state.phase, state.level, ()),
                         input_shapes)
    return dict(model.blob_shapes)


# ------------------------------------------------------------------ fillers
def _fill_one(filler, tensor):
    out = fill(filler, tensor)
    if isinstance(out, torch.Tensor) and out is not tensor:
        tensor.copy_(out)


def fill_layers(model: CaffeNet, names, skip=()) -> None:
    """Initialise the blobs of the named layers with their Caffe fillers (except params in ``skip``,
    a set of ``id(param)``).

    A shared blob is filled once, by its owner's filler: in Caffe the sharing layer's blob is
    replaced by the owner's (``ShareData``), so the sharer's filler never shows (the solver's
    fill over ``param_specs()``, owners only, gives the same)."""
    layers = model.caffe_layers
    done = set(skip)
    with torch.no_grad():
        for name in names:              # layer order: an owner comes before the layers sharing its blob
            module = layers[name]
            for param, filler in zip(module.blobs(), module.blob_fillers):
                if id(param) not in done:
                    _fill_one(filler, param.data)
                    done.add(id(param))


# ------------------------------------------------------------------ model.pt
def converted_dict(model: CaffeNet) -> dict:
    return {
        "format": FORMAT,
        "net_param": model.net_param.SerializeToString(),
        "input_shapes": {k: list(v) for k, v in model.input_shapes.items()},
        "semantics": getattr(model, "semantics", "fork"),
        "missing_weights": list(model.missing_weights),
        "state_dict": model.state_dict(),
    }


def save_converted(model: CaffeNet, path) -> None:
    """Write ``model.pt`` as ``python -m converters convert`` does (``torch.save`` of plain data)."""
    check_output_file(path)
    with atomic_writer(path) as fh:
        torch.save(converted_dict(model), fh)


_EXPECTED_PT = "expected a model.pt written by 'python -m converters convert'"


def _check_converted_magic(path) -> None:
    """Say what a file is when it is clearly not a torch.save file (zip since torch 1.6, or a
    legacy pickle), before torch's loader prints its unsafe-load advice about it."""
    with open_binary(path, "a model.pt written by 'python -m converters convert'") as fh:
        head = fh.read(64)
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return
    if not head:
        raise CaffeFormatError(path, f"empty file; {_EXPECTED_PT}")
    what = describe_magic(head)
    if what is None and (head[:1] in (b"\x0a", b"\x12") or head[:2] == b"\xa2\x06"):
        what = ("a Caffe caffemodel (convert it first: python -m converters convert "
                "PROTOTXT CAFFEMODEL -o model.pt)")
    raise CaffeFormatError(path, f"not a converted model file: this looks like "
                                 f"{what or 'neither a zip nor a pickle'}; {_EXPECTED_PT}")


def load_converted(path, map_location="cpu", channels_last: bool | None = None) -> CaffeNet:
    """Rebuild a ``CaffeNet`` from a ``model.pt`` written by ``python -m converters convert``
    (``channels_last`` as in :func:`load_caffe`)."""
    _check_converted_magic(path)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CaffeFormatError(path, "file not found") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a bad file
        # torch's own text for a refused pickle is a 600-character lecture on unsafe loading;
        # its first sentence says what went wrong
        why = " ".join(str(exc).split())
        why = why.split(". ")[0][:200]
        raise CaffeFormatError(path, f"not a converted model file ({type(exc).__name__}: {why}); "
                                     f"expected a model.pt written by 'python -m converters "
                                     f"convert'") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        got = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise CaffeFormatError(path, f"not a converted model file (format {got!r}, expected {FORMAT!r})")
    net = pb.NetParameter()
    net.ParseFromString(obj["net_param"])
    model = CaffeNet(net, obj.get("input_shapes"), semantics=obj.get("semantics", "fork"))
    model.load_state_dict(obj["state_dict"], strict=True)
    model.missing_weights = list(obj.get("missing_weights", []))
    model.eval() if model.phase == "TEST" else model.train()
    if channels_last if channels_last is not None else model.phase == "TEST":
        model.use_channels_last()
    return model
