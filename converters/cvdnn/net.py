"""``Net``: OpenCV 4's ``cv2.dnn.Net`` API over a converted Caffe net (:class:`converters.net.CaffeNet`).

What it owns: OpenCV's view of a Caffe net, as ``caffe_importer.cpp`` and ``net.cpp`` build it
(checked against OpenCV 4.14 on probe nets):

* input layers (``input:`` fields, ``Input`` layers) are not layers: they are OpenCV's layer 0,
  ``_input``; every other Caffe layer is one OpenCV layer, ids 1, 2, ... in prototxt order;
* a ``Convolution`` layer is named after its **top** blob; a layer name already used by an earlier
  layer gets ``_1``, ``_2``, ... (the earlier layers' Caffe names count, even a renamed convolution's);
* each layer has its own outputs: ``forward("conv1")`` is the value before an in-place ``relu1``;
* ``forward()`` returns output 0 of the **last** layer; ``forward(name)`` output 0 of that layer;
  ``forward([names])`` a tuple of them; ``forwardAndRetrieve`` all outputs of each named layer;
* ``getUnconnectedOutLayers`` lists the layers none of whose outputs another layer reads;
* ``setInput(blob, name, scalefactor, mean)`` feeds ``(blob - mean[c]) * scalefactor`` (float32).

The maths of every layer is the converter's, built with ``semantics="opencv"`` (OpenCV 4's rules
where it deviates from a fork: DetectionOutput always ``[1, 1, keep_top_k * N, 7]`` zero-padded,
PriorBox ``clip`` default true, ...; see :mod:`converters.layers.registry`).
"""
from __future__ import annotations

import time
import warnings

import numpy as np

from . import constants as C
from .errors import CvdnnError

_INPUT_TYPES = ("Input", "Data", "ImageData", "MemoryData", "HDF5Data", "WindowData", "DummyData",
                "AnnotatedData", "Python")


class _Stop(Exception):
    """Raised by a forward hook once every requested layer output is known (OpenCV stops there too)."""


def opencv_layer_table(net_param):
    """``[(opencv_name, caffe_index, caffe_layer)]`` for the layers OpenCV adds, in order."""
    table, counts = [], {}
    for i, layer in enumerate(net_param.layer):
        if layer.type in _INPUT_TYPES:
            continue
        name = layer.name
        if name in counts:
            counts[name] += 1
            name = f"{name}_{counts[layer.name]}"
        else:
            counts[name] = 0
        if layer.type in ("Convolution", "ConvolutionDepthwise") and len(layer.top):
            name = layer.top[0]
        table.append((name, i, layer))
    return table


def _module_key_of(model, caffe_name: str) -> str:
    """The key of a Caffe layer's module in ``model.layers`` (state_dict keys start with it)."""
    module = model.caffe_layers[caffe_name]
    return next(k for k, m in model.layers.items() if m is module)


class Layer:
    """What ``Net.getLayer`` returns: the name, the type and the Caffe layer behind it."""

    def __init__(self, name: str, type_: str, caffe_name: str | None = None):
        self.name, self.type, self.caffe_name = name, type_, caffe_name

    def __repr__(self):
        return f"<cvdnn Layer {self.name!r} ({self.type})>"


class Net:
    """A Caffe net behind OpenCV 4's ``cv2.dnn.Net`` methods.  ``Net()`` is an empty net."""

    def __init__(self, model=None, source: str = "<net>"):
        self._model = model
        self._source = source
        self._by_shape = {}
        self._inputs: dict[str, np.ndarray] = {}
        self._device = "cpu"
        self._backend, self._target = C.DNN_BACKEND_DEFAULT, C.DNN_TARGET_CPU
        self._times: list[int] = []
        self._table = []
        if model is not None:
            self._table = opencv_layer_table(model.net_param)
            self._caffe_names = list(model.caffe_layers)        # unique names, in prototxt order
            self._ids = {name: k + 1 for k, (name, _, _) in enumerate(self._table)}
            self._by_shape[tuple(sorted(model.input_shapes.items()))] = model

    # ------------------------------------------------------------------ introspection
    def empty(self) -> bool:
        return self._model is None or not self._table

    def _need(self):
        if self._model is None:
            raise CvdnnError("cvdnn: the net is empty (load one with readNetFromCaffe)")

    def getLayerNames(self) -> tuple:  # noqa: N802
        return tuple(name for name, _, _ in self._table)

    def getLayerId(self, name: str) -> int:  # noqa: N802
        return self._ids.get(name, -1) if self._model is not None else -1

    def getLayer(self, layer) -> Layer:  # noqa: N802
        self._need()
        lid = layer if isinstance(layer, (int, np.integer)) else self.getLayerId(layer)
        if lid == 0:
            return Layer("_input", "")
        if not 0 < lid <= len(self._table):
            raise CvdnnError(f"cvdnn: no layer {layer!r} in {self._source}")
        name, i, caffe = self._table[lid - 1]
        return Layer(name, caffe.type, self._caffe_names[i])

    def getLayersCount(self, layerType: str) -> int:  # noqa: N802,N803
        return sum(1 for _, _, layer in self._table if layer.type == layerType)

    def getUnconnectedOutLayers(self) -> np.ndarray:  # noqa: N802
        self._need()
        producer: dict[str, int] = {}
        used: set[int] = set()
        for lid, (_, i, layer) in enumerate(self._table, start=1):
            for b in layer.bottom:
                if b in producer:
                    used.add(producer[b])
            for t in layer.top:
                producer[t] = lid
        return np.array([lid for lid in range(1, len(self._table) + 1) if lid not in used], dtype=np.int32)

    def getUnconnectedOutLayersNames(self) -> tuple:  # noqa: N802
        names = self.getLayerNames()
        return tuple(names[lid - 1] for lid in self.getUnconnectedOutLayers())

    # ------------------------------------------------------------------ backend / target
    def setPreferableBackend(self, backendId: int) -> None:  # noqa: N802,N803
        """DNN_BACKEND_DEFAULT / OPENCV run on the CPU unless a CUDA target is chosen; DNN_BACKEND_CUDA
        runs on torch's CUDA device; the other backends are accepted with a note (CPU)."""
        backend = int(backendId)
        if backend not in (C.DNN_BACKEND_DEFAULT, C.DNN_BACKEND_OPENCV, C.DNN_BACKEND_CUDA):
            warnings.warn(f"cvdnn: backend {backend} ({C.backend_name(backend)}) is not available here; "
                          f"running with torch on {self._device}", stacklevel=2)
        self._backend = backend
        self._place()

    def setPreferableTarget(self, targetId: int) -> None:  # noqa: N802,N803
        """DNN_TARGET_CPU -> torch CPU; DNN_TARGET_CUDA / CUDA_FP16 -> torch CUDA (float32 maths:
        Caffe's; FP16 is not emulated); the other targets are accepted with a note (CPU)."""
        target = int(targetId)
        if target not in (C.DNN_TARGET_CPU, C.DNN_TARGET_CUDA, C.DNN_TARGET_CUDA_FP16):
            warnings.warn(f"cvdnn: target {target} ({C.target_name(target)}) is not available here; "
                          f"running with torch on the CPU", stacklevel=2)
        self._target = target
        self._place()

    def _place(self):
        want_cuda = self._backend == C.DNN_BACKEND_CUDA or self._target in (C.DNN_TARGET_CUDA,
                                                                              C.DNN_TARGET_CUDA_FP16)
        device = "cpu"
        if want_cuda:
            import torch
            if torch.cuda.is_available():
                device = "cuda"
            else:
                # OpenCV prints the same kind of note and falls back to its CPU implementation
                warnings.warn("cvdnn: CUDA was requested but torch sees no CUDA device; running on the CPU",
                              stacklevel=3)
        if device != self._device:
            self._device = device
            for m in self._by_shape.values():
                m.to(device)

    # ------------------------------------------------------------------ inputs
    def setInput(self, blob, name: str = "", scalefactor: float = 1.0, mean=None) -> None:  # noqa: N802
        self._need()
        inputs = list(self._model.input_names)
        if not name:
            if not inputs:
                raise CvdnnError(f"cvdnn: {self._source} declares no input blob")
            name = inputs[0]
        if name not in inputs:
            raise CvdnnError(f"cvdnn: setInput: {name!r} is not an input of {self._source} (inputs: {inputs})")
        x = np.asarray(blob)
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        if scalefactor != 1.0 or (mean is not None and np.any(np.asarray(mean, dtype=np.float64) != 0)):
            m = np.zeros(4) if mean is None else np.array(
                [float(mean)] + [0.0] * 3 if np.ndim(mean) == 0 else
                (list(np.asarray(mean, dtype=np.float64).ravel()) + [0.0] * 4)[:4])
            if x.ndim >= 2:
                c = x.shape[1]
                shape = (1, c) + (1,) * (x.ndim - 2)
                mc = np.array([m[k] if k < 4 else 0.0 for k in range(c)], dtype=np.float32).reshape(shape)
                x = (x - mc) * np.float32(scalefactor)
            else:
                x = x * np.float32(scalefactor)
        self._inputs[name] = np.ascontiguousarray(x, dtype=np.float32)

    # ------------------------------------------------------------------ running
    def _model_for(self, feed: dict):
        """The converted net for these input shapes (built once per shape set, weights shared)."""
        shapes = dict(self._model.input_shapes)
        shapes.update({k: tuple(v.shape) for k, v in feed.items()})
        key = tuple(sorted(shapes.items()))
        model = self._by_shape.get(key)
        if model is None:
            from ..layers import ConversionError
            from ..net import CaffeNet
            try:
                model = CaffeNet(self._model.net_param, shapes,
                                 semantics=getattr(self._model, "semantics", "fork"))
            except ConversionError as exc:
                raise CvdnnError(f"cvdnn: {self._source}: the net does not accept input shapes {shapes}: "
                                 f"{exc}") from None
            # parameters whose shape depends on the input (InnerProduct after a bigger image) stay
            # unusable: OpenCV computes the layers before them and fails at them, so do we
            theirs = self._model.state_dict()
            mine = model.state_dict()
            ok = {k: v for k, v in theirs.items() if k in mine and tuple(mine[k].shape) == tuple(v.shape)}
            model.load_state_dict(ok, strict=False)
            model._cvdnn_unfit = {k.split(".")[1] for k in mine if k not in ok}
            model.eval()
            if self._model.input_memory_format is not None:
                model.use_channels_last()
            model.to(self._device)
            self._by_shape[key] = model
        return model

    def _run(self, wanted: list[str]) -> dict[str, list]:
        """Outputs of the OpenCV layers in ``wanted``: name -> list of numpy arrays (all tops)."""
        import torch

        from ..layers import ConversionError

        self._need()
        unknown = [n for n in wanted if n not in self._ids]
        if unknown:
            raise CvdnnError(f"cvdnn: no layer named {unknown[0]!r} in {self._source} "
                           f"(layers: {', '.join(self.getLayerNames()[:12])}...)")
        missing = [n for n in self._model.input_names if n not in self._inputs]
        if missing:
            raise CvdnnError(f"cvdnn: no input set for {missing} (call setInput first)")
        feed = {k: self._inputs[k] for k in self._model.input_names}
        model = self._model_for(feed)
        layers = model.caffe_layers
        by_caffe = {self._caffe_names[i]: name for name, i, _ in self._table}
        need = set(wanted)
        got: dict[str, list] = {}
        times = [0] * len(self._table)
        started = {}
        handles = []

        unfit = {self._caffe_names[i] for _, i, _ in self._table
                 if _module_key_of(model, self._caffe_names[i]) in getattr(model, "_cvdnn_unfit", ())}

        def pre(caffe_name):
            def hook(module, args):
                if caffe_name in unfit:
                    raise CvdnnError(f"cvdnn: {self._source}: layer '{caffe_name}' does not accept the input "
                                     f"shapes {[tuple(a.shape) for a in args]} (its weights were made for "
                                     f"{self._model.input_shapes})")
                started[caffe_name] = time.perf_counter_ns()
            return hook

        def post(caffe_name, lid):
            def hook(module, args, out):
                times[lid - 1] = time.perf_counter_ns() - started.get(caffe_name, time.perf_counter_ns())
                name = by_caffe[caffe_name]
                if name in need:
                    outs = [out] if isinstance(out, torch.Tensor) else list(out)
                    got[name] = [o.detach() for o in outs]
                    if len(got) == len(need):
                        raise _Stop
            return hook

        for name, i, _ in self._table:
            module = layers[self._caffe_names[i]]
            handles.append(module.register_forward_pre_hook(pre(self._caffe_names[i])))
            handles.append(module.register_forward_hook(post(self._caffe_names[i], self._ids[name])))
        try:
            with torch.no_grad():
                tensors = {k: torch.from_numpy(v).to(self._device) for k, v in feed.items()}
                try:
                    model(tensors)
                except _Stop:
                    pass
                except ConversionError as exc:
                    raise CvdnnError(f"cvdnn: {self._source}: {exc}") from None
        finally:
            for h in handles:
                h.remove()
        self._times = times
        return {name: [np.ascontiguousarray(o.float().cpu().numpy()) for o in got[name]] for name in wanted}

    def forward(self, outputName=None, outBlobs=None):  # noqa: N803
        """``forward()``: the last layer's output; ``forward(name)``: that layer's output 0;
        ``forward([names])``: a tuple of the named layers' outputs 0."""
        self._need()
        if outputName is None or (isinstance(outputName, str) and not outputName):
            name = self.getLayerNames()[-1]
            return self._run([name])[name][0]
        if isinstance(outputName, str):
            return self._run([outputName])[outputName][0]
        names = [str(n) for n in outputName]
        res = self._run(list(dict.fromkeys(names)))
        return tuple(res[n][0] for n in names)

    def forwardAndRetrieve(self, outBlobNames):  # noqa: N802,N803
        """Every output of each named layer: a tuple (per name) of tuples of arrays."""
        names = [outBlobNames] if isinstance(outBlobNames, str) else [str(n) for n in outBlobNames]
        res = self._run(list(dict.fromkeys(names)))
        return tuple(tuple(res[n]) for n in names)

    def getPerfProfile(self):  # noqa: N802
        """``(total ticks, per-layer ticks)`` of the last forward, in ``cv2.getTickFrequency()`` units
        (layers not run: 0)."""
        freq = C.tick_frequency()
        per = np.array([t * freq / 1e9 for t in self._times] or [0.0] * len(self._table), dtype=np.float64)
        return int(per.sum()), per

    # ------------------------------------------------------------------ accepted, no effect
    def enableFusion(self, fusion: bool) -> None:  # noqa: N802
        """Accepted: layers always run separately here (OpenCV's unfused results)."""

    def enableWinograd(self, useWinograd: bool) -> None:  # noqa: N802,N803
        """Accepted: convolutions are torch's."""

    def __repr__(self):
        return f"<cvdnn Net {self._source} ({len(self._table)} layers, {self._device})>"
