"""Caffe's learning-rate policies (``SGDSolver::GetLearningRate``), bit-exact in float32.

Precision, as Caffe 1.0's ``Dtype = float`` code resolves it (checked against real Caffe):
``pow(float gamma, int k)`` (step, exp, multistep) is the double ``pow`` and the product with
``base_lr`` is taken in double, then cast to float; ``pow(float, float)`` (inv, poly) and
``exp(float)`` (sigmoid) are the float ``powf``/``expf`` with float products.  The C library's
``powf``/``expf`` are used through ctypes where available (glibc's ``powf`` is not always
correctly rounded); otherwise the double result rounded to float.  The ``step`` policy sets ``current_step = iter / stepsize``; ``multistep``
advances ``current_step`` by at most one per call (when ``iter >= stepvalue[current_step]``),
so it must be called once per iteration, as the solver does.
"""
from __future__ import annotations

import math

import numpy as np
from converters.errors import InputError

POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")

_f32 = np.float32


def _load_libm():
    try:
        import ctypes
        import ctypes.util
        lib = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
        lib.powf.restype = ctypes.c_float
        lib.powf.argtypes = [ctypes.c_float, ctypes.c_float]
        lib.expf.restype = ctypes.c_float
        lib.expf.argtypes = [ctypes.c_float]
        return lib
    except (OSError, AttributeError):  # pragma: no cover - platform without a C libm
        return None


_LIBM = _load_libm()


def powf(x, y) -> np.float32:
    """C ``powf`` (float arguments, float result)."""
    if _LIBM is not None:
        return _f32(_LIBM.powf(float(_f32(x)), float(_f32(y))))
    return _f32(math.pow(float(_f32(x)), float(_f32(y))))


def expf(x) -> np.float32:
    """C ``expf``."""
    if _LIBM is not None:
        return _f32(_LIBM.expf(float(_f32(x))))
    return _f32(math.exp(float(_f32(x))))


def _f(x) -> float:
    """Round a Python float to float32 and return it as a Python float."""
    return float(_f32(x))


class LrPolicyError(ValueError, InputError):
    """A learning-rate policy Caffe refuses (its CHECKs in SGDSolver::GetLearningRate)."""


def get_learning_rate(param, iteration: int, current_step: int = 0) -> tuple[float, int]:
    """Caffe's learning rate for the 0-based ``iteration``.

    ``param`` is a ``SolverParameter`` (or any object with its field names).  Returns
    ``(rate, current_step)``: ``rate`` is the exact float32 value (as a Python float) and
    ``current_step`` the solver's updated step counter (persisted in ``.solverstate``).
    """
    policy = param.lr_policy or ""
    base_lr = _f(param.base_lr)
    gamma = _f(param.gamma)
    power = _f(param.power)
    it = int(iteration)
    if policy == "fixed":
        rate = base_lr
    elif policy == "step":
        if param.stepsize <= 0:
            raise LrPolicyError("lr_policy 'step' needs stepsize > 0")
        if gamma < 0:
            raise LrPolicyError("lr_policy 'step' needs gamma >= 0")
        current_step = it // int(param.stepsize)
        rate = base_lr * math.pow(gamma, current_step)
    elif policy == "exp":
        if gamma < 0:
            raise LrPolicyError("lr_policy 'exp' needs gamma >= 0")
        rate = base_lr * math.pow(gamma, it)
    elif policy == "inv":
        if gamma < 0:
            raise LrPolicyError("lr_policy 'inv' needs gamma >= 0")
        # Dtype(1) + gamma * iter and the power are float.
        rate = _f32(base_lr) * powf(_f32(1) + _f32(gamma) * _f32(it), -_f32(power))
    elif policy == "multistep":
        values = list(param.stepvalue)
        if current_step < len(values) and it >= values[current_step]:
            current_step += 1
        rate = base_lr * math.pow(gamma, current_step)
    elif policy == "poly":
        if param.max_iter <= 0:
            raise LrPolicyError("lr_policy 'poly' needs max_iter > 0")
        rate = _f32(base_lr) * powf(_f32(1) - _f32(it) / _f32(param.max_iter), _f32(power))
    elif policy == "sigmoid":
        e = expf(-_f32(gamma) * (_f32(it) - _f32(param.stepsize)))
        rate = _f32(base_lr) * (_f32(1) / (_f32(1) + e))
    else:
        raise LrPolicyError(f"unknown lr_policy {policy!r} (Caffe knows {', '.join(POLICIES)})")
    return _f(rate), current_step


class LearningRateSchedule:
    """Stateful wrapper: ``schedule(iteration)`` returns the rate and advances ``current_step``."""

    def __init__(self, param, current_step: int = 0):
        self.param = param
        self.current_step = int(current_step)

    def __call__(self, iteration: int) -> float:
        rate, self.current_step = get_learning_rate(self.param, iteration, self.current_step)
        return rate


def learning_rates(param, iterations) -> list[float]:
    """The rates of a fresh solver for ``range(iterations)`` (or an iterable of indices in order)."""
    sched = LearningRateSchedule(param)
    its = range(iterations) if isinstance(iterations, int) else iterations
    return [sched(k) for k in its]
