"""A drop-in ``caffe`` (pycaffe) module on top of the converted models: existing Caffe scripts run
unchanged with ``import converters.pycaffe as caffe`` (or, without editing them,
``python -m converters.pycaffe script.py ARGS``, which makes ``import caffe`` resolve here).

What it owns: pycaffe's Python API - ``Net`` (blobs/params as NumPy arrays, forward/backward,
reshape, copy_from, save), ``caffe.io`` (Transformer, oversample, load_image, resize_image,
BlobProto/Datum conversions), ``Classifier``, the solvers, the global mode functions and
``caffe.proto.caffe_pb2``.  The numerics come from :mod:`converters` (Caffe-exact layers) and
:mod:`converters.solver`; see ``net.py`` and ``io.py`` for what differs from pycaffe.
"""
from __future__ import annotations

import sys
import time

from . import io, proto
from ._mode import set_device, set_mode_cpu, set_mode_gpu, set_random_seed
from .classifier import Classifier
from .net import TEST, TRAIN, Blob, Layer, Net
from .solver import (AdaDeltaSolver, AdaGradSolver, AdamSolver, NesterovSolver, RMSPropSolver, SGDSolver,
                     Solver, get_solver)

__version__ = "1.0.0"

__all__ = ["TRAIN", "TEST", "Net", "Blob", "Layer", "Classifier", "io", "proto", "Solver", "SGDSolver",
           "NesterovSolver", "AdaGradSolver", "RMSPropSolver", "AdaDeltaSolver", "AdamSolver", "get_solver",
           "set_mode_cpu", "set_mode_gpu", "set_device", "set_random_seed", "layer_type_list", "Timer",
           "init_log", "log", "has_nccl", "solver_count", "set_solver_count", "solver_rank",
           "set_solver_rank", "set_multiprocess", "install"]


def layer_type_list() -> list:
    """The Caffe layer types this package converts."""
    from ..layers import supported_types
    return supported_types()


def init_log(*args, **kwargs) -> None:
    """pycaffe's glog set-up (nothing to do here)."""


def log(message) -> None:
    print(message, file=sys.stderr)


def has_nccl() -> bool:
    return False


_SOLVERS = {"count": 1, "rank": 0}


def solver_count() -> int:
    return _SOLVERS["count"]


def set_solver_count(n: int) -> None:
    _SOLVERS["count"] = int(n)


def solver_rank() -> int:
    return _SOLVERS["rank"]


def set_solver_rank(r: int) -> None:
    _SOLVERS["rank"] = int(r)


def set_multiprocess(flag: bool) -> None:
    """pycaffe's multi-process flag (single process here)."""


class Timer:
    """pycaffe's Timer: ``start()``, ``stop()``, ``ms``."""

    def __init__(self):
        self._start = None
        self._ms = 0.0

    def start(self):
        self._start = time.perf_counter()

    def stop(self):
        if self._start is not None:
            self._ms = (time.perf_counter() - self._start) * 1000.0
            self._start = None

    @property
    def ms(self) -> float:
        return self._ms


def install(name: str = "caffe") -> None:
    """Make ``import caffe`` (and ``caffe.io``, ``caffe.proto.caffe_pb2``) resolve to this module.

    Refuses to replace a different ``caffe`` module that is already imported.
    """
    me = sys.modules[__name__]
    current = sys.modules.get(name)
    if current is not None and current is not me:
        raise RuntimeError(f"a different module {name!r} is already imported ({current!r})")
    sys.modules[name] = me
    sys.modules[name + ".io"] = io
    sys.modules[name + ".proto"] = proto
    sys.modules[name + ".proto.caffe_pb2"] = proto.caffe_pb2
