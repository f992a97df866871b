"""Caffe's training snapshots: their names, writing one, restoring from one, and the signal actions.

What it owns:

* the names (Caffe's ``Solver::SnapshotFilename``): ``{prefix}_iter_{N}.caffemodel`` and
  ``{prefix}_iter_{N}.solverstate``, and the ``learned_net`` a ``.solverstate`` records (the model
  file name as Caffe built it, relative to its working directory when the prefix is relative);
* writing a snapshot: the caffemodel through :func:`converters.caffemodel.save_caffemodel` (the
  package's one caffemodel writer), the ``SolverState`` message (``iter``, ``current_step``,
  ``learned_net``, ``history`` as float32 BlobProtos) and the resume sidecar
  ``.solverstate.json``, each written atomically;
* the sidecar: what Caffe does not save but a bit-exact resume needs (the data layers' positions,
  given by the solver as opaque dicts, and torch's RNG states, encoded here);
* restoring: the ``SolverState`` read with errors naming the file, Caffe's history-count check,
  every history blob's size checked before any buffer is touched, the ``learned_net`` found;
* Caffe's signal actions while ``Solver.step`` runs (``caffe train``'s defaults,
  ``sigint_effect: stop``, ``sighup_effect: snapshot``): SIGINT finishes the iteration, snapshots
  and stops (a second SIGINT stops at once); SIGHUP snapshots after the iteration and carries on.

The step loop (when a snapshot is due, what an interrupt does to the iteration) is
:mod:`converters.solver.solver`'s; nothing here knows data layers or update rules.
"""
from __future__ import annotations

import base64
import json
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..caffemodel import save_caffemodel
from ..formats import CaffeFormatError, array_to_blob, atomic_write_bytes, blob_shape, blob_to_array
from ..formats.files import read_binary
from ..proto import caffe_pb2 as pb
from .errors import SolverError

SIDECAR_FORMAT = "converters.solver resume state"
SIDECAR_VERSION = 1


# ------------------------------------------------------------------ names
def snapshot_filenames(prefix: str, iteration: int) -> tuple[str, str]:
    """``({prefix}_iter_{N}.caffemodel, {prefix}_iter_{N}.solverstate)`` (Caffe's SnapshotFilename)."""
    base = f"{prefix}_iter_{int(iteration)}"
    return base + ".caffemodel", base + ".solverstate"


def sidecar_path(state_file) -> str:
    """The resume sidecar beside a ``.solverstate``."""
    return str(state_file) + ".json"


def learned_net_name(prefix_param: str, iteration: int, model_file: str) -> str:
    """The ``learned_net`` Caffe writes: the model file name as it built it from ``snapshot_prefix``
    (relative to its working directory, so a relative prefix stays relative), else ``model_file``."""
    if prefix_param and not os.path.isabs(prefix_param):
        return snapshot_filenames(prefix_param, iteration)[0]
    return str(model_file)


# ------------------------------------------------------------------ the SolverState message
def solver_state(iteration: int, current_step: int, learned_net: str, history) -> pb.SolverState:
    """Caffe's ``SGDSolver::SnapshotSolverStateToBinaryProto``: ``history`` is the solver's
    buffers (a list of lists of tensors, buffer by buffer), stored as float32 blobs in that order."""
    state = pb.SolverState(iter=int(iteration), current_step=int(current_step), learned_net=learned_net)
    for buffers in history:
        for h in buffers:
            array_to_blob(h.detach().cpu().float().numpy(), out=state.history.add())
    return state


def read_solver_state(path) -> pb.SolverState:
    """A ``.solverstate`` (ours or real Caffe's) as a ``SolverState``; a clear error naming the file
    when it is missing, HDF5 or not a solver state."""
    path = Path(path)
    if path.suffix == ".h5":
        raise SolverError(f"{path}: HDF5 solver states are not supported")
    data = read_binary(path)
    state = pb.SolverState()
    try:
        state.ParseFromString(data)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types for corrupt bytes
        raise CaffeFormatError(path, f"not a valid solverstate ({exc})") from None
    return state


def check_history(state: pb.SolverState, history, path, rule_name: str) -> None:
    """Caffe's ``CHECK_EQ(state.history_size(), history_.size())`` plus every blob's value count,
    all before anything is restored (a bad file leaves the solver as it was)."""
    buffers = [h for group in history for h in group]
    if len(state.history) != len(buffers):
        raise SolverError(f"{path}: incorrect length of history blobs ({len(state.history)} in the file, "
                          f"{rule_name} on this net needs {len(buffers)})")
    for k, (blob, h) in enumerate(zip(state.history, buffers)):
        if int(np.prod(blob_shape(blob) or (1,))) != h.numel():
            raise SolverError(f"{path}: history blob {k} has shape {blob_shape(blob)}, "
                              f"expected {tuple(h.shape)}")


def load_history(state: pb.SolverState, history, path) -> None:
    """Copy the state's history blobs into the solver's buffers (checked by :func:`check_history`)."""
    k = 0
    with torch.no_grad():
        for group in history:
            for h in group:
                values = blob_to_array(state.history[k], path, f"history {k}")
                h.copy_(torch.from_numpy(values.reshape(h.shape)))
                k += 1


def find_learned_net(state: pb.SolverState, path, resolve: Callable[[str], str]) -> str | None:
    """The caffemodel a state names: ``learned_net`` resolved as the solver resolves paths, else the
    file of that name beside the ``.solverstate`` (a snapshot folder that was moved); None when the
    state names none."""
    if not state.learned_net:
        return None
    candidates = [Path(resolve(state.learned_net)), Path(path).parent / Path(state.learned_net).name]
    found = next((c for c in candidates if c.exists()), None)
    if found is None:
        raise CaffeFormatError(path, f"learned_net {state.learned_net!r} not found")
    return str(found)


# ------------------------------------------------------------------ the resume sidecar
def rng_state(device: torch.device | None) -> dict:
    """torch's generator states (CPU, and the device's on CUDA) as base64 text for the sidecar."""
    out = {"torch_rng": _b64(torch.get_rng_state())}
    if device is not None and device.type == "cuda":
        out["cuda_rng"] = _b64(torch.cuda.get_rng_state(device))
    return out


def set_rng_state(state: dict, device: torch.device | None) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(_unb64(state["torch_rng"]))
    if "cuda_rng" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(_unb64(state["cuda_rng"]), device)


def _b64(rng: torch.Tensor) -> str:
    return base64.b64encode(rng.cpu().numpy().tobytes()).decode("ascii")


def _unb64(text: str) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(text), dtype=np.uint8).copy())


def read_sidecar(state_file, iteration: int) -> dict | None:
    """The resume sidecar of ``state_file`` when it exists, is ours and is for ``iteration``
    (a sidecar left from another run of the same name is ignored), else None."""
    path = Path(sidecar_path(state_file))
    if not path.exists():
        return None
    try:
        extra = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise CaffeFormatError(path, f"not a valid resume sidecar ({exc})") from None
    if not isinstance(extra, dict) or extra.get("format") != SIDECAR_FORMAT:
        return None
    if int(extra.get("iter", -1)) != int(iteration):
        return None
    return extra


# ------------------------------------------------------------------ one snapshot
def write_snapshot(net, model_file: str, state_file: str, state: pb.SolverState, resume: dict | None,
                   solver_type: str = "", say: Callable[[str], None] = lambda msg: None) -> None:
    """Write the caffemodel, the ``.solverstate`` and (``resume`` given) its sidecar, each atomically,
    with Caffe's log lines."""
    say(f"Snapshotting to binary proto file {model_file}")
    save_caffemodel(net, model_file)
    say(f"Snapshotting solver state to binary proto file {state_file}")
    atomic_write_bytes(state_file, state.SerializeToString())
    if resume is not None:
        sidecar = dict(resume, format=SIDECAR_FORMAT, version=SIDECAR_VERSION, iter=int(state.iter),
                       solver_type=solver_type, caffemodel=os.path.basename(model_file))
        atomic_write_bytes(sidecar_path(state_file), json.dumps(sidecar).encode("utf-8"))


# ------------------------------------------------------------------ SIGINT / SIGHUP
@dataclass
class SignalActions:
    """Caffe's ``SignalHandler`` for a run of ``Solver.step``: ``with actions: ...`` installs the
    handlers (main thread only; elsewhere Python cannot) and puts the previous ones back.

    SIGINT sets :attr:`stop_requested` (the loop finishes the iteration, snapshots, stops); a second
    SIGINT raises KeyboardInterrupt at once.  SIGHUP sets :attr:`snapshot_requested` (the loop
    snapshots after the iteration and goes on); a SIGHUP that the process ignores (``nohup``) stays
    ignored, a deliberate choice of the user's.
    """
    say: Callable[[str], None] = lambda msg: None
    enabled: bool = True
    stop_requested: bool = False
    snapshot_requested: bool = False

    def __post_init__(self):
        self._previous: dict = {}

    def take_snapshot_request(self) -> bool:
        """True once per SIGHUP received."""
        asked, self.snapshot_requested = self.snapshot_requested, False
        return asked

    def _on_sigint(self, signum, frame):
        if self.stop_requested:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.stop_requested = True
        self.say("Interrupted: finishing this iteration, then snapshotting (Ctrl-C again to abort)")

    def _on_sighup(self, signum, frame):
        self.snapshot_requested = True
        self.say("SIGHUP: snapshotting after this iteration")

    def __enter__(self):
        self.stop_requested = self.snapshot_requested = False
        if not self.enabled or threading.current_thread() is not threading.main_thread():
            return self
        wanted = [(signal.SIGINT, self._on_sigint)]
        sighup = getattr(signal, "SIGHUP", None)     # absent on Windows
        if sighup is not None and signal.getsignal(sighup) is not signal.SIG_IGN:
            wanted.append((sighup, self._on_sighup))
        for signum, handler in wanted:
            try:
                self._previous[signum] = signal.signal(signum, handler)
            except ValueError:          # not the main interpreter
                break
        return self

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}
        return False
