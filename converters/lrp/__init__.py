"""Layer-wise relevance propagation (LRP) for converted Caffe nets, as the paper's ``lrp_toolbox``.

Generic: works on any :class:`~converters.net.CaffeNet`, knows nothing of Adience or the paper's
models.  ``explain(model, x, target_class, composite)`` walks the Caffe layers in reverse with
the rule the composite assigns to each (by Caffe layer index and type); :mod:`.render` turns the
relevance into pictures.

    from converters.lrp import explain, paper_composite
    relevance, record = explain(model, x, "predicted", paper_composite(flat_upto=9, eps=0.1))
"""
from .composite import (COMPOSITES, DEFAULT_RULES, ELEMENTWISE, VARIANTS, Composite, LayerMatch, Quirks,
                        get_composite, paper_composite, toolbox_composite)
from .rules import (AlphaBeta, AveragePooling, ConcatSplit, EltwiseRule, Epsilon, Flat, LinearMap, LRNIdentity,
                    LRNTaylor, LRPError, Pass, PassThrough, PoolingRule, Proportional, Reshape, Route, Rule, SliceJoin,
                    SoftmaxInject, SplitSum, WinnerTakesAll, WSquare)
from .walk import Explanation, caffe_layer_indices, explain, make_plan

__all__ = ["AlphaBeta", "AveragePooling", "COMPOSITES", "ELEMENTWISE", "PassThrough", "Quirks",
           "SoftmaxInject", "VARIANTS", "Composite", "ConcatSplit", "DEFAULT_RULES", "EltwiseRule", "Epsilon",
           "Explanation", "Flat", "LRNIdentity", "LRNTaylor", "LRPError", "LayerMatch", "LinearMap", "Pass",
           "PoolingRule", "Proportional", "Reshape", "Route", "Rule", "SliceJoin", "SplitSum", "WSquare",
           "WinnerTakesAll", "caffe_layer_indices", "explain", "get_composite", "make_plan", "paper_composite",
           "toolbox_composite"]
