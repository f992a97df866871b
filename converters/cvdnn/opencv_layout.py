"""Layer outputs in the layout OpenCV 4 returns them, where it differs from the converter's.

What it owns: the output-layout adapters, one per Caffe layer type; every other layer's output is
passed through unchanged (OpenCV 4 keeps Caffe's N x C x H x W blobs).
"""
from __future__ import annotations

import numpy as np


def adapt(layer, value: np.ndarray) -> np.ndarray:
    """``value`` (a top of ``layer``, a ``LayerParameter``) as OpenCV 4 would return it."""
    fix = _ADAPTERS.get(layer.type)
    return fix(layer, value) if fix is not None else value


_ADAPTERS: dict = {}
