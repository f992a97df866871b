"""``CaffeNet``: a Caffe net (already filtered for its NetState) as a ``torch.nn.Module``.

What it owns: Caffe's net assembly rules (Net::Init), not any single layer's maths (those live in
:mod:`converters.layers`):
* layers run in prototxt order over a dictionary of named blobs;
* a top equal to the bottom at the same index is in-place: the name is rebound to the new value
  (``conv1`` after ``relu1`` holds the rectified values, as in Caffe);
* a blob feeding several layers is reused (Caffe's implicit Split; autograd sums the gradients);
* the net's outputs are the blobs never consumed by a later layer, in Caffe's (sorted) order;
* data-family layers are inputs; a loss layer's top 0 has loss weight 1 unless ``loss_weight``
  says otherwise; parameters named in ``param { name: ... }`` are shared, as Caffe does.
Shapes are computed by the converters from the declared input shapes (``blob_shapes``); at call
time every layer works from the actual input, so another batch size just works.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from .graph import AUTO_TOP, LOSS_SUFFIX, ExecutionPlan, plan_params, with_automatic_tops  # noqa: F401
from .layers import ConversionError, check_supported, get_converter
from .layers.base import check_blob_shape
from .layers.data import InputLayer
from .layers.registry import semantics as layer_semantics
from .proto import caffe_pb2 as pb

def phase_name(phase) -> str:
    if isinstance(phase, str):
        up = phase.upper()
        if up not in ("TRAIN", "TEST"):
            raise ValueError(f"phase must be 'train' or 'test', got {phase!r}")
        return up
    return "TRAIN" if phase == pb.TRAIN else "TEST"


def share_trained_layers(net, other) -> None:
    """Caffe's Net::ShareTrainedLayersWith: every parameter blob of a same-named layer of ``other``
    becomes ``net``'s (the same memory, so an update of one is seen by both).  Works on any nets
    with ``param_specs()`` (CaffeNet's: ``(layer, blob index, param, lr_mult, decay_mult)``); a shape
    mismatch is a ConversionError naming the layer and both shapes."""
    theirs = {(name, idx): param for name, idx, param, _, _ in other.param_specs()}
    for name, idx, param, _, _ in net.param_specs():
        src = theirs.get((name, idx))
        if src is None:
            continue
        if tuple(src.shape) != tuple(param.shape):
            raise ConversionError(name, f"blob {idx}: shape {tuple(param.shape)} differs from the other net's "
                                        f"{tuple(src.shape)}")
        param.data = src.data


def _module_key(name: str, taken) -> str:
    base = name.replace(".", "_") or "layer"
    key, k = base, 1
    while key in taken or hasattr(nn.ModuleDict, key):
        k += 1
        key = f"{base}#{k}"
    return key


class ParamSpec(NamedTuple):
    """One learnable blob in Caffe's learnable-param order: the owning layer's (unique) name, the
    blob's index in it, the ``nn.Parameter`` and its effective ``lr_mult`` and ``decay_mult``."""

    layer: str
    blob_index: int
    param: nn.Parameter
    lr_mult: float
    decay_mult: float


class CaffeNet(nn.Module):
    """A converted Caffe net.  Build it with :func:`converters.load_caffe`.

    Attributes: ``plan`` (the :class:`~converters.graph.ExecutionPlan` every walker of the net
    follows), ``net_param`` (the filtered NetParameter), ``phase`` (``"TRAIN"``/``"TEST"``),
    ``input_names``, ``input_shapes``, ``output_names``, ``blob_shapes``, ``loss_weights``,
    ``caffe_layers`` (layer name -> module), ``missing_weights`` (layers left at their fillers).
    """

    def __init__(self, net_param: pb.NetParameter, input_shapes: dict | None = None,
                 semantics: str = "fork"):
        super().__init__()
        # ``semantics``: "fork" (each fork layer as the fork that defined it) or "opencv" (OpenCV 4's
        # dnn where it deviates); see converters.layers.registry.semantics and docs/layers.md.
        with layer_semantics(semantics):
            self._build(net_param, input_shapes)
        self.semantics = semantics

    def _build(self, net_param: pb.NetParameter, input_shapes: dict | None):
        self.phase = phase_name(net_param.state.phase)
        check_supported(net_param.layer, net_param.name)
        self.plan = plan = ExecutionPlan(net_param)
        self.net_param = net_param = plan.net_param
        overrides = {k: tuple(int(d) for d in v) for k, v in (input_shapes or {}).items()}
        self.layers = nn.ModuleDict()
        self._keys: list[str] = []              # module key per plan step
        self.input_names: list[str] = []
        self.input_shapes: dict[str, tuple] = {}
        self._input_layers: dict[str, InputLayer] = {}
        self.loss_weights: dict[str, float] = dict(plan.loss_weights)
        self.missing_weights: list[str] = []
        self.input_memory_format = None
        shapes: dict[str, tuple] = {}
        for step in plan.steps:
            layer = step.layer
            convert = get_converter(layer.type)
            module, tops = convert(layer, [shapes[b] for b in layer.bottom], self.phase)
            if len(tops) != len(layer.top):
                raise ConversionError(layer, f"converter gave {len(tops)} top shapes for {len(layer.top)} tops")
            if step.is_input:
                tops = list(tops)
                for i, t in enumerate(layer.top):
                    if t in overrides:
                        tops[i] = overrides[t]
                    if tops[i] is None:
                        raise ConversionError(layer, f"the shape of input blob '{t}' is unknown (it comes from "
                                                     f"the data source); pass input_shapes={{'{t}': (N, C, H, W)}}")
                    self.input_names.append(t)
                    self.input_shapes[t] = tuple(tops[i])
                    self._input_layers[t] = module
            for t, s in zip(layer.top, tops):
                if s is not None:
                    # Blob::Reshape's checks: dims >= 0, at most INT_MAX values
                    check_blob_shape(layer, s, f"top blob '{t}'")
            key = _module_key(step.unique_name, self.layers)
            self.layers[key] = module
            self._keys.append(key)
            for t, s in zip(layer.top, tops):
                shapes[t] = tuple(s)
        unknown = sorted(set(overrides) - set(self.input_names))
        if unknown:
            raise ConversionError(None, f"net '{net_param.name}': input_shapes names {unknown}, which are not "
                                        f"input blobs (the inputs are {self.input_names})")
        for step, key in zip(plan.steps, self._keys):   # never modify a caller's input tensor in place
            if hasattr(self.layers[key], "inplace") and any(b in self._input_layers for b in step.bottoms):
                self.layers[key].inplace = False
        self.blob_shapes: dict[str, tuple] = shapes
        self.output_names: list[str] = list(plan.outputs)
        self._share_params()
        self._compile()

    # ------------------------------------------------------------------ construction helpers
    def module_at(self, position: int) -> nn.Module:
        """The module of the plan step at ``position``."""
        return self.layers[self._keys[position]]

    def _share_params(self):
        """Caffe's AppendParam (planned by :func:`converters.graph.plan_params`): named params are
        tied to their owner's memory; the learnable-param order and rates."""
        modules = [self.module_at(step.position) for step in self.plan.steps]
        blob_names = [tuple(getattr(m, "blob_names", ())) for m in modules]
        params, shares = plan_params(self.plan, [len(b) for b in blob_names],
                                     [getattr(m, "blob_lr_default", ()) for m in modules])
        for share in shares:
            owner = params[share.owner]
            owner_param = getattr(modules[owner.position], blob_names[owner.position][owner.blob_index])
            module = modules[share.position]
            attr = blob_names[share.position][share.blob_index]
            mine = getattr(module, attr)
            layer = self.plan.steps[share.position].layer
            if (tuple(owner_param.shape) != tuple(mine.shape)) if share.strict else (owner_param.numel() != mine.numel()):
                raise ConversionError(layer, f"cannot share param '{share.name}' owned by layer '{owner.layer}': "
                                             f"owner shape {tuple(owner_param.shape)}, this layer's "
                                             f"{tuple(mine.shape)}")
            if tuple(owner_param.shape) != tuple(mine.shape):
                raise ConversionError(layer, f"PERMISSIVE sharing of param '{share.name}' with a different "
                                             f"shape ({tuple(owner_param.shape)} vs {tuple(mine.shape)}) "
                                             f"is not supported")
            setattr(module, attr, owner_param)
        self.learnable = params
        self._specs = [(p.layer, p.blob_index, self._keys[p.position], blob_names[p.position][p.blob_index],
                        p.lr_mult, p.decay_mult) for p in params]

    def _compile(self):
        """The plan as the flat tuples forward() runs over (no attribute lookups per layer)."""
        self._steps = [(key, step.bottoms, step.tops) for key, step in zip(self._keys, self.plan.steps)]
        self._frees = [step.frees for step in self.plan.steps]

    # ------------------------------------------------------------------ introspection
    @property
    def caffe_layers(self) -> "OrderedDict[str, nn.Module]":
        return OrderedDict((step.unique_name, self.layers[key]) for step, key in zip(self.plan.steps, self._keys))

    def param_specs(self):
        """:class:`ParamSpec` ``(layer, blob_index, param, lr_mult, decay_mult)`` in Caffe's
        learnable-param order (shared blobs once, at their owner)."""
        for name, i, key, attr, lr, decay in self._specs:
            yield ParamSpec(name, i, getattr(self.layers[key], attr), lr, decay)

    # ------------------------------------------------------------------ running
    def _inputs(self, args, kwargs) -> dict:
        if args and kwargs:
            raise TypeError("pass the inputs either positionally or by name, not both")
        if len(args) > 1:
            raise TypeError("pass one tensor (single-input net) or one dict name -> tensor")
        if args:
            x = args[0]
            if isinstance(x, dict):
                feed = dict(x)
            else:
                if len(self.input_names) != 1:
                    raise TypeError(f"this net has {len(self.input_names)} inputs {self.input_names}; "
                                    f"pass a dict name -> tensor")
                feed = {self.input_names[0]: x}
        else:
            feed = dict(kwargs)
        unknown = [k for k in feed if k not in self._input_layers]
        if unknown:
            raise KeyError(f"unknown input blob(s) {unknown}; the net's inputs are {self.input_names}")
        for name in self.input_names:
            if name not in feed:
                default = self._input_layers[name].default(name, self.input_shapes[name])
                if default is None:
                    raise KeyError(f"missing input blob '{name}' (the net's inputs are {self.input_names})")
                feed[name] = default
        for k, v in feed.items():
            if not isinstance(v, torch.Tensor):
                v = feed[k] = torch.as_tensor(np.asarray(v, dtype=np.float32))
            if self.input_memory_format is not None and v.dim() == 4:
                feed[k] = v.contiguous(memory_format=self.input_memory_format)
        return feed

    def use_channels_last(self, enabled: bool = True) -> "CaffeNet":
        """Run convolutions in channels-last memory layout (faster on CPU, same values).

        Converts the 4-D parameters and makes ``forward`` convert 4-D inputs; Caffe's index
        order of every blob is unchanged (only the memory layout differs).
        """
        fmt = torch.channels_last if enabled else torch.contiguous_format
        self.to(memory_format=fmt)
        self.input_memory_format = torch.channels_last if enabled else None
        return self

    def _run(self, blobs: dict, free: bool) -> dict:
        layers = self.layers
        for step, ((key, bottoms, tops), frees) in enumerate(zip(self._steps, self._frees)):
            if not bottoms and isinstance(layers[key], InputLayer):
                continue
            try:
                out = layers[key](*[blobs[b] for b in bottoms])
            except ConversionError:
                raise
            except RuntimeError as exc:
                layer = self.net_param.layer[step]
                raise ConversionError(layer, f"{exc} (bottom shapes "
                                             f"{[tuple(blobs[b].shape) for b in bottoms]})") from exc
            if isinstance(out, torch.Tensor):
                blobs[tops[0]] = out
            else:
                for t, o in zip(tops, out):
                    blobs[t] = o
            if free:
                for b in frees:
                    del blobs[b]
        return blobs

    def forward_blobs(self, inputs: dict | None = None, **kwargs) -> dict:
        """Every blob of the net after the forward pass (Caffe's ``net.blobs``, in-place writers applied)."""
        feed = self._inputs((inputs,) if inputs is not None else (), kwargs)
        return self._run(feed, free=False)

    def forward(self, *args, **kwargs):
        """The output blob (a tensor), or a dict name -> tensor when the net has several outputs."""
        blobs = self._run(self._inputs(args, kwargs), free=True)
        if len(self.output_names) == 1:
            return blobs[self.output_names[0]]
        return {name: blobs[name] for name in self.output_names}

    def total_loss(self, blobs: dict) -> torch.Tensor:
        """Caffe's net loss: ``sum over weighted tops of weight * sum(top)``."""
        total = None
        for name, w in self.loss_weights.items():
            term = blobs[name].sum() * w
            total = term if total is None else total + term
        if total is None:
            return torch.zeros(())
        return total

    def extra_repr(self) -> str:
        return (f"name={self.net_param.name!r}, phase={self.phase}, inputs={self.input_shapes}, "
                f"outputs={self.output_names}")
