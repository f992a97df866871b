"""Caffe layer converters, one small module per layer family, found by Caffe type string.

Each module registers its converters with :func:`register`; importing this package imports
them all.  A converter maps ``(LayerParameter, bottom shapes, phase)`` to ``(nn.Module, top shapes)``
and quotes the Caffe rule it implements in its module docstring.
"""
from . import (activations, conv, data, eltwise, inner_product, loss, lrn, normalization,  # noqa: F401
               pooling, scale, shape, softmax)
from . import (axpy, channels, depthwise, detection, fork_activations, proposal, region, resize, roi, ssd)  # noqa: F401  (fork layers)
from .base import CaffeLayer
from .registry import (ConversionError, UnsupportedLayersError, check_supported, get_converter,
                       is_input_type, is_supported, register, supported_types)

__all__ = ["CaffeLayer", "ConversionError", "UnsupportedLayersError", "check_supported", "get_converter",
           "is_input_type", "is_supported", "register", "supported_types"]
