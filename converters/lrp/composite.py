"""Composites: which rule explains which Caffe layer, declared as data (zennit's idea, Caffe's keys).

A :class:`Composite` is an ordered list of ``(LayerMatch, Rule)`` entries -- the first entry whose
match accepts a layer wins -- over a table of default rules per Caffe type for the layers that
only move or gate data (ReLU, pooling, Concat...).  A :class:`LayerMatch` selects layers by Caffe
type, by name, and/or by **Caffe layer index** (``upto``: index <= bound), the numbering of the
toolbox's Caffe (see :func:`converters.lrp.walk.caffe_layer_indices`).

The paper's recipe is the toolbox's formula 102 (:func:`paper_composite`): Flat on every
Convolution/InnerProduct with index <= ``flat_upto``, alpha-beta (alpha 2, beta 1) on the other
Convolutions, epsilon (0.1 in the upstream script; the paper text says 0.01) on the other
InnerProducts, max pooling winner-takes-all, average pooling proportional, ReLU/Dropout pass.

LRN: :class:`~converters.lrp.rules.LRNTaylor` by default, because the toolbox's demonstrator
(``lrp_demo``, which drew the paper's heatmaps) hard-codes ``lrn_backward_type = 1`` whatever its
config says; the rule is not conservative (it scales relevance by about the activation), so
``lrn="identity"`` (type 0, pure pass-through) is there for conservative analyses.  Flat:
``flat_mode="toolbox"`` (weights ``1/(kh*kw)``, as the paper's tool) by default,
``"normalized"`` for zennit's conservative variant; both give the same picture up to a global
factor except at padded borders.

Toolbox quirks (:class:`Quirks`: ``group0_bias``, ``aux_head_injection``, ``flat_per_kernel``,
``avgpool_near_zero``, ``numbering_2015``) are copied by default so that the paper composite gives
the lrp_toolbox's numbers; ``variant="corrected"`` switches all off, ``quirks=(names...)`` some.
The composite carries its :class:`Quirks`; the walk reads the two that are not rules (aux-head
injection, numbering) from it.  Layers that only rescale or bend activations (BatchNorm, Scale,
Bias, Power, Sigmoid, TanH, PReLU, ELU, ...) pass relevance through (see ``rules.PassThrough``).

Knows nothing of any particular net: the per-architecture ``flat_upto`` values live with the
paper's reproduction code.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Callable

from .rules import (AlphaBeta, AveragePooling, ConcatSplit, Epsilon, EltwiseRule, Flat, LRNIdentity, LRNTaylor,
                    Pass, PassThrough, PoolingRule, Reshape, Route, Rule, SliceJoin, SoftmaxInject, SplitSum,
                    WSquare)

LEARNABLE = ("Convolution", "Deconvolution", "InnerProduct")

# Layers that rescale or bend each activation on its own: relevance passes to the first bottom
# (see rules.PassThrough for why BatchNorm/Scale/Bias are not folded into the convolution).
ELEMENTWISE = ("BatchNorm", "Scale", "Bias", "Power", "Sigmoid", "TanH", "PReLU", "ELU", "AbsVal", "BNLL",
               "Exp", "Log", "Clip", "Swish", "MVN")

DEFAULT_RULES: dict[str, Rule] = {
    "ReLU": Pass(), "Dropout": Pass(), "Softmax": Pass(),
    **{t: PassThrough() for t in ELEMENTWISE},
    "LRN": LRNIdentity(),
    "Pooling": PoolingRule(),
    "Concat": ConcatSplit(), "Split": SplitSum(), "Slice": SliceJoin(),
    "Flatten": Reshape(), "Reshape": Reshape(),
    "Eltwise": EltwiseRule(),
    "Crop": Route(), "Tile": Route(),
}


@dataclass(frozen=True)
class Quirks:
    """The lrp_toolbox behaviours that are copied by default (True) and can be switched off one by
    one (False) for a "corrected" variant.  Field names are the option names (CLI ``--no-quirk``).

    * ``group0_bias`` -- grouped alpha-beta uses group 0's biases for every group; off: each
      group its own biases.
    * ``aux_head_injection`` -- every layer below the start layer is visited, so Softmax layers
      there (GoogLeNet's auxiliary heads) inject their probabilities as relevance; off: only the
      layers the start layer depends on are visited.
    * ``flat_per_kernel`` -- flat weights ``1/(kh*kw)``, not normalised over input channels (the
      relevance is multiplied by ``C_in/group``, padding keeps a share); off: each output's
      relevance is shared by the in-image inputs it sees (conservative).
    * ``avgpool_near_zero`` -- average pooling windows with ``|sum| < 1e-6`` add ``x_i`` instead of
      a relevance share; off: such a window shares its relevance equally.
    * ``numbering_2015`` -- layer indices (``flat_upto``) in the 2015 Caffe numbering: automatic
      Split layers counted, no Input layer; off: the position among the prototxt's non-input
      layers (no Split layers), i.e. what one counts reading the prototxt.
    """

    group0_bias: bool = True
    aux_head_injection: bool = True
    flat_per_kernel: bool = True
    avgpool_near_zero: bool = True
    numbering_2015: bool = True

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def corrected(cls) -> "Quirks":
        return cls(**{n: False for n in cls.names()})

    @classmethod
    def resolve(cls, variant: str = "toolbox", off=(), on=()) -> "Quirks":
        """``variant`` ("toolbox": all on, "corrected": all off), then the named quirks switched."""
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        q = cls() if variant == "toolbox" else cls.corrected()
        changes = {}
        for names, value in ((off, False), (on, True)):
            for n in names:
                if n not in cls.names():
                    raise ValueError(f"unknown quirk {n!r} (known: {', '.join(cls.names())})")
                changes[n] = value
        return replace(q, **changes)

    @property
    def variant(self) -> str:
        values = set(asdict(self).values())
        if values == {True}:
            return "toolbox"
        if values == {False}:
            return "corrected"
        return "mixed"

    def describe(self) -> dict:
        return {"variant": self.variant, "quirks": asdict(self)}


VARIANTS = ("toolbox", "corrected")


@dataclass(frozen=True)
class LayerMatch:
    """Selects layers: all given criteria must hold (``types`` / ``names`` empty = any).

    ``upto``: the layer's Caffe index must be <= this bound; a layer *name* is resolved to that
    layer's index when the composite is applied to a net."""

    types: tuple[str, ...] = ()
    upto: int | str | None = None
    names: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "types", tuple(self.types))
        object.__setattr__(self, "names", tuple(self.names))

    def matches(self, index: int | None, layer_type: str, name: str,
                index_of: Callable[[str], int] | None = None) -> bool:
        if self.types and layer_type not in self.types:
            return False
        if self.names and name not in self.names:
            return False
        if self.upto is not None:
            bound = self.upto
            if isinstance(bound, str):
                if index_of is None:
                    raise ValueError(f"LayerMatch(upto={bound!r}) needs the net to resolve the layer name")
                bound = index_of(bound)
            if index is None or index > bound:
                return False
        return True

    def describe(self) -> str:
        parts = []
        if self.types:
            parts.append("|".join(self.types))
        if self.names:
            parts.append("name in " + ",".join(self.names))
        if self.upto is not None:
            parts.append(f"index <= {self.upto}")
        return " and ".join(parts) or "any layer"


class Composite:
    """Ordered ``(LayerMatch, Rule)`` entries over per-type defaults; first match wins."""

    def __init__(self, entries, name: str = "custom", defaults: dict | None = None, params: dict | None = None,
                 quirks: Quirks | None = None):
        self.entries: list[tuple[LayerMatch, Rule]] = [(m, r) for m, r in entries]
        self.name = name
        self.quirks = quirks if quirks is not None else Quirks()
        self.defaults = dict(DEFAULT_RULES if defaults is None else defaults)
        if defaults is None:
            self.defaults["Pooling"] = PoolingRule(ave_rule=AveragePooling(
                "toolbox" if self.quirks.avgpool_near_zero else "uniform"))
            if self.quirks.aux_head_injection:
                self.defaults["Softmax"] = SoftmaxInject()
        self.params = dict(params or {})

    def rule_for(self, index: int | None, layer_type: str, name: str,
                 index_of: Callable[[str], int] | None = None) -> Rule | None:
        for match, rule in self.entries:
            if match.matches(index, layer_type, name, index_of):
                return rule
        return self.defaults.get(layer_type)

    def describe(self) -> dict:
        return {"name": self.name, "params": self.params, **self.quirks.describe(),
                "entries": [{"match": m.describe(), "rule": repr(r)} for m, r in self.entries]}

    def __repr__(self) -> str:
        return f"Composite({self.name!r}, {len(self.entries)} entries, params={self.params})"


def _lrn_rule(lrn: str) -> Rule:
    if lrn == "taylor":
        return LRNTaylor()
    if lrn == "identity":
        return LRNIdentity()
    raise ValueError(f"lrn must be 'taylor' (toolbox lrn_backward_type 1) or 'identity' (type 0), got {lrn!r}")


def _quirks(variant, quirks, flat_mode) -> Quirks:
    q = quirks if isinstance(quirks, Quirks) else Quirks.resolve(variant, off=quirks or ())
    if flat_mode is not None:
        if flat_mode not in ("toolbox", "normalized"):
            raise ValueError(f"flat_mode must be 'toolbox' or 'normalized', got {flat_mode!r}")
        q = replace(q, flat_per_kernel=flat_mode == "toolbox")
    return q


def toolbox_composite(formula: int = 102, flat_upto: int | str | None = 0, eps: float = 0.1,
                      beta: float = 1.0, lrn: str = "taylor", flat_mode: str | None = None,
                      variant: str = "toolbox", quirks=None) -> Composite:
    """The toolbox's ``relpropformulatype``: 0 epsilon, 2 alpha-beta, 100 alpha-beta on Convolution +
    epsilon on InnerProduct, 102 = 100 + Flat up to ``flat_upto``, 104 = 100 + w^2 up to ``flat_upto``.

    ``variant`` "toolbox" copies every toolbox quirk (:class:`Quirks`), "corrected" none;
    ``quirks`` is a :class:`Quirks` or the names of quirks to switch off; ``flat_mode``
    ("toolbox"/"normalized") overrides ``flat_per_kernel``."""
    formula = int(formula)
    q = _quirks(variant, quirks, flat_mode)
    eps_rule, ab_rule = Epsilon(eps), AlphaBeta(1.0 + beta, beta, group0_bias=q.group0_bias)
    entries: list = []
    if formula in (102, 104):
        if flat_upto is not None:
            low = Flat("toolbox" if q.flat_per_kernel else "normalized") if formula == 102 else WSquare()
            entries.append((LayerMatch(types=LEARNABLE, upto=flat_upto), low))
    elif formula not in (0, 2, 100):
        raise ValueError(f"toolbox formula {formula} is not supported (0, 2, 100, 102, 104)")
    if formula == 0:
        entries.append((LayerMatch(types=LEARNABLE), eps_rule))
    elif formula == 2:
        entries.append((LayerMatch(types=LEARNABLE), ab_rule))
    else:
        entries.append((LayerMatch(types=("Convolution", "Deconvolution")), ab_rule))
        entries.append((LayerMatch(types=("InnerProduct",)), eps_rule))
    entries.append((LayerMatch(types=("LRN",)), _lrn_rule(lrn)))
    params = {"formula": formula, "eps": eps, "alpha": 1.0 + beta, "beta": beta, "lrn": lrn}
    if formula in (102, 104):
        params["flat_upto"] = flat_upto
        if formula == 102:
            params["flat_mode"] = "toolbox" if q.flat_per_kernel else "normalized"
    return Composite(entries, name=f"toolbox-{formula}", params=params, quirks=q)


def paper_composite(flat_upto: int | str | None = 0, eps: float = 0.1, beta: float = 1.0,
                    lrn: str = "taylor", flat_mode: str | None = None, variant: str = "toolbox",
                    quirks=None) -> Composite:
    """The paper's recipe (toolbox formula 102); ``flat_upto`` None disables the flat part.
    ``variant="corrected"`` switches every toolbox quirk off (see :class:`Quirks`)."""
    comp = toolbox_composite(102, flat_upto, eps, beta, lrn, flat_mode, variant, quirks)
    comp.name = "paper"
    return comp


def _family(formula, *keys):
    def factory(flat_upto=0, eps=0.1, beta=1.0, lrn="taylor", variant="toolbox", quirks=None, **_):
        return toolbox_composite(formula, flat_upto if formula in (102, 104) else None, eps=eps, beta=beta,
                                 lrn=lrn, variant=variant, quirks=quirks)
    return factory


COMPOSITES: dict[str, Callable[..., Composite]] = {
    "paper": paper_composite,
    "epsilon": _family(0),
    "alpha-beta": _family(2),
    "alpha-beta-epsilon": _family(100),
    "wsquare": _family(104),
}


def get_composite(name: str, **params) -> Composite:
    try:
        factory = COMPOSITES[name]
    except KeyError:
        raise ValueError(f"unknown composite {name!r} (known: {', '.join(sorted(COMPOSITES))})") from None
    comp = factory(**params)
    comp.name = name
    return comp
