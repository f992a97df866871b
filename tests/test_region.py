"""YOLOv2's Region layer (OpenCV 4 semantics, ``converters/layers/region.py``) against a NumPy
re-statement written cell by cell from OpenCV's rules; needs no OpenCV (the live comparison is in
``test_fork_layers_opencv.py``).  Also its parameter checks and the anchors-in-``biases`` form."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from converters import load_caffe
from converters.formats import parse_net
from converters.layers import ConversionError

rng = np.random.default_rng(2016)


def region_net(shape, params, second=None):
    text = f'input: "x" input_shape {{ {" ".join(f"dim: {d}" for d in shape)} }}\n'
    bottoms = 'bottom: "x"'
    if second is not None:
        text += f'input: "img" input_shape {{ {" ".join(f"dim: {d}" for d in second)} }}\n'
        bottoms += ' bottom: "img"'
    return text + f'layer {{ name: "region" type: "Region" {bottoms} top: "r" region_param {{ {params} }} }}\n'


def run(text, x, biases=None, semantics="opencv", img=None):
    net = load_caffe(parse_net(text), semantics=semantics, channels_last=False)
    layer = net.caffe_layers["region"]
    if biases is not None:
        with torch.no_grad():
            layer.biases.copy_(torch.from_numpy(biases))
    feed = {"x": torch.from_numpy(x)}
    if img is not None:
        feed["img"] = torch.from_numpy(img)
    with torch.no_grad():
        return net.forward_blobs(feed)["r"].numpy()


def sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


def reference(x, biases, classes, softmax, thresh, nms, classfix=0, norm=None):
    """OpenCV 4's Region, one anchor at a time, then per-class greedy NMS on corner boxes."""
    n, h, w, ch = x.shape
    a_count = ch // (5 + classes)
    hn, wn = norm if norm else (h, w)
    out = np.zeros((n, h * w * a_count, 5 + classes), np.float64)
    for b in range(n):
        for y in range(h):
            for c in range(w):
                for a in range(a_count):
                    t = x[b, y, c, a * (5 + classes):(a + 1) * (5 + classes)].astype(np.float64)
                    row = out[b, (y * w + c) * a_count + a]
                    row[0] = (c + sigmoid(t[0])) / w
                    row[1] = (y + sigmoid(t[1])) / h
                    row[2] = math.exp(t[2]) * biases[2 * a] / wn
                    row[3] = math.exp(t[3]) * biases[2 * a + 1] / hn
                    row[4] = sigmoid(t[4])
                    if softmax:
                        e = [math.exp(v - max(t[5:])) for v in t[5:]]
                        probs = [v / sum(e) for v in e]
                    else:
                        probs = [sigmoid(v) for v in t[5:]]
                    obj = 0.0 if classfix == -1 and row[4] < 0.5 else row[4]
                    for j, pj in enumerate(probs):
                        row[5 + j] = obj * pj if obj * pj > thresh else 0.0
        if nms > 0:
            for k in range(classes):
                score = out[b, :, 5 + k].copy()
                order = sorted((i for i in range(len(score)) if score[i] > thresh), key=lambda i: -score[i])
                kept = []
                for i in order:
                    if all(iou(out[b, i, :4], out[b, j, :4]) <= nms for j in kept):
                        kept.append(i)
                out[b, :, 5 + k] = [score[i] if i in kept else 0.0 for i in range(len(score))]
    return out[0] if n == 1 else out


def iou(p, q):
    """Overlap of two centre-size boxes, via their corners."""
    p0, p1 = (p[0] - p[2] / 2, p[1] - p[3] / 2), (p[0] + p[2] / 2, p[1] + p[3] / 2)
    q0, q1 = (q[0] - q[2] / 2, q[1] - q[3] / 2), (q[0] + q[2] / 2, q[1] + q[3] / 2)
    iw = min(p1[0], q1[0]) - max(p0[0], q0[0])
    ih = min(p1[1], q1[1]) - max(p0[1], q0[1])
    inter = iw * ih if iw > 0 and ih > 0 else 0.0
    return inter / (p[2] * p[3] + q[2] * q[3] - inter)


def close(ours, expected):
    tol = 1e-4 * float(np.abs(expected).max()) + 1e-5
    diff = float(np.abs(ours - expected).max())
    assert diff <= tol, f"max diff {diff:.3g} > {tol:.3g}"


@pytest.mark.parametrize("n,softmax,thresh,nms", [(1, True, 0.2, 0.0), (1, True, 0.2, 0.4), (1, False, 0.1, 0.3),
                                                   (2, True, 0.15, 0.45)])
def test_region_matches_numpy_restatement(n, softmax, thresh, nms):
    h, w, a, c = 5, 4, 3, 4
    x = (rng.normal(size=(n, h, w, a, 5 + c)) * 2).astype(np.float32)
    x[..., 2:4] *= 0.25           # boxes of a few cells: neighbours overlap, NMS has work to do
    x = x.reshape(n, h, w, a * (5 + c))
    biases = rng.uniform(1, 4, 2 * a).astype(np.float32)
    params = f"classes: {c} anchors: {a} {'softmax' if softmax else 'logistic'}: 1 thresh: {thresh} nms_threshold: {nms}"
    ours = run(region_net(x.shape, params), x, biases)
    expected = reference(x, biases, c, softmax, thresh, nms)
    assert ours.shape == expected.shape == ((h * w * a, 5 + c) if n == 1 else (n, h * w * a, 5 + c))
    close(ours, expected)
    assert 0 < int((ours[..., 5:] > 0).sum()) < ours[..., 5:].size
    if nms:     # NMS did suppress some scores the threshold had let through
        assert (reference(x, biases, c, softmax, thresh, 0.0)[..., 5:] > 0).sum() > (ours[..., 5:] > 0).sum()


def test_region_biases_in_param_and_second_bottom():
    h, w, a, c = 3, 6, 2, 2
    x = rng.normal(size=(1, h, w, a * (5 + c))).astype(np.float32)
    biases = [1.5, 2.0, 3.25, 0.75]
    text = region_net(x.shape, f"classes: {c} num: {a} softmax: 1 nms_threshold: 0 "
                               + " ".join(f"biases: {v}" for v in biases), second=(1, 3, 24, 48))
    net = load_caffe(parse_net(text), channels_last=False)
    assert net.caffe_layers["region"].blobs() == []          # the fork form: no weight blob
    ours = run(text, x, img=np.zeros((1, 3, 24, 48), np.float32))
    close(ours, reference(x, np.array(biases), c, True, 0.2, 0.0, norm=(24, 48)))


def test_region_classfix_by_semantics():
    x = (rng.normal(size=(1, 4, 4, 2 * 7)) * 2).astype(np.float32)
    biases = np.array([1, 1, 2, 2], np.float32)
    text = region_net(x.shape, "classes: 2 anchors: 2 softmax: 1 classfix: -1 nms_threshold: 0")
    # fork semantics apply classfix -1 (objectness < 0.5 drops the cell); OpenCV's importer reads it as 1
    close(run(text, x, biases, semantics="fork"), reference(x, biases, 2, True, 0.2, 0.0, classfix=-1))
    close(run(text, x, biases, semantics="opencv"), reference(x, biases, 2, True, 0.2, 0.0))


@pytest.mark.parametrize("params,shape,needle", [
    ("classes: 2 anchors: 1 coords: 5 softmax: 1", (1, 2, 2, 7), "coords must be 4"),
    ("classes: 2 anchors: 1", (1, 2, 2, 7), "softmax: 1 or logistic: 1"),
    ("classes: 2 anchors: 2 softmax: 1", (1, 2, 2, 7), "anchors*(5+classes)"),
    ("classes: 0 anchors: 1 softmax: 1", (1, 2, 2, 5), "classes >= 1"),
    ("classes: 2 anchors: 1 softmax: 1 biases: 1", (1, 2, 2, 7), "1 biases"),
    ("classes: 2 anchors: 1 softmax: 1", (1, 7, 2, 2), "NHWC"),
])
def test_region_bad_params_name_the_layer(params, shape, needle):
    with pytest.raises(ConversionError) as err:
        load_caffe(parse_net(region_net(shape, params)), channels_last=False)
    assert "layer 'region' (Region)" in str(err.value) and needle in str(err.value)
