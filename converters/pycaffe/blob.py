"""pycaffe's ``Blob`` and ``Layer``: Caffe's memory semantics for NumPy users.

What it owns: a blob's data and diff as writable float32 arrays that stay in step with the torch
tensors a pass produces (:class:`_Synced`, like Caffe's SyncedMemory: the array a user was handed
keeps its identity, values are copied into it), learnable blobs as views of ``nn.Parameter``s and
their ``.grad`` (:class:`_ParamBlob`), and pycaffe's ``Layer`` record.  Running the net is
:mod:`converters.pycaffe.net`'s.
"""
from __future__ import annotations

import numpy as np
import torch


def _same_memory(arr: np.ndarray, t: torch.Tensor) -> bool:
    return (t.device.type == "cpu" and arr.size > 0 and t.numel() == arr.size
            and t.data_ptr() == arr.__array_interface__["data"][0])


class _Synced:
    """One array of a blob (its data or its diff), like Caffe's SyncedMemory.

    Holds a host array and/or a torch tensor; ``head`` says which is current: ``"array"`` (the
    user may have written into the array), ``"tensor"`` (a pass produced a new tensor, the array
    is stale or absent) or ``"both"``.  ``exposed`` marks arrays handed to the user: their
    identity is kept (new values are copied into them).
    """

    __slots__ = ("array", "tensor", "head", "exposed")

    def __init__(self, shape, fill: float = 0.0):
        self.array = np.full(tuple(int(d) for d in shape), fill, dtype=np.float32)
        self.tensor = None
        self.head = "array"
        self.exposed = False

    @property
    def shape(self) -> tuple:
        if self.head == "tensor":
            return tuple(self.tensor.shape)
        return tuple(self.array.shape)

    def host(self) -> np.ndarray:
        """The array for the user (Caffe's mutable_cpu_data): current, and assumed written to."""
        if self.head == "tensor":
            self._pull()
        self.exposed = True
        self.head = "array"
        return self.array

    def peek(self) -> np.ndarray:
        """The current values without marking the array as handed out (read-only use)."""
        if self.head == "tensor":
            self._pull()
            self.head = "both"
        return self.array

    def _pull(self):
        t = self.tensor.detach()
        if self.array is not None and _same_memory(self.array, t) and self.array.shape == tuple(t.shape):
            return
        if self.exposed and self.array is not None and self.array.shape == tuple(t.shape):
            np.copyto(self.array, t.cpu().numpy(), casting="unsafe")
        elif t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous():
            self.array = t.numpy()                      # no copy: the array is the tensor's memory
        else:
            self.array = np.ascontiguousarray(t.cpu().numpy(), dtype=np.float32)

    def set_tensor(self, t: torch.Tensor):
        self.tensor = t
        if self.exposed:
            self._pull()
            self.head = "both"
        else:
            self.head = "tensor"

    def as_tensor(self, device: torch.device) -> torch.Tensor:
        """The current values as a tensor on ``device`` (no copy on the CPU)."""
        if self.head == "tensor" or (self.head == "both" and not self.exposed):
            if self.tensor.device == device:
                return self.tensor
            self._pull()
            self.head = "both"
        t = torch.from_numpy(self.array)
        if device.type != "cpu":
            t = t.to(device)
        self.tensor = t
        if self.head == "tensor":
            self.head = "both"
        return t

    def reshape(self, shape):
        shape = tuple(int(d) for d in shape)
        if self.shape == shape:
            return
        current = self.peek()
        if current.size == int(np.prod(shape, dtype=np.int64)):
            self.array = current.reshape(shape)         # Caffe keeps the memory when it fits
        else:
            self.array = np.zeros(shape, dtype=np.float32)
        self.tensor = None
        self.head = "array"


class Blob:
    """A Caffe blob: ``data`` and ``diff`` arrays (float32, writable), ``shape``, ``count``, ``reshape``."""

    def __init__(self, shape, fill: float = 0.0):
        self._data = _Synced(shape, fill)
        self._diff: _Synced | None = None

    @property
    def data(self) -> np.ndarray:
        return self._data.host()

    @property
    def diff(self) -> np.ndarray:
        return self._diff_synced().host()

    def _diff_synced(self) -> _Synced:
        shape = self._data.shape
        if self._diff is None:
            self._diff = _Synced(shape)
        elif self._diff.shape != shape:
            self._diff.reshape(shape)
        return self._diff

    @property
    def shape(self) -> tuple:
        return self._data.shape

    @property
    def count(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def _legacy(self, index: int) -> int:
        shape = self.shape
        return int(shape[index]) if index < len(shape) else 1

    num = property(lambda self: self._legacy(0))
    channels = property(lambda self: self._legacy(1))
    height = property(lambda self: self._legacy(2))
    width = property(lambda self: self._legacy(3))

    def reshape(self, *shape):
        """Caffe's Blob::Reshape (values kept when the element count is unchanged, else zeros)."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        if any(int(d) < 0 for d in shape):
            raise ValueError(f"blob dimensions must be >= 0, got {shape}")
        self._data.reshape(shape)
        if self._diff is not None:
            self._diff.reshape(shape)

    def __repr__(self):
        return f"<caffe Blob shape={self.shape}>"


class _ParamBlob:
    """A learnable blob: ``data``/``diff`` are views of an ``nn.Parameter`` and its ``.grad``."""

    def __init__(self, net: "Net", module, index: int):
        self._net = net
        self._module = module
        self._index = index

    @property
    def _param(self) -> torch.nn.Parameter:
        return getattr(self._module, self._module.blob_names[self._index])

    def _view(self, t: torch.Tensor, setter) -> np.ndarray:
        t = t.detach()
        if t.device.type == "cpu":
            return t.numpy()                            # a (possibly strided) view: writes go through
        host = np.ascontiguousarray(t.cpu().numpy())
        self._net._dirty.append((setter, host))         # copied back before the next pass
        return host

    @property
    def data(self) -> np.ndarray:
        p = self._param
        return self._view(p, lambda arr, p=p: p.data.copy_(torch.from_numpy(arr)))

    @property
    def diff(self) -> np.ndarray:
        p = self._param
        if p.grad is None:
            p.grad = torch.zeros_like(p.detach())
        return self._view(p.grad, lambda arr, p=p: p.grad.copy_(torch.from_numpy(arr)))

    @property
    def shape(self) -> tuple:
        return tuple(self._param.shape)

    @property
    def count(self) -> int:
        return int(self._param.numel())

    num = property(lambda self: Blob._legacy(self, 0))
    channels = property(lambda self: Blob._legacy(self, 1))
    height = property(lambda self: Blob._legacy(self, 2))
    width = property(lambda self: Blob._legacy(self, 3))

    def reshape(self, *shape):
        raise NotImplementedError("reshaping a learnable blob is not supported (the layer's module owns it)")

    def __repr__(self):
        return f"<caffe param Blob shape={self.shape}>"


class Layer:
    """pycaffe's Layer: ``type``, ``blobs`` (learnable blobs), plus ``name`` and the torch ``module``."""

    def __init__(self, name: str, type_: str, blobs: list, module, phase: int):
        self.name = name
        self.type = type_
        self.blobs = blobs
        self.module = module
        self.phase = phase

    def reshape(self, bottom=None, top=None):  # pycaffe API; shapes follow the data here
        return None

    def __repr__(self):
        return f"<caffe Layer {self.name!r} ({self.type})>"
