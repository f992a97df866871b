"""pycaffe's ``Net`` on top of a converted :class:`~converters.net.CaffeNet` (``Blob`` and ``Layer``
live in :mod:`converters.pycaffe.blob`; the steps run are the net's execution plan).

What it owns: the pycaffe object model and Caffe's *memory* semantics, so that scripts written
for pycaffe run unchanged:

* ``net.blobs[name].data`` / ``.diff`` are writable float32 NumPy arrays.  What you write into
  an input blob (``net.blobs['data'].data[...] = x``) is what the next ``forward()`` reads; after
  ``forward()`` every blob holds its value (in-place layers: the last writer's value, as Caffe).
  An array you obtained keeps its identity while the blob keeps its shape (later passes are
  copied into it), as pycaffe's views of Caffe's memory do.  Blobs you never looked at share
  memory with the torch tensors (no copies).
* ``net.params[layer][i].data`` / ``.diff`` are views of the torch parameters and their
  ``.grad``: writes go straight into the model.  (On CUDA they are host mirrors that are copied
  back before the next ``forward``/``backward``, as Caffe's SyncedMemory does.)
* ``forward(blobs=None, start=None, end=None, **inputs)`` and
  ``backward(diffs=None, start=None, end=None, **top_diffs)`` take pycaffe's arguments and
  return the same dicts.  ``backward`` follows Caffe: it runs only when the net has a loss
  (``loss_weight``) or ``force_backward: true``; the seeds are the diffs stored in the output
  blobs (a loss blob's diff is its loss weight, set when the net is built); parameter diffs
  *accumulate* (Caffe's layers add into them; the solver clears them), blob diffs are
  overwritten; an in-place blob's diff is the gradient of its first writer's output (Caffe
  shares the diff memory along the in-place chain); the input blobs get diffs only with
  ``force_backward``; parameters with ``lr_mult: 0`` get none (unless ``force_backward``).
* ``Data`` (LMDB) layers read their source at every ``forward()`` through
  :class:`converters.solver.DataLayer`; other data layers (ImageData, HDF5Data, MemoryData,
  WindowData) are not run: write their tops yourself.

Not reproduced: the copies made by Caffe's automatic ``Split`` layers are not blobs here and the
split layers are not in ``net.layers`` (layer indices of the prototxt are unchanged); Python
layers.
"""
from __future__ import annotations

import os
import warnings
from collections import OrderedDict

import numpy as np
import torch

from ..formats import filter_net, read_net
from ..layers import ConversionError
from ..net import share_trained_layers
from ..layers.data import InputLayer
from ..proto import caffe_pb2 as pb
from . import _mode
from .blob import Blob, Layer, _ParamBlob  # noqa: F401  (Blob, Layer: pycaffe names)

TRAIN = pb.TRAIN
TEST = pb.TEST


def _phase_name(phase) -> str:
    if isinstance(phase, str):
        up = phase.upper()
        if up in ("TRAIN", "TEST"):
            return up
    elif phase in (pb.TRAIN, pb.TEST) and not isinstance(phase, bool):
        return "TRAIN" if int(phase) == pb.TRAIN else "TEST"
    raise ValueError(f"phase must be caffe.TRAIN or caffe.TEST, got {phase!r}")


class _Step:
    """A plan step (:class:`converters.graph.Step`) with its module and module key attached."""

    __slots__ = ("index", "key", "name", "unique_name", "type", "bottoms", "tops", "bottom_versions",
                 "top_versions", "module", "is_input")

    def __init__(self, step, key, module):
        self.index, self.key, self.name, self.type = step.position, key, step.name, step.type
        self.unique_name = step.unique_name
        self.bottoms, self.tops = tuple(step.layer.bottom), step.tops
        self.bottom_versions, self.top_versions = step.bottom_versions, step.top_versions
        self.module = module
        self.is_input = isinstance(module, InputLayer)


def _parse_net_args(args, phase, level, stages, weights):
    """pycaffe's two constructors: ``Net(file, phase, level=0, stages=None, weights=None)`` and the
    deprecated ``Net(file, weights_file, phase)``."""
    args = list(args)
    if args and isinstance(args[0], (str, bytes, os.PathLike)):
        if weights is not None:
            raise TypeError("Net(): weights given twice")
        weights = args.pop(0)
    if args:
        if phase is not None:
            raise TypeError("Net(): phase given twice")
        phase = args.pop(0)
    for name in ("level", "stages", "weights"):
        if not args:
            break
        value = args.pop(0)
        if name == "level":
            level = value
        elif name == "stages":
            stages = value
        else:
            weights = value
    if args:
        raise TypeError("Net() takes (network_file, phase, level=0, stages=None, weights=None) or "
                        "(network_file, weights_file, phase)")
    if phase is None:
        raise TypeError("Net() needs a phase: caffe.TRAIN or caffe.TEST")
    return phase, int(level or 0), tuple(stages or ()), weights


class Net:
    """pycaffe's ``caffe.Net`` on a converted model.

    ``Net(network_file, phase, level=0, stages=None, weights=None)`` or the deprecated
    ``Net(network_file, weights_file, phase)``.  ``network_file`` may also be a
    ``NetParameter``; ``input_shapes`` (extension) gives shapes of input blobs Caffe would
    learn from a data source this package does not run.
    """

    def __init__(self, network_file, *args, phase=None, level=0, stages=None, weights=None,
                 input_shapes=None):
        from ..convert import load_caffe
        from ..solver.data_layer import DATA_LAYER_TYPES, DataLayer

        phase, level, stages, weights = _parse_net_args(args, phase, level, stages, weights)
        phase_name = _phase_name(phase)
        if isinstance(network_file, pb.NetParameter):
            net_param = network_file
        else:
            net_param = read_net(os.fspath(network_file))
        filtered = filter_net(net_param, phase_name, level, stages)
        data_layers = {}
        shapes = {}
        for layer in filtered.layer:
            if layer.type in DATA_LAYER_TYPES:
                dl = DataLayer(layer, phase_name.lower(), None)
                data_layers[layer.name] = dl
                shapes[dl.tops[0]] = dl.shape
                if len(dl.tops) > 1:
                    shapes[dl.tops[1]] = (dl.batch_size,)
        shapes.update({k: tuple(v) for k, v in (input_shapes or {}).items()})
        if weights is not None and not isinstance(weights, pb.NetParameter):
            weights = os.fspath(weights)
        with warnings.catch_warnings():
            # Caffe silently keeps the fillers of layers the caffemodel lacks.
            warnings.filterwarnings("ignore", message=".*no weights for layer")
            model = load_caffe(net_param, weights, phase=phase_name, level=level, stages=stages,
                               input_shapes=shapes or None)
        self._setup(model, data_layers)

    # ------------------------------------------------------------------ construction
    @classmethod
    def _from_model(cls, model, data_layers=None, feed=None, follow_mode: bool = True) -> "Net":
        """Wrap an existing CaffeNet (e.g. a solver's net); ``feed()`` returns input tensors."""
        self = cls.__new__(cls)
        self._setup(model, data_layers or {}, feed=feed, follow_mode=follow_mode)
        return self

    def _setup(self, model, data_layers, feed=None, follow_mode: bool = True):
        self._model = model
        self._phase = pb.TRAIN if model.phase == "TRAIN" else pb.TEST
        self._data_layers = data_layers
        self._feed = feed
        self._follow_mode = follow_mode
        self._dirty: list = []
        self._trace: dict = {}
        self._warned_no_backward = False
        self._steps = [_Step(step, model._keys[step.position], model.module_at(step.position))
                       for step in model.plan.steps]

        self.blobs: "OrderedDict[str, Blob]" = OrderedDict()
        for step in self._steps:
            for t in step.tops:
                if t not in self.blobs:
                    shape = model.blob_shapes[t]
                    fill = 0.0
                    if step.is_input and shape is not None:
                        default = step.module.default(t, shape)
                        if default is not None:
                            fill = float(default.reshape(-1)[0]) if default.numel() else 0.0
                    self.blobs[t] = Blob(shape, fill)
        self.layers = []
        for step in self._steps:
            n = len(getattr(step.module, "blob_names", ()))
            self.layers.append(Layer(step.name, step.type, [_ParamBlob(self, step.module, i) for i in range(n)],
                                     step.module, self._phase))
        self._layer_names = [s.name for s in self._steps]
        self._blob_names = list(self.blobs)
        self.inputs = [t for s in self._steps if s.type == "Input" for t in s.tops]
        self.outputs = list(model.output_names)
        self._force_backward = bool(model.net_param.force_backward)
        self._needs_backward = bool(model.loss_weights) or self._force_backward
        for name, w in model.loss_weights.items():
            # Caffe: a loss top's diff holds its loss weight (Layer::SetLossWeights).
            self.blobs[name]._diff_synced().host().fill(w)
            self.blobs[name]._diff.exposed = False
        self._param_specs = [(name, idx, param, lr_mult) for name, idx, param, lr_mult, _ in model.param_specs()]

    # ------------------------------------------------------------------ pycaffe properties
    @property
    def params(self) -> "OrderedDict[str, list]":
        return OrderedDict((layer.name, layer.blobs) for layer in self.layers if layer.blobs)

    @property
    def layer_dict(self) -> "OrderedDict[str, Layer]":
        return OrderedDict((layer.name, layer) for layer in self.layers)

    @property
    def _blobs(self) -> list:
        return list(self.blobs.values())

    @property
    def blob_loss_weights(self) -> "OrderedDict[str, float]":
        w = self._model.loss_weights
        return OrderedDict((name, float(w.get(name, 0.0))) for name in self.blobs)

    @property
    def _blob_loss_weights(self) -> list:
        return list(self.blob_loss_weights.values())

    @property
    def top_names(self) -> "OrderedDict[str, list]":
        return OrderedDict((s.name, list(s.tops)) for s in self._steps)

    @property
    def bottom_names(self) -> "OrderedDict[str, list]":
        return OrderedDict((s.name, list(s.bottoms)) for s in self._steps)

    @property
    def phase(self) -> int:
        return self._phase

    @property
    def model(self):
        """The underlying :class:`converters.net.CaffeNet` (an ``nn.Module``)."""
        return self._model

    # ------------------------------------------------------------------ helpers
    def _layer_index(self, name: str) -> int:
        try:
            return self._layer_names.index(name)
        except ValueError:
            raise ValueError(f"{name!r} is not a layer of this net") from None

    def _device(self) -> torch.device:
        if not self._follow_mode:
            return next((p.device for p in self._model.parameters()), torch.device("cpu"))
        device = _mode.current_device()
        first = next(iter(self._model.parameters()), None)
        if first is not None and first.device != device:
            self._model.to(device)
            self._trace = {}
        return device

    def _push_dirty(self):
        if self._dirty:
            with torch.no_grad():
                for setter, host in self._dirty:
                    setter(host)
            self._dirty = []

    # ------------------------------------------------------------------ forward
    def forward(self, blobs=None, start=None, end=None, **kwargs) -> dict:
        """pycaffe's Net.forward: run layers ``start``..``end`` (names), return the output blobs.

        ``kwargs`` are input arrays (all of ``net.inputs``, batch-sized); ``blobs`` names extra
        blobs to return.  The returned arrays are the blobs' ``data`` (overwritten by the next pass).
        """
        blobs = list(blobs or [])
        start_ind = 0 if start is None else self._layer_index(start)
        if end is not None:
            end_ind = self._layer_index(end)
            last = [end] if end in self.blobs else list(self._steps[end_ind].tops)
            outputs = set(last + blobs)
        else:
            end_ind = len(self._steps) - 1
            outputs = set(self.outputs + blobs)
        if kwargs:
            if set(kwargs) != set(self.inputs):
                raise ValueError("Input blob arguments do not match net inputs.")
            for name, arr in kwargs.items():
                if np.shape(arr)[0] != self.blobs[name].shape[0]:
                    raise ValueError("Input is not batch sized")
                self.blobs[name].data[...] = arr
        self._forward(start_ind, end_ind)
        return {out: self.blobs[out].data for out in outputs}

    def _input_tensors(self, step, device) -> dict:
        dl = self._data_layers.get(step.name)
        if dl is not None:
            batch = dl.next_batch()
            return {t: batch[t].to(device) for t in step.tops if t in batch}
        return {}

    def _forward(self, start: int, end: int):
        device = self._device()
        self._push_dirty()
        grad = self._needs_backward
        produced: dict = {}
        trace: dict = {}
        fed_cache: dict = {}
        with (torch.enable_grad() if grad else torch.no_grad()):
            for i in range(start, end + 1):
                step = self._steps[i]
                if step.is_input:
                    if self._feed is not None and not self._data_layers:
                        if not fed_cache:
                            fed_cache.update({k: torch.as_tensor(v) for k, v in self._feed().items()})
                        fed = {t: fed_cache[t].to(device) for t in step.tops if t in fed_cache}
                    else:
                        fed = self._input_tensors(step, device)
                    tops = []
                    for t in step.tops:
                        if t in fed:
                            tensor = fed[t].float() if fed[t].is_floating_point() else fed[t]
                            produced[t] = tensor
                        else:
                            tensor = self.blobs[t]._data.as_tensor(device)
                        if grad and self._force_backward and tensor.is_floating_point():
                            tensor = tensor.detach().requires_grad_(True)
                            produced[t] = tensor
                        tops.append(tensor)
                    if grad:
                        trace[i] = ((), tuple(tops))
                    continue
                bottoms = []
                for b in step.bottoms:
                    t = produced.get(b)
                    if t is None:
                        t = self.blobs[b]._data.as_tensor(device)
                    bottoms.append(t)
                try:
                    out = step.module(*bottoms)
                except ConversionError:
                    raise
                except RuntimeError as exc:
                    layer = self._model.net_param.layer[i]
                    raise ConversionError(layer, f"{exc} (bottom shapes "
                                                 f"{[tuple(b.shape) for b in bottoms]})") from exc
                outs = (out,) if isinstance(out, torch.Tensor) else tuple(out)
                for t, o in zip(step.tops, outs):
                    produced[t] = o
                if grad:
                    trace[i] = (tuple(bottoms), outs)
        for name, t in produced.items():
            self.blobs[name]._data.set_tensor(t)
        if grad:
            if start == 0:
                self._trace = trace
            else:
                self._trace.update(trace)

    # ------------------------------------------------------------------ backward
    def backward(self, diffs=None, start=None, end=None, **kwargs) -> dict:
        """pycaffe's Net.backward: back-propagate from layer ``start`` down to ``end``.

        ``kwargs`` are diffs for the output blobs (all of ``net.outputs``); ``diffs`` names extra
        blobs whose diffs are returned (by default the input blobs').
        """
        diffs = list(diffs or [])
        start_ind = len(self._steps) - 1 if start is None else self._layer_index(start)
        if end is not None:
            end_ind = self._layer_index(end)
            first = [end] if end in self.blobs else list(self._steps[end_ind].bottoms or self._steps[end_ind].tops)
            outputs = set(first + diffs)
        else:
            end_ind = 0
            outputs = set(self.inputs + diffs)
        if kwargs:
            if set(kwargs) != set(self.outputs):
                raise ValueError("Top diff arguments do not match net outputs.")
            for top, diff in kwargs.items():
                if np.shape(diff)[0] != self.blobs[top].shape[0]:
                    raise ValueError("Diff is not batch sized")
                self.blobs[top].diff[...] = diff
        self._backward(start_ind, end_ind)
        return {out: self.blobs[out].diff for out in outputs}

    def _backward(self, start: int, end: int):
        if not self._needs_backward:
            if not self._warned_no_backward:
                warnings.warn("this net has no loss and no 'force_backward: true': Caffe computes no "
                              "gradients (add force_backward: true to the prototxt to get diffs)",
                              RuntimeWarning, stacklevel=3)
                self._warned_no_backward = True
            return
        if not self._trace:
            raise RuntimeError("backward() needs a forward() pass first")
        device = self._device()
        self._push_dirty()
        # Over the plan's blob versions: a blob's diff is the gradient of the first version the
        # range reads or writes (Caffe shares the diff memory along an in-place chain); the seeds
        # are the versions the range writes and no later step of the range reads.
        first_seen: dict = {}
        pending: dict = {}
        for i in range(end, start + 1):
            if i not in self._trace:
                continue
            step = self._steps[i]
            bottoms, tops = self._trace[i]
            for name, v, t in zip(step.bottoms, step.bottom_versions, bottoms):
                first_seen.setdefault(name, t)
                pending.pop(v, None)
            for name, v, t in zip(step.tops, step.top_versions, tops):
                first_seen.setdefault(name, t)
                pending[v] = (name, t)
        seeds, seed_grads = [], []
        for name, t in pending.values():
            if t.requires_grad and t.is_floating_point():
                blob = self.blobs[name]
                seeds.append(t)
                seed_grads.append(blob._diff_synced().as_tensor(device).reshape(t.shape).to(t.dtype))
        if not seeds:
            return
        in_range = {self._steps[i].unique_name for i in range(end, start + 1)}
        params = [p for name, _, p, lr in self._param_specs
                  if name in in_range and p.requires_grad and (lr != 0 or self._force_backward)]
        blob_names = [n for n, t in first_seen.items() if t.requires_grad and t.is_floating_point()]
        wanted = params + [first_seen[n] for n in blob_names]
        grads = torch.autograd.grad(seeds, wanted, seed_grads, retain_graph=True, allow_unused=True)
        with torch.no_grad():
            for p, g in zip(params, grads[:len(params)]):
                if g is None:
                    continue
                if p.grad is None:
                    p.grad = g.detach().clone()
                else:
                    p.grad.add_(g)
        for name, g in zip(blob_names, grads[len(params):]):
            if g is not None:
                self.blobs[name]._diff_synced().set_tensor(g.detach())

    def clear_param_diffs(self):
        """Caffe's Net::ClearParamDiffs: zero every parameter diff."""
        with torch.no_grad():
            for _, _, p, _ in self._param_specs:
                if p.grad is not None:
                    p.grad.zero_()

    # ------------------------------------------------------------------ batches
    def _batch(self, arrays: dict):
        num = len(next(iter(arrays.values())))
        batch_size = next(iter(self.blobs.values())).shape[0]
        full, rest = divmod(num, batch_size)
        for b in range(full):
            i = b * batch_size
            yield {name: arr[i:i + batch_size] for name, arr in arrays.items()}
        if rest:
            padded = {}
            for name, arr in arrays.items():
                arr = np.asarray(arr)
                pad = np.zeros((batch_size - rest,) + arr.shape[1:], dtype=arr.dtype)
                padded[name] = np.concatenate([arr[-rest:], pad])
            yield padded

    def forward_all(self, blobs=None, **kwargs) -> dict:
        """pycaffe's forward_all: run any number of inputs through in net-sized (zero-padded) batches."""
        names = set(self.outputs + list(blobs or []))
        collected = {out: [] for out in names}
        for batch in self._batch(kwargs):
            outs = self.forward(blobs=blobs, **batch)
            for out, arr in outs.items():
                collected[out].extend(arr.copy())
        result = {out: np.asarray(v) for out, v in collected.items()}
        n = len(next(iter(kwargs.values())))
        return {out: arr[:n] for out, arr in result.items()}

    def forward_backward_all(self, blobs=None, diffs=None, **kwargs):
        """pycaffe's forward_backward_all: forward on input batches, backward on output-diff batches."""
        all_outs = {out: [] for out in set(self.outputs + list(blobs or []))}
        all_diffs = {d: [] for d in set(self.inputs + list(diffs or []))}
        forward_batches = self._batch({k: v for k, v in kwargs.items() if k in self.inputs})
        backward_batches = self._batch({k: v for k, v in kwargs.items() if k in self.outputs})
        for fb, bb in zip(forward_batches, backward_batches):
            batch_blobs = self.forward(blobs=blobs, **fb)
            batch_diffs = self.backward(diffs=diffs, **bb)
            for out, arr in batch_blobs.items():
                all_outs[out].extend(arr.copy())
            for d, arr in batch_diffs.items():
                all_diffs[d].extend(arr.copy())
        n = len(next(iter(kwargs.values())))
        return ({k: np.asarray(v)[:n] for k, v in all_outs.items()},
                {k: np.asarray(v)[:n] for k, v in all_diffs.items()})

    # ------------------------------------------------------------------ shapes and weights
    def reshape(self):
        """Caffe's Net::Reshape: recompute every blob shape from the input blobs' shapes."""
        from ..convert import infer_shapes

        shapes = {}
        for step in self._steps:
            if step.is_input:
                for t in step.tops:
                    shapes[t] = self.blobs[t].shape
        new = infer_shapes(self._model.net_param, shapes)
        for name, blob in self.blobs.items():
            if name in shapes:
                continue
            shape = new.get(name)
            if shape is not None and tuple(shape) != blob.shape:
                blob._data.tensor = None
                blob._data.array = np.zeros(tuple(shape), dtype=np.float32)
                blob._data.head = "array"
                if blob._diff is not None:
                    blob._diff.reshape(shape)

    def copy_from(self, path):
        """Caffe's Net::CopyTrainedLayersFrom: load a caffemodel's blobs by layer name."""
        from ..caffemodel import copy_trained_layers

        copy_trained_layers(self._model, path if isinstance(path, pb.NetParameter) else os.fspath(path))

    def save(self, path):
        """Write the weights as a caffemodel (Caffe's Net::ToProto + WriteProtoToBinaryFile)."""
        from ..convert import save_caffemodel

        self._push_dirty()
        save_caffemodel(self._model, os.fspath(path))

    def share_with(self, other: "Net"):
        """Caffe's ShareTrainedLayersWith: use ``other``'s parameter memory for same-named layers."""
        try:
            share_trained_layers(self._model, other._model)
        except ConversionError as exc:
            raise ValueError(str(exc)) from None

    def __repr__(self):
        return (f"<caffe Net {self._model.net_param.name!r} ({'TRAIN' if self._phase == TRAIN else 'TEST'}), "
                f"{len(self.layers)} layers, inputs {self.inputs}, outputs {self.outputs}>")
