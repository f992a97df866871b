"""Caffe's ``Solver`` (``solver.cpp`` + ``sgd_solver.cpp``) driving converted nets.

One iteration ``k`` (0-based, ``solver.iter`` before the step), exactly in Caffe's order:

1. if ``test_interval`` and ``k % test_interval == 0`` and (``k > 0`` or ``test_initialization``):
   run every test net ``test_iter[i]`` batches (weights shared with the train net) and average
   its output blobs;
2. ``iter_size`` forward/backward passes on consecutive batches, gradients summed; the
   iteration's loss is the float32 mean of the micro-batch total losses;
3. ``ApplyUpdate``: ``rate`` = the lr policy at ``k``, gradient clipping, ``1/iter_size``
   normalisation, weight decay, the solver type's update, ``w -= update``;
4. ``iter = k + 1``; snapshot when ``snapshot`` divides it.

``display`` logs ``Iteration k, loss = <smoothed>`` and ``lr``; ``average_loss`` smooths as
Caffe's ``UpdateSmoothedLoss`` (restarted by every ``step()`` call, like Caffe).
Snapshots are Caffe files (``{prefix}_iter_{N}.caffemodel`` / ``.solverstate``) plus a small
``.solverstate.json`` sidecar holding what Caffe does not save (data-layer positions and RNG
states), so :meth:`Solver.restore` continues bit-exactly; a real Caffe ``.solverstate`` without
the sidecar is restored as Caffe does (data layers start from the first record).  The files, the
restore and the SIGINT/SIGHUP actions are :mod:`converters.solver.snapshot`'s; this module owns
the step loop and decides when they happen.

``device`` (opt-in): nets, history and every input batch live on that torch device; snapshots
read tensors back with ``.cpu()``.  Only CPU is tested in this repository; CUDA is untested.

Data-parallel training (opt-in, Caffe 1.0's multi-GPU ``P2PSync``/``NCCL``), under ``torchrun``:
when ``torch.distributed`` is initialised (or ``distributed=True`` initialises it from the
torchrun environment: gloo on CPU, nccl on CUDA) each of the W workers builds the same nets;
Data layers give record ``i`` to rank ``i % W`` (Caffe's ``DataLayer::Skip``); after the
``iter_size`` micro-batches the gradients are summed over the workers and scaled by ``1/W``
(``NCCL::on_gradients_ready``) before ``ApplyUpdate``, so the effective batch is
``batch_size * iter_size * W``.  Parameters are broadcast from rank 0 after initialisation.
Only rank 0 tests, displays, logs, plots and writes snapshots (the sidecar holds every rank's
data position and RNG state); the displayed loss is rank 0's, as Caffe shows the root solver's.
Seeds: fillers use ``random_seed`` on every rank (then rank 0's values are broadcast); torch's
RNG (Dropout) is seeded with ``random_seed + rank`` and the TRAIN Data layers' transformer RNG
with ``random_seed + 1000000 * rank + i`` (Caffe draws each worker thread's seed from the root's
RNG, which cannot be reproduced).  Ctrl-C is not handled gracefully in distributed mode (the
default KeyboardInterrupt stops the worker; torchrun stops the others) and writes no snapshot.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from ..formats import read_net, read_solver
from ..caffemodel import copy_trained_layers
from ..layers import ConversionError
from ..net import ParamSpec, share_trained_layers
from ..formats.prototxt import filter_net, upgrade_net
from ..proto import caffe_pb2 as pb
from .data_layer import DATA_LAYER_TYPES, DataLayer
from ..fillers import fill, layer_fillers
from .lr_policy import get_learning_rate
from .updates import apply_update, make_rule
from . import snapshot as snapshots

log = logging.getLogger("converters.solver")

# the solver's helpers, one module per job (names kept importable from here)
from .distributed import _init_distributed, _resolve_device  # noqa: E402,F401
from .errors import SolverError  # noqa: E402,F401
from .feeds import _as_batch_source, _NetFeed, _PeekedSource, _to_tensor  # noqa: E402,F401
from .training_log import TrainingLog  # noqa: E402,F401

SIDECAR_FORMAT = snapshots.SIDECAR_FORMAT   # the name's old home
_f32 = np.float32


def _merged_state(phase: int, net: pb.NetParameter, extra: pb.NetState | None) -> pb.NetState:
    """Caffe: ``NetState(phase)`` merged with the net's ``state`` and the solver's train/test state."""
    state = pb.NetState(phase=phase)
    state.MergeFrom(net.state)
    if extra is not None:
        state.MergeFrom(extra)
    return state


def _phase_name(phase: int) -> str:
    return "train" if phase == pb.TRAIN else "test"


class Solver:
    """Caffe-exact training of a net described by a solver prototxt.

    Parameters
    ----------
    solver : path of a solver prototxt, or a ``SolverParameter``.
    train_input_shapes : ``{input name: shape}`` for train-net inputs that are not LMDB Data layers
        (Input/MemoryData/...); shapes of Data layers are read from their LMDB.
    weights : caffemodel path(s) copied into the train net by layer name after the fillers ran
        (``caffe train --weights``); the solver's own ``weights`` field is honoured too.
    root : folder that relative paths (net, sources, mean files, snapshot prefix) are resolved
        against; default the current directory, as Caffe.
    train_data, test_data : optional batch sources replacing/adding to the Data layers: a
        callable returning ``{input name: tensor}`` or an iterable of such dicts (``test_data``: one
        per test net).  When given for a net, its Data layers are not opened.
    reader : ``reader(path)`` yielding LMDB records (default ``converters.formats.lmdb_io.iter_lmdb``).
    prefetch : batches prefetched by a background thread per Data layer (default: ``data_param.prefetch``
        as Caffe, 0 = no thread).
    log_csv, plot : write ``{prefix}_log.csv`` every iteration and ``{prefix}_curve.png`` at
        snapshots and the end (``True``/``False`` or an explicit path).
    progress : tqdm progress bar.  verbose : print Caffe's display/test lines.
    net_builder : ``builder(net_param, phase, level, stages, input_shapes) -> CaffeNet`` (default
        ``converters.load_caffe``).
    callbacks : callables ``cb(solver)`` run after every iteration.
    dtype : ``torch.float32`` (Caffe's ``Dtype``, default) or ``torch.float64`` (nets, inputs,
        gradients and history in double: exact-arithmetic reference; snapshots are float32 as Caffe's).
    channels_last : run 4-D blobs and weights in torch's channels-last memory layout (default on:
        1.2-1.3x faster oneDNN convolutions on CPU; same maths, float32 rounding may differ in the
        last bits, as between two BLAS builds); ``False`` for torch's default layout.
    device : ``None`` (default: no moves, CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``: nets (train and
        test nets keep sharing their Parameters), history buffers and every input batch on that
        device; fillers run on the CPU before the move; snapshots read back with ``.cpu()``.
        CUDA is untested in this repository.
    distributed : ``None`` (default): data-parallel when ``torch.distributed`` is already initialised;
        ``True``: also initialise it from torchrun's environment (gloo on CPU, nccl on CUDA);
        ``False``: never.  See the module docstring (Caffe 1.0 multi-GPU semantics).
    """

    def __init__(self, solver, train_input_shapes: dict | None = None, *, weights=None, root=None,
                 train_data=None, test_data=None, reader=None, prefetch: int | None = None,
                 log_csv=True, plot=True, progress: bool = True, verbose: bool = True,
                 net_builder: Callable | None = None, callbacks: Iterable[Callable] = (),
                 test_input_shapes: list | None = None, dtype: torch.dtype = torch.float32,
                 channels_last: bool = True, device=None, distributed: bool | None = None):
        if isinstance(solver, pb.SolverParameter):
            self.param = pb.SolverParameter()
            self.param.CopyFrom(solver)
            self.solver_path = None
        else:
            self.solver_path = Path(solver)
            self.param = read_solver(solver)
        self.root = Path(root) if root is not None else Path.cwd()
        p = self.param
        where = f"{self.solver_path}: " if self.solver_path is not None else ""
        if p.snapshot_format != pb.SolverParameter.BINARYPROTO:
            raise SolverError(f"{where}snapshot_format HDF5 is not supported (use BINARYPROTO)")
        if p.iter_size < 1:
            raise SolverError(f"{where}iter_size must be >= 1, got {p.iter_size}")
        if p.average_loss < 1:
            raise SolverError(f"{where}average_loss must be >= 1, got {p.average_loss}")
        try:
            # Caffe checks the policy at the first iteration; checking now names the file
            # before any net is built
            get_learning_rate(p, 0)
            self.rule = make_rule(p)
        except SolverError as exc:
            raise SolverError(f"{where}{exc}") from None
        except ValueError as exc:
            raise SolverError(f"{where}{exc}") from None
        self.rank, self.world_size, backend = _init_distributed(distributed, device)
        self.device = _resolve_device(device, self.world_size, backend)
        if self.rank != 0:   # only the root solver displays, logs, plots and snapshots (Caffe)
            verbose, progress, log_csv, plot = False, False, None, None
        self.iter = 0
        self.current_step = 0
        self.verbose = verbose
        self.progress = progress
        self.callbacks = list(callbacks)
        self._builder = net_builder
        if dtype not in (torch.float32, torch.float64):
            raise SolverError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.dtype = dtype
        self.channels_last = bool(channels_last)
        self._reader = reader
        self._prefetch = prefetch
        self.losses: list[float] = []      # per-iteration losses of this run
        self.smoothed_loss = 0.0
        self._window: list = []
        self.last_lr = None
        self.test_results: list[tuple[int, list[dict]]] = []
        # Ctrl-C / SIGHUP during step(); not in data-parallel runs (torchrun stops the workers)
        self.signals = snapshots.SignalActions(self._say, enabled=self.world_size <= 1)

        if p.random_seed >= 0:
            torch.manual_seed(int(p.random_seed) + self.rank)
        seed = int(p.random_seed) if p.random_seed >= 0 else None
        train_seed = None if seed is None else seed + 1_000_000 * self.rank

        # ---- train net (Caffe's InitTrainNet)
        train_param = self._train_net_param()
        train_state = _merged_state(pb.TRAIN, train_param, p.train_state if p.HasField("train_state") else None)
        train_param.state.CopyFrom(train_state)
        self.net, self.train_feed = self._build(train_param, pb.TRAIN, train_state, train_input_shapes,
                                                train_data, train_seed)
        self.net.train()
        self._init_params(seed)
        for w in list(p.weights) + ([weights] if isinstance(weights, (str, os.PathLike)) else list(weights or [])):
            self.copy_trained_layers(self._path(w))

        # ---- test nets (Caffe's InitTestNets)
        test_params = self._test_net_params()
        if isinstance(test_data, (list, tuple)):
            sources = list(test_data)
        else:
            sources = [test_data] * len(test_params)
        if len(sources) < len(test_params):
            sources += [None] * (len(test_params) - len(sources))
        self.test_nets, self.test_feeds = [], []
        for i, (tparam, tstate) in enumerate(test_params):
            shapes = (test_input_shapes[i] if test_input_shapes and i < len(test_input_shapes) else
                      train_input_shapes)
            tseed = None if seed is None else seed + 1000 * (i + 1)
            net, feed = self._build(tparam, pb.TEST, tstate, shapes, sources[i], tseed)
            net.eval()
            self._share_params(net)
            self.test_nets.append(net)
            self.test_feeds.append(feed)
        if self.device is not None:
            # Module.to keeps Parameter identity; the test nets' shared .data is re-pointed afterwards
            self.net.to(self.device)
            for net in self.test_nets:
                net.to(self.device)
                self._share_params(net)
        self._specs = [ParamSpec(*spec) for spec in self.net.param_specs()]
        if self.world_size > 1:  # Caffe's NCCL::Broadcast of the root solver's parameters
            import torch.distributed as dist
            with torch.no_grad():
                for spec in self._specs:
                    dist.broadcast(spec.param.data, src=0)
        self.history = [[torch.zeros_like(spec.param.data) for spec in self._specs]
                        for _ in range(self.rule.histories)]

        # ---- logging
        prefix = self.snapshot_prefix
        test_cols = []
        for i, net in enumerate(self.test_nets):
            shapes = getattr(net, "blob_shapes", {}) or {}
            for name in net.output_names:
                count = int(np.prod(shapes.get(name, ()) or (1,)))
                keys = [name] if count <= 1 else [f"{name}[{k}]" for k in range(count)]
                test_cols += [f"test{i}/{key}" for key in keys]
            if p.test_compute_loss:
                test_cols.append(f"test{i}/loss_total")
        csv_path = (prefix + "_log.csv") if log_csv is True else (log_csv or None)
        self.plot_path = (prefix + "_curve.png") if plot is True else (plot or None)
        self.training_log = TrainingLog(csv_path, test_cols)
        self._iter_start_state = None

    # ------------------------------------------------------------------ setup helpers
    def _path(self, path) -> str:
        p = Path(path)
        return str(p if p.is_absolute() else self.root / p)

    @property
    def snapshot_prefix(self) -> str:
        prefix = self.param.snapshot_prefix
        if not prefix:
            prefix = self.solver_path.stem if self.solver_path is not None else "snapshot"
        return self._path(prefix)

    @staticmethod
    def _copy_net(net: pb.NetParameter) -> pb.NetParameter:
        m = pb.NetParameter()
        m.CopyFrom(net)
        return upgrade_net(m)

    def _train_net_param(self) -> pb.NetParameter:
        p = self.param
        given = [f for f in ("train_net_param", "train_net", "net_param", "net") if p.HasField(f)]
        if len(given) != 1:
            raise SolverError("a solver needs exactly one of train_net_param, train_net, net_param, net"
                              f" (got {', '.join(given) or 'none'})")
        field = given[0]
        if field in ("train_net_param", "net_param"):
            return self._copy_net(getattr(p, field))
        return read_net(self._path(getattr(p, field)))

    def _test_net_params(self) -> list[tuple[pb.NetParameter, pb.NetState]]:
        p = self.param
        has_generic = p.HasField("net") or p.HasField("net_param")
        num_params, num_files = len(p.test_net_param), len(p.test_net)
        num_generic = 0
        if has_generic:
            num_generic = len(p.test_iter) - num_params - num_files
            if num_generic < 0:
                raise SolverError("test_iter must be specified for each test network")
        else:
            if len(p.test_iter) != num_params + num_files:
                raise SolverError("test_iter must be specified for each test network")
        nets = []
        for net in p.test_net_param:
            nets.append(self._copy_net(net))
        for path in p.test_net:
            nets.append(read_net(self._path(path)))
        for _ in range(num_generic):
            if p.HasField("net_param"):
                nets.append(self._copy_net(p.net_param))
            else:
                nets.append(read_net(self._path(p.net)))
        if len(p.test_state) and len(p.test_state) != len(nets):
            raise SolverError("test_state must be unspecified or specified once per test net")
        out = []
        for i, net in enumerate(nets):
            state = _merged_state(pb.TEST, net, p.test_state[i] if len(p.test_state) else None)
            net.state.CopyFrom(state)
            out.append((net, state))
        return out

    def _build(self, net_param, phase, state, input_shapes, data, seed):
        filtered = filter_net(net_param, _phase_name(state.phase), state.level, ())
        source = _as_batch_source(data)
        shapes = dict(input_shapes or {})
        layers = []
        if source is None:
            prefetch = self._prefetch
            for i, layer in enumerate(l for l in filtered.layer if l.type in DATA_LAYER_TYPES):
                pf = layer.data_param.prefetch if prefetch is None else prefetch
                dl = DataLayer(layer, _phase_name(state.phase), self.root,
                               None if seed is None else seed + i, self._reader, pf,
                               rank=self.rank, world_size=self.world_size)
                layers.append(dl)
                shapes.setdefault(dl.tops[0], dl.shape)
                if len(dl.tops) > 1:
                    shapes.setdefault(dl.tops[1], (dl.batch_size,))
        else:
            source = _PeekedSource(source)
            for name, value in source.peek().items():
                shapes.setdefault(name, tuple(_to_tensor(value).shape))
        builder = self._builder
        if builder is None:
            from .. import load_caffe

            def builder(param, phase_name, level, stages, input_shapes):
                return load_caffe(param, phase=phase_name, level=level, stages=stages,
                                  input_shapes=input_shapes)
        net = builder(net_param, _phase_name(state.phase), state.level, (), shapes or None)
        if self.dtype != torch.float32:
            net.to(self.dtype)
        if self.channels_last:
            net.to(memory_format=torch.channels_last)
        return net, _NetFeed(layers, source, self.dtype, self.channels_last, self.device)

    def _share_params(self, test_net):
        """Caffe's ShareTrainedLayersWith: test-net blobs share the train net's (by layer name)."""
        try:
            share_trained_layers(test_net, self.net)
        except ConversionError as exc:
            raise SolverError(f"test net vs train net: {exc}") from None

    def _net_layers(self, net) -> dict:
        return {layer.name: layer for layer in net.net_param.layer}

    def _init_params(self, seed):
        """Run Caffe's fillers on every learnable blob (layer order, blob order), seeded."""
        gen = torch.Generator()
        gen.manual_seed(seed if seed is not None else int.from_bytes(os.urandom(8), "little") >> 1)
        layers = self._net_layers(self.net)
        modules = getattr(self.net, "caffe_layers", {}) or {}
        for name, idx, param, _, _ in self.net.param_specs():
            fillers = getattr(modules[name], "blob_fillers", None) if name in modules else None
            if not fillers and name in layers:
                fillers = layer_fillers(layers[name])
            filler = fillers[idx] if fillers and idx < len(fillers) else None
            fill(filler, param.data, gen)

    def copy_trained_layers(self, weights):
        """Caffe's CopyTrainedLayersFrom (:func:`converters.caffemodel.copy_trained_layers`: blobs
        copied by layer name, counts and shapes must match)."""
        copy_trained_layers(self.net, weights if isinstance(weights, pb.NetParameter) else os.fspath(weights))

    # ------------------------------------------------------------------ learning rate
    def learning_rate(self, iteration: int | None = None) -> float:
        """The rate Caffe uses at ``iteration`` (default: the next one), without changing state."""
        k = self.iter if iteration is None else iteration
        return get_learning_rate(self.param, k, self.current_step)[0]

    # ------------------------------------------------------------------ testing
    def test(self, test_net_id: int = 0) -> dict | None:
        """Caffe's Solver::Test: mean of every output blob element over ``test_iter`` batches."""
        net = self.test_nets[test_net_id]
        feed = self.test_feeds[test_net_id]
        n_iter = self.param.test_iter[test_net_id]
        scores, keys = None, []
        loss = _f32(0)
        with torch.no_grad():
            for _ in range(n_iter):
                if self.signals.stop_requested:
                    return None
                blobs = net.forward_blobs(feed())
                if self.param.test_compute_loss:
                    loss += _f32(float(net.total_loss(blobs)))
                values = []
                for name in net.output_names:
                    flat = blobs[name].detach().reshape(-1).float().cpu().numpy()
                    values.append(flat)
                    if scores is None:
                        keys += [name] if flat.size == 1 else [f"{name}[{k}]" for k in range(flat.size)]
                vec = np.concatenate(values).astype(np.float32) if values else np.zeros(0, np.float32)
                scores = vec if scores is None else (scores + vec).astype(np.float32)
        result = {}
        if scores is not None:
            for key, score in zip(keys, scores):
                result[key] = float(_f32(score) / _f32(n_iter))
        if self.param.test_compute_loss:
            result["loss_total"] = float(loss / _f32(n_iter))
        return result

    def test_all(self) -> list[dict]:
        """Run every test net (Caffe's TestAll); logs and returns the outputs."""
        results = []
        for i in range(len(self.test_nets)):
            self._say(f"Iteration {self.iter}, Testing net (#{i})")
            res = self.test(i)
            if res is None:
                break
            weights = getattr(self.test_nets[i], "loss_weights", {}) or {}
            for j, (key, value) in enumerate(res.items()):
                w = weights.get(key.split("[")[0], 0)
                extra = f" (* {w:g} = {w * value:g} loss)" if w else ""
                self._say(f"    Test net output #{j}: {key} = {value:g}{extra}")
            results.append(res)
        self.test_results.append((self.iter, results))
        return results

    # ------------------------------------------------------------------ training
    def _say(self, msg: str):
        if self.rank != 0:
            return
        log.info(msg)
        if self.verbose:
            from tqdm import tqdm
            tqdm.write(msg, file=sys.stderr)

    def _update_smoothed(self, loss: np.float32, start_iter: int):
        n = self.param.average_loss
        if len(self._window) < n:
            self._window.append(loss)
            size = len(self._window)
            self.smoothed_loss = _f32((_f32(self.smoothed_loss) * _f32(size - 1) + loss) / _f32(size))
        else:
            idx = (self.iter - start_iter) % n
            self.smoothed_loss = _f32(_f32(self.smoothed_loss) + (loss - self._window[idx]) / _f32(n))
            self._window[idx] = loss

    def _forward_backward(self):
        blobs = self.net.forward_blobs(self.train_feed())
        loss = self.net.total_loss(blobs)
        if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
            raise SolverError("the train net has no loss that depends on learnable parameters")
        loss.backward()
        return _f32(loss.detach().item()), blobs

    def _one_iteration(self, start_iter: int) -> dict:
        p = self.param
        row = {"iter": self.iter}
        if (p.test_interval and self.iter % p.test_interval == 0 and (self.iter > 0 or p.test_initialization)
                and self.rank == 0):  # Caffe: only the root solver tests
            results = self.test_all()
            for i, res in enumerate(results):
                for key, value in res.items():
                    row[f"test{i}/{key}"] = value
            if self.signals.stop_requested:
                return row
        display = p.display and self.iter % p.display == 0
        for param in (spec.param for spec in self._specs):
            param.grad = None
        loss = _f32(0)
        blobs = None
        for _ in range(p.iter_size):
            l, blobs = self._forward_backward()
            loss += l
        loss = _f32(loss / _f32(p.iter_size))
        self._update_smoothed(loss, start_iter)
        if display:
            self._say(f"Iteration {self.iter}, loss = {float(self.smoothed_loss):g}")
            weights = getattr(self.net, "loss_weights", {}) or {}
            for j, name in enumerate(self.net.output_names):
                value = blobs[name].detach().reshape(-1)
                for v in value.tolist():
                    w = weights.get(name, 0)
                    extra = f" (* {w:g} = {w * v:g} loss)" if w else ""
                    self._say(f"    Train net output #{j}: {name} = {v:g}{extra}")
        rate, self.current_step = get_learning_rate(p, self.iter, self.current_step)
        self.last_lr = rate
        if display:
            self._say(f"Iteration {self.iter}, lr = {rate:g}")
        params, grads = [], []
        for _, _, param, _, _ in self._specs:
            params.append(param.data)
            if param.grad is None:
                param.grad = torch.zeros_like(param.data)
            grads.append(param.grad)
        self._sync_gradients(grads)
        apply_update(params, grads, self.history, self.rule, rate, self.iter,
                     [s.lr_mult for s in self._specs], [s.decay_mult for s in self._specs], p.weight_decay,
                     p.regularization_type, p.iter_size, p.clip_gradients)
        row.update({"loss": float(loss), "smoothed_loss": float(self.smoothed_loss), "lr": rate})
        self.losses.append(float(loss))
        self.iter += 1
        return row

    def _sync_gradients(self, grads):
        """Caffe 1.0 ``NCCL::on_gradients_ready``: sum the diffs over the workers, scale by 1/W."""
        if self.world_size <= 1:
            return
        import torch.distributed as dist
        with torch.no_grad():
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            flat.mul_(float(_f32(1) / _f32(self.world_size)))
            k = 0
            for g in grads:
                n = g.numel()
                g.copy_(flat[k:k + n].view(g.shape))
                k += n

    def step(self, iters: int = 1) -> float | None:
        """Run ``iters`` iterations (Caffe's Solver::Step); returns the last smoothed loss.

        Ctrl-C (SIGINT, or a KeyboardInterrupt) snapshots at the last completed iteration and
        raises KeyboardInterrupt; SIGHUP snapshots after the iteration and goes on (Caffe's
        ``caffe train`` defaults, see :class:`converters.solver.snapshot.SignalActions`).
        """
        start_iter = self.iter
        stop_iter = self.iter + int(iters)
        self._window = []
        self.smoothed_loss = _f32(0)
        bar = None
        if self.progress and iters > 0:
            from tqdm import tqdm
            bar = tqdm(total=stop_iter - start_iter, desc="train", unit="it", leave=False, dynamic_ncols=True)
        try:
            with self.signals:
                self._loop(start_iter, stop_iter, bar)
        except KeyboardInterrupt:
            self._say(f"Interrupted at iteration {self.iter}: snapshotting")
            if self._iter_start_state is not None:
                self._apply_resume_state(self._iter_start_state)
            for spec in self._specs:
                spec.param.grad = None
            if self.world_size <= 1:
                self.snapshot()
            raise
        finally:
            if bar is not None:
                bar.close()
        if self.signals.stop_requested:
            self._say(f"Stopped at iteration {self.iter}: snapshotting")
            self.snapshot()
            self.signals.stop_requested = False
            raise KeyboardInterrupt
        return float(self.smoothed_loss) if self.iter > start_iter else None

    def _loop(self, start_iter: int, stop_iter: int, bar):
        while self.iter < stop_iter:
            self._iter_start_state = self._resume_state()
            row = self._one_iteration(start_iter)
            if self.signals.stop_requested and "loss" not in row:
                self._apply_resume_state(self._iter_start_state)  # interrupted during the test pass
                break
            self.training_log.add(row)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{float(self.smoothed_loss):.4g}", lr=f"{self.last_lr:.3g}")
            # Caffe: snapshot when due or when a SIGHUP asked for one (once, not twice)
            due = bool(self.param.snapshot) and self.iter % self.param.snapshot == 0
            if self.signals.take_snapshot_request() or due:
                self.snapshot()
            for cb in self.callbacks:
                cb(self)
            if self.signals.stop_requested:
                break

    def solve(self, resume_file=None):
        """Caffe's Solver::Solve: optionally restore, train to ``max_iter``, snapshot, final display/test."""
        if resume_file:
            self.restore(resume_file)
        p = self.param
        self._say(f"Solving {self.net.net_param.name or 'net'} (learning rate policy: {p.lr_policy})")
        self.step(p.max_iter - self.iter)
        if p.snapshot_after_train and (not p.snapshot or self.iter % p.snapshot != 0):
            self.snapshot()
        row = {"iter": self.iter}
        if p.display and self.iter % p.display == 0 and self.rank == 0:
            with torch.no_grad():
                blobs = self.net.forward_blobs(self.train_feed())
                loss = _f32(float(self.net.total_loss(blobs)))
            self._update_smoothed(loss, self.iter)
            self._say(f"Iteration {self.iter}, loss = {float(self.smoothed_loss):g}")
            row["smoothed_loss"] = float(self.smoothed_loss)
        if p.test_interval and self.iter % p.test_interval == 0 and self.rank == 0:
            for i, res in enumerate(self.test_all()):
                for key, value in res.items():
                    row[f"test{i}/{key}"] = value
        if len(row) > 1:
            self.training_log.add(row)
        self._plot()
        self._say("Optimization Done.")
        for feed in [self.train_feed] + self.test_feeds:
            feed.close()
        return self

    # ------------------------------------------------------------------ snapshots
    def _resume_state(self) -> dict:
        """What the sidecar holds for this rank: the feeds' positions and torch's RNG states."""
        return dict(train_data=self.train_feed.state_dict(),
                    test_data=[feed.state_dict() for feed in self.test_feeds],
                    **snapshots.rng_state(self.device))

    def _apply_resume_state(self, state: dict):
        ranks = state.get("ranks")
        if self.world_size > 1 or ranks is not None:
            if ranks is None or len(ranks) != self.world_size:
                self._say(f"resume state is from {len(ranks) if ranks else 1} worker(s), this run has "
                          f"{self.world_size}: data layers and RNGs restart (as Caffe)")
                return
            state = ranks[self.rank]
        self.train_feed.load_state_dict(state["train_data"])
        for feed, st in zip(self.test_feeds, state["test_data"]):
            feed.load_state_dict(st)
        snapshots.set_rng_state(state, self.device)

    def snapshot(self) -> tuple[str, str]:
        """Write ``{prefix}_iter_{iter}.caffemodel`` and ``.solverstate`` (+ resume sidecar), atomically
        (:func:`converters.solver.snapshot.write_snapshot`).

        Data-parallel: a collective (every rank calls it at the same iteration); only rank 0 writes,
        its sidecar holds every rank's resume state under ``ranks``."""
        model_file, state_file = snapshots.snapshot_filenames(self.snapshot_prefix, self.iter)
        resume = self._resume_state()
        if self.world_size > 1:
            import torch.distributed as dist
            gathered = [None] * self.world_size
            dist.all_gather_object(gathered, resume)
            resume = dict(gathered[0], ranks=gathered)
            if self.rank != 0:
                dist.barrier()
                return model_file, state_file
        learned = snapshots.learned_net_name(self.param.snapshot_prefix, self.iter, model_file)
        state = snapshots.solver_state(self.iter, self.current_step, learned, self.history)
        snapshots.write_snapshot(self.net, model_file, state_file, state, resume, self.rule.name, self._say)
        self._plot()
        if self.world_size > 1:
            import torch.distributed as dist
            dist.barrier()  # the files exist for every rank once snapshot() returns
        return model_file, state_file

    def _plot(self):
        if self.plot_path and self.training_log.rows:
            try:
                self.training_log.plot(self.plot_path, title=self.net.net_param.name or "")
            except Exception as exc:  # noqa: BLE001 - a plot must never stop training
                log.warning("could not write the training curve %s: %s", self.plot_path, exc)

    def restore(self, path):
        """Caffe's Solver::Restore from a ``.solverstate`` (ours or real Caffe's): iteration, lr step,
        history, the ``learned_net`` weights, and (our sidecar present) data positions and RNGs.
        Every check runs before the solver changes, so a bad file leaves it as it was."""
        path = Path(path) if os.path.isabs(str(path)) else Path(self._path(path))
        state = snapshots.read_solver_state(path)
        snapshots.check_history(state, self.history, path, self.rule.name)
        model = snapshots.find_learned_net(state, path, self._path)
        if model is not None:
            self.copy_trained_layers(model)
        self.iter = int(state.iter)
        self.current_step = int(state.current_step)
        snapshots.load_history(state, self.history, path)
        extra = snapshots.read_sidecar(path, self.iter)
        if extra is not None:
            self._apply_resume_state(extra)
        elif not Path(snapshots.sidecar_path(path)).exists():
            self._say(f"{path}: no resume sidecar; data layers restart at their first record (as Caffe)")
        self.training_log.truncate(self.iter)
        return self

    # ------------------------------------------------------------------ convenience
    @property
    def params(self) -> dict:
        """``{"layer/blob_index": tensor}`` of the learnable parameters."""
        return {f"{name}/{idx}": param for name, idx, param, _, _ in self._specs}

    def history_arrays(self, buffer: int = 0) -> dict:
        """``{"layer/blob_index": float32 array}`` of history buffer ``buffer`` (0: SGD momentum)."""
        return {f"{name}/{idx}": self.history[buffer][i].detach().cpu().numpy().copy()
                for i, (name, idx, _, _, _) in enumerate(self._specs)}


def get_solver(path, **kwargs) -> Solver:
    """pycaffe's ``caffe.get_solver(path)``: a :class:`Solver` for a solver prototxt."""
    return Solver(path, **kwargs)
