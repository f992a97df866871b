"""Caffe's weight fillers (``include/caffe/filler.hpp``) for torch tensors.

Shared by the conversion (layers a caffemodel does not cover keep their fillers' values, as in
Caffe) and the solver (a net trained from scratch); it knows neither.

``fill(filler_param, tensor, generator=None)`` fills ``tensor`` in place (and returns it) the way
Caffe's filler of ``filler_param.type`` does.  Deterministic fillers (constant, bilinear) are
bit-exact; random ones draw from the same distributions with torch's RNG (Caffe's boost
mt19937 stream cannot be reproduced).  Fan sizes follow Caffe's legacy blob accessors:
``fan_in = count / num`` and ``fan_out = count / channels`` with ``num = shape[0]`` and
``channels = shape[1]`` (1 for a 1-axis blob).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .proto import caffe_pb2 as pb
from converters.errors import InputError

FILLERS = ("constant", "uniform", "gaussian", "positive_unitball", "xavier", "msra", "bilinear")


class FillerError(ValueError, InputError):
    """A filler Caffe refuses (unknown type, sparse where unsupported, bad bounds)."""


def _legacy(shape, index: int) -> int:
    # Blob::LegacyShape: axes beyond num_axes count as 1.
    return int(shape[index]) if index < len(shape) else 1


def fans(shape) -> tuple[int, int]:
    """Caffe's ``(fan_in, fan_out)`` = ``(count / num, count / channels)`` (integer division)."""
    count = int(np.prod(shape)) if len(shape) else 1
    return count // _legacy(shape, 0), count // _legacy(shape, 1)


def _variance_n(param, shape) -> float:
    fan_in, fan_out = fans(shape)
    norm = param.variance_norm
    if norm == pb.FillerParameter.FAN_OUT:
        return float(np.float32(fan_out))
    if norm == pb.FillerParameter.AVERAGE:
        return float(np.float32(fan_in + fan_out) / np.float32(2))
    return float(np.float32(fan_in))


def _uniform(tensor, low, high, generator):
    low, high = float(np.float32(low)), float(np.float32(high))
    if high < low:
        raise FillerError(f"uniform filler needs min <= max, got [{low}, {high}]")
    r = torch.rand(tensor.shape, generator=generator, dtype=torch.float32)
    tensor.copy_(r.mul_(high - low).add_(low).clamp_(low, high))


def _gaussian(tensor, mean, std, generator):
    r = torch.randn(tensor.shape, generator=generator, dtype=torch.float32)
    tensor.copy_(r.mul_(float(np.float32(std))).add_(float(np.float32(mean))))


def bilinear_kernel(shape) -> np.ndarray:
    """Caffe's BilinearFiller values for a (N, C, K, K) blob, in float32 as filler.hpp computes them."""
    if len(shape) != 4:
        raise FillerError(f"bilinear filler needs a 4-axis blob, got shape {tuple(shape)}")
    height, width = int(shape[2]), int(shape[3])
    if height != width:
        raise FillerError(f"bilinear filler needs a square kernel, got {height}x{width}")
    f32 = np.float32
    f = int(math.ceil(width / 2.0))
    c = f32((2 * f - 1 - f % 2) / (2.0 * f))
    idx = np.arange(width, dtype=np.float32)
    a = (f32(1) - np.abs(idx / f32(f) - c)).astype(np.float32)
    kernel = (a[:, None] * a[None, :]).astype(np.float32)  # [y, x]
    return np.broadcast_to(kernel, tuple(int(s) for s in shape)).copy()


def fill(filler_param, tensor: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill ``tensor`` in place as Caffe's filler described by ``filler_param`` does.

    ``filler_param`` is a ``FillerParameter`` (``None`` means Caffe's default: constant 0).
    ``generator`` is an optional ``torch.Generator`` for the random fillers.
    """
    if filler_param is None:
        filler_param = pb.FillerParameter()
    kind = filler_param.type or "constant"
    shape = tuple(tensor.shape)
    with torch.no_grad():
        if kind == "constant":
            tensor.fill_(float(np.float32(filler_param.value)))
        elif kind == "uniform":
            _uniform(tensor, filler_param.min, filler_param.max, generator)
        elif kind == "gaussian":
            _gaussian(tensor, filler_param.mean, filler_param.std, generator)
            sparse = int(filler_param.sparse)
            if sparse >= 0:
                # Caffe: Bernoulli mask with p = sparse / num_outputs, num_outputs = shape(0).
                if tensor.dim() < 1:
                    raise FillerError("sparse gaussian filler needs a blob with at least one axis")
                p = float(np.float32(sparse) / np.float32(shape[0]))
                p = min(max(p, 0.0), 1.0)
                mask = torch.rand(shape, generator=generator, dtype=torch.float32) < p
                tensor.mul_(mask.to(tensor.dtype))
        elif kind == "positive_unitball":
            if filler_param.sparse != -1:
                raise FillerError("positive_unitball filler does not support sparse")
            _uniform(tensor, 0.0, 1.0, generator)
            num = _legacy(shape, 0)
            flat = tensor.view(num, -1) if tensor.is_contiguous() else tensor.reshape(num, -1)
            flat.div_(flat.sum(dim=1, keepdim=True))
            if not tensor.is_contiguous():
                tensor.copy_(flat.view(shape))
        elif kind == "xavier":
            if filler_param.sparse != -1:
                raise FillerError("xavier filler does not support sparse")
            # Dtype scale = sqrt(Dtype(3) / n): float division, sqrt rounded to float.
            scale = float(np.sqrt(np.float32(3) / np.float32(_variance_n(filler_param, shape))))
            _uniform(tensor, -scale, scale, generator)
        elif kind == "msra":
            if filler_param.sparse != -1:
                raise FillerError("msra filler does not support sparse")
            std = float(np.sqrt(np.float32(2) / np.float32(_variance_n(filler_param, shape))))
            _gaussian(tensor, 0.0, std, generator)
        elif kind == "bilinear":
            if filler_param.sparse != -1:
                raise FillerError("bilinear filler does not support sparse")
            tensor.copy_(torch.from_numpy(bilinear_kernel(shape)))
        else:
            raise FillerError(f"unknown filler type {kind!r} (Caffe knows {', '.join(FILLERS)})")
    return tensor


# Which filler Caffe uses for each learnable blob of the layer types that have fillers.
def layer_fillers(layer: pb.LayerParameter) -> list:
    """The FillerParameters of ``layer``'s blobs in Caffe blob order (``None``: Caffe's fixed init).

    Convolution/Deconvolution/InnerProduct/Embed: weight_filler, bias_filler; PReLU: filler
    (default constant 0.25); Scale: filler (default constant 1), bias_filler; Bias: filler;
    BatchNorm: zeros.
    """
    t = layer.type
    if t in ("Convolution", "Deconvolution"):
        p = layer.convolution_param
        return [p.weight_filler, p.bias_filler]
    if t == "InnerProduct":
        p = layer.inner_product_param
        return [p.weight_filler, p.bias_filler]
    if t == "Embed":
        p = layer.embed_param
        return [p.weight_filler, p.bias_filler]
    if t == "PReLU":
        if layer.prelu_param.HasField("filler"):
            return [layer.prelu_param.filler]
        return [pb.FillerParameter(type="constant", value=0.25)]
    if t == "Scale":
        p = layer.scale_param
        first = p.filler if p.HasField("filler") else pb.FillerParameter(type="constant", value=1.0)
        return [first, p.bias_filler]
    if t == "Bias":
        return [layer.bias_param.filler]
    if t == "BatchNorm":
        return [pb.FillerParameter(type="constant", value=0.0)] * 3
    return []
