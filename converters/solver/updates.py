"""Caffe's parameter updates (``sgd_solver.cpp`` and the other solvers), on torch tensors.

``ApplyUpdate`` of an iteration, with ``rate`` from the learning-rate policy:

1. ``clip_gradients(grads, clip)``: global L2 norm over all learnable parameters (before the
   ``iter_size`` normalisation), scale every gradient by ``clip / norm`` if ``norm > clip``;
2. per parameter: ``normalize`` (``grad *= 1/iter_size``), ``regularize`` (L2: ``grad +=
   local_decay * w``; L1: ``grad += local_decay * sign(w)``; ``local_decay = weight_decay *
   decay_mult``, skipped when 0), then the rule's ``compute_update`` (the update is left in the
   gradient tensor as Caffe leaves it in the diff, except SGD, whose update is its history
   buffer and is subtracted from there), and ``w -= update``.

All scalars are float32, as Caffe's ``Dtype`` arithmetic.  History buffers are laid out as in
Caffe's ``history_`` (and the ``.solverstate``): one per learnable parameter, AdaDelta and Adam
two (all first buffers, then all second buffers).
"""
from __future__ import annotations

import math

import numpy as np
import torch

_f32 = np.float32


def f32(x) -> float:
    return float(_f32(x))


def clip_gradients(grads, clip_gradients: float) -> float | None:
    """Caffe's ClipGradients; returns the scale factor applied (``None`` if none)."""
    clip = _f32(clip_gradients)
    if clip < 0:
        return None
    sumsq = _f32(0)
    for g in grads:
        sumsq += _f32(torch.dot(g.reshape(-1), g.reshape(-1)).item())
    l2norm = _f32(math.sqrt(float(sumsq)))
    if l2norm > clip:
        scale = float(clip / l2norm)
        for g in grads:
            g.mul_(scale)
        return scale
    return None


def normalize(grad: torch.Tensor, iter_size: int) -> None:
    """Caffe's Normalize: ``grad *= Dtype(1) / iter_size`` when ``iter_size > 1``."""
    if iter_size > 1:
        grad.mul_(f32(_f32(1) / _f32(iter_size)))


def regularize(grad: torch.Tensor, weight: torch.Tensor, local_decay: float, kind: str = "L2") -> None:
    """Caffe's Regularize (L2 or L1), nothing when ``local_decay`` is 0."""
    if not local_decay:
        return
    if kind == "L2":
        grad.add_(weight, alpha=local_decay)
    elif kind == "L1":
        grad.add_(torch.sign(weight), alpha=local_decay)
    else:
        raise ValueError(f"unknown regularization type {kind!r} (Caffe knows L1 and L2)")


class UpdateRule:
    """One of Caffe's solver types: ``compute_update`` turns the regularised gradient into the
    update (in place) and advances the history buffers."""

    name = ""
    histories = 1  # history buffers per learnable parameter

    def __init__(self, param):
        self.momentum = f32(param.momentum)
        self.delta = f32(param.delta)
        self.rms_decay = f32(param.rms_decay)
        self.momentum2 = f32(param.momentum2)

    def compute_update(self, grad, history, local_rate: float, iteration: int):
        """Turn ``grad`` into the update in place; may instead return another tensor holding it."""
        raise NotImplementedError


class SGD(UpdateRule):
    """``history = local_rate * grad + momentum * history; update = history``."""

    name = "SGD"

    def compute_update(self, grad, history, local_rate, iteration):
        h = history[0]
        h.mul_(self.momentum).add_(grad, alpha=local_rate)
        return h  # Caffe copies it into the diff; subtracting it directly saves a pass


class Nesterov(UpdateRule):
    """``h_new = local_rate * grad + momentum * h; update = (1 + momentum) * h_new - momentum * h``."""

    name = "Nesterov"

    def compute_update(self, grad, history, local_rate, iteration):
        h = history[0]
        old = h.clone()
        h.mul_(self.momentum).add_(grad, alpha=local_rate)
        grad.copy_(h).mul_(f32(_f32(1) + _f32(self.momentum))).sub_(old, alpha=self.momentum)


class AdaGrad(UpdateRule):
    """``h += grad^2; update = local_rate * grad / (sqrt(h) + delta)``."""

    name = "AdaGrad"

    def compute_update(self, grad, history, local_rate, iteration):
        h = history[0]
        h.add_(grad * grad)
        grad.div_(torch.sqrt(h).add_(self.delta)).mul_(local_rate)


class RMSProp(UpdateRule):
    """``h = (1 - rms_decay) * grad^2 + rms_decay * h; update = local_rate * grad / (sqrt(h) + delta)``."""

    name = "RMSProp"

    def compute_update(self, grad, history, local_rate, iteration):
        h = history[0]
        h.mul_(self.rms_decay).add_(grad * grad, alpha=f32(_f32(1) - _f32(self.rms_decay)))
        grad.div_(torch.sqrt(h).add_(self.delta)).mul_(local_rate)


class AdaDelta(UpdateRule):
    """Caffe's AdaDelta (``momentum`` is the decay; the learning rate still multiplies the update):
    ``g2 = m*g2 + (1-m)*grad^2; u = grad * sqrt((u2 + delta) / (g2 + delta)); u2 = m*u2 + (1-m)*u^2;
    update = local_rate * u``."""

    name = "AdaDelta"
    histories = 2

    def compute_update(self, grad, history, local_rate, iteration):
        g2, u2 = history
        one_minus = f32(_f32(1) - _f32(self.momentum))
        g2.mul_(self.momentum).add_(grad * grad, alpha=one_minus)
        ratio = (u2 + self.delta).div_(g2 + self.delta).sqrt_()
        grad.mul_(ratio)
        u2.mul_(self.momentum).add_(grad * grad, alpha=one_minus)
        grad.mul_(local_rate)


class Adam(UpdateRule):
    """Caffe's Adam (``momentum`` = beta1, ``momentum2`` = beta2, ``delta`` = eps), t = iter + 1:
    ``m = b1*m + (1-b1)*grad; v = b2*v + (1-b2)*grad^2;
    update = local_rate * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``."""

    name = "Adam"
    histories = 2

    def correction(self, iteration: int) -> float:
        t = int(iteration) + 1
        # pow(float, int) is evaluated in double; the quotient is stored as float.
        return f32(math.sqrt(1.0 - math.pow(self.momentum2, t)) / (1.0 - math.pow(self.momentum, t)))

    def compute_update(self, grad, history, local_rate, iteration):
        m, v = history
        m.mul_(self.momentum).add_(grad, alpha=f32(_f32(1) - _f32(self.momentum)))
        v.mul_(self.momentum2).add_(grad * grad, alpha=f32(_f32(1) - _f32(self.momentum2)))
        scale = f32(_f32(local_rate) * _f32(self.correction(iteration)))
        torch.div(m, torch.sqrt(v).add_(self.delta), out=grad)
        grad.mul_(scale)


RULES = {cls.name: cls for cls in (SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam)}


def make_rule(param) -> UpdateRule:
    """The update rule of ``param.type`` (``SolverParameter``; ``solver_type`` already upgraded)."""
    kind = param.type or "SGD"
    try:
        cls = RULES[kind]
    except KeyError:
        raise ValueError(f"unknown solver type {kind!r} (Caffe knows {', '.join(RULES)})") from None
    rule = cls(param)
    if kind == "AdaGrad" and param.momentum != 0:
        raise ValueError("AdaGrad solver does not use momentum; set momentum: 0")
    if kind == "RMSProp" and param.momentum != 0:
        raise ValueError("RMSProp solver does not use momentum; set momentum: 0")
    return rule


def apply_update(params, grads, histories, rule: UpdateRule, rate: float, iteration: int,
                 lr_mults, decay_mults, weight_decay: float, regularization_type: str = "L2",
                 iter_size: int = 1, clip: float = -1.0):
    """Caffe's ApplyUpdate over all learnable parameters (tensors updated in place).

    ``histories[k][i]`` is buffer ``k`` of parameter ``i``.  Returns the clip scale factor or None.
    """
    with torch.no_grad():
        scale = clip_gradients(grads, clip)
        rate32 = _f32(rate)
        wd32 = _f32(weight_decay)
        for i, (w, g) in enumerate(zip(params, grads)):
            normalize(g, iter_size)
            regularize(g, w, f32(wd32 * _f32(decay_mults[i])), regularization_type)
            update = rule.compute_update(g, [h[i] for h in histories], f32(rate32 * _f32(lr_mults[i])), iteration)
            w.sub_(g if update is None else update)
    return scale
