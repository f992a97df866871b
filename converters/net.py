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

import numpy as np
import torch
from torch import nn

from .layers import ConversionError, check_supported, get_converter, is_input_type
from .layers.base import check_blob_shape
from .layers.data import InputLayer
from .layers.registry import semantics as layer_semantics
from .proto import caffe_pb2 as pb

LOSS_SUFFIX = "Loss"


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


AUTO_TOP = "(automatic)"


def with_automatic_tops(net_param: pb.NetParameter) -> pb.NetParameter:
    """Caffe's ``AutoTopBlobs``: a loss layer written without a ``top`` still gets one (an anonymous
    blob Caffe names ``(automatic)``), so its loss counts (the VGG train_vals' ``loss`` layer).
    Returns ``net_param`` itself when no layer needs one, else a copy with the tops spelled out."""
    needs = [i for i, layer in enumerate(net_param.layer)
             if not len(layer.top) and layer.type.endswith(LOSS_SUFFIX)]
    if not needs:
        return net_param
    out = pb.NetParameter()
    out.CopyFrom(net_param)
    for n, i in enumerate(needs):
        out.layer[i].top.append(AUTO_TOP if n == 0 else f"{AUTO_TOP}#{n + 1}")
    return out


def _module_key(name: str, taken) -> str:
    base = name.replace(".", "_") or "layer"
    key, k = base, 1
    while key in taken or hasattr(nn.ModuleDict, key):
        k += 1
        key = f"{base}#{k}"
    return key


class CaffeNet(nn.Module):
    """A converted Caffe net.  Build it with :func:`converters.load_caffe`.

    Attributes: ``net_param`` (the filtered NetParameter), ``phase`` (``"TRAIN"``/``"TEST"``),
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
        self.net_param = net_param = with_automatic_tops(net_param)
        self.phase = phase_name(net_param.state.phase)
        overrides = {k: tuple(int(d) for d in v) for k, v in (input_shapes or {}).items()}
        check_supported(net_param.layer, net_param.name)
        self.layers = nn.ModuleDict()
        self._names: list[str] = []            # caffe layer name (made unique) per step
        self._steps: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = []
        self.input_names: list[str] = []
        self.input_shapes: dict[str, tuple] = {}
        self._input_layers: dict[str, InputLayer] = {}
        self.loss_weights: dict[str, float] = {}
        self.missing_weights: list[str] = []
        self.input_memory_format = None
        shapes: dict[str, tuple] = {}
        available: dict[str, None] = {}
        seen_names: set[str] = set()
        for layer in net_param.layer:
            bottoms = tuple(layer.bottom)
            for i, b in enumerate(bottoms):
                if b not in shapes:
                    raise ConversionError(layer, f"unknown bottom blob '{b}' (bottom index {i})")
            for i, t in enumerate(layer.top):
                in_place = i < len(bottoms) and bottoms[i] == t
                if t in shapes and not in_place:
                    raise ConversionError(layer, f"top blob '{t}' produced by multiple sources")
            convert = get_converter(layer.type)
            module, tops = convert(layer, [shapes[b] for b in bottoms], self.phase)
            if len(tops) != len(layer.top):
                raise ConversionError(layer, f"converter gave {len(tops)} top shapes for {len(layer.top)} tops")
            if is_input_type(layer.type):
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
            name = layer.name
            if name in seen_names:
                k = 2
                while f"{name}#{k}" in seen_names:
                    k += 1
                name = f"{name}#{k}"
            seen_names.add(name)
            key = _module_key(name, self.layers)
            self.layers[key] = module
            self._names.append(name)
            self._steps.append((key, () if is_input_type(layer.type) else bottoms, tuple(layer.top)))
            for b in bottoms:
                available.pop(b, None)
            for t, s in zip(layer.top, tops):
                shapes[t] = tuple(s)
                available[t] = None
            self._set_loss_weights(layer)
        unknown = sorted(set(overrides) - set(self.input_names))
        if unknown:
            raise ConversionError(None, f"net '{net_param.name}': input_shapes names {unknown}, which are not "
                                        f"input blobs (the inputs are {self.input_names})")
        for key, bottoms, _ in self._steps:        # never modify a caller's input tensor in place
            if hasattr(self.layers[key], "inplace") and any(b in self._input_layers for b in bottoms):
                self.layers[key].inplace = False
        self.blob_shapes: dict[str, tuple] = shapes
        self.output_names: list[str] = sorted(available)    # Caffe keeps them in a std::set
        self._share_and_spec()
        self._plan_frees()

    # ------------------------------------------------------------------ construction helpers
    def _set_loss_weights(self, layer):
        if len(layer.loss_weight) and len(layer.loss_weight) != len(layer.top):
            raise ConversionError(layer, f"loss_weight must be unspecified or specified once per top blob "
                                         f"({len(layer.top)}), got {len(layer.loss_weight)}")
        for i, t in enumerate(layer.top):
            if len(layer.loss_weight):
                w = float(layer.loss_weight[i])
            else:
                w = 1.0 if (layer.type.endswith(LOSS_SUFFIX) and i == 0) else 0.0
            if w != 0.0:
                self.loss_weights[t] = w

    def _share_and_spec(self):
        """Caffe's AppendParam: named params are shared (owner first); learnable-param order and rates."""
        owners: dict[str, int] = {}
        specs: list[list] = []       # [layer name, blob index, module key, attr, lr, decay, has_lr, has_decay]
        for (key, _, _), name, layer in zip(self._steps, self._names, self.net_param.layer):
            module = self.layers[key]
            for i, attr in enumerate(getattr(module, "blob_names", ())):
                spec = layer.param[i] if i < len(layer.param) else None
                default_lr = module.blob_lr_default[i]
                lr = spec.lr_mult if spec is not None and spec.HasField("lr_mult") else (
                    default_lr if default_lr is not None else 1.0)
                decay = spec.decay_mult if spec is not None else 1.0
                has_lr = (spec is not None and spec.HasField("lr_mult")) or default_lr is not None
                has_decay = spec is not None and spec.HasField("decay_mult")
                pname = spec.name if spec is not None else ""
                if not pname or pname not in owners:
                    if pname:
                        owners[pname] = len(specs)
                    specs.append([name, i, key, attr, lr, decay, has_lr, has_decay])
                    continue
                owner = specs[owners[pname]]
                owner_param = getattr(self.layers[owner[2]], owner[3])
                mine = getattr(module, attr)
                strict = spec.share_mode != pb.ParamSpec.PERMISSIVE
                if (tuple(owner_param.shape) != tuple(mine.shape)) if strict else (owner_param.numel() != mine.numel()):
                    raise ConversionError(layer, f"cannot share param '{pname}' owned by layer '{owner[0]}': "
                                                 f"owner shape {tuple(owner_param.shape)}, this layer's "
                                                 f"{tuple(mine.shape)}")
                if tuple(owner_param.shape) != tuple(mine.shape):
                    raise ConversionError(layer, f"PERMISSIVE sharing of param '{pname}' with a different "
                                                 f"shape ({tuple(owner_param.shape)} vs {tuple(mine.shape)}) "
                                                 f"is not supported")
                setattr(module, attr, owner_param)
                if spec.HasField("lr_mult"):
                    if owner[6] and owner[4] != spec.lr_mult:
                        raise ConversionError(layer, f"shared param '{pname}' has mismatched lr_mult")
                    owner[4], owner[6] = spec.lr_mult, True
                if spec.HasField("decay_mult"):
                    if owner[7] and owner[5] != spec.decay_mult:
                        raise ConversionError(layer, f"shared param '{pname}' has mismatched decay_mult")
                    owner[5], owner[7] = spec.decay_mult, True
        self._specs = [tuple(s[:6]) for s in specs]

    def _plan_frees(self):
        """For forward(): after which step each intermediate blob can be dropped."""
        last_read: dict[str, int] = {}
        for i, (_, bottoms, _) in enumerate(self._steps):
            for b in bottoms:
                last_read[b] = i
        keep = set(self.output_names)
        self._frees = []
        for i, (_, bottoms, tops) in enumerate(self._steps):
            self._frees.append(tuple(b for b in dict.fromkeys(bottoms)
                                     if last_read.get(b) == i and b not in tops and b not in keep))

    # ------------------------------------------------------------------ introspection
    @property
    def caffe_layers(self) -> "OrderedDict[str, nn.Module]":
        return OrderedDict((name, self.layers[key]) for name, (key, _, _) in zip(self._names, self._steps))

    def param_specs(self):
        """``(layer_name, blob_index, param, lr_mult, decay_mult)`` in Caffe's learnable-param order."""
        for name, i, key, attr, lr, decay in self._specs:
            yield name, i, getattr(self.layers[key], attr), lr, decay

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
