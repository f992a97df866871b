"""Caffe's ``Data`` layer for LMDB sources, with Caffe's ``DataTransformer``.

Reading: records in LMDB key order, ``batch_size`` per batch, wrapping around to the first
record at the end (Caffe 1.0 ``DataLayer`` on one solver).  Transform, per datum, exactly as
``DataTransformer::Transform``:

* ``mirror``: ``do_mirror = mirror && Rand(2)`` (drawn first; in every phase where mirror is set),
* ``crop_size``: TRAIN offsets ``Rand(H - crop + 1)``, ``Rand(W - crop + 1)`` (drawn after the
  mirror coin); TEST the centre ``(H - crop) / 2`` (integer division),
* ``mean_file``: ``(x - mean[c, h_off + h, w_off + w]) * scale`` (the mean has the datum's full
  size and is read at the crop position), or ``mean_value``: ``(x - mean_value[c]) * scale``,
  else ``x * scale``; all float32.

Data-parallel training (``rank``/``world_size``, Caffe 1.0's multi-GPU ``DataLayer::Skip``): in
the TRAIN phase, record ``offset`` (a running count of records passed, not reset at the
wrap-around) goes to rank ``offset % world_size``; every reader skips the others' records, so the
W ranks read disjoint interleaved records (rank 0: 0, W, 2W, ...).  TEST is never skipped (only
rank 0 tests, as in Caffe).

Caffe's boost RNG cannot be reproduced: the random draws come from a seeded NumPy generator,
so runs are reproducible with our seed but not draw-for-draw equal to Caffe's.
The reading position and the RNG state are part of :meth:`DataLayer.state_dict`, so a
restored solver continues with exactly the batches an uninterrupted run would have seen.
"""
from __future__ import annotations

import functools
import os
import queue
import threading
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from ..formats import read_mean
from ..proto import caffe_pb2 as pb
from converters.errors import InputError

DATA_LAYER_TYPES = ("Data",)


class DataLayerError(ValueError, InputError):
    """A Data layer that cannot be set up (message names the layer / file)."""


def _lmdb_env(path):
    """The process-wide read-only environment of an LMDB folder (python-lmdb refuses to open the
    same folder twice; Caffe's TRAIN and TEST Data layers often read the same LMDB, and evaluation
    reads it again after training): the registry of :func:`converters.formats.shared_env`."""
    from ..formats.errors import CaffeFormatError
    from ..formats.lmdb_io import shared_env
    try:
        return shared_env(path)
    except CaffeFormatError as exc:
        raise DataLayerError(str(exc)) from None


def _default_reader(path, mode: str = "native", start: int = 0) -> Iterator:
    """Records ``(key, label, array)`` of a Caffe LMDB in key order from record ``start``; encoded
    Datums are decoded as DataTransformer does (``mode``, see ``lmdb_io.datum_to_array``)."""
    from ..formats.lmdb_io import datum_to_array
    env = _lmdb_env(path)
    with env.begin(buffers=False) as txn:
        cursor = txn.cursor()
        if not cursor.first():
            return
        for _ in range(start):  # skip without decoding
            if not cursor.next():
                return
        while True:
            key, value = cursor.item()
            datum = pb.Datum()
            datum.ParseFromString(value)
            k = key.decode("utf-8", "surrogateescape")
            yield k, int(datum.label), datum_to_array(datum, mode, path, k)
            if not cursor.next():
                return


def _resolve(path: str, root) -> str:
    p = Path(path)
    if root is not None and not p.is_absolute():
        p = Path(root) / p
    return str(p)


class DataTransformer:
    """Caffe's DataTransformer for uint8 (C, H, W) BGR arrays."""

    def __init__(self, transform_param: pb.TransformationParameter | None, phase: str = "train",
                 root=None, rng: np.random.Generator | None = None, layer_name: str = ""):
        tp = transform_param if transform_param is not None else pb.TransformationParameter()
        self.param = tp
        self.train = str(phase).lower() == "train"
        self.crop_size = int(tp.crop_size)
        self.mirror = bool(tp.mirror)
        self.scale = np.float32(tp.scale)
        self.rng = rng if rng is not None else np.random.default_rng()
        if tp.HasField("mean_file") and len(tp.mean_value):
            raise DataLayerError(f"layer {layer_name!r}: cannot specify mean_file and mean_value at the same time")
        self.mean = None
        if tp.HasField("mean_file"):
            self.mean = read_mean(_resolve(tp.mean_file, root)).astype(np.float32)
        self.mean_values = np.asarray(list(tp.mean_value), dtype=np.float32) if len(tp.mean_value) else None
        self.layer_name = layer_name

    @property
    def needs_rand(self) -> bool:
        return self.mirror or (self.train and self.crop_size > 0)

    def output_shape(self, datum_shape) -> tuple[int, int, int]:
        c, h, w = datum_shape
        if self.crop_size:
            if h < self.crop_size or w < self.crop_size:
                raise DataLayerError(f"layer {self.layer_name!r}: crop_size {self.crop_size} larger than "
                                     f"the datum ({h}x{w})")
            return (c, self.crop_size, self.crop_size)
        return (c, h, w)

    def _check(self, shape):
        c, h, w = shape
        if self.mean is not None and self.mean.shape != (c, h, w):
            raise DataLayerError(f"layer {self.layer_name!r}: mean_file has shape {self.mean.shape}, "
                                 f"datum has {(c, h, w)} (Caffe needs them equal)")
        if self.mean_values is not None and len(self.mean_values) not in (1, c):
            raise DataLayerError(f"layer {self.layer_name!r}: specify either 1 mean_value or as many as "
                                 f"channels ({c}), got {len(self.mean_values)}")

    def draw(self, datum_shape) -> tuple[bool, int, int]:
        """The random (or fixed) choices for one datum, in Caffe's draw order."""
        _, h, w = datum_shape
        do_mirror = bool(self.mirror and self.rng.integers(0, 2))
        h_off = w_off = 0
        if self.crop_size:
            if self.train:
                h_off = int(self.rng.integers(0, h - self.crop_size + 1))
                w_off = int(self.rng.integers(0, w - self.crop_size + 1))
            else:
                h_off = (h - self.crop_size) // 2
                w_off = (w - self.crop_size) // 2
        return do_mirror, h_off, w_off

    def apply(self, datum: np.ndarray, do_mirror: bool, h_off: int, w_off: int, out: np.ndarray | None = None):
        """Transform one (C, H, W) datum with the given choices; returns float32 (C, h, w)."""
        c, h, w = self.output_shape(datum.shape)
        x = datum[:, h_off:h_off + h, w_off:w_off + w].astype(np.float32)
        if self.mean is not None:
            x -= self.mean[:, h_off:h_off + h, w_off:w_off + w]
        elif self.mean_values is not None:
            mv = self.mean_values if len(self.mean_values) == c else np.repeat(self.mean_values, c)
            x -= mv[:, None, None]
        if self.scale != 1:
            x *= self.scale
        if do_mirror:
            x = x[:, :, ::-1]
        if out is None:
            return np.ascontiguousarray(x)
        out[...] = x
        return out

    def transform(self, datum: np.ndarray) -> np.ndarray:
        """Transform one datum, drawing mirror/crop as Caffe does."""
        datum = np.asarray(datum)
        self._check(datum.shape)
        return self.apply(datum, *self.draw(datum.shape))

    def transform_batch(self, datums) -> np.ndarray:
        first = np.asarray(datums[0])
        self._check(first.shape)
        out = np.empty((len(datums),) + self.output_shape(first.shape), dtype=np.float32)
        for i, d in enumerate(datums):
            d = np.asarray(d)
            if d.shape != first.shape:
                raise DataLayerError(f"layer {self.layer_name!r}: datum {i} of the batch has shape {d.shape}, "
                                     f"the first has {first.shape}")
            self.apply(d, *self.draw(d.shape), out=out[i])
        return out


def _rng_state(rng: np.random.Generator) -> dict:
    return rng.bit_generator.state


class DataLayer:
    """Caffe's Data layer (LMDB backend) producing ``{top0: data, top1: label}`` batches.

    ``reader(path)`` yields ``(key, label, uint8 (C, H, W))`` records in key order (default: the
    LMDB read here with one shared read-only environment per folder, Datums decoded by
    ``converters.formats.lmdb_io.datum_to_array`` as Caffe's DataTransformer does).  ``seed``
    seeds the transformer's RNG; ``prefetch`` > 0 prepares that many batches in a background
    thread (Caffe's prefetching; the batch sequence does not depend on it).
    """

    def __init__(self, layer: pb.LayerParameter, phase: str = "train", root=None, seed: int | None = None,
                 reader: Callable[[str], Iterable] | None = None, prefetch: int = 0,
                 rank: int = 0, world_size: int = 1):
        if layer.type not in DATA_LAYER_TYPES:
            raise DataLayerError(f"layer {layer.name!r}: type {layer.type!r} is not a Data layer")
        dp = layer.data_param
        if dp.backend != pb.DataParameter.LMDB:
            raise DataLayerError(f"layer {layer.name!r}: only backend LMDB is supported (LEVELDB is not)")
        if not dp.source:
            raise DataLayerError(f"layer {layer.name!r}: data_param.source is empty")
        if dp.batch_size <= 0:
            raise DataLayerError(f"layer {layer.name!r}: data_param.batch_size must be > 0")
        self.name = layer.name
        self.tops = list(layer.top)
        self.source = _resolve(dp.source, root)
        self.batch_size = int(dp.batch_size)
        if reader is None:
            tp = layer.transform_param
            if tp.force_color and tp.force_gray:
                raise DataLayerError(f"layer {layer.name!r}: cannot set both force_color and force_gray")
            # Caffe decodes encoded Datums with DecodeDatumToCVMat(is_color) when forced, else Native.
            mode = "color" if tp.force_color else ("gray" if tp.force_gray else "native")
            reader = functools.partial(_default_reader, mode=mode)
            self._reader_skips = True
        else:
            self._reader_skips = False
        self.reader = reader
        self.rng = np.random.default_rng(seed)
        self.transformer = DataTransformer(layer.transform_param if layer.HasField("transform_param") else None,
                                           phase, root, self.rng, layer.name)
        self.position = 0          # records consumed, modulo the LMDB size once known
        self.num_records = None    # known after the first full pass
        world_size = int(world_size)
        if world_size < 1 or not 0 <= int(rank) < world_size:
            raise DataLayerError(f"layer {layer.name!r}: rank {rank} outside world size {world_size}")
        # Caffe 1.0 DataLayer::Skip: only TRAIN readers skip the other solvers' records
        self.world_size = world_size if str(phase).lower() == "train" else 1
        self.rank = int(rank) if self.world_size > 1 else 0
        self.offset = 0            # Caffe's offset_: records passed (taken or skipped), never reset
        self._it = None
        self._first = None         # first record, to know the shape
        self.prefetch = int(prefetch)
        self._queue = None
        self._thread = None
        self._stop = None
        self._peek_shape()

    # ------------------------------------------------------------------ reading
    def _open(self, start: int = 0):
        """An iterator over the records from index ``start``."""
        try:
            if self._reader_skips:
                return iter(self.reader(self.source, start=start))
            it = iter(self.reader(self.source))
        except FileNotFoundError:
            raise DataLayerError(f"{self.source}: LMDB not found (layer {self.name!r})") from None
        for _ in range(start):
            next(it)
        return it

    def _peek_shape(self):
        it = self._open()
        try:
            first = next(it)
        except StopIteration:
            raise DataLayerError(f"{self.source}: LMDB is empty (layer {self.name!r})") from None
        close = getattr(it, "close", None)
        if close:
            close()
        self.datum_shape = tuple(np.asarray(first[2]).shape)
        if len(self.datum_shape) != 3:
            raise DataLayerError(f"{self.source}: expected (C, H, W) datums, got shape {self.datum_shape}")
        self.transformer._check(self.datum_shape)
        self.shape = (self.batch_size,) + self.transformer.output_shape(self.datum_shape)

    def _next_record(self):
        if self._it is None:
            self._it = self._open(self.position)  # resume inside the current pass
        try:
            rec = next(self._it)
        except StopIteration:  # end of the first pass: wrap around (Caffe: cursor->SeekToFirst)
            if self.position == 0:
                raise DataLayerError(f"{self.source}: LMDB is empty (layer {self.name!r})") from None
            self.num_records = self.position
            self.position = 0
            self._it = self._open()
            rec = next(self._it)
        self.position += 1
        if self.num_records is not None and self.position == self.num_records:
            self.position = 0
            self._it = None  # reopen at the first record next time
        return rec

    def _take_record(self):
        """The next record of this rank (Caffe: ``while (Skip()) Next();`` then read, ``Next()``)."""
        if self.world_size > 1:
            while self.offset % self.world_size != self.rank:
                self._next_record()
                self.offset += 1
            self.offset += 1
        return self._next_record()

    def _make_batch(self):
        records = [self._take_record() for _ in range(self.batch_size)]
        data = self.transformer.transform_batch([r[2] for r in records])
        labels = np.asarray([r[1] for r in records], dtype=np.float32)
        keys = [r[0] for r in records]
        return data, labels, keys

    # ------------------------------------------------------------------ prefetch thread
    def _worker(self):
        try:
            while not self._stop.is_set():
                batch = self._make_batch()
                state = self._raw_state()
                while not self._stop.is_set():
                    try:
                        self._queue.put((batch, state, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            self._queue.put((None, None, exc))

    def _start(self):
        self._queue = queue.Queue(maxsize=self.prefetch)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._worker, name=f"data-{self.name}", daemon=True)
        self._thread.start()

    def close(self):
        """Stop the prefetch thread (if any); the consumed state is kept."""
        if self._thread is not None:
            self._stop.set()
            while self._thread.is_alive():
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    self._thread.join(0.05)
            self._thread = None
            self._queue = None
            self._apply_state(self._consumed)

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    # ------------------------------------------------------------------ API
    def next_batch(self) -> dict:
        """The next batch as ``{data_top: float32 (N,C,H,W) tensor, label_top: float32 (N,) tensor}``."""
        if self.prefetch > 0:
            if self._thread is None:
                self._consumed = self._raw_state()
                self._start()
            batch, state, exc = self._queue.get()
            if exc is not None:
                self._thread = None
                raise exc
            self._consumed = state
            data, labels, keys = batch
        else:
            data, labels, keys = self._make_batch()
        self.last_keys = keys
        out = {self.tops[0]: torch.from_numpy(data)}
        if len(self.tops) > 1:
            out[self.tops[1]] = torch.from_numpy(labels)
        return out

    __call__ = next_batch

    def _raw_state(self) -> dict:
        state = {"position": int(self.position), "num_records": self.num_records,
                 "rng": _rng_state(self.rng)}
        if self.world_size > 1:
            state["offset"] = int(self.offset)
        return state

    def _apply_state(self, state: dict):
        self.position = int(state["position"])
        self.num_records = state.get("num_records")
        self.rng.bit_generator.state = state["rng"]
        self.offset = int(state.get("offset", 0))
        self._it = None

    def state_dict(self) -> dict:
        """JSON-serialisable reading position and RNG state (of the batches handed out)."""
        if self._thread is not None:
            return dict(self._consumed)
        return self._raw_state()

    def load_state_dict(self, state: dict):
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._queue = None
        self._apply_state(state)
        self._consumed = self._raw_state()


def data_layers(net_param: pb.NetParameter, phase: str, root=None, seed: int | None = None,
                reader=None, prefetch: int = 0) -> list[DataLayer]:
    """A DataLayer for every ``Data`` layer of an already phase-filtered NetParameter."""
    layers = [layer for layer in net_param.layer if layer.type in DATA_LAYER_TYPES]
    return [DataLayer(layer, phase, root, None if seed is None else seed + i, reader, prefetch)
            for i, layer in enumerate(layers)]
