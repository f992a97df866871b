"""Loss and metric layers: SoftmaxWithLoss, Accuracy, EuclideanLoss, SigmoidCrossEntropyLoss.

Caffe rules honoured:
* Loss tops are scalars (shape ``()``); a loss layer's top 0 has loss weight 1 unless
  ``loss_weight`` says otherwise (handled by the net).
* Normalization (``loss_param.normalization``, default VALID; the legacy ``normalize: true|false``
  means VALID|BATCH_SIZE when ``normalization`` is not set): FULL = outer * inner, VALID = number of
  labels != ``ignore_label``, BATCH_SIZE = outer, NONE = 1; the divisor is ``max(1, that)``.
  (``outer`` = product of the axes before the softmax axis, ``inner`` = after it.)
* SoftmaxWithLoss: ``-sum log(max(prob[label], FLT_MIN)) / normalizer`` over non-ignored positions,
  the label truncated to int; gradient ``(prob - onehot) * weight / normalizer`` (0 at ignored
  positions, also when prob underflows); labels get no gradient.  Optional top 1: the probabilities.
* Accuracy: a position is correct when fewer than ``top_k`` classes score ``>=`` the true class
  (ties count against); ``ignore_label`` skipped; mean over counted positions (0 when none).
  Optional top 1: per-class accuracy.  No gradient.
* EuclideanLoss: ``sum((a - b)^2) / N / 2`` (N = shape[0]), both bottoms get gradients.
* SigmoidCrossEntropyLoss: ``-sum[x (t - (x >= 0)) - log(1 + exp(x - 2 x (x >= 0)))] / normalizer``,
  default normalization BATCH_SIZE (outer = shape[0]) unless ``normalization``/``normalize`` is set;
  ``ignore_label`` targets skipped.
"""
from __future__ import annotations

import torch

from ..proto import caffe_pb2 as pb
from .base import FLT_MIN, CaffeLayer, canonical_axis, count, need_bottoms, need_tops
from .registry import ConversionError, register

N = pb.LossParameter


def normalizer(mode, outer: int, inner: int, valid) -> float:
    """Caffe's LossLayer::GetNormalizer (``valid`` is a count or a 0-d tensor)."""
    if mode == N.FULL:
        value = float(outer * inner)
    elif mode == N.VALID:
        value = valid
    elif mode == N.BATCH_SIZE:
        value = float(outer)
    else:
        value = 1.0
    if isinstance(value, torch.Tensor):
        return torch.clamp(value.to(torch.float32), min=1.0)
    return max(1.0, float(value))


def normalization_mode(loss_param: pb.LossParameter, default=N.VALID):
    if loss_param.HasField("normalization"):
        return loss_param.normalization
    if loss_param.HasField("normalize"):
        return N.VALID if loss_param.normalize else N.BATCH_SIZE
    return default


def _split(shape, axis):
    return count(shape, 0, axis), shape[axis], count(shape, axis + 1)


def _labels(layer_name, label, outer, inner):
    if label.numel() != outer * inner:
        raise ConversionError(layer_name, f"number of labels ({label.numel()}) must match the number of "
                                          f"predictions ({outer * inner}); with integer values in "
                                          f"{{0, 1, ..., C-1}}")
    return label.detach().reshape(outer, inner).to(torch.int64)   # static_cast<int>: truncation


class _SoftmaxLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, label, axis, ignore, mode, layer_name):
        outer, channels, inner = _split(tuple(scores.shape), axis)
        prob = torch.softmax(scores, dim=axis)
        p3 = prob.reshape(outer, channels, inner)
        lab = _labels(layer_name, label, outer, inner)
        valid = torch.ones_like(lab, dtype=torch.bool) if ignore is None else lab != ignore
        bad = valid & ((lab < 0) | (lab >= channels))
        if bool(bad.any()):
            raise ConversionError(layer_name, f"label value {int(lab[bad][0])} outside [0, {channels})")
        safe = torch.where(valid, lab, torch.zeros_like(lab))
        picked = p3.gather(1, safe.unsqueeze(1)).squeeze(1)
        logp = torch.log(torch.clamp(picked, min=FLT_MIN))
        total = -(torch.where(valid, logp, torch.zeros_like(logp))).sum()
        norm = normalizer(mode, outer, inner, valid.sum())
        ctx.save_for_backward(prob, safe, valid)
        ctx.meta = (axis, outer, channels, inner, norm)
        ctx.mark_non_differentiable(prob)
        return total / norm, prob

    @staticmethod
    def backward(ctx, grad_loss, grad_prob):
        prob, safe, valid = ctx.saved_tensors
        axis, outer, channels, inner, norm = ctx.meta
        g = prob.reshape(outer, channels, inner).clone()
        g.scatter_add_(1, safe.unsqueeze(1), torch.full_like(g[:, :1], -1.0))
        g = g * valid.unsqueeze(1).to(g.dtype)
        g = g * (grad_loss / norm)
        return g.reshape(prob.shape), None, None, None, None, None


class SoftmaxWithLoss(CaffeLayer):
    def __init__(self, layer, phase, axis):
        super().__init__(layer, phase)
        lp = layer.loss_param
        self.axis = axis
        self.ignore_label = lp.ignore_label if lp.HasField("ignore_label") else None
        self.normalization = normalization_mode(lp)
        self.want_prob = len(layer.top) == 2

    def forward(self, scores, label):
        loss, prob = _SoftmaxLoss.apply(scores, label, self.axis, self.ignore_label, self.normalization,
                                        self.caffe_name)
        return (loss, prob) if self.want_prob else loss

    def extra_repr(self):
        return (f"caffe_name={self.caffe_name!r}, axis={self.axis}, normalization="
                f"{N.NormalizationMode.Name(self.normalization)}, ignore_label={self.ignore_label}")


@register("SoftmaxWithLoss")
def convert_softmax_loss(layer, shapes, phase):
    need_bottoms(layer, shapes, 2)
    need_tops(layer, (1, 2))
    x = tuple(shapes[0])
    axis = canonical_axis(layer, layer.softmax_param.axis, len(x))
    outer, _, inner = _split(x, axis)
    if count(shapes[1]) != outer * inner:
        raise ConversionError(layer, f"number of labels ({count(shapes[1])}, label shape {tuple(shapes[1])}) "
                                     f"must match the number of predictions ({outer * inner}, scores {x})")
    return SoftmaxWithLoss(layer, phase, axis), [()] + ([x] if len(layer.top) == 2 else [])


class Accuracy(CaffeLayer):
    def __init__(self, layer, phase, axis):
        super().__init__(layer, phase)
        p = layer.accuracy_param
        self.axis, self.top_k = axis, int(p.top_k)
        self.ignore_label = p.ignore_label if p.HasField("ignore_label") else None
        self.per_class = len(layer.top) == 2

    def forward(self, scores, label):
        scores = scores.detach()
        outer, channels, inner = _split(tuple(scores.shape), self.axis)
        s3 = scores.reshape(outer, channels, inner)
        lab = _labels(self.caffe_name, label, outer, inner)
        valid = torch.ones_like(lab, dtype=torch.bool) if self.ignore_label is None else lab != self.ignore_label
        bad = valid & ((lab < 0) | (lab >= channels))
        if bool(bad.any()):
            raise ConversionError(self.caffe_name, f"label value {int(lab[bad][0])} outside [0, {channels})")
        safe = torch.where(valid, lab, torch.zeros_like(lab))
        true_score = s3.gather(1, safe.unsqueeze(1))
        better = (s3 >= true_score).sum(1) - 1          # the true class itself is not "better"
        correct = (better < self.top_k) & valid
        n_valid = valid.sum()
        acc = torch.where(n_valid > 0, correct.sum().to(scores.dtype) / n_valid.clamp(min=1).to(scores.dtype),
                          torch.zeros((), dtype=scores.dtype, device=scores.device))
        if not self.per_class:
            return acc
        nums = torch.zeros(channels, dtype=scores.dtype, device=scores.device)
        hits = torch.zeros_like(nums)
        nums.index_add_(0, safe[valid], torch.ones_like(safe[valid], dtype=scores.dtype))
        hits.index_add_(0, safe[correct], torch.ones_like(safe[correct], dtype=scores.dtype))
        return acc, torch.where(nums > 0, hits / nums.clamp(min=1), torch.zeros_like(nums))

    def extra_repr(self):
        return f"caffe_name={self.caffe_name!r}, top_k={self.top_k}, axis={self.axis}, ignore_label={self.ignore_label}"


@register("Accuracy")
def convert_accuracy(layer, shapes, phase):
    need_bottoms(layer, shapes, 2)
    need_tops(layer, (1, 2))
    x = tuple(shapes[0])
    axis = canonical_axis(layer, layer.accuracy_param.axis, len(x))
    outer, channels, inner = _split(x, axis)
    if layer.accuracy_param.top_k > channels:
        raise ConversionError(layer, f"top_k ({layer.accuracy_param.top_k}) must be less than or equal "
                                     f"to the number of classes ({channels})")
    if count(shapes[1]) != outer * inner:
        raise ConversionError(layer, f"number of labels ({count(shapes[1])}) must match the number of "
                                     f"predictions ({outer * inner})")
    return Accuracy(layer, phase, axis), [()] + ([(channels,)] if len(layer.top) == 2 else [])


class EuclideanLoss(CaffeLayer):
    def forward(self, a, b):
        diff = a - b
        return (diff * diff).sum() / a.shape[0] / 2.0


@register("EuclideanLoss")
def convert_euclidean(layer, shapes, phase):
    need_bottoms(layer, shapes, 2)
    need_tops(layer, 1)
    if count(shapes[0], 1) != count(shapes[1], 1) or shapes[0][0] != shapes[1][0]:
        raise ConversionError(layer, f"inputs must have the same dimension: {tuple(shapes[0])} vs "
                                     f"{tuple(shapes[1])}")
    return EuclideanLoss(layer, phase), [()]


class SigmoidCrossEntropyLoss(CaffeLayer):
    def __init__(self, layer, phase):
        super().__init__(layer, phase)
        lp = layer.loss_param
        self.ignore_label = lp.ignore_label if lp.HasField("ignore_label") else None
        self.normalization = normalization_mode(lp, default=N.BATCH_SIZE)

    def forward(self, x, target):
        t = target.detach().reshape(x.shape).to(x.dtype)
        pos = (x >= 0).to(x.dtype)
        term = x * (t - pos) - torch.log1p(torch.exp(x - 2.0 * x * pos))
        outer = x.shape[0]
        inner = x.numel() // outer
        if self.ignore_label is not None:
            valid = t.to(torch.int64) != self.ignore_label     # static_cast<int>(target)
            term = torch.where(valid, term, torch.zeros_like(term))
            n_valid = valid.sum()
        else:
            n_valid = torch.tensor(x.numel())
        return -term.sum() / normalizer(self.normalization, outer, inner, n_valid)


@register("SigmoidCrossEntropyLoss")
def convert_sigmoid_ce(layer, shapes, phase):
    need_bottoms(layer, shapes, 2)
    need_tops(layer, 1)
    if count(shapes[0]) != count(shapes[1]):
        raise ConversionError(layer, f"SIGMOID_CROSS_ENTROPY_LOSS layer inputs must have the same count: "
                                     f"{tuple(shapes[0])} vs {tuple(shapes[1])}")
    return SigmoidCrossEntropyLoss(layer, phase), [()]
