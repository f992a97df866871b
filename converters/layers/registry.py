"""The registry of layer converters, keyed by Caffe's layer type string.

A converter is a function ``convert(layer, bottom_shapes, phase) -> (module, top_shapes)``:
``layer`` is the (upgraded) ``LayerParameter``, ``bottom_shapes`` a list of tuples, ``phase``
``"TRAIN"`` or ``"TEST"``.  The module's ``forward(*bottoms)`` returns one tensor or a tuple
(one per top).  Converters only compute shapes from shapes, never data, so building a net
under ``torch.device("meta")`` infers every blob shape without allocating anything.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Callable, Iterable
from converters.errors import InputError

SEMANTICS = ("fork", "opencv")
_SEMANTICS = contextvars.ContextVar("converters_layer_semantics", default="fork")


def current_semantics() -> str:
    """Whose definition the fork layers built now follow: ``"fork"`` (default: the fork that
    defined the layer, e.g. weiliu89/caffe for SSD) or ``"opencv"`` (OpenCV 4's dnn module, where
    it deviates: DetectionOutput's padded output, PriorBox's clip default, Axpy's bottom order ...;
    docs/layers.md lists them).  Converters read it while the net is built and keep the value."""
    return _SEMANTICS.get()


@contextlib.contextmanager
def semantics(name: str):
    """``with semantics("opencv"): CaffeNet(...)``: build the fork layers with that definition."""
    if name not in SEMANTICS:
        raise ValueError(f"semantics must be one of {SEMANTICS}, got {name!r}")
    token = _SEMANTICS.set(name)
    try:
        yield name
    finally:
        _SEMANTICS.reset(token)


_CONVERTERS: dict[str, Callable] = {}
_FORK_TYPES: set[str] = set()


def is_fork_type(layer_type: str) -> bool:
    """A layer type that BVLC Caffe does not have (SSD, R-FCN, PSPNet, ... forks)."""
    return layer_type in _FORK_TYPES
_INPUT_TYPES: set[str] = set()


class ConversionError(ValueError, InputError):
    """A layer cannot be converted; the message names the layer, its type and the reason."""

    def __init__(self, layer, message: str):
        self.layer_name = getattr(layer, "name", layer)
        self.layer_type = getattr(layer, "type", None)
        self.reason = message
        if layer is None:
            super().__init__(message)
            return
        where = f"layer '{self.layer_name}'"
        if self.layer_type:
            where += f" ({self.layer_type})"
        super().__init__(f"{where}: {message}")


class UnsupportedLayersError(ConversionError):
    """Every layer of a net whose type has no converter, reported in one error."""

    def __init__(self, layers: list[tuple[str, str]], net_name: str = ""):
        self.layers = list(layers)
        listing = ", ".join(f"'{name}' ({typ or '<no type>'})" for name, typ in self.layers)
        types = sorted({typ for _, typ in self.layers})
        ValueError.__init__(
            self, f"net{(' ' + repr(net_name)) if net_name else ''}: {len(self.layers)} unsupported "
                  f"layer(s): {listing}; unsupported type(s): {', '.join(types)}")
        self.layer_name, self.layer_type, self.reason = None, None, str(self)


def register(*types: str, input_layer: bool = False, fork: str | None = None):
    """Decorator: register a converter for the given Caffe type strings (duplicates refused)."""
    if not types:
        raise TypeError("register() needs at least one Caffe layer type")

    def deco(fn):
        for typ in types:
            if typ in _CONVERTERS:
                raise ValueError(f"a converter for Caffe layer type {typ!r} is already registered "
                                 f"({_CONVERTERS[typ].__module__}.{_CONVERTERS[typ].__name__})")
            _CONVERTERS[typ] = fn
            if input_layer:
                _INPUT_TYPES.add(typ)
            if fork or fn.__module__.rsplit(".", 1)[-1] in _FORK_MODULES:
                _FORK_TYPES.add(typ)
        return fn
    return deco


# the converter modules that hold fork layers (docs/layers.md names each layer's fork)
_FORK_MODULES = {"axpy", "channels", "depthwise", "detection", "fork_activations", "proposal", "region", "resize",
                 "roi", "ssd"}


def get_converter(layer_type: str) -> Callable:
    try:
        return _CONVERTERS[layer_type]
    except KeyError:
        raise UnsupportedLayersError([("?", layer_type)]) from None


def is_supported(layer_type: str) -> bool:
    return layer_type in _CONVERTERS


def is_input_type(layer_type: str) -> bool:
    """Data-family layers (Input, Data, ImageData, ...): their tops are the net's inputs."""
    return layer_type in _INPUT_TYPES


def supported_types() -> list[str]:
    return sorted(_CONVERTERS)


def check_supported(layers: Iterable, net_name: str = "") -> None:
    """Raise one :class:`UnsupportedLayersError` listing every layer without a converter."""
    missing = [(layer.name, layer.type) for layer in layers if layer.type not in _CONVERTERS]
    if missing:
        raise UnsupportedLayersError(missing, net_name)
