"""An onnxruntime backend for inference: a converted Caffe net run by onnxruntime on the CPU.

What it owns: choosing the backend (``torch``, ``onnxruntime`` or ``auto``), turning a
:class:`~converters.net.CaffeNet` into an onnxruntime session and the :class:`OrtNet` wrapper that
is called like the CaffeNet (a tensor in, the output tensor or a dict of them out).

The graph is :mod:`converters.onnx_export`'s export-only view of the net (Caffe's pooling, LRN and
InnerProduct rules written explicitly), traced with the TorchScript exporter *without* constant
folding, so that every graph initializer is one of the net's parameters under its PyTorch name.
That lets the traced graph be kept per net *structure* (prototxt, input size, outputs) and reused
for every weight set (the paper evaluates one structure with five fold models per table cell):
only the initializers are replaced, tracing runs once.

onnxruntime is an optional dependency (``pip install .[onnx]``); ``auto`` falls back to torch when
it is missing, and on CUDA devices (this backend runs the CPU execution provider only).
"""
from __future__ import annotations

import hashlib
import io
import logging
import warnings
from collections import OrderedDict

import numpy as np
import torch
from converters.errors import InputError

BACKENDS = ("torch", "onnxruntime", "auto")
OPSET = 17
_GRAPHS: "OrderedDict[str, bytes]" = OrderedDict()   # structure key -> serialized ModelProto
_GRAPH_CACHE_SIZE = 4


class BackendError(ValueError, InputError):
    """The requested backend cannot run here (message says why)."""


def onnxruntime_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, device="cpu") -> str:
    """``torch`` or ``onnxruntime`` for ``backend`` on ``device``.

    ``auto``: onnxruntime when it is installed and the device is the CPU, else torch.
    ``onnxruntime`` on a non-CPU device, or when it is not installed, is a BackendError.
    """
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    cpu = torch.device(device).type == "cpu"
    if backend == "auto":
        return "onnxruntime" if cpu and onnxruntime_available() else "torch"
    if backend == "onnxruntime":
        if not cpu:
            raise BackendError(f"backend onnxruntime runs on the CPU only, not on {device}")
        if not onnxruntime_available():
            raise BackendError("backend onnxruntime needs the packages onnx and onnxruntime "
                               "(pip install onnx onnxruntime)")
    return backend


def _structure_key(net, outputs, input_shapes) -> str:
    h = hashlib.sha256(net.net_param.SerializeToString(deterministic=True))
    h.update(repr((list(outputs), sorted(input_shapes.items()))).encode())
    return h.hexdigest()


def _traced_graph(net, outputs, input_shapes) -> bytes:
    """The ONNX graph of ``net``'s structure (weights are whatever ``net`` holds; replaced later)."""
    from .onnx_export import OnnxExportable

    key = _structure_key(net, outputs, input_shapes)
    if key in _GRAPHS:
        _GRAPHS.move_to_end(key)
        return _GRAPHS[key]
    module = OnnxExportable(net, outputs=outputs, native_lrn=False).eval()
    # batch 2 for tracing; axis 0 is symbolic in the graph
    args = tuple(torch.zeros((2,) + tuple(input_shapes[n][1:])) for n in module.input_names)
    axes = {n: {0: "batch"} for n in module.input_names + module.output_names}
    buf = io.BytesIO()
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            # no constant folding: every initializer stays a parameter under its own name
            torch.onnx.export(module, args, buf, dynamo=False, input_names=module.input_names,
                              output_names=module.output_names, dynamic_axes=axes, opset_version=OPSET,
                              do_constant_folding=False)
    finally:
        quiet.setLevel(level)
    _GRAPHS[key] = buf.getvalue()
    while len(_GRAPHS) > _GRAPH_CACHE_SIZE:
        _GRAPHS.popitem(last=False)
    return _GRAPHS[key]


def _with_weights(graph: bytes, net, outputs):
    """The graph's ModelProto with every initializer set from ``net``'s parameter of that name."""
    import onnx
    from onnx import numpy_helper

    from .onnx_export import OnnxExportable

    model = onnx.load_from_string(graph)
    params = {name: p for name, p in OnnxExportable(net, outputs=outputs, native_lrn=False).named_parameters()}
    for init in model.graph.initializer:
        param = params.get(init.name)
        if param is None:
            # only parameters may be initializers (no constant folding); anything else would be a
            # weight baked in from the traced net, stale for another weight set
            raise BackendError(f"net {net.net_param.name!r}: ONNX initializer {init.name!r} is not a parameter")
        value = param.detach().cpu().contiguous(memory_format=torch.contiguous_format).numpy().astype(np.float32)
        init.CopyFrom(numpy_helper.from_array(value, init.name))
    return model


class OrtNet:
    """A CaffeNet's outputs computed by onnxruntime (CPU).  Call it like the CaffeNet: one tensor (or
    a dict name -> tensor) in; the output tensor, or a dict when there are several outputs.

    ``threads``: onnxruntime intra-op threads (default ``torch.get_num_threads()``).
    """

    input_memory_format = None          # onnxruntime takes plain N x C x H x W arrays

    def __init__(self, net, outputs=None, threads: int | None = None, input_shapes: dict | None = None):
        import onnxruntime as ort

        self.net_param = net.net_param
        self.input_names = list(net.input_names)
        self.output_names = list(outputs) if outputs else list(net.output_names)
        shapes = {n: tuple(net.input_shapes[n]) for n in self.input_names}
        shapes.update({k: tuple(v) for k, v in (input_shapes or {}).items()})
        graph = _traced_graph(net, self.output_names, shapes)
        model = _with_weights(graph, net, self.output_names)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.threads = options.intra_op_num_threads

    def eval(self):
        return self

    def to(self, *args, **kwargs):
        return self

    def _feed(self, args, kwargs) -> dict:
        if args and isinstance(args[0], dict):
            feed = dict(args[0])
        elif args:
            if len(self.input_names) != 1:
                raise TypeError(f"this net has inputs {self.input_names}; pass a dict name -> tensor")
            feed = {self.input_names[0]: args[0]}
        else:
            feed = dict(kwargs)
        out = {}
        for name in self.input_names:
            if name not in feed:
                raise KeyError(f"missing input blob '{name}' (the net's inputs are {self.input_names})")
            v = feed[name]
            if isinstance(v, torch.Tensor):
                v = v.detach().cpu().contiguous().numpy()
            out[name] = np.ascontiguousarray(v, dtype=np.float32)
        return out

    def forward_blobs(self, inputs=None, **kwargs) -> dict:
        """The exported output blobs (only those: intermediate blobs are not kept by the graph)."""
        values = self.session.run(self.output_names, self._feed((inputs,) if inputs is not None else (), kwargs))
        return {name: torch.from_numpy(v) for name, v in zip(self.output_names, values)}

    def __call__(self, *args, **kwargs):
        blobs = self.forward_blobs(*args, **kwargs)
        if len(self.output_names) == 1:
            return blobs[self.output_names[0]]
        return blobs

    def __repr__(self):
        return (f"OrtNet(name={self.net_param.name!r}, outputs={self.output_names}, threads={self.threads}, "
                f"onnxruntime CPU)")


def for_inference(net, backend: str = "auto", device="cpu", outputs=None, threads: int | None = None):
    """``net`` itself (torch) or an :class:`OrtNet` of it, as ``backend`` resolves on ``device``.

    ``auto`` keeps any module that is not a converted :class:`~converters.net.CaffeNet` on torch."""
    from .net import CaffeNet

    if resolve_backend(backend, device) == "torch":
        return net
    if not isinstance(net, CaffeNet):
        if backend == "auto":
            return net
        raise BackendError(f"backend onnxruntime needs a converted Caffe net, got {type(net).__name__}")
    return OrtNet(net, outputs=outputs, threads=threads)
