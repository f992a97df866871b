"""pycaffe's global mode: ``set_mode_cpu()``, ``set_mode_gpu()``, ``set_device(i)``, ``set_random_seed``.

Caffe keeps the mode in a process-wide singleton that nets consult when they run; we do the
same: a net moves itself to the current device at its next ``forward``/``backward``.
"""
from __future__ import annotations

import warnings

import torch

_STATE = {"mode": "cpu", "device_id": 0}


def set_mode_cpu() -> None:
    """Run every net on the CPU (Caffe's default)."""
    _STATE["mode"] = "cpu"


def set_mode_gpu() -> None:
    """Run on CUDA device ``set_device(i)`` (default 0); without CUDA warn and stay on the CPU."""
    if not torch.cuda.is_available():
        warnings.warn("caffe.set_mode_gpu(): CUDA is not available to PyTorch; staying on the CPU",
                      RuntimeWarning, stacklevel=2)
        _STATE["mode"] = "cpu"
        return
    _STATE["mode"] = "gpu"


def set_device(device_id: int) -> None:
    """Select the CUDA device used in GPU mode (Caffe's ``Caffe::SetDevice``)."""
    device_id = int(device_id)
    if device_id < 0:
        raise ValueError(f"device id must be >= 0, got {device_id}")
    if torch.cuda.is_available() and device_id >= torch.cuda.device_count():
        raise ValueError(f"CUDA device {device_id} does not exist ({torch.cuda.device_count()} visible)")
    _STATE["device_id"] = device_id


def set_random_seed(seed: int) -> None:
    """Seed the random generators used by the nets (Dropout in TRAIN, fillers)."""
    torch.manual_seed(int(seed))


def current_device() -> torch.device:
    if _STATE["mode"] == "gpu" and torch.cuda.is_available():
        return torch.device("cuda", _STATE["device_id"])
    return torch.device("cpu")


def mode() -> str:
    return _STATE["mode"]
