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


def random_weights(prototxt, path, seed: int = 0, calibrate=None, bias_shift=None) -> Path:
    """Write a caffemodel of seeded random weights for ``prototxt`` (LeCun-scaled weights, small
    biases; BatchNorm / Scale / Normalize blobs near their usual values).  ``calibrate={"_input": x,
    blob: std, ...}`` rescales the layer producing each blob so that its output on ``x`` has that
    standard deviation (softmax probabilities neither uniform nor one-hot, SSD offsets of a sensible
    size); ``bias_shift={layer: s}`` adds ``s`` to the odd output channels' biases (SSD conf heads:
    fewer priors above a face score of 0.5)."""
    import torch

    from converters import load_caffe, save_caffemodel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_caffe(str(prototxt), channels_last=False)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad(), np.errstate(over="ignore"):     # uncalibrated SSD offsets overflow exp
        for name, mod in model.caffe_layers.items():
            blobs = list(mod.blobs()) if hasattr(mod, "blobs") else []
            kind = getattr(mod, "caffe_type", "")
            for j, p in enumerate(blobs):
                r = torch.randn(p.shape, generator=g)
                if kind == "BatchNorm":      # mean, variance (> 0), moving-average factor 1
                    p.copy_([r * 0.1, 0.5 + r.abs() * 0.5, torch.ones(p.shape)][j])
                elif kind == "Scale":
                    p.copy_(1.0 + 0.1 * r if j == 0 else 0.1 * r)
                elif kind == "Normalize":
                    p.copy_(20.0 * (1.0 + 0.1 * r))
                elif p.dim() > 1:           # He-scaled weights keep ReLU nets' activations O(1)
                    p.copy_(r * (2.0 / p[0].numel()) ** 0.5)
                else:
                    p.copy_(r * 0.05)
        if calibrate:
            # one forward pass on the calibration input, layer by layer in prototxt order:
            # BatchNorm takes the statistics of its actual input (every normalised blob is O(1)),
            # each named blob's producer is rescaled to the target std (linear: weights and bias)
            cal = dict(calibrate)
            x, bn_stats = cal.pop("_input"), cal.pop("_bn_stats", False)
            tops = {t: name for name, layer in zip(model.caffe_layers, model.net_param.layer) for t in layer.top}
            handles = []

            def set_stats(mod, args):
                v = args[0].float()
                mean, var, factor = mod.blobs()
                mean.copy_(v.mean(dim=(0, 2, 3)))
                var.copy_(v.var(dim=(0, 2, 3), unbiased=False) + 1e-3)
                factor.fill_(1.0)

            def rescale(target):
                def hook(mod, args, out):
                    k = target / max(float(out.std()), 1e-12)
                    for p in mod.blobs():
                        p.mul_(k)
                    return out * k
                return hook

            for name, mod in model.caffe_layers.items():
                if bn_stats and getattr(mod, "caffe_type", "") == "BatchNorm":
                    handles.append(mod.register_forward_pre_hook(set_stats))
            for blob, target in cal.items():
                handles.append(model.caffe_layers[tops[blob]].register_forward_hook(rescale(target)))
            model.forward_blobs({model.input_names[0]: torch.from_numpy(x)})
            for h in handles:
                h.remove()
        for name, shift in (bias_shift or {}).items():
            b = model.caffe_layers[name].blobs()[1]
            b[1::2] += shift                  # channel 2p+1: class 1 of prior p (SSD conf heads)
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


FACE_MEAN = (104.0, 177.0, 123.0)     # OpenCV's res10 face detector sample
HEAD_NAMES = ("conv4_3_norm", "fc7", "conv6_2", "conv7_2", "conv8_2", "conv9_2")


def face_ssd_weights(path, image, seed: int = 0) -> Path:
    """Random weights for ``face_ssd_small.prototxt``, calibrated on ``image`` (BGR): BatchNorm
    statistics of that image, box offsets of a moderate size, a few dozen priors above 0.5."""
    import cv2

    img = cv2.resize(image, (300, 300))
    x = np.ascontiguousarray(((img.astype(np.float32) - np.float32(FACE_MEAN))).transpose(2, 0, 1)[None])
    cal = {"_input": x, "_bn_stats": True}
    for h in HEAD_NAMES:
        cal[f"{h}_mbox_loc"] = 0.2
        cal[f"{h}_mbox_conf"] = 1.5
    return random_weights(DATA / "face_ssd_small.prototxt", path, seed=seed, calibrate=cal,
                          bias_shift={f"{h}_mbox_conf": -6.0 for h in HEAD_NAMES})
