"""Helpers of the cvdnn tests: random-weight caffemodels for the small test nets, and whether an
OpenCV with the Caffe importer (4.x) is here to compare against."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parent / "data" / "cvdnn"
AGE_MEAN = (78.4263377603, 87.7689143744, 114.895847746)   # the Levi-Hassner tutorials' mean


def opencv4():
    """cv2 with ``dnn.readNetFromCaffe`` (OpenCV 4.x), or skip saying why."""
    cv2 = pytest.importorskip("cv2", reason="OpenCV (cv2) is not installed")
    if int(cv2.__version__.split(".")[0]) >= 5 or not hasattr(cv2.dnn, "readNetFromCaffe"):
        pytest.skip(f"needs OpenCV 4.x with cv2.dnn.readNetFromCaffe as the reference; OpenCV "
                    f"{cv2.__version__} has none (pip install 'opencv-python-headless<5')")
    return cv2


def random_weights(prototxt, path, seed: int = 0, calibrate=None) -> Path:
    """Write a caffemodel of seeded random weights for ``prototxt`` (LeCun-scaled weights, small
    biases).  ``calibrate=(blob_name, input_blob)`` rescales the layer producing ``blob_name`` so
    that its output has a standard deviation near 2 on ``input_blob`` (softmax probabilities that
    are neither uniform nor one-hot)."""
    import torch

    from converters import load_caffe, save_caffemodel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_caffe(str(prototxt), channels_last=False)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, mod in model.caffe_layers.items():
            for p in (mod.blobs() if hasattr(mod, "blobs") else []):
                if p.dim() > 1:
                    p.copy_(torch.randn(p.shape, generator=g) * (1.0 / p[0].numel()) ** 0.5)
                else:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        if calibrate is not None:
            blob, x = calibrate
            out = model.forward_blobs({model.input_names[0]: torch.from_numpy(x)})[blob]
            layer = next(m for n, m in model.caffe_layers.items()
                         if any(t == blob for t in model.net_param.layer[list(model.caffe_layers).index(n)].top))
            k = 2.0 / max(float(out.std()), 1e-6)
            for p in layer.blobs():
                p.mul_(k)
    save_caffemodel(model, path)
    # keep only layers with blobs, as a real caffemodel of a deploy net usually does (and as
    # OpenCV reads one: blobs from the first same-named layer that has any)
    from converters.formats import read_weights, write_weights
    net = read_weights(path)
    keep = [layer for layer in net.layer if len(layer.blobs)]
    del net.layer[:]
    net.layer.extend(keep)
    write_weights(net, path)
    return Path(path)


def photo(seed: int = 0, h: int = 240, w: int = 320) -> np.ndarray:
    """A smooth random BGR test image (gradients plus blobs), uint8."""
    rs = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        img[:, :, c] = 90 + 60 * np.sin(xx / (17 + 9 * c) + rs.rand() * 6) * np.cos(yy / (23 + 5 * c))
    for _ in range(6):
        cy, cx, r = rs.randint(0, h), rs.randint(0, w), rs.randint(10, 50)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += rs.randint(-80, 80, size=3)
    return np.clip(img + rs.randn(h, w, 3) * 6, 0, 255).astype(np.uint8)
