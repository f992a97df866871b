"""The backward relevance pass over a :class:`~converters.net.CaffeNet`, layer by Caffe layer.

What it owns:

* **Caffe layer indices** as the paper's tool counts them (:func:`caffe_layer_indices`): every
  layer of the net in prototxt order, the data/``Input`` layers excluded (a top-level ``input:``
  was no layer in the 2015 Caffe of ``lrp_toolbox``, which could not read an ``Input`` layer at all),
  and Caffe's automatically inserted ``Split`` layers counted where Caffe inserts them (right after
  the layer whose top feeds several layers).  So CaffeNet ``conv1`` is 0, GoogLeNet
  ``conv2/3x3_reduce`` is 4, VGG-16 ``pool2`` is 9.
* The forward pass that records, for every layer, the tensors it read and wrote, over the blob
  *versions* of the net's :class:`~converters.graph.ExecutionPlan` (a ReLU's bottom is the
  convolution's output and its top the rectified one).  Only the layers the start layer depends on
  are run.
* The explicit backward walk: the start layer's output is zeroed except the explained class, which
  keeps its score; then each layer, in reverse order, hands its tops' relevance to its rule, and the
  bottoms' relevances are summed over all their consumers (Caffe's implicit Split).  With the quirk
  ``aux_head_injection`` the Softmax layers below the start layer (GoogLeNet's auxiliary heads) are
  walked too and inject their probabilities, as the toolbox's ``Backward_Relevance`` does.

The plan (:func:`make_plan`: :class:`Step` per Caffe layer with blob version ids) is self-contained
data, so another execution plan can replace it without touching the rules.

Knows nothing of Adience or any particular net.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..graph import ExecutionPlan
from .composite import Composite, paper_composite
from .rules import LRPError, Pass


# ---------------------------------------------------------------------------- numbering
def caffe_layer_indices(net_param, numbering_2015: bool = True) -> list[int | None]:
    """Per layer of ``net_param`` (in order): its index in the toolbox's Caffe net, None for inputs
    (:meth:`converters.graph.ExecutionPlan.caffe_layer_indices` without input layers).

    ``numbering_2015=False`` (the corrected variant): the position among the prototxt's non-input
    layers, no automatic Split layers counted."""
    return _indices(ExecutionPlan(net_param), numbering_2015)


def _indices(plan: ExecutionPlan, numbering_2015: bool) -> list[int | None]:
    if numbering_2015:
        return plan.caffe_layer_indices(inputs_as_layers=False)
    out: list[int | None] = []
    k = 0
    for step in plan.steps:
        out.append(None if step.is_input else k)
        k += 0 if step.is_input else 1
    return out


# ---------------------------------------------------------------------------- plan
@dataclass
class Step:
    pos: int                      # position in net_param.layer
    index: int | None             # Caffe (toolbox) layer index
    name: str
    type: str
    module: object
    bottoms: tuple[int, ...]      # blob version ids
    tops: tuple[int, ...]


@dataclass
class Plan:
    steps: list[Step]
    inputs: dict[str, int]        # input blob -> version id
    start: Step
    n_versions: int
    blob_of: list[str] = field(default_factory=list)


def _start_position(layers, start_layer) -> int:
    if start_layer is not None:
        for pos, layer in enumerate(layers):
            if layer.name == start_layer:
                return pos
        for pos in range(len(layers) - 1, -1, -1):
            if start_layer in layers[pos].top:
                return pos
        raise LRPError(f"start layer {start_layer!r}: no layer or top blob of that name in the net")
    for pos in range(len(layers) - 1, -1, -1):    # the toolbox's lastlayerindex -2
        if layers[pos].type == "InnerProduct":
            return pos
    for pos in range(len(layers) - 1, -1, -1):
        if layers[pos].type == "Softmax":
            producers = [p for p in range(pos) if layers[pos].bottom[0] in layers[p].top]
            if producers:
                return producers[-1]
    raise LRPError("the net has no InnerProduct layer and no Softmax to start the relevance from; "
                   "give start_layer")


def make_plan(model, start_layer: str | None = None, numbering_2015: bool = True,
              visit_below: tuple[str, ...] = ()) -> Plan:
    """The layers to run forward and walk back: the net's execution plan (``model.plan``) cut to
    those the start layer depends on, plus the layers of a type in ``visit_below`` that sit below
    the start layer (and what they depend on) -- the toolbox visits every layer below its start
    layer, which matters only for layers that create relevance of their own (Softmax, quirk
    ``aux_head_injection``); with the toolbox's layer numbers and the modules attached."""
    net_plan = model.plan
    layers = list(model.net_param.layer)
    indices = _indices(net_plan, numbering_2015)
    start_pos = _start_position(layers, start_layer)
    if net_plan.steps[start_pos].is_input:
        raise LRPError(f"start layer {layers[start_pos].name!r} is an input")
    steps = [Step(s.position, indices[s.position], s.name, s.type, model.module_at(s.position),
                  s.bottom_versions, s.top_versions) for s in net_plan.ancestors(start_pos, visit_below)]
    return Plan(steps, dict(net_plan.inputs), steps[-1], net_plan.n_versions, list(net_plan.blob_of))


# ---------------------------------------------------------------------------- explain
@dataclass
class Explanation:
    """``relevance`` (the first input's, e.g. (N, C, H, W)), ``record`` (JSON-able dict), every
    input's relevance in ``relevances``, the start layer's output in ``scores``.  Unpacks as
    ``relevance, record = explain(...)``."""

    relevance: torch.Tensor
    record: dict
    relevances: dict = field(default_factory=dict)
    scores: torch.Tensor | None = None
    blob_relevances: dict = field(default_factory=dict)

    def __iter__(self):
        return iter((self.relevance, self.record))


def _per_sample_sum(t: torch.Tensor | None, n: int) -> list[float]:
    if t is None:
        return [0.0] * n
    return [float(v) for v in t.detach().reshape(n, -1).sum(1)]


def _feed(model, x) -> dict:
    names = list(model.input_names)
    if isinstance(x, dict):
        feed = dict(x)
    else:
        if not names:
            raise LRPError("the net declares no input blob")
        feed = {names[0]: x}
    param = next(iter(model.parameters()), None)
    for k, v in list(feed.items()):
        if not isinstance(v, torch.Tensor):
            v = torch.as_tensor(v)
        if param is not None:                    # the model's precision and device
            v = v.to(device=param.device, dtype=param.dtype if v.is_floating_point() else v.dtype)
        feed[k] = v
    return feed


def _targets(target_class, scores: torch.Tensor) -> list[int]:
    n, k = scores.shape[0], scores.shape[1]
    if target_class is None or (isinstance(target_class, str) and target_class == "predicted"):
        return [int(c) for c in scores.argmax(1)]
    if isinstance(target_class, torch.Tensor):
        target_class = target_class.tolist()
    if isinstance(target_class, (int,)) or (hasattr(target_class, "__index__") and not isinstance(target_class, str)):
        targets = [int(target_class)] * n
    else:
        targets = [int(c) for c in target_class]
        if len(targets) != n:
            raise LRPError(f"{len(targets)} target classes for a batch of {n}")
    for c in targets:
        if not 0 <= c < k:
            raise LRPError(f"target class {c} out of range: the start layer has {k} outputs")
    return targets


def explain(model, x, target_class="predicted", composite: Composite | None = None,
            start_layer: str | None = None, layer_relevances: bool = False,
            exact_forward: bool = False) -> Explanation:
    """LRP relevance of ``x`` for ``target_class`` (int, per-sample list, or ``"predicted"``).

    ``composite`` defaults to :func:`paper_composite` (flat on Caffe layer 0 only).  The relevance
    starts at ``start_layer`` (default: the last InnerProduct, as the toolbox's ``lastlayerindex -2``)
    with the explained class's pre-softmax score.  With ``layer_relevances`` the record also keeps
    every blob's relevance tensor (``Explanation.blob_relevances`` by blob name; for in-place
    blobs the relevance of the last write).  By default a convolution explained by alpha-beta
    computes its top as ``z+ + z- + bias`` from the rule's own convolution instead of running the
    layer as well (one convolution less per layer; equal to the layer's output up to float
    rounding, ~1e-7 relative); ``exact_forward=True`` runs every layer's own forward.
    """
    composite = composite or paper_composite()
    quirks = composite.quirks
    plan = make_plan(model, start_layer, quirks.numbering_2015,
                     ("Softmax",) if quirks.aux_head_injection else ())
    feed = _feed(model, x)
    missing = [name for name in plan.inputs if name not in feed]
    if missing:
        raise LRPError(f"missing input blob(s) {missing}; the net's inputs are {list(plan.inputs)}")
    values: list = [None] * plan.n_versions
    for name, vid in plan.inputs.items():
        values[vid] = feed[name]
    all_index = dict(zip((layer.name for layer in model.net_param.layer),
                         _indices(model.plan, quirks.numbering_2015)))

    def index_of(layer_name: str) -> int:
        if layer_name not in all_index or all_index[layer_name] is None:
            raise LRPError(f"composite refers to layer {layer_name!r}, which is not a (non-input) layer of the net")
        return all_index[layer_name]

    # rules first, so a missing rule fails before any computation
    rules = {}
    for step in plan.steps:
        rule = composite.rule_for(step.index, step.type, step.name, index_of)
        if rule is None:
            raise LRPError(f"layer '{step.name}' ({step.type}): composite {composite.name!r} has no rule for "
                           f"this layer type; add one (LayerMatch(types=('{step.type}',)), rule)")
        concrete = rule.for_layer(step.module) if hasattr(rule, "for_layer") else rule
        if step is plan.start and getattr(concrete, "injects", False):
            concrete = Pass()                     # the explained class's score, not the probabilities
        rules[step.pos] = concrete

    states: dict[int, object] = {}
    with torch.no_grad():
        for step in plan.steps:
            xs = [values[v] for v in step.bottoms]
            try:
                fused = (None if exact_forward or step is plan.start
                         else rules[step.pos].forward_with_state(step.module, xs))
                if fused is None:
                    out = step.module(*xs)
                    outs = [out] if isinstance(out, torch.Tensor) else list(out)
                else:
                    outs, states[step.pos] = fused
            except RuntimeError as exc:
                raise LRPError(f"layer '{step.name}' ({step.type}): {exc}") from exc
            for v, o in zip(step.tops, outs):
                values[v] = o

        start = plan.start
        scores = values[start.tops[0]]
        if scores.dim() < 2:
            raise LRPError(f"start layer '{start.name}' output has shape {tuple(scores.shape)}; need (N, classes)")
        flat = scores.reshape(scores.shape[0], -1) if scores.dim() > 2 else scores
        n = flat.shape[0]
        targets = _targets(target_class, flat)
        r0 = torch.zeros_like(flat)
        idx = torch.arange(n)
        r0[idx, targets] = flat[idx, targets]
        start_scores = [float(v) for v in flat[idx, targets].double()]

        rel: dict[int, torch.Tensor] = {start.tops[0]: r0.reshape(scores.shape)}
        layer_log = []
        sums: dict[int, list[float]] = {}
        blob_rel: dict[str, torch.Tensor] = {}
        for step in reversed(plan.steps):
            rs = [rel.pop(v, None) for v in step.tops]
            rule = rules[step.pos]
            if all(r is None for r in rs) and not getattr(rule, "injects", False):
                continue
            xs = [values[v] for v in step.bottoms]
            ys = [values[v] for v in step.tops]
            try:
                rb = rule(step.module, xs, ys, rs, states.pop(step.pos, None))
            except LRPError:
                raise
            except RuntimeError as exc:
                raise LRPError(f"layer '{step.name}' ({step.type}), rule {rule!r}: {exc}") from exc
            total_in = [0.0] * n                  # what the consumers handed down (summed there)
            for v, r in zip(step.tops, rs):
                got = sums.pop(v, None) if r is not None else None
                for i, s in enumerate(got if got is not None else _per_sample_sum(r, n)):
                    total_in[i] += s
            total_out = [0.0] * n
            for v, r in zip(step.bottoms, rb):
                if r is None:
                    continue
                part = _per_sample_sum(r, n)
                for i, s in enumerate(part):
                    total_out[i] += s
                sums[v] = [a + b for a, b in zip(sums[v], part)] if v in sums else part
                rel[v] = rel[v] + r if v in rel else r
            if layer_relevances:
                for v, r in zip(step.tops, rs):
                    if r is not None:
                        blob_rel.setdefault(plan.blob_of[v], r)
            layer_log.append({"index": step.index, "name": step.name, "type": step.type, "rule": repr(rule),
                              "relevance_top": total_in, "relevance_bottom": total_out})
            for v in step.tops:                   # every reader of these tops is done
                values[v] = None

    layer_log.reverse()
    input_rel = {}
    for name, vid in plan.inputs.items():
        r = rel.get(vid)
        input_rel[name] = r if r is not None else torch.zeros_like(feed[name])
    first = next(iter(plan.inputs))
    relevance = input_rel[first]
    sums = _per_sample_sum(relevance, n)
    record = {
        "start_layer": start.name, "start_blob": plan.blob_of[start.tops[0]],
        "start_layer_index": start.index,
        "class_mode": "predicted" if target_class is None or (isinstance(target_class, str)
                                                               and target_class == "predicted") else "given",
        "classes": targets, "start_scores": start_scores,
        "input": first, "input_shape": list(relevance.shape),
        "relevance_sums": sums,
        "leak": [s - r for s, r in zip(start_scores, sums)],
        **quirks.describe(),
        "composite": composite.describe(),
        "layers": layer_log,
    }
    if layer_relevances:
        for name, r in input_rel.items():
            blob_rel.setdefault(name, r)
    return Explanation(relevance, record, input_rel, scores.detach(), blob_rel)
