"""pycaffe's solvers (``caffe.SGDSolver(path)`` ... ``caffe.get_solver(path)``) on
:class:`converters.solver.Solver`.

As in pycaffe, ``SGDSolver`` & co. run their own update rule whatever the file's ``type`` says
(the C++ class decides), while ``get_solver`` picks the class from ``type``.  ``solver.net`` and
``solver.test_nets[i]`` are :class:`~converters.pycaffe.net.Net` objects sharing the solver's
weights; ``forward()`` on them reads the next batch of their Data layers, and after ``step()``
``solver.net.blobs`` hold the last training batch's blobs (``solver.net.blobs['loss'].data``).
Relative paths in the solver and net files are resolved against the current directory, as Caffe
does.  Training always runs on the CPU (``set_mode_gpu`` does not move a solver's nets).
"""
from __future__ import annotations

import os
from pathlib import Path

from ..formats import read_solver
from .net import Net


class Solver:
    """A Caffe solver (pycaffe API: ``net``, ``test_nets``, ``iter``, ``param``, ``step``, ``solve``,
    ``snapshot``, ``restore``, ``share_weights``).  Extra keyword arguments go to
    :class:`converters.solver.Solver` (e.g. ``weights=``, ``verbose=``)."""

    TYPE: str | None = None

    def __init__(self, filename, **kwargs):
        from ..solver import Solver as _Impl

        filename = os.fspath(filename)
        options = dict(log_csv=False, plot=False, progress=False)
        options.update(kwargs)
        param = read_solver(filename)
        if self.TYPE is not None and (param.type or "SGD") != self.TYPE:
            param.type = self.TYPE
            if not param.snapshot_prefix:
                param.snapshot_prefix = Path(filename).stem
            self._impl = _Impl(param, **options)
        else:
            self._impl = _Impl(filename, **options)
        self._last_blobs = None
        original = getattr(self._impl, "_forward_backward", None)
        if callable(original):
            def capture(original=original):
                loss, blobs = original()
                self._last_blobs = blobs
                return loss, blobs
            self._impl._forward_backward = capture
        self._net = Net._from_model(self._impl.net, feed=self._impl.train_feed, follow_mode=False)
        self._test_nets = [Net._from_model(n, feed=f, follow_mode=False)
                           for n, f in zip(self._impl.test_nets, self._impl.test_feeds)]

    # ------------------------------------------------------------------ pycaffe attributes
    @property
    def net(self) -> Net:
        return self._net

    @property
    def test_nets(self) -> list:
        return list(self._test_nets)

    @property
    def iter(self) -> int:
        return int(self._impl.iter)

    @property
    def param(self):
        return self._impl.param

    @property
    def solver(self):
        """The underlying :class:`converters.solver.Solver`."""
        return self._impl

    # ------------------------------------------------------------------ running
    def _sync_blobs(self):
        blobs, self._last_blobs = self._last_blobs, None
        if not blobs:
            return
        for name, t in blobs.items():
            blob = self._net.blobs.get(name)
            if blob is not None:
                blob._data.set_tensor(t.detach())

    def step(self, iters: int = 1):
        """Run ``iters`` iterations (Caffe's Solver::Step)."""
        try:
            self._impl.step(int(iters))
        finally:
            self._sync_blobs()

    def solve(self, resume_file=None):
        """Train to ``max_iter`` (optionally restoring a ``.solverstate`` first)."""
        try:
            self._impl.solve(resume_file)
        finally:
            self._sync_blobs()

    def snapshot(self):
        """Write ``{prefix}_iter_{iter}.caffemodel`` and ``.solverstate``; returns the two paths."""
        return self._impl.snapshot()

    def restore(self, state_file):
        """Continue from a ``.solverstate``."""
        self._impl.restore(state_file)

    def share_weights(self, net: Net):
        """Make ``net`` use this solver's (train net's) weights, as pycaffe's ``share_weights``."""
        net.share_with(self._net)

    def __repr__(self):
        return f"<caffe {type(self).__name__} iter={self.iter} type={self.param.type or 'SGD'!r}>"


class SGDSolver(Solver):
    TYPE = "SGD"


class NesterovSolver(Solver):
    TYPE = "Nesterov"


class AdaGradSolver(Solver):
    TYPE = "AdaGrad"


class RMSPropSolver(Solver):
    TYPE = "RMSProp"


class AdaDeltaSolver(Solver):
    TYPE = "AdaDelta"


class AdamSolver(Solver):
    TYPE = "Adam"


_CLASSES = {cls.TYPE: cls for cls in (SGDSolver, NesterovSolver, AdaGradSolver, RMSPropSolver,
                                      AdaDeltaSolver, AdamSolver)}


def get_solver(filename, **kwargs) -> Solver:
    """The solver of the type named in the file (Caffe's SolverRegistry)."""
    kind = read_solver(os.fspath(filename)).type or "SGD"
    return _CLASSES.get(kind, Solver)(filename, **kwargs)
