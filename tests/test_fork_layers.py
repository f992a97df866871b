"""Fork layers (SSD, PSPNet, ShuffleNet, SENet, MobileNet, YOLO ports) against OpenCV 4.14's outputs
and against NumPy re-statements of the forks' own definitions.

Golden files: ``$OPENCV_ORACLE_DIR``, else ``../shared/opencv-oracle``, else the bundled subset in
``tests/data/opencv-oracle`` (the small per-layer cases and the trimmed MobileNet-SSD head).  The
goldens were made by OpenCV, so they are compared with ``semantics="opencv"``; the fork semantics
are tested against independent NumPy re-statements, and every place where the two differ is
recorded below as a known difference (the ``test_known_difference_*`` tests).
"""
from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from converters import load_caffe
from converters.formats import parse_net, read_weights
from converters.formats.fastweights import read_weight_layers
from converters.proto import caffe_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "tests" / "data" / "opencv-oracle"


def oracle_dir() -> Path | None:
    env = os.environ.get("OPENCV_ORACLE_DIR")
    for cand in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "opencv-oracle", BUNDLED]:
        if cand.is_dir() and any((cand / d / "expected.npz").exists() for d in os.listdir(cand)):
            return cand
    return None


def golden_cases() -> list[Path]:
    found: dict[str, Path] = {}
    for base in (oracle_dir(), BUNDLED):
        if base is None or not base.is_dir():
            continue
        for d in sorted(base.iterdir()):
            if (d / "expected.npz").exists() and (d / "deploy.prototxt").exists():
                found.setdefault(d.name, d)
    return list(found.values())


CASES = golden_cases()


def run_layers(net, inputs: dict) -> dict:
    """Every layer's outputs, by Caffe layer name (an in-place layer's own value, as the goldens)."""
    rec = {}
    hooks = []
    for name, mod in net.caffe_layers.items():
        hooks.append(mod.register_forward_hook(
            lambda m, a, out, name=name: rec.__setitem__(
                name, [t.detach().clone() for t in ((out,) if isinstance(out, torch.Tensor) else out)])))
    try:
        with torch.no_grad():
            net.forward_blobs({k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in inputs.items()})
    finally:
        for h in hooks:
            h.remove()
    return rec


def detection_rows(a: np.ndarray) -> np.ndarray:
    rows = a.reshape(-1, 7)
    rows = rows[np.any(rows != 0, axis=1)]
    order = np.lexsort((rows[:, 6], rows[:, 5], rows[:, 4], rows[:, 3], -rows[:, 2], rows[:, 1], rows[:, 0]))
    return rows[order]


def compare_case(case: Path, semantics: str = "opencv"):
    """(worst dense diff / tolerance, worst blob, detection report) for one golden case."""
    weights = case / "weights.caffemodel"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = load_caffe(case / "deploy.prototxt", weights if weights.exists() else None,
                         semantics=semantics, channels_last=False)
    if (case / "inputs.npz").exists():
        inputs = dict(np.load(case / "inputs.npz"))
    else:
        fixture = json.loads((case / "fixture.json").read_text())
        inputs = {fixture["primary_input"]: np.load(case / "input.npy")}
    got = run_layers(net, inputs)
    types = {layer.name: layer.type for layer in net.net_param.layer}
    expected = np.load(case / "expected.npz")
    worst, worst_key, dets = 0.0, None, []
    for key in expected.files:
        name, _, idx = key.partition("#")
        assert name in got, f"{case.name}: no layer {name!r}"
        ours, exp = got[name][int(idx or 0)].numpy(), expected[key]
        if types[name] == "DetectionOutput":
            o, e = detection_rows(ours), detection_rows(exp)
            assert o.shape == e.shape, f"{case.name}/{key}: {len(o)} detections, OpenCV has {len(e)}"
            assert np.array_equal(o[:, :2], e[:, :2]), f"{case.name}/{key}: image/label columns differ"
            ds = float(np.abs(o[:, 2] - e[:, 2]).max(initial=0))
            db = float(np.abs(o[:, 3:] - e[:, 3:]).max(initial=0))
            assert ds <= 1e-5 and db <= 1e-4, f"{case.name}/{key}: score diff {ds}, box diff {db}"
            dets.append((key, len(o), ds, db))
            continue
        assert ours.shape == exp.shape, f"{case.name}/{key}: shape {ours.shape}, OpenCV {exp.shape}"
        tol = 1e-4 * float(np.abs(exp).max()) + 1e-5
        diff = float(np.abs(ours - exp).max())
        assert diff <= tol, f"{case.name}/{key}: max diff {diff:.3g} > tolerance {tol:.3g}"
        if diff / tol >= worst:
            worst, worst_key = diff / tol, (key, diff)
    return worst, worst_key, dets, net


@pytest.mark.skipif(not CASES, reason="no OpenCV oracle fixtures (set OPENCV_ORACLE_DIR or add "
                                      "../shared/opencv-oracle)")
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_opencv_golden(case):
    worst, worst_key, dets, _ = compare_case(case, "opencv")
    parts = []
    if worst_key:
        parts.append(f"worst dense difference {worst_key[1]:.3g} ({worst:.3g} of the tolerance, "
                     f"blob '{worst_key[0]}')")
    parts += [f"{key}: {n} rows, score diff {ds:.2g}, box diff {db:.2g}" for key, n, ds, db in dets]
    print(f"[opencv-oracle] {case.name} ({case.parent}): " + "; ".join(parts))


@pytest.mark.skipif(not CASES, reason="no OpenCV oracle fixtures")
@pytest.mark.parametrize("case", [c for c in CASES if c.name in ("normalize_a", "permute_a", "interp_a",
                                                                  "shufflechannel_a", "detection_output_a",
                                                                  "mobilenet_ssd", "mobilenet_ssd_head")],
                         ids=lambda c: c.name)
def test_fork_semantics_agree_where_the_goldens_set_every_field(case):
    # These prototxts set every field whose default differs (clip, confidence_threshold, ...), so
    # the fork's definition gives OpenCV's values too (rows compared after sorting).
    compare_case(case, "fork")


# ------------------------------------------------------------------ helpers for small nets
def net_from(text: str, semantics="fork", **kw):
    return load_caffe(parse_net(text), semantics=semantics, channels_last=False, **kw)


def forward(net, **inputs):
    with torch.no_grad():
        out = net({k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in inputs.items()})
    return out.numpy() if isinstance(out, torch.Tensor) else {k: v.numpy() for k, v in out.items()}


def one_layer(typ, params, shapes: dict, semantics="fork", tops=("out",)):
    inputs = "".join(f'input: "{k}" input_shape {{ {" ".join(f"dim: {d}" for d in s)} }}\n'
                     for k, s in shapes.items())
    bottoms = " ".join(f'bottom: "{k}"' for k in shapes)
    top = " ".join(f'top: "{t}"' for t in tops)
    return net_from(f'{inputs}layer {{ name: "l" type: "{typ}" {bottoms} {top} {params} }}', semantics)


rng = np.random.default_rng(16)


# ------------------------------------------------------------------ PriorBox (weiliu89)
def np_prior_box(fh, fw, ih, iw, mins, maxs, ars, flip, clip, var, step=None, offset=0.5, to_int=True):
    """weiliu89 PriorBoxLayer::Forward_cpu re-stated (double arithmetic, float output)."""
    ratios = [1.0]
    for a in ars:
        if all(abs(a - r) >= 1e-6 for r in ratios):
            ratios.append(a)
            if flip:
                ratios.append(1 / a)
    sh, sw = (step, step) if step else (ih / fh, iw / fw)
    boxes = []
    for h in range(fh):
        for w in range(fw):
            cx, cy = (w + offset) * sw, (h + offset) * sh
            for i, m in enumerate(mins):
                m = int(m) if to_int else m
                sizes = [(m, m)]
                if maxs:
                    mx = int(maxs[i]) if to_int else maxs[i]
                    sizes.append((math.sqrt(m * mx),) * 2)
                sizes += [(m * math.sqrt(a), m / math.sqrt(a)) for a in ratios if abs(a - 1) >= 1e-6]
                for bw, bh in sizes:
                    boxes.append([(cx - bw / 2) / iw, (cy - bh / 2) / ih, (cx + bw / 2) / iw, (cy + bh / 2) / ih])
    b = np.asarray(boxes, np.float32).reshape(-1)
    if clip:
        b = np.clip(b, 0, 1)
    v = np.tile(np.asarray(var if len(var) == 4 else var * 4, np.float32), len(b) // 4)
    return np.stack([b, v])[None]


def test_prior_box_fork_definition():
    net = one_layer("PriorBox", "prior_box_param { min_size: 10.7 max_size: 21.9 aspect_ratio: 2 "
                    "aspect_ratio: 2.0000001 aspect_ratio: 0.5 flip: true variance: 0.1 variance: 0.1 "
                    "variance: 0.2 variance: 0.2 }", {"f": (1, 2, 3, 4), "data": (1, 3, 30, 44)})
    got = forward(net, f=np.zeros((1, 2, 3, 4)), data=np.zeros((1, 3, 30, 44)))
    want = np_prior_box(3, 4, 30, 44, [10.7], [21.9], [2, 2.0000001, 0.5], True, False, [0.1, 0.1, 0.2, 0.2])
    assert got.shape == want.shape == (1, 2, 3 * 4 * 4 * 4)     # min, sqrt(min*max), 2, 1/2 (0.5 kept)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert got.min() < 0                                          # the fork's default: no clipping


def test_known_difference_prior_box_clip_default_and_image_size():
    params = "prior_box_param { min_size: 16 max_size: 32 aspect_ratio: 2 variance: 0.1 img_h: 60 img_w: 40 }"
    shapes = {"f": (1, 2, 2, 2), "data": (1, 3, 30, 20)}
    x = dict(f=np.zeros(shapes["f"]), data=np.zeros(shapes["data"]))
    fork = forward(one_layer("PriorBox", params, shapes), **x)
    opencv = forward(one_layer("PriorBox", params, shapes, semantics="opencv"), **x)
    # weiliu89: img_h/img_w honoured (60x40), no clip; OpenCV: image size from bottom[1], clip on.
    np.testing.assert_allclose(fork, np_prior_box(2, 2, 60, 40, [16], [32], [2], True, False, [0.1]), atol=1e-6)
    np.testing.assert_allclose(opencv, np_prior_box(2, 2, 30, 20, [16], [32], [2], True, True, [0.1],
                                                    to_int=False), atol=1e-6)
    assert fork.min() < 0 <= opencv.min()


def test_prior_box_clustered_widths_heights():
    net = one_layer("PriorBoxClustered", "prior_box_param { width: 8 width: 20 height: 12 height: 6 clip: false "
                    "variance: 0.1 }", {"f": (1, 1, 2, 3), "data": (1, 3, 20, 30)})
    got = forward(net, f=np.zeros((1, 1, 2, 3)), data=np.zeros((1, 3, 20, 30)))[0, 0].reshape(2, 3, 2, 4)
    cx, cy = (1 + 0.5) * 10, (1 + 0.5) * 10
    np.testing.assert_allclose(got[1, 1, 1], [(cx - 10) / 30, (cy - 3) / 20, (cx + 10) / 30, (cy + 3) / 20], atol=1e-6)


# ------------------------------------------------------------------ DetectionOutput (weiliu89)
def np_iou(a, b):
    if b[0] > a[2] or b[2] < a[0] or b[1] > a[3] or b[3] < a[1]:
        return 0.0
    iw, ih = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    inter = iw * ih
    size = lambda r: 0.0 if r[2] < r[0] or r[3] < r[1] else (r[2] - r[0]) * (r[3] - r[1])
    return inter / (size(a) + size(b) - inter)


def np_detection_output(loc, conf, prior, C, share, bg, thr, nms, top_k, keep, code="CENTER_SIZE"):
    """weiliu89 DetectionOutputLayer::Forward_cpu re-stated with plain loops."""
    n, P = loc.shape[0], prior.shape[2] // 4
    pb_, var = prior[0, 0].reshape(P, 4).astype(np.float64), prior[0, 1].reshape(P, 4).astype(np.float64)
    L = 1 if share else C
    rows = []
    for i in range(n):
        lc = loc[i].reshape(P, L, 4).astype(np.float64)
        cf = conf[i].reshape(P, C)
        dets = {}
        for c in range(C):
            if c == bg:
                continue
            boxes = []
            for p in range(P):
                pr, v, d = pb_[p], var[p], lc[p, 0 if share else c]
                if code == "CORNER":
                    boxes.append(pr + v * d)
                else:
                    pw, ph = pr[2] - pr[0], pr[3] - pr[1]
                    cx, cy = v[0] * d[0] * pw + (pr[0] + pr[2]) / 2, v[1] * d[1] * ph + (pr[1] + pr[3]) / 2
                    w, h = math.exp(v[2] * d[2]) * pw, math.exp(v[3] * d[3]) * ph
                    boxes.append(np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]))
            cand = sorted([p for p in range(P) if cf[p, c] > thr], key=lambda p: -cf[p, c])
            if top_k > -1:
                cand = cand[:top_k]
            kept = []
            for p in cand:
                if all(np_iou(boxes[p], boxes[k]) <= nms for k in kept):
                    kept.append(p)
            dets[c] = [(cf[p, c], p, boxes[p]) for p in kept]
        allp = [(s, c, p, b) for c, lst in dets.items() for s, p, b in lst]
        if keep > -1 and len(allp) > keep:
            allp = sorted(allp, key=lambda t: -t[0])[:keep]
        for s, c, p, b in sorted(allp, key=lambda t: (t[1], -t[0])):
            rows.append([i, c, s, *b])
    if not rows:
        return np.array([[i, -1, -1, -1, -1, -1, -1] for i in range(n)], np.float32)
    return np.asarray(rows, np.float32)


def random_ssd_inputs(n=2, P=24, C=3, share=True):
    centers = rng.uniform(0.2, 0.8, (P, 2))
    sizes = rng.uniform(0.05, 0.3, (P, 2))
    prior = np.concatenate([centers - sizes / 2, centers + sizes / 2], 1).reshape(-1).astype(np.float32)
    var = np.tile(np.float32([0.1, 0.1, 0.2, 0.2]), P)
    L = 1 if share else C
    loc = rng.normal(0, 1, (n, P * L * 4)).astype(np.float32)
    logits = rng.normal(0, 2, (n, P, C))
    conf = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).reshape(n, -1).astype(np.float32)
    return loc, conf, np.stack([prior, var])[None]


def det_net(C, share, bg, params, semantics="fork", n=2, P=24):
    L = 1 if share else C
    text = (f'input: "loc" input_shape {{ dim: {n} dim: {P * L * 4} }}\n'
            f'input: "conf" input_shape {{ dim: {n} dim: {P * C} }}\n'
            f'input: "prior" input_shape {{ dim: 1 dim: 2 dim: {P * 4} }}\n'
            f'layer {{ name: "det" type: "DetectionOutput" bottom: "loc" bottom: "conf" bottom: "prior" top: "det" '
            f'detection_output_param {{ num_classes: {C} share_location: {str(share).lower()} '
            f'background_label_id: {bg} {params} }} }}')
    return net_from(text, semantics)


@pytest.mark.parametrize("share,bg,code,keep", [(True, 0, "CENTER_SIZE", 7), (False, -1, "CENTER_SIZE", -1),
                                                (True, 0, "CORNER", -1), (False, 1, "CORNER", 5)])
def test_detection_output_fork_definition(share, bg, code, keep):
    loc, conf, prior = random_ssd_inputs(share=share)
    net = det_net(3, share, bg, f"nms_param {{ nms_threshold: 0.4 top_k: 10 }} code_type: {code} "
                                f"keep_top_k: {keep} confidence_threshold: 0.2")
    got = forward(net, loc=loc, conf=conf, prior=prior)[0, 0]
    want = np_detection_output(loc, conf, prior, 3, share, bg, 0.2, 0.4, 10, keep, code)
    assert got.shape == want.shape and len(want) > 3
    np.testing.assert_array_equal(got[:, :2], want[:, :2])           # the fork's row order: label, score
    np.testing.assert_allclose(got[:, 2:], want[:, 2:], atol=2e-6)


def test_known_difference_detection_output_rows_threshold_and_empty_output():
    loc, conf, prior = random_ssd_inputs(n=2)
    params = "nms_param { nms_threshold: 0.45 } code_type: CENTER_SIZE keep_top_k: 6"
    fork = forward(det_net(3, True, 0, params), loc=loc, conf=conf, prior=prior)[0, 0]
    opencv = forward(det_net(3, True, 0, params, "opencv"), loc=loc, conf=conf, prior=prior)[0, 0]
    # No confidence_threshold: weiliu89 keeps every score (-FLT_MAX), OpenCV only those > 0 -- equal
    # here (softmax scores are positive); rows: fork by (image, label, score), OpenCV by (image, score)
    # and padded to keep_top_k * N = 12 rows.
    assert fork.shape == (12, 7) and opencv.shape == (12, 7)
    assert np.array_equal(detection_rows(fork), detection_rows(opencv))
    for i in range(2):
        f, o = fork[fork[:, 0] == i], opencv[opencv[:, 0] == i]
        assert list(f[:, 1]) == sorted(f[:, 1]) and list(o[:, 2]) == sorted(o[:, 2], reverse=True)
    # Nothing above the threshold: fork -> [i, -1, ...] per image; OpenCV -> all-zero padding.
    params = "nms_param { nms_threshold: 0.45 } code_type: CENTER_SIZE keep_top_k: 6 confidence_threshold: 0.999"
    fork = forward(det_net(3, True, 0, params), loc=loc, conf=conf, prior=prior)[0, 0]
    opencv = forward(det_net(3, True, 0, params, "opencv"), loc=loc, conf=conf, prior=prior)[0, 0]
    np.testing.assert_array_equal(fork, [[0, -1, -1, -1, -1, -1, -1], [1, -1, -1, -1, -1, -1, -1]])
    assert opencv.shape == (12, 7) and not opencv.any()


def test_detection_output_opencv_clip_field_parses_and_clamps():
    loc, conf, prior = random_ssd_inputs(n=1)
    loc *= 8                                   # boxes far outside [0, 1]
    params = "nms_param { nms_threshold: 0.45 } code_type: CENTER_SIZE keep_top_k: 50 clip: true"
    got = forward(det_net(3, True, 0, params, n=1), loc=loc, conf=conf, prior=prior)[0, 0]
    assert got[:, 3:].min() >= 0 and got[:, 3:].max() <= 1
    unclipped = forward(det_net(3, True, 0, params.replace("clip: true", ""), n=1), loc=loc, conf=conf, prior=prior)
    assert unclipped[0, 0, :, 3:].min() < 0


# ------------------------------------------------------------------ Normalize, Permute, ShuffleChannel
def test_normalize_fork_across_spatial_with_per_channel_scale():
    x = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    net = one_layer("Normalize", 'norm_param { across_spatial: true channel_shared: false '
                    'scale_filler { type: "constant" value: 3 } eps: 0.01 }', {"x": x.shape})
    with torch.no_grad():
        net.caffe_layers["l"].scale.copy_(torch.tensor([1.0, 2.0, 3.0]))
    want = x / np.sqrt((x.astype(np.float64) ** 2).sum(axis=(1, 2, 3), keepdims=True) + 0.01)
    want = want * np.array([1, 2, 3]).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(forward(net, x=x), want, rtol=1e-5, atol=1e-6)


def test_known_difference_permute_partial_order():
    x = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    got = forward(one_layer("Permute", "permute_param { order: 0 order: 2 }", {"x": x.shape}), x=x)
    np.testing.assert_array_equal(got, x.transpose(0, 2, 1, 3))      # weiliu89 appends axes 1, 3
    with pytest.raises(ValueError, match="OpenCV semantics need all 4 axes"):
        one_layer("Permute", "permute_param { order: 0 order: 2 }", {"x": x.shape}, semantics="opencv")


def test_shuffle_channel_and_reorg_numpy():
    x = rng.normal(size=(2, 12, 4, 6)).astype(np.float32)
    got = forward(one_layer("ShuffleChannel", "shuffle_channel_param { group: 3 }", {"x": x.shape}), x=x)
    np.testing.assert_array_equal(got, x.reshape(2, 3, 4, 4, 6).transpose(0, 2, 1, 3, 4).reshape(x.shape))
    got = forward(one_layer("Reorg", "reorg_param { stride: 2 }", {"x": x.shape}), x=x)
    flat, out = x.reshape(-1), np.empty(x.size, np.float32)   # Darknet's reorg_cpu, called with forward = 0
    b_, c_, h_, w_, s = 2, 12, 4, 6, 2
    oc = c_ // (s * s)
    for b in range(b_):
        for k in range(c_):
            for j in range(h_):
                for i in range(w_):
                    in_index = i + w_ * (j + h_ * (k + c_ * b))
                    c2, offset = k % oc, k // oc
                    w2, h2 = i * s + offset % s, j * s + offset // s
                    out[in_index] = flat[w2 + w_ * s * (h2 + h_ * s * (c2 + oc * b))]
    assert got.shape == (2, 48, 2, 3)
    np.testing.assert_array_equal(got.reshape(-1), out)


# ------------------------------------------------------------------ Interp, Upsample
def np_interp(x, oh, ow):
    n, c, h, w = x.shape
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            sy = i * (h - 1) / (oh - 1) if oh > 1 else 0.0
            sx = j * (w - 1) / (ow - 1) if ow > 1 else 0.0
            y0, x0 = int(sy), int(sx)
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            ly, lx = sy - y0, sx - x0
            out[:, :, i, j] = ((1 - ly) * ((1 - lx) * x[:, :, y0, x0] + lx * x[:, :, y0, x1])
                               + ly * ((1 - lx) * x[:, :, y1, x0] + lx * x[:, :, y1, x1]))
    return out


def test_interp_fork_shrink_zoom_and_pads():
    x = rng.normal(size=(1, 2, 9, 11)).astype(np.float32)
    got = forward(one_layer("Interp", "interp_param { shrink_factor: 2 zoom_factor: 3 pad_beg: -1 pad_end: -1 }",
                            {"x": x.shape}), x=x)
    crop = x[:, :, 1:8, 1:10]                                         # 7 x 9
    h, w = (7 - 1) // 2 + 1, (9 - 1) // 2 + 1                        # 4 x 5
    assert got.shape == (1, 2, h + (h - 1) * 2, w + (w - 1) * 2)
    np.testing.assert_allclose(got, np_interp(crop, *got.shape[2:]), atol=1e-5)
    # OpenCV ignores shrink_factor and the pads: zoom only
    got = forward(one_layer("Interp", "interp_param { shrink_factor: 2 zoom_factor: 3 pad_beg: -1 pad_end: -1 }",
                            {"x": x.shape}, semantics="opencv"), x=x)
    assert got.shape == (1, 2, 25, 31)


def test_upsample_segnet_and_yolo():
    x = rng.normal(size=(1, 2, 3, 3)).astype(np.float32)
    got = forward(one_layer("Upsample", "upsample_param { scale: 2 }", {"x": x.shape}), x=x)
    np.testing.assert_array_equal(got, x.repeat(2, axis=2).repeat(2, axis=3))
    mask = np.stack([rng.permutation(25)[:9] for _ in range(2)]).reshape(1, 2, 3, 3).astype(np.float32)
    got = forward(one_layer("Upsample", "upsample_param { upsample_h: 5 upsample_w: 5 }",
                            {"x": x.shape, "mask": x.shape}), x=x, mask=mask)
    want = np.zeros((1, 2, 25), np.float32)
    for c in range(2):
        want[0, c, mask[0, c].reshape(-1).astype(int)] = x[0, c].reshape(-1)
    np.testing.assert_array_equal(got, want.reshape(1, 2, 5, 5))


# ------------------------------------------------------------------ Axpy, activations, depthwise
def test_known_difference_axpy_bottom_order():
    a = rng.normal(size=(2, 3, 1, 1)).astype(np.float32)
    x = rng.normal(size=(2, 3, 4, 4)).astype(np.float32)
    y = rng.normal(size=(2, 3, 4, 4)).astype(np.float32)
    shapes = {"a": a.shape, "x": x.shape, "y": y.shape}
    np.testing.assert_allclose(forward(one_layer("Axpy", "", shapes), a=a, x=x, y=y), a * x + y, rtol=1e-6)
    np.testing.assert_allclose(forward(one_layer("Axpy", "", shapes, "opencv"), a=a, x=x, y=y), a * y + x, rtol=1e-6)


def test_relu6_mish():
    x = np.linspace(-40, 40, 401, dtype=np.float32).reshape(1, 1, 1, -1)
    got = forward(one_layer("ReLU6", "", {"x": x.shape}), x=x)
    np.testing.assert_array_equal(got, np.clip(x, 0, 6))
    got = forward(one_layer("ReLU6", "relu6_param { negative_slope: 0.1 }", {"x": x.shape}), x=x)
    np.testing.assert_allclose(got, np.clip(x, 0, 6) + 0.1 * np.minimum(x, 0), rtol=1e-6)
    got = forward(one_layer("Mish", "", {"x": x.shape}), x=x)
    np.testing.assert_allclose(got, x * np.tanh(np.log1p(np.exp(x.astype(np.float64)))), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("typ", ["ConvolutionDepthwise", "DepthwiseConvolution"])
def test_depthwise_types_are_grouped_convolutions(typ):
    x = rng.normal(size=(1, 4, 6, 6)).astype(np.float32)
    net = one_layer(typ, "convolution_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1 }", {"x": x.shape})
    conv = net.caffe_layers["l"]
    assert tuple(conv.weight.shape) == (4, 1, 3, 3)
    got = forward(net, x=x)
    want = torch.nn.functional.conv2d(torch.from_numpy(x), conv.weight, conv.bias, 2, 1, 1, 4).detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6)


# ------------------------------------------------------------------ schema and files
def test_ceil_mode_false_parses_and_floors():
    net = parse_net('input: "x" input_shape { dim: 1 dim: 1 dim: 6 dim: 6 }\n'
                    'layer { name: "p" type: "Pooling" bottom: "x" top: "p" '
                    'pooling_param { pool: MAX kernel_size: 3 stride: 2 ceil_mode: false } }')
    assert net.layer[1].pooling_param.round_mode == pb.PoolingParameter.FLOOR
    model = load_caffe(net)
    assert model.blob_shapes["p"] == (1, 1, 2, 2)          # floor((6-3)/2)+1; BVLC's ceil gives 3


def test_unknown_fork_message_names_the_layer(tmp_path):
    p = tmp_path / "n.prototxt"
    p.write_text('input: "x" input_shape { dim: 1 dim: 1 dim: 2 dim: 2 }\n'
                 'layer {\n  name: "eval1"\n  type: "DetectionEvaluate"\n  bottom: "x" top: "y"\n  detection_evaluate_param { num_classes: 3 }\n}\n')
    from converters.formats import CaffeFormatError, read_net
    with pytest.raises(CaffeFormatError) as err:
        read_net(p)
    msg = str(err.value)
    assert "\n" not in msg and "layer 'eval1'" in msg and "detection_evaluate_param" in msg and ":6:" in msg


def test_fork_field_numbers():
    f = pb.LayerParameter.DESCRIPTOR.fields_by_name
    assert (f["permute_param"].number, f["prior_box_param"].number, f["detection_output_param"].number,
            f["norm_param"].number) == (202, 203, 204, 206)                  # weiliu89/caffe
    assert f["roi_pooling_param"].number == 8266711 and f["psroi_pooling_param"].number == 10002
    assert pb.DetectionOutputParameter.DESCRIPTOR.fields_by_name["clip"].number == 1000   # OpenCV
    assert pb.BlobProto.DESCRIPTOR.fields_by_name["raw_data"].number == 12                # NVIDIA Caffe
    assert pb.BlobProto.DESCRIPTOR.fields_by_name["raw_data_type"].number == 10
    assert pb.FLOAT16 == 2


def test_caffemodel_without_blobs_loads(tmp_path):
    net = pb.NetParameter(name="crop_only")
    layer = net.layer.add(name="c", type="Crop")
    layer.bottom.extend(["a", "b"])
    layer.top.append("c")
    path = tmp_path / "noblobs.caffemodel"
    path.write_bytes(net.SerializeToString())
    assert [l.name for l in read_weights(path).layer] == ["c"]
    assert [(l.name, l.blobs) for l in read_weight_layers(path)] == [("c", [])]
    model = load_caffe(parse_net('input: "a" input_shape { dim: 1 dim: 1 dim: 4 dim: 4 }\n'
                                 'input: "b" input_shape { dim: 1 dim: 1 dim: 2 dim: 2 }\n'
                                 'layer { name: "c" type: "Crop" bottom: "a" bottom: "b" top: "c" }'), path)
    assert model.blob_shapes["c"] == (1, 1, 2, 2)


def test_nvcaffe_fp16_raw_data_loads_in_both_readers(tmp_path):
    # NVIDIA Caffe stores FP16 weights as BlobProto.raw_data (12) with raw_data_type FLOAT16 (10 = 2),
    # as in OpenCV's res10_300x300_ssd_iter_140000_fp16.caffemodel.
    from converters.formats import blob_to_array
    w = rng.normal(size=(3, 2, 3, 3)).astype(np.float16)
    b = rng.normal(size=(3,)).astype(np.float16)
    net = pb.NetParameter(name="fp16")
    layer = net.layer.add(name="conv", type="Convolution")
    for arr in (w, b):
        blob = layer.blobs.add(raw_data_type=pb.FLOAT16, raw_data=arr.tobytes())
        blob.shape.dim.extend(arr.shape)
    path = tmp_path / "fp16.caffemodel"
    path.write_bytes(net.SerializeToString())
    slow = [blob_to_array(x) for x in read_weights(path).layer[0].blobs]
    fast = read_weight_layers(path)[0].blobs
    for got in (slow, fast):
        assert [g.dtype for g in got] == [np.float32] * 2
        np.testing.assert_array_equal(got[0], w.astype(np.float32))
        np.testing.assert_array_equal(got[1], b.astype(np.float32))
    text = ('input: "x" input_shape { dim: 1 dim: 2 dim: 5 dim: 5 }\n'
            'layer { name: "conv" type: "Convolution" bottom: "x" top: "y" '
            'convolution_param { num_output: 3 kernel_size: 3 } }')
    for source in (path, read_weights(path)):
        model = load_caffe(parse_net(text), source)
        assert not model.missing_weights
        np.testing.assert_array_equal(model.caffe_layers["conv"].weight.detach().numpy(), w.astype(np.float32))
    bad = pb.NetParameter()
    bad.layer.add(name="conv").blobs.add(raw_data_type=pb.INT, raw_data=b"\0" * 8)
    (tmp_path / "int.caffemodel").write_bytes(bad.SerializeToString())
    from converters.formats import CaffeFormatError
    with pytest.raises(CaffeFormatError, match="raw_data_type 3 is not supported"):
        read_weight_layers(tmp_path / "int.caffemodel")


UPSTREAM = (oracle_dir() or BUNDLED) / "upstream"


@pytest.mark.skipif(not UPSTREAM.is_dir(), reason="no opencv-oracle/upstream prototxts (../shared/opencv-oracle)")
@pytest.mark.parametrize("name", ["opencv_face_detector_deploy.prototxt", "mobilenet_ssd_deploy.prototxt",
                                  "mobilenet_ssd_voc_deploy.prototxt"])
def test_upstream_ssd_prototxts_build(name):
    from converters import infer_shapes
    fork = infer_shapes(UPSTREAM / name)
    assert fork["detection_out"] == (1, 1, 1, 7)                 # Caffe's Reshape: rows known after Forward
    net = load_caffe(UPSTREAM / name, semantics="opencv")
    keep = net.net_param.layer[-1].detection_output_param.keep_top_k
    assert net.blob_shapes["detection_out"] == (1, 1, keep, 7)    # OpenCV: keep_top_k * N rows


def test_semantics_survive_model_pt(tmp_path):
    from converters.convert import load_converted, save_converted
    net = one_layer("Axpy", "", {"a": (1, 2, 1, 1), "x": (1, 2, 3, 3), "y": (1, 2, 3, 3)}, semantics="opencv")
    save_converted(net, tmp_path / "model.pt")
    back = load_converted(tmp_path / "model.pt")
    assert back.semantics == "opencv" and back.caffe_layers["l"].opencv
    with pytest.raises(ValueError, match="semantics must be one of"):
        one_layer("Axpy", "", {"a": (1, 2, 1, 1), "x": (1, 2, 3, 3), "y": (1, 2, 3, 3)}, semantics="caffe2")
