"""Input batches for the solver's nets: from the nets' Data layers or from a user's batch source.

What it owns: turning a callable or iterable of input dicts into a batch source (the first batch
can be looked at for the input shapes and is then reused), and :class:`_NetFeed`, which gives one
net its batches (Data layers read in layer order, tensors in the solver's dtype, layout and device).
"""
from __future__ import annotations

import numpy as np
import torch

from .data_layer import DataLayer
from .errors import SolverError


def _as_batch_source(data):
    """A zero-argument callable returning the next input dict, from a callable or an iterable."""
    if data is None:
        return None
    if callable(data) and not hasattr(data, "__next__"):
        return data
    it = iter(data)
    return lambda: next(it)


def _to_tensor(value):
    if isinstance(value, torch.Tensor):
        return value
    return torch.as_tensor(np.asarray(value))


class _PeekedSource:
    """Wraps a batch source so the first batch can be looked at (for input shapes) and reused."""

    def __init__(self, source):
        self.source = source
        self.first = None

    def peek(self):
        if self.first is None:
            self.first = self.source()
        return self.first

    def __call__(self):
        if self.first is not None:
            batch, self.first = self.first, None
            return batch
        return self.source()


class _NetFeed:
    """Inputs of one net: Caffe Data layers (LMDB) or a user batch source."""

    def __init__(self, data_layers: list[DataLayer], source=None, dtype=torch.float32, channels_last=False,
                 device=None):
        self.data_layers = data_layers
        self.source = source
        self.dtype = dtype
        self.channels_last = channels_last
        self.device = device

    def __call__(self) -> dict:
        inputs = {}
        for layer in self.data_layers:
            inputs.update(layer.next_batch())
        if self.source is not None:
            inputs.update({k: _to_tensor(v) for k, v in self.source().items()})
        if self.dtype != torch.float32:
            inputs = {k: v.to(self.dtype) if v.is_floating_point() else v for k, v in inputs.items()}
        if self.device is not None:
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
        if self.channels_last:
            inputs = {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v
                      for k, v in inputs.items()}
        return inputs

    def state_dict(self):
        return [layer.state_dict() for layer in self.data_layers]

    def load_state_dict(self, states):
        if len(states) != len(self.data_layers):
            raise SolverError(f"resume state has {len(states)} data layers, the net has {len(self.data_layers)}")
        for layer, st in zip(self.data_layers, states):
            layer.load_state_dict(st)

    def close(self):
        for layer in self.data_layers:
            layer.close()


# ---------------------------------------------------------------------------- training log
