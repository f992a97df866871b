"""Layer converters against Caffe's rules, each test naming the behaviour it pins.

Expected values are hand-computed or come from loop-by-loop transcriptions of Caffe's CPU code
(pooling_layer.cpp, lrn_layer.cpp, ...) written here in NumPy; no converter code is reused.
"""
import math
import warnings

import numpy as np
import pytest
import torch

import converters
from converters.formats import array_to_blob, parse_net
from converters.layers import ConversionError, UnsupportedLayersError, get_converter, supported_types
from converters.layers.registry import register
from converters.proto import caffe_pb2 as pb

FLT_MAX = float(np.finfo(np.float32).max)


def make_layer(text: str) -> pb.LayerParameter:
    return parse_net("layer {" + text + "}").layer[0]


def convert(text: str, shapes, phase="TEST"):
    layer = make_layer(text)
    module, tops = get_converter(layer.type)(layer, [tuple(s) for s in shapes], phase)
    return module, tops


def net_from(text: str, phase="test", **kw):
    return converters.load_caffe(parse_net(text), phase=phase, **kw)


# ------------------------------------------------------------------ pooling
def caffe_pool_reference(x, k, s, p, method, ceil=True):
    """Caffe 1.0 PoolingLayer::Forward_cpu, loop by loop (square kernel/stride/pad)."""
    n, c, h, w = x.shape
    rnd = math.ceil if ceil else math.floor
    ph = int(rnd((h + 2 * p - k) / s)) + 1
    pw = int(rnd((w + 2 * p - k) / s)) + 1
    if p:
        if (ph - 1) * s >= h + p:
            ph -= 1
        if (pw - 1) * s >= w + p:
            pw -= 1
    out = np.zeros((n, c, ph, pw), np.float64)
    for i in range(ph):
        for j in range(pw):
            hs, ws = i * s - p, j * s - p
            if method == "MAX":
                he, we = min(hs + k, h), min(ws + k, w)
                hs, ws = max(hs, 0), max(ws, 0)
                win = x[:, :, hs:he, ws:we].reshape(n, c, -1)
                out[:, :, i, j] = win.max(-1) if win.shape[-1] else -FLT_MAX
            else:
                he, we = min(hs + k, h + p), min(ws + k, w + p)
                size = (he - hs) * (we - ws)
                hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
                with np.errstate(invalid="ignore"):      # an empty window: 0/0, NaN in Caffe too
                    out[:, :, i, j] = x[:, :, hs:he, ws:we].sum((-1, -2)) / size
    return out


def pool(x, k, s, p, method="MAX", extra=""):
    mod, tops = convert(f'name: "pool" type: "Pooling" bottom: "x" top: "y" pooling_param {{ pool: {method} '
                        f'kernel_size: {k} stride: {s} pad: {p} {extra} }}', [x.shape])
    y = mod(torch.as_tensor(x, dtype=torch.float32))
    assert tuple(y.shape) == tuple(tops[0])
    return y.numpy(), tops[0]


def test_ceil_pool_drops_window_starting_in_padding():
    # H=5, k=2, s=2, pad=1: ceil((5+2-2)/2)+1 = 4, but the 4th window would start at padded
    # position 6 >= H + pad = 6, i.e. entirely in the padding -> Caffe drops it: 3 outputs.
    x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    y, shape = pool(x, 2, 2, 1, "MAX")
    assert shape == (1, 1, 3, 3)
    # windows start at -1, 1, 3 -> rows {0}, {1, 2}, {3, 4}
    rows = [[0], [1, 2], [3, 4]]
    expected = [[x[0, 0][np.ix_(r, c)].max() for c in rows] for r in rows]
    np.testing.assert_array_equal(y[0, 0], expected)


def test_ceil_pool_rounds_up_like_caffe():
    # AdienceNet: 56 -> 28 (floor would give 27) with 3x3/2, no pad; the last window is clipped.
    x = np.random.RandomState(0).randn(1, 2, 56, 56).astype(np.float32)
    y, shape = pool(x, 3, 2, 0, "MAX")
    assert shape == (1, 2, 28, 28)
    np.testing.assert_allclose(y, caffe_pool_reference(x, 3, 2, 0, "MAX"), rtol=0, atol=0)
    _, floor_shape = pool(x, 3, 2, 0, "MAX", "round_mode: FLOOR")
    assert floor_shape == (1, 2, 27, 27)


def test_pool_without_pad_keeps_window_outside_image():
    # No pad -> no clipping rule: H=5, k=1, s=3 gives ceil(4/3)+1 = 3 outputs; the last window
    # starts at 6 > H-1, so Caffe's MAX leaves -FLT_MAX there (and AVE a 0).
    x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    y, shape = pool(x, 1, 3, 0, "MAX")
    assert shape == (1, 1, 3, 3)
    assert y[0, 0, 0, 0] == 0 and y[0, 0, 1, 1] == x[0, 0, 3, 3]
    assert y[0, 0, 2, 0] == -FLT_MAX and y[0, 0, 0, 2] == -FLT_MAX


def test_ave_pool_divisor_counts_padding_inside_padded_extent():
    # H=W=4, k=3, s=2, pad=1 -> 3 outputs per axis; windows (padded coords) [-1,2), [1,4), [3,6)
    # the last is clipped to H+pad = 5 -> divisors 3, 3, 2 per axis; image rows 2, 3, 1.
    x = np.ones((1, 1, 4, 4), np.float32)
    y, shape = pool(x, 3, 2, 1, "AVE")
    assert shape == (1, 1, 3, 3)
    per_axis = np.array([2 / 3, 3 / 3, 1 / 2])
    np.testing.assert_allclose(y[0, 0], np.outer(per_axis, per_axis), rtol=1e-6)
    assert y[0, 0, 0, 0] == pytest.approx(4 / 9)      # not 1 (count_include_pad=False) ...
    assert y[0, 0, 2, 2] == pytest.approx(1 / 4)      # ... and not 1/9 (full kernel)


@pytest.mark.parametrize("h,k,s,p", [(7, 3, 2, 1), (8, 3, 2, 1), (6, 2, 2, 1), (9, 3, 3, 2), (5, 4, 2, 3),
                                     (10, 5, 3, 2), (5, 1, 3, 0), (13, 3, 2, 0), (7, 7, 1, 0), (6, 3, 1, 1)])
@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_pooling_matches_caffe_loops(h, k, s, p, method):
    # covers the native path and the explicit-padding path (pad > kernel/2, stride > kernel)
    x = np.random.RandomState(h * 31 + k).randn(2, 3, h, h + 1).astype(np.float32)
    y, _ = pool(x, k, s, p, method)
    np.testing.assert_allclose(y, caffe_pool_reference(x, k, s, p, method), rtol=1e-6, atol=1e-6)


def test_global_pooling_follows_input_size():
    mod, tops = convert('name: "g" type: "Pooling" bottom: "x" top: "y" pooling_param { pool: AVE '
                        'global_pooling: true }', [(2, 3, 7, 7)])
    assert tops == [(2, 3, 1, 1)]
    x = torch.randn(4, 3, 5, 6)
    torch.testing.assert_close(mod(x), x.mean((2, 3), keepdim=True))


def test_non_square_pooling_and_gradient_to_first_max():
    mod, tops = convert('name: "p" type: "Pooling" bottom: "x" top: "y" pooling_param { pool: MAX '
                        'kernel_h: 2 kernel_w: 3 stride_h: 2 stride_w: 1 }', [(1, 1, 4, 5)])
    assert tops == [(1, 1, 2, 3)]
    x = torch.zeros(1, 1, 4, 5, requires_grad=True)      # all ties: Caffe routes to the first
    mod(x).sum().backward()
    assert x.grad[0, 0, 0].tolist() == [1, 1, 1, 0, 0] and x.grad[0, 0, 1].sum() == 0


def test_stochastic_pooling_test_phase_is_weighted_average():
    x = np.abs(np.random.RandomState(3).randn(1, 2, 5, 5)).astype(np.float32)
    mod, tops = convert('name: "p" type: "Pooling" bottom: "x" top: "y" pooling_param { pool: STOCHASTIC '
                        'kernel_size: 3 stride: 2 }', [x.shape])
    y = mod(torch.from_numpy(x)).numpy()
    win = x[:, :, 0:3, 2:5]
    np.testing.assert_allclose(y[:, :, 0, 1], (win ** 2).sum((2, 3)) / win.sum((2, 3)), rtol=1e-6)
    with pytest.raises(ConversionError, match="STOCHASTIC"):
        convert('name: "p" type: "Pooling" bottom: "x" top: "y" pooling_param { pool: STOCHASTIC '
                'kernel_size: 3 stride: 2 }', [x.shape], phase="TRAIN")


def test_pool_pad_must_be_smaller_than_kernel():
    with pytest.raises(ConversionError, match="'pool'.*pad"):
        pool(np.zeros((1, 1, 5, 5), np.float32), 2, 1, 2)


# ------------------------------------------------------------------ LRN
def test_lrn_across_channels_uses_k_and_alpha_over_n():
    # scale_c = k + alpha/n * sum_{|c'-c| <= 1} x^2, zero-padded channels; y = x * scale^-beta
    mod, _ = convert('name: "n" type: "LRN" bottom: "x" top: "y" lrn_param { local_size: 3 alpha: 3 '
                     'beta: 1 k: 2 }', [(1, 3, 1, 1)])
    y = mod(torch.ones(1, 3, 1, 1)).flatten().tolist()
    # channel 0: 2 + 3/3 * 2 = 4; channel 1: 2 + 3 = 5; channel 2: 4
    assert y == pytest.approx([1 / 4, 1 / 5, 1 / 4], rel=1e-6)


def test_lrn_across_channels_matches_caffe_loops():
    x = np.random.RandomState(1).randn(2, 7, 3, 4).astype(np.float32) * 10
    n, alpha, beta, k = 5, 1e-4, 0.75, 2.0
    mod, _ = convert(f'name: "n" type: "LRN" bottom: "x" top: "y" lrn_param {{ local_size: {n} alpha: {alpha} '
                     f'beta: {beta} k: {k} }}', [x.shape])
    sq = np.pad(x.astype(np.float64) ** 2, ((0, 0), (2, 2), (0, 0), (0, 0)))
    scale = k + alpha / n * np.stack([sq[:, c:c + n].sum(1) for c in range(7)], 1)
    np.testing.assert_allclose(mod(torch.from_numpy(x)).numpy(), x * scale ** -beta, rtol=1e-5)


def test_lrn_within_channel():
    # Caffe: x * (1 + alpha * avepool_nxn(x^2, pad (n-1)/2))^-beta, divisor n*n, k unused
    mod, _ = convert('name: "n" type: "LRN" bottom: "x" top: "y" lrn_param { local_size: 3 alpha: 9 '
                     'beta: 1 k: 5 norm_region: WITHIN_CHANNEL }', [(1, 1, 3, 3)])
    y = mod(torch.ones(1, 1, 3, 3))[0, 0]
    # centre: 9/9 -> 1 + 9 = 10; edge: 6/9 -> 7; corner: 4/9 -> 5
    assert y[1, 1].item() == pytest.approx(1 / 10, rel=1e-6)
    assert y[0, 1].item() == pytest.approx(1 / 7, rel=1e-6)
    assert y[0, 0].item() == pytest.approx(1 / 5, rel=1e-6)


def test_lrn_even_local_size_refused():
    with pytest.raises(ConversionError, match="odd"):
        convert('name: "n" type: "LRN" bottom: "x" top: "y" lrn_param { local_size: 4 }', [(1, 3, 2, 2)])


# ------------------------------------------------------------------ normalization, scale
def test_batchnorm_divides_by_scale_factor():
    mod, _ = convert('name: "bn" type: "BatchNorm" bottom: "x" top: "y" batch_norm_param { eps: 0 }',
                     [(1, 2, 1, 1)])
    with torch.no_grad():
        mod.mean.copy_(torch.tensor([2.0, 4.0]))
        mod.variance.copy_(torch.tensor([8.0, 18.0]))
        mod.scale_factor.fill_(2.0)           # Caffe: mean = blob0 / 2, var = blob1 / 2
    y = mod(torch.tensor([5.0, 8.0]).reshape(1, 2, 1, 1)).flatten().tolist()
    assert y == pytest.approx([(5 - 1) / 2, (8 - 2) / 3])
    with torch.no_grad():
        mod.scale_factor.fill_(0.0)           # factor 0 -> mean 0, variance 0
        mod.eps = 1e-5
    y0 = mod(torch.tensor([5.0, 8.0]).reshape(1, 2, 1, 1)).flatten()
    torch.testing.assert_close(y0, torch.tensor([5.0, 8.0]) / math.sqrt(1e-5))
    assert [p.requires_grad for p in mod.blobs()] == [False] * 3


def test_batchnorm_train_uses_batch_stats_and_updates_blobs():
    mod, _ = convert('name: "bn" type: "BatchNorm" bottom: "x" top: "y"', [(4, 2, 3, 3)], phase="TRAIN")
    assert mod.use_global_stats is False
    for p in mod.blobs():
        p.data.zero_()
    x = torch.randn(4, 2, 3, 3) * 3 + 1
    y = mod(x)
    torch.testing.assert_close(y.mean((0, 2, 3)), torch.zeros(2), atol=1e-5, rtol=0)
    m = 4 * 9
    torch.testing.assert_close(mod.scale_factor, torch.ones(1))
    torch.testing.assert_close(mod.mean, x.mean((0, 2, 3)))
    torch.testing.assert_close(mod.variance, x.var((0, 2, 3), unbiased=False) * m / (m - 1))


def test_scale_and_bias_broadcast_along_axis():
    mod, _ = convert('name: "s" type: "Scale" bottom: "x" top: "y" scale_param { bias_term: true }', [(2, 3, 2, 2)])
    assert [tuple(p.shape) for p in mod.blobs()] == [(3,), (3,)]
    assert [f.value for f in mod.blob_fillers] == [1.0, 0.0]    # Caffe's defaults
    with torch.no_grad():
        mod.weight.copy_(torch.tensor([1.0, 2.0, 3.0]))
        mod.bias.copy_(torch.tensor([0.0, 1.0, -1.0]))
    y = mod(torch.ones(2, 3, 2, 2))
    assert y[:, :, 0, 0][0].tolist() == [1.0, 3.0, 2.0]
    mod2, tops = convert('name: "s2" type: "Scale" bottom: "x" bottom: "s" top: "y" scale_param { axis: 0 }',
                         [(2, 3, 4), (2, 3)])
    assert tops == [(2, 3, 4)] and mod2.blobs() == []
    x, s = torch.randn(2, 3, 4), torch.randn(2, 3)
    torch.testing.assert_close(mod2(x, s), x * s[:, :, None])
    mod3, _ = convert('name: "b" type: "Bias" bottom: "x" top: "y" bias_param { axis: 1 num_axes: 2 }', [(2, 3, 4)])
    assert tuple(mod3.bias.shape) == (3, 4)


# ------------------------------------------------------------------ losses
def _softmax_loss(norm_text, scores, labels):
    mod, tops = convert(f'name: "loss" type: "SoftmaxWithLoss" bottom: "s" bottom: "l" top: "loss" '
                        f'loss_param {{ ignore_label: 255 {norm_text} }}', [scores.shape, labels.shape])
    assert tops == [()]
    s = scores.clone().requires_grad_(True)
    loss = mod(s, labels)
    loss.backward()
    return loss.item(), s.grad


def test_softmax_with_loss_normalization_modes():
    torch.manual_seed(0)
    scores = torch.randn(2, 3, 2)          # N=2, C=3, one spatial axis of 2: outer 2, inner 2
    labels = torch.tensor([[0.0, 2.0], [255.0, 1.0]])   # one ignored position
    prob = torch.softmax(scores.double(), 1)
    nll = [-math.log(prob[n, int(labels[n, i]), i]) for n in range(2) for i in range(2) if labels[n, i] != 255]
    total = sum(nll)
    expected = {"FULL": total / 4, "VALID": total / 3, "BATCH_SIZE": total / 2, "NONE": total}
    for mode, value in expected.items():
        loss, grad = _softmax_loss(f"normalization: {mode}", scores, labels)
        assert loss == pytest.approx(value, rel=1e-6), mode
    assert _softmax_loss("", scores, labels)[0] == pytest.approx(expected["VALID"], rel=1e-6)     # default
    assert _softmax_loss("normalize: true", scores, labels)[0] == pytest.approx(expected["VALID"], rel=1e-6)
    assert _softmax_loss("normalize: false", scores, labels)[0] == pytest.approx(expected["BATCH_SIZE"], rel=1e-6)
    # gradient: (prob - onehot) / normalizer, zero at the ignored position
    _, grad = _softmax_loss("normalization: VALID", scores, labels)
    onehot = torch.zeros(2, 3, 2, dtype=torch.float64)
    for n in range(2):
        for i in range(2):
            if labels[n, i] != 255:
                onehot[n, int(labels[n, i]), i] = 1
    want = (prob - onehot) / 3
    want[1, :, 0] = 0
    torch.testing.assert_close(grad.double(), want, atol=1e-7, rtol=1e-6)


def test_softmax_with_loss_clamps_probability_at_flt_min():
    mod, _ = convert('name: "loss" type: "SoftmaxWithLoss" bottom: "s" bottom: "l" top: "loss"', [(1, 2), (1,)])
    loss = mod(torch.tensor([[0.0, -1000.0]]), torch.tensor([1.0]))
    assert loss.item() == pytest.approx(-math.log(np.finfo(np.float32).tiny), rel=1e-6)


def test_accuracy_top_k_counts_ties_against():
    mod, tops = convert('name: "acc" type: "Accuracy" bottom: "s" bottom: "l" top: "a" top: "per_class" '
                        'accuracy_param { top_k: 2 }', [(3, 3), (3,)])
    assert tops == [(), (3,)]
    scores = torch.tensor([[0.5, 0.5, 0.5],     # label 0: two others tie (>=) -> wrong for top-2
                           [0.1, 0.7, 0.2],     # label 2: second best -> right
                           [0.9, 0.1, 0.0]])    # label 1: second best -> right
    acc, per_class = mod(scores, torch.tensor([0.0, 2.0, 1.0]))
    assert acc.item() == pytest.approx(2 / 3)
    assert per_class.tolist() == [0.0, 1.0, 1.0]


def test_euclidean_and_sigmoid_cross_entropy_loss():
    mod, _ = convert('name: "e" type: "EuclideanLoss" bottom: "a" bottom: "b" top: "l"', [(2, 3), (2, 3)])
    a, b = torch.randn(2, 3), torch.randn(2, 3)
    assert mod(a, b).item() == pytest.approx(((a - b) ** 2).sum().item() / 2 / 2, rel=1e-6)
    mod, _ = convert('name: "s" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "t" top: "l"', [(2, 3), (2, 3)])
    x, t = torch.randn(2, 3, dtype=torch.float64), torch.randint(0, 2, (2, 3)).double()
    want = torch.nn.functional.binary_cross_entropy_with_logits(x, t, reduction="sum") / 2   # BATCH_SIZE
    assert mod(x, t).item() == pytest.approx(want.item(), rel=1e-9)


# ------------------------------------------------------------------ element-wise, shapes
def test_eltwise_sum_coeff():
    mod, _ = convert('name: "e" type: "Eltwise" bottom: "a" bottom: "b" top: "c" '
                     'eltwise_param { operation: SUM coeff: 1 coeff: -1 }', [(2, 3), (2, 3)])
    a, b = torch.randn(2, 3), torch.randn(2, 3)
    torch.testing.assert_close(mod(a, b), a - b)
    mod, _ = convert('name: "e" type: "Eltwise" bottom: "a" bottom: "b" top: "c" '
                     'eltwise_param { coeff: 0.5 coeff: 2 }', [(2, 3), (2, 3)])
    torch.testing.assert_close(mod(a, b), 0.5 * a + 2 * b)
    with pytest.raises(ConversionError, match="coefficient"):
        convert('name: "e" type: "Eltwise" bottom: "a" bottom: "b" top: "c" '
                'eltwise_param { coeff: 1 }', [(2, 3), (2, 3)])


def test_eltwise_max_gradient_goes_to_first_maximum():
    mod, _ = convert('name: "e" type: "Eltwise" bottom: "a" bottom: "b" top: "c" '
                     'eltwise_param { operation: MAX }', [(3,), (3,)])
    a = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = torch.tensor([1.0, 5.0, 0.0], requires_grad=True)
    mod(a, b).sum().backward()
    assert a.grad.tolist() == [1.0, 0.0, 1.0] and b.grad.tolist() == [0.0, 1.0, 0.0]
    mod, _ = convert('name: "p" type: "Eltwise" bottom: "a" bottom: "b" top: "c" '
                     'eltwise_param { operation: PROD }', [(3,), (3,)])
    torch.testing.assert_close(mod(a, b), a * b)


def test_activations_follow_caffe_formulas():
    x = torch.linspace(-3, 3, 13)
    def run(text):
        mod, _ = convert('name: "a" bottom: "x" top: "x" ' + text, [(13,)])
        return mod(x)
    torch.testing.assert_close(run('type: "ReLU" relu_param { negative_slope: 0.1 }'),
                               torch.where(x > 0, x, 0.1 * x))
    torch.testing.assert_close(run('type: "Power" power_param { power: 2 scale: 0.5 shift: 1 }'), (1 + 0.5 * x) ** 2)
    torch.testing.assert_close(run('type: "Exp" exp_param { base: 2 scale: 0.5 shift: 1 }'), 2 ** (1 + 0.5 * x))
    torch.testing.assert_close(run('type: "Log" log_param { base: 10 shift: 4 }'), torch.log10(4 + x))
    torch.testing.assert_close(run('type: "BNLL"'), torch.log1p(torch.exp(x)))
    torch.testing.assert_close(run('type: "Threshold" threshold_param { threshold: 1 }'), (x > 1).float())
    torch.testing.assert_close(run('type: "ELU" elu_param { alpha: 0.5 }'), torch.where(x > 0, x, 0.5 * (x.exp() - 1)))
    torch.testing.assert_close(run('type: "AbsVal"'), x.abs())
    mod, _ = convert('name: "p" type: "PReLU" bottom: "x" top: "y"', [(2, 3, 4)])
    assert tuple(mod.weight.shape) == (3,) and mod.blob_fillers[0].value == pytest.approx(0.25)


def test_dropout_identity_in_test_scaled_in_train():
    mod, _ = convert('name: "d" type: "Dropout" bottom: "x" top: "x" dropout_param { dropout_ratio: 0.75 }', [(1000,)])
    x = torch.ones(1000)
    assert torch.equal(mod(x), x)
    mod, _ = convert('name: "d" type: "Dropout" bottom: "x" top: "x" dropout_param { dropout_ratio: 0.75 }',
                     [(1000,)], phase="TRAIN")
    y = mod(x)
    assert set(torch.unique(y).tolist()) <= {0.0, 4.0}     # kept units scaled by 1/(1-0.75)
    mod.eval()
    assert torch.equal(mod(x), x)


def test_shape_layers():
    _, tops = convert('name: "c" type: "Concat" bottom: "a" bottom: "b" top: "c"', [(2, 3, 4), (2, 5, 4)])
    assert tops == [(2, 8, 4)]
    mod, tops = convert('name: "s" type: "Slice" bottom: "a" top: "b" top: "c" top: "d" '
                        'slice_param { axis: 1 slice_point: 1 slice_point: 3 }', [(2, 6)])
    assert tops == [(2, 1), (2, 2), (2, 3)]
    assert [tuple(t.shape) for t in mod(torch.zeros(2, 6))] == tops
    _, tops = convert('name: "f" type: "Flatten" bottom: "a" top: "b"', [(2, 3, 4, 5)])
    assert tops == [(2, 60)]
    mod, tops = convert('name: "r" type: "Reshape" bottom: "a" top: "b" '
                        'reshape_param { shape { dim: 0 dim: -1 dim: 2 } }',
                        [(4, 3, 2, 2)])
    assert tops == [(4, 6, 2)]
    assert tuple(mod(torch.zeros(7, 3, 2, 2)).shape) == (7, 6, 2)      # batch size from the input
    _, tops = convert('name: "r" type: "Reshape" bottom: "a" top: "b" reshape_param { shape { dim: 2 dim: 3 } '
                      'axis: 1 num_axes: 1 }', [(4, 6, 5)])
    assert tops == [(4, 2, 3, 5)]
    mod, tops = convert('name: "c" type: "Crop" bottom: "a" bottom: "b" top: "c" '
                        'crop_param { axis: 2 offset: 1 offset: 2 }',
                        [(1, 2, 5, 6), (1, 1, 3, 3)])
    assert tops == [(1, 2, 3, 3)]
    x = torch.arange(60.0).reshape(1, 2, 5, 6)
    torch.testing.assert_close(mod(x, torch.zeros(1, 1, 3, 3)), x[:, :, 1:4, 2:5])
    mod, tops = convert('name: "am" type: "ArgMax" bottom: "a" top: "b" argmax_param { top_k: 2 out_max_val: true }',
                        [(2, 4)])
    assert tops == [(2, 2, 2)]
    out = mod(torch.tensor([[1.0, 3.0, 3.0, 0.0], [0.0, 0.0, 0.0, 5.0]]))
    # ties go to the larger index first (std::greater on (value, index) pairs)
    assert out[0].tolist() == [[2.0, 1.0], [3.0, 3.0]] and out[1, 0].tolist() == [3.0, 2.0]


def test_convolution_geometry_per_axis():
    mod, tops = convert('name: "c" type: "Convolution" bottom: "x" top: "y" convolution_param { num_output: 4 '
                        'kernel_h: 3 kernel_w: 5 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 0 group: 2 bias_term: false }',
                        [(1, 6, 9, 9)])
    assert tops == [(1, 4, 5, 5)] and [tuple(p.shape) for p in mod.blobs()] == [(4, 3, 3, 5)]
    assert tuple(mod(torch.randn(2, 6, 9, 9)).shape) == (2, 4, 5, 5)
    _, tops = convert('name: "c" type: "Convolution" bottom: "x" top: "y" convolution_param { num_output: 2 '
                      'kernel_size: 3 dilation: 2 pad: 2 }', [(1, 1, 8, 8)])
    assert tops == [(1, 2, 8, 8)]
    mod, tops = convert('name: "d" type: "Deconvolution" bottom: "x" top: "y" convolution_param { num_output: 4 '
                        'kernel_size: 4 stride: 2 pad: 1 group: 2 }', [(1, 6, 5, 5)])
    assert tops == [(1, 4, 10, 10)] and tuple(mod.weight.shape) == (6, 2, 4, 4)
    assert tuple(mod(torch.randn(1, 6, 5, 5)).shape) == (1, 4, 10, 10)
    # Caffe's deconvolution (col2im of W^T x): kernel 2 / stride 2 scatters W[c, o] * x[c, i, j]
    # to y[o, 2i + a, 2j + b]; weight blob C_in x num_output x k x k
    mod, _ = convert('name: "d" type: "Deconvolution" bottom: "x" top: "y" convolution_param { num_output: 2 '
                     'kernel_size: 2 stride: 2 bias_term: false }', [(1, 3, 2, 2)])
    w = np.random.RandomState(5).randn(3, 2, 2, 2).astype(np.float32)
    x = np.random.RandomState(6).randn(1, 3, 2, 2).astype(np.float32)
    with torch.no_grad():
        mod.weight.copy_(torch.from_numpy(w))
    want = np.einsum("cij,coab->oiajb", x[0], w).reshape(2, 4, 4)
    np.testing.assert_allclose(mod(torch.from_numpy(x))[0].detach().numpy(), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ConversionError, match="'c'.*group"):
        convert('name: "c" type: "Convolution" bottom: "x" top: "y" convolution_param { num_output: 4 '
                'kernel_size: 3 group: 4 }', [(1, 6, 9, 9)])


def test_inner_product_axis_and_transpose():
    mod, tops = convert('name: "ip" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: 5 '
                        'axis: 2 transpose: true }', [(2, 3, 4, 6)])
    assert tops == [(2, 3, 5)] and tuple(mod.weight.shape) == (24, 5)
    x = torch.randn(2, 3, 4, 6)
    with torch.no_grad():
        mod.weight.normal_()
        mod.bias.normal_()
    torch.testing.assert_close(mod(x), x.reshape(6, 24).matmul(mod.weight).reshape(2, 3, 5) + mod.bias)


# ------------------------------------------------------------------ registry and net rules
def test_registry_refuses_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        register("Pooling")(lambda layer, shapes, phase: None)
    assert {"Convolution", "Pooling", "LRN", "InnerProduct", "Concat", "BatchNorm"} <= set(supported_types())


NET_HEAD = 'name: "t" input: "data" input_shape { dim: 2 dim: 3 dim: 8 dim: 8 }\n'
CONV = ('layer {{ name: "{n}" type: "Convolution" bottom: "{b}" top: "{t}" '
        'convolution_param {{ num_output: {o} kernel_size: 3 pad: 1 }} }}\n')


def test_unsupported_layers_listed_together():
    text = (NET_HEAD + CONV.format(n="conv1", b="data", t="conv1", o=4)
            + 'layer { name: "py" type: "Python" bottom: "conv1" top: "p" }\n'
            + 'layer { name: "mbl" type: "MultiBoxLoss" bottom: "p" top: "r" }\n'
            + 'layer { name: "py2" type: "Python" bottom: "r" top: "q" }\n')
    with pytest.raises(UnsupportedLayersError) as err:
        net_from(text)
    msg = str(err.value)
    assert "3 unsupported" in msg and "'py' (Python)" in msg and "'mbl' (MultiBoxLoss)" in msg and "'py2'" in msg
    assert err.value.layers == [("py", "Python"), ("mbl", "MultiBoxLoss"), ("py2", "Python")]


def test_inplace_relu_overwrites_blob():
    text = (NET_HEAD + CONV.format(n="conv1", b="data", t="conv1", o=4)
            + 'layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }\n'
            + CONV.format(n="a", b="conv1", t="a", o=2) + CONV.format(n="b", b="conv1", t="b", o=2))
    model = net_from(text)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    x = torch.randn(2, 3, 8, 8)
    blobs = model.forward_blobs({"data": x})
    conv = model.caffe_layers["conv1"](x)
    assert conv.min() < 0
    torch.testing.assert_close(blobs["conv1"], torch.relu(conv))     # the stored blob is post-ReLU
    assert model.output_names == ["a", "b"]                          # conv1 is consumed (twice)
    out = model(x)
    torch.testing.assert_close(out["a"], blobs["a"])
    # implicit split: the gradient of conv1 sums over both consumers
    model.zero_grad()
    y = model(x)
    (y["a"].sum() + y["b"].sum()).backward()
    assert model.caffe_layers["conv1"].weight.grad.abs().sum() > 0


def test_top_produced_twice_is_an_error():
    text = NET_HEAD + CONV.format(n="c1", b="data", t="x", o=2) + CONV.format(n="c2", b="data", t="x", o=2)
    with pytest.raises(ConversionError, match="'c2'.*produced by multiple sources"):
        net_from(text)
    with pytest.raises(ConversionError, match="unknown bottom blob 'nope'"):
        net_from(NET_HEAD + CONV.format(n="c1", b="nope", t="x", o=2))


def test_shared_params_appear_once():
    shared = ('layer {{ name: "{n}" type: "InnerProduct" bottom: "data" top: "{n}" param {{ name: "w" lr_mult: 2 }} '
              'param {{ name: "bias_{n}" }} inner_product_param {{ num_output: 3 }} }}\n')
    model = net_from(NET_HEAD + shared.format(n="ip1") + shared.format(n="ip2"))
    layers = model.caffe_layers
    assert layers["ip1"].weight is layers["ip2"].weight
    assert layers["ip1"].bias is not layers["ip2"].bias
    assert [(n, i, lr) for n, i, _, lr, _ in model.param_specs()] == [("ip1", 0, 2.0), ("ip1", 1, 1.0), ("ip2", 1, 1.0)]


def test_weight_shape_mismatch_names_layer(tmp_path):
    small = net_from(NET_HEAD + CONV.format(n="conv1", b="data", t="conv1", o=4))
    converters.save_caffemodel(small, tmp_path / "w.caffemodel")
    with pytest.raises(converters.formats.CaffeFormatError) as err:
        converters.load_caffe(parse_net(NET_HEAD + CONV.format(n="conv1", b="data", t="conv1", o=5)),
                              tmp_path / "w.caffemodel")
    msg = str(err.value)
    assert str(tmp_path / "w.caffemodel") in msg and "'conv1'" in msg
    assert "(4, 3, 3, 3)" in msg and "(5, 3, 3, 3)" in msg


def test_legacy_blob_shape_accepted():
    # V1 caffemodels store InnerProduct weights as 1x1xNxK and biases as 1x1x1xN: Caffe's
    # Blob::ShapeEquals compares legacy dims with the shape left-padded by 1s.
    text = NET_HEAD + ('layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
                       'inner_product_param { num_output: 4 } }')
    w = np.random.RandomState(0).randn(4, 192).astype(np.float32)
    b = np.arange(4, dtype=np.float32)
    weights = pb.NetParameter()
    layer = weights.layer.add(name="ip", type="InnerProduct")
    layer.blobs.append(array_to_blob(w[None, None], legacy=True))
    layer.blobs.append(array_to_blob(b[None, None, None], legacy=True))
    weights.layer.add(name="not_in_net", type="ReLU")       # ignored, as Caffe does
    model = converters.load_caffe(parse_net(text), weights)
    assert tuple(model.caffe_layers["ip"].weight.shape) == (4, 192)
    np.testing.assert_array_equal(model.caffe_layers["ip"].weight.detach().numpy(), w)
    np.testing.assert_array_equal(model.caffe_layers["ip"].bias.detach().numpy(), b)
    # ... but a new-style blob must have exactly the parameter's shape
    layer.blobs[0].CopyFrom(array_to_blob(w[None, None]))
    with pytest.raises(converters.formats.CaffeFormatError, match="'ip'.*shape mismatch"):
        converters.load_caffe(parse_net(text), weights)


def test_missing_weights_listed_and_filled():
    text = (NET_HEAD + 'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { '
            'num_output: 4 bias_filler { type: "constant" value: 0.5 } } }')
    weights = pb.NetParameter()
    weights.layer.add(name="other", type="ReLU")
    with pytest.warns(UserWarning, match="'ip'"):
        model = converters.load_caffe(parse_net(text), weights)
    assert model.missing_weights == ["ip"]
    assert torch.all(model.caffe_layers["ip"].bias == 0.5)


def test_batch_size_changes_at_call_time():
    model = net_from(NET_HEAD + CONV.format(n="conv1", b="data", t="conv1", o=4)
                     + 'layer { name: "pool" type: "Pooling" bottom: "conv1" top: "pool" pooling_param { '
                       'kernel_size: 3 stride: 2 } }\n'
                     + 'layer { name: "ip" type: "InnerProduct" bottom: "pool" top: "ip" '
                       'inner_product_param { num_output: 3 } }')
    assert model.blob_shapes["pool"] == (2, 4, 4, 4) and model.input_shapes == {"data": (2, 3, 8, 8)}
    assert tuple(model(torch.randn(5, 3, 8, 8)).shape) == (5, 3)
    with pytest.raises(ConversionError, match="'ip'"):
        model(torch.randn(5, 3, 10, 10))


def test_infer_shapes_allocates_nothing():
    # 2 x 64 x 4000 x 4000 = 2.05e9 values (8 GB as float32), just under Caffe's INT_MAX blob limit
    text = NET_HEAD.replace("dim: 8 dim: 8", "dim: 4000 dim: 4000") + CONV.format(n="c", b="data", t="c", o=64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        shapes = converters.infer_shapes(parse_net(text))
    assert shapes == {"data": (2, 3, 4000, 4000), "c": (2, 64, 4000, 4000)}


def test_loss_layer_without_top_gets_caffes_automatic_top():
    # Caffe's AutoTopBlobs: the upstream VGG train_vals write their SoftmaxWithLoss without a top;
    # Caffe still creates one and counts its loss with weight 1.
    from converters import load_caffe
    from converters.formats import parse_net
    net = parse_net('''
        layer { name: "data" type: "Input" top: "data" top: "label"
                input_param { shape { dim: 4 dim: 3 } shape { dim: 4 } } }
        layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
                inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.1 } } }
        layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" }
    ''')
    model = load_caffe(net, phase="train")
    assert model.loss_weights == {"(automatic)": 1.0}
    x, y = torch.randn(4, 3), torch.tensor([0.0, 1.0, 1.0, 0.0])
    blobs = model.forward_blobs({"data": x, "label": y})
    expected = torch.nn.functional.cross_entropy(blobs["ip"], y.long())
    assert torch.allclose(model.total_loss(blobs), expected, atol=1e-6)
