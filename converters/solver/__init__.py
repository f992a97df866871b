"""Caffe-exact training: learning-rate policies, fillers, update rules, the Data layer and the Solver.

Generic (no dataset knowledge).  ``Solver(solver_prototxt_or_param, ...)`` trains nets built with
``converters.load_caffe``; see :mod:`converters.solver.solver`.
"""
from .data_layer import DataLayer, DataTransformer
from ..fillers import fill
from .lr_policy import get_learning_rate, learning_rates
from .solver import Solver, SolverError, get_solver
from .updates import apply_update, make_rule

__all__ = ["Solver", "SolverError", "get_solver", "DataLayer", "DataTransformer", "fill",
           "get_learning_rate", "learning_rates", "apply_update", "make_rule"]
