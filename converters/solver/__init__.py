"""Caffe-exact training: learning-rate policies, fillers, update rules, the Data layer, snapshots
and the Solver.

Generic (no dataset knowledge).  ``Solver(solver_prototxt_or_param, ...)`` trains nets built with
``converters.load_caffe``; see :mod:`converters.solver.solver` (the step loop).  One module per job:
``solver`` (the loop), ``snapshot`` (snapshot files, restore, SIGINT/SIGHUP), ``feeds`` and
``data_layer`` (batches), ``updates`` and ``lr_policy`` (ApplyUpdate), ``distributed``,
``training_log``, ``errors``.  Fillers are :mod:`converters.fillers` (shared with the conversion).
"""
from .data_layer import DataLayer, DataTransformer
from ..fillers import fill
from .lr_policy import get_learning_rate, learning_rates
from .solver import Solver, SolverError, get_solver
from .updates import apply_update, make_rule

__all__ = ["Solver", "SolverError", "get_solver", "DataLayer", "DataTransformer", "fill",
           "get_learning_rate", "learning_rates", "apply_update", "make_rule"]
