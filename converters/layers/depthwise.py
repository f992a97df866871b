"""Depthwise convolution layer types of the MobileNet ports.

``ConvolutionDepthwise`` (farmingyard/caffe-mobilenet) and ``DepthwiseConvolution``
(yonghenglh6/DepthwiseConvolution) take a ``convolution_param`` and compute a Convolution with one
group per input channel: weights ``[C, 1, kh, kw]``, ``num_output`` = C (when given it must equal
the input channels; ``group`` is ignored - OpenCV likewise infers the groups from the weights).
Stride, pad, dilation and bias are those of Convolution.
"""
from __future__ import annotations

from ..proto import caffe_pb2 as pb
from .conv import convert_convolution
from .registry import ConversionError, register


def _depthwise(layer, shapes, phase):
    if not shapes or len(shapes[0]) < 2:
        raise ConversionError(layer, "needs a bottom with a channel axis")
    p = layer.convolution_param
    channels = int(shapes[0][p.axis if p.axis >= 0 else len(shapes[0]) + p.axis])
    if p.HasField("num_output") and p.num_output != channels:
        raise ConversionError(layer, f"num_output {p.num_output} must equal the input channels {channels} "
                                     f"for a depthwise convolution")
    as_conv = pb.LayerParameter()
    as_conv.CopyFrom(layer)
    as_conv.convolution_param.num_output = channels
    as_conv.convolution_param.group = channels
    module, tops = convert_convolution(as_conv, shapes, phase)
    module.caffe_type = layer.type
    return module, tops


@register("ConvolutionDepthwise")
def convert_convolution_depthwise(layer, shapes, phase):
    return _depthwise(layer, shapes, phase)


@register("DepthwiseConvolution")
def convert_depthwise_convolution(layer, shapes, phase):
    return _depthwise(layer, shapes, phase)
