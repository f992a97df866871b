"""Caffe artefacts -> PyTorch / ONNX with Caffe's exact numerics.

Generic: knows Caffe, not Adience or the paper (``reproduce`` builds on it, never the reverse).
The torch side is imported on first use, so ``converters.formats`` (and the CLI's ``inspect``)
work without paying for torch's import.
"""
from importlib import import_module

from . import formats  # noqa: F401

_LAZY = {
    "infer_shapes": ".convert", "load_caffe": ".convert", "load_converted": ".convert",
    "save_caffemodel": ".convert", "save_converted": ".convert",
    "ConversionError": ".layers", "UnsupportedLayersError": ".layers", "supported_types": ".layers",
    "CaffeNet": ".net",
}

__all__ = ["formats", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'converters' has no attribute {name!r}")
