"""LRP on converted Caffe nets: rules checked by hand, conservation, the paper's composite on the
real-Caffe oracle nets, and agreement with zennit where the recipes coincide."""
import json
import sys
import types

import numpy as np
import pytest
import torch

from converters import load_caffe
from converters.formats.prototxt import parse_net
from converters.lrp import (AlphaBeta, Composite, ConcatSplit, Epsilon, Flat, LayerMatch, LRNIdentity, LRNTaylor,
                            LRPError, Pass, WinnerTakesAll, caffe_layer_indices, explain, paper_composite,
                            toolbox_composite)
from converters.lrp import render

INPUT = 'input: "data"\ninput_shape {{ dim: {n} dim: {c} dim: {h} dim: {w} }}\n'


def caffe_net(body: str, shape, weights: dict | None = None, dtype=torch.float64):
    n, c, h, w = shape
    model = load_caffe(parse_net('name: "t"\n' + INPUT.format(n=n, c=c, h=h, w=w) + body)).to(dtype)
    layers = model.caffe_layers
    with torch.no_grad():
        for name, blobs in (weights or {}).items():
            for attr, value in zip(("weight", "bias"), blobs):
                getattr(layers[name], attr).copy_(torch.as_tensor(value, dtype=dtype).reshape(
                    getattr(layers[name], attr).shape))
    return model


def ip(name, bottom, n, bias=True):
    return (f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{name}" '
            f'inner_product_param {{ num_output: {n} bias_term: {"true" if bias else "false"} }} }}\n')


def relu(name, blob):
    return f'layer {{ name: "{name}" type: "ReLU" bottom: "{blob}" top: "{blob}" }}\n'


def rules_only(**by_type):
    return Composite([(LayerMatch(types=(t,)), r) for t, r in by_type.items()])


# ---------------------------------------------------------------------------- by hand
def test_epsilon_rule_two_layer_linear_net_by_hand():
    x = [1.0, 2.0, -1.0]
    w1, b1 = [[1.0, -1.0, 2.0], [0.5, 1.0, 1.0]], [0.2, -0.3]
    w2, b2 = [[2.0, -1.0], [1.0, 1.5]], [0.1, 0.4]
    eps = 0.1
    model = caffe_net(ip("fc1", "data", 2) + relu("relu1", "fc1") + ip("fc2", "fc1", 2),
                      (1, 3, 1, 1), {"fc1": (w1, b1), "fc2": (w2, b2)})
    # by hand: forward, then R_i = x_i w_ij R_j / (z_j + eps sign z_j)
    z1 = [sum(w1[j][i] * x[i] for i in range(3)) + b1[j] for j in range(2)]
    a1 = [max(v, 0.0) for v in z1]
    z2 = [sum(w2[j][i] * a1[i] for i in range(2)) + b2[j] for j in range(2)]
    target = 1
    r2 = [0.0, z2[1]]

    def stab(z):
        return z + eps * (1 if z > 0 else -1)

    r1 = [sum(a1[i] * w2[j][i] * r2[j] / stab(z2[j]) for j in range(2)) for i in range(2)]
    r0 = [sum(x[i] * w1[j][i] * r1[j] / stab(z1[j]) for j in range(2)) for i in range(3)]

    relevance, record = explain(model, torch.tensor(x, dtype=torch.float64).reshape(1, 3, 1, 1), target,
                                rules_only(InnerProduct=Epsilon(eps)))
    assert relevance.shape == (1, 3, 1, 1)
    np.testing.assert_allclose(relevance.flatten().numpy(), r0, rtol=1e-12)
    assert record["classes"] == [1] and record["start_layer"] == "fc2"
    assert record["start_scores"][0] == pytest.approx(z2[1])
    assert record["relevance_sums"][0] == pytest.approx(sum(r0))
    assert record["leak"][0] == pytest.approx(z2[1] - sum(r0))
    assert [entry["rule"] for entry in record["layers"]] == ["Epsilon(eps=0.1)", "Pass()", "Epsilon(eps=0.1)"]


def test_alpha_beta_four_sign_cases_and_bias_leak_by_hand():
    # one output neuron; inputs and weights of both signs so that all four products occur
    x = [1.5, -2.0, 0.5, -1.0]
    w = [[0.8, -0.6, -1.2, 0.4]]
    b = [0.3]
    model = caffe_net(ip("fc", "data", 1), (1, 4, 1, 1), {"fc": (w, b)})
    alpha, beta = 2.0, 1.0
    c = [x[i] * w[0][i] for i in range(4)]                     # x+w+ / x-w- positive, x+w- / x-w+ negative
    zp = sum(v for v in c if v > 0) + max(b[0], 0.0)
    zn = sum(v for v in c if v < 0) + min(b[0], 0.0)
    score = sum(c) + b[0]
    expected = [alpha * max(v, 0.0) / zp * score - beta * min(v, 0.0) / zn * score for v in c]
    relevance, record = explain(model, torch.tensor(x, dtype=torch.float64).reshape(1, 4, 1, 1), 0,
                                rules_only(InnerProduct=AlphaBeta(alpha, beta)))
    np.testing.assert_allclose(relevance.flatten().numpy(), expected, rtol=1e-12)
    # the bias takes part in the positive denominator but receives nothing: that share leaks
    leak = score * (alpha * max(b[0], 0.0) / zp - beta * min(b[0], 0.0) / zn)
    assert record["leak"][0] == pytest.approx(leak, rel=1e-10)
    assert record["relevance_sums"][0] == pytest.approx(score - leak, rel=1e-10)


def test_alpha_beta_without_bias_conserves_per_neuron():
    x = torch.tensor([[0.5, -1.0, 2.0, 0.25, -0.75]], dtype=torch.float64).reshape(1, 5, 1, 1)
    w = [[0.3, 0.2, -0.7, 1.1, -0.4], [-0.5, 0.9, 0.6, -0.2, 0.1], [0.4, -0.3, -0.8, 0.7, 0.5]]
    model = caffe_net(ip("fc", "data", 3, bias=False), (1, 5, 1, 1), {"fc": (w,)})
    for target in range(3):
        relevance, record = explain(model, x, target, rules_only(InnerProduct=AlphaBeta(2, 1)))
        assert relevance.sum().item() == pytest.approx(record["start_scores"][0], rel=1e-12)


# ---------------------------------------------------------------------------- conservation
BRANCHY = """
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 6 kernel_size: 5 stride: 1 pad: 2 bias_term: BIAS } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "norm1" type: "LRN" bottom: "pool1" top: "norm1" lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 } }
layer { name: "a/1x1" type: "Convolution" bottom: "norm1" top: "a/1x1" convolution_param { num_output: 4 kernel_size: 1 bias_term: BIAS } }
layer { name: "a/relu1" type: "ReLU" bottom: "a/1x1" top: "a/1x1" }
layer { name: "a/3x3" type: "Convolution" bottom: "norm1" top: "a/3x3"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 group: 2 bias_term: BIAS } }
layer { name: "a/relu3" type: "ReLU" bottom: "a/3x3" top: "a/3x3" }
layer { name: "a/out" type: "Concat" bottom: "a/1x1" bottom: "a/3x3" top: "a/out" }
layer { name: "pool2" type: "Pooling" bottom: "a/out" top: "pool2" pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "fc3" type: "InnerProduct" bottom: "pool2" top: "fc3" inner_product_param { num_output: 12 bias_term: BIAS } }
layer { name: "relu3" type: "ReLU" bottom: "fc3" top: "fc3" }
layer { name: "drop3" type: "Dropout" bottom: "fc3" top: "fc3" dropout_param { dropout_ratio: 0.5 } }
layer { name: "fc4" type: "InnerProduct" bottom: "fc3" top: "fc4" inner_product_param { num_output: 5 bias_term: BIAS } }
layer { name: "prob" type: "Softmax" bottom: "fc4" top: "prob" }
"""


def branchy(bias: bool, seed: int = 0):
    model = caffe_net(BRANCHY.replace("BIAS", "true" if bias else "false"), (2, 3, 23, 23))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, i, p, _, _ in model.param_specs():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * (0.4 if i == 0 else 0.3))
    x = torch.randn((2, 3, 23, 23), generator=g, dtype=torch.float64) * 50
    return model, x


CONSERVATIVE = Composite([(LayerMatch(types=("Convolution", "InnerProduct"), upto=0), Flat("normalized")),
                          (LayerMatch(types=("Convolution",)), AlphaBeta(2, 1)),
                          (LayerMatch(types=("InnerProduct",)), Epsilon(0.0)),
                          (LayerMatch(types=("LRN",)), LRNIdentity())])


def test_conservation_without_biases_every_layer_and_overall():
    model, x = branchy(bias=False)
    relevance, record = explain(model, x, [0, 3], CONSERVATIVE)
    start, total = np.array(record["start_scores"]), relevance.sum((1, 2, 3)).numpy()
    np.testing.assert_allclose(total, start, rtol=1e-9)
    np.testing.assert_allclose(record["relevance_sums"], start, rtol=1e-9)
    for entry in record["layers"]:
        np.testing.assert_allclose(entry["relevance_bottom"], entry["relevance_top"], rtol=1e-9,
                                   err_msg=f"{entry['name']} ({entry['rule']})")
    names = {e["name"]: e["rule"] for e in record["layers"]}
    assert names["conv1"] == "Flat(mode='normalized')" and names["a/3x3"].startswith("AlphaBeta(alpha=2.0, beta=1.0")
    assert names["pool1"] == "WinnerTakesAll()" and names["pool2"].startswith("AveragePooling(")
    assert names["a/out"] == "ConcatSplit()" and names["drop3"] == "Pass()" and "prob" not in names


def test_leak_with_biases_and_epsilon_is_accounted_layer_by_layer():
    model, x = branchy(bias=True, seed=1)
    comp = toolbox_composite(102, flat_upto=0, eps=0.1, lrn="identity", flat_mode="normalized")
    relevance, record = explain(model, x, "predicted", comp)
    leak = np.array(record["leak"])
    start = np.array(record["start_scores"])
    np.testing.assert_allclose(leak, start - relevance.sum((1, 2, 3)).numpy(), rtol=1e-9, atol=1e-9)
    per_layer = sum(np.array(e["relevance_top"]) - np.array(e["relevance_bottom"]) for e in record["layers"])
    np.testing.assert_allclose(per_layer, leak, rtol=1e-7, atol=1e-9)
    assert np.all(np.abs(leak) > 1e-6)                      # biases and epsilon do absorb relevance
    assert record["classes"] == [int(c) for c in model(x).argmax(1)]


# ---------------------------------------------------------------------------- single rules
POOL = """
layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool" top: "fc" inner_product_param { num_output: 1 } }
"""


def test_max_pool_winner_takes_all_first_maximum_and_ceil_windows():
    model = caffe_net(POOL, (1, 1, 6, 6))
    pool = model.caffe_layers["pool"]
    x = torch.zeros((1, 1, 6, 6), dtype=torch.float64)
    x[0, 0, 5, 0] = x[0, 0, 4, 1] = 5.0          # tie in window (2, 0) [4:6, 0:3]: row-major first, (4, 1), wins
    x[0, 0, 2, 2] = 7.0                          # shared by windows (0,0), (0,1), (1,0), (1,1)
    x[0, 0, 5, 5] = 3.0                          # only in the ceil-mode window (2, 2) [4:6, 4:6]
    y = pool(x)
    assert y.shape == (1, 1, 3, 3)               # ceil((6 - 3) / 2) + 1
    r = torch.arange(1.0, 10.0, dtype=torch.float64).reshape(1, 1, 3, 3)
    (got,) = WinnerTakesAll()(pool, [x], [y], [r])
    want = torch.zeros_like(x)
    want[0, 0, 2, 2] = 1 + 2 + 4 + 5            # all four windows that contain the 7
    want[0, 0, 5, 5] = 9
    want[0, 0, 4, 1] = 7
    # windows whose maximum is 0 (a tie of zeros) give their relevance to their first element
    for (i, j), (a, b) in {(0, 2): (0, 4), (1, 2): (2, 4), (2, 1): (4, 2)}.items():
        assert y[0, 0, i, j] == 0
        want[0, 0, a, b] += r[0, 0, i, j]
    torch.testing.assert_close(got, want)
    assert got.sum() == r.sum()


def test_concat_split_by_channels_and_implicit_split_sums():
    model, x = branchy(bias=False)
    concat = model.caffe_layers["a/out"]
    a, b = torch.rand(2, 4, 5, 5, dtype=torch.float64), torch.rand(2, 4, 5, 5, dtype=torch.float64)
    r = torch.randn(2, 8, 5, 5, dtype=torch.float64)
    ra, rb = ConcatSplit()(concat, [a, b], [concat(a, b)], [r])
    torch.testing.assert_close(ra, r[:, :4])
    torch.testing.assert_close(rb, r[:, 4:])
    # norm1 feeds a/1x1 and a/3x3: its relevance is the sum of what both hand down
    explanation = explain(model, x, 1, CONSERVATIVE, layer_relevances=True)
    log = {e["name"]: e for e in explanation.record["layers"]}
    norm1 = explanation.blob_relevances["norm1"].sum((1, 2, 3)).numpy()
    np.testing.assert_allclose(norm1, np.add(log["a/1x1"]["relevance_bottom"], log["a/3x3"]["relevance_bottom"]),
                               rtol=1e-10)


def test_alpha_beta_grouped_strided_conv_matches_a_reference_by_autograd():
    body = ('layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
            'convolution_param { num_output: 6 kernel_size: 3 stride: 2 pad: 1 group: 3 } }\n' + ip("fc", "conv", 1))
    model = caffe_net(body, (2, 6, 9, 9))
    conv = model.caffe_layers["conv"]
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g, dtype=torch.float64))
        conv.bias.copy_(torch.randn(conv.bias.shape, generator=g, dtype=torch.float64))
    for x in (torch.rand(2, 6, 9, 9, generator=g, dtype=torch.float64),          # post-ReLU-like
              torch.randn(2, 6, 9, 9, generator=g, dtype=torch.float64)):        # both signs (first layer)
        y = conv(x)
        r = torch.randn(y.shape, generator=g, dtype=torch.float64)
        for group0_bias in (False, True):
            (got,) = AlphaBeta(2, 1, group0_bias=group0_bias)(conv, [x], [y], [r])
            b = conv.bias.detach()
            if group0_bias:          # the toolbox: output j of group g uses b[j - g * 6 / 3]
                b = torch.stack([b[j % 2] for j in range(6)])
            torch.testing.assert_close(got, _four_sign_reference(x, conv.weight.detach(), b, r))
    # the quirk changes the result (non-zero biases differ between groups)
    assert not torch.allclose(AlphaBeta(2, 1, group0_bias=True)(conv, [x], [y], [r])[0],
                              AlphaBeta(2, 1, group0_bias=False)(conv, [x], [y], [r])[0])


def _four_sign_reference(x, w, b, r):
    """alpha 2 / beta 1 by its definition: the four sign cases as separate convolutions (stride 2,
    pad 1, group 3), transposed by autograd."""
    xp, xn = x.clamp(min=0).requires_grad_(), x.clamp(max=0).requires_grad_()

    def c(inp, weight, bias=None):
        return torch.nn.functional.conv2d(inp, weight, bias, 2, 1, 1, 3)
    with torch.enable_grad():
        pos = [c(xp, w.clamp(min=0), b.clamp(min=0)), c(xn, w.clamp(max=0))]
        neg = [c(xp, w.clamp(max=0), b.clamp(max=0)), c(xn, w.clamp(min=0))]
        zp, zn = pos[0] + pos[1], neg[0] + neg[1]
        sp = torch.where(zp > 0, r / zp, torch.zeros_like(r)).detach()
        sn = torch.where(zn < 0, r / zn, torch.zeros_like(r)).detach()
        gp = torch.autograd.grad((pos[0] * sp).sum() + (pos[1] * sp).sum(), [xp, xn])
        gn = torch.autograd.grad((neg[0] * sn).sum() + (neg[1] * sn).sum(), [xp, xn])
    want = 2 * (xp * gp[0] + xn * gp[1]) - 1 * (xp * gn[0] + xn * gn[1])
    return want.detach()


def test_flat_toolbox_weights_vs_normalized():
    body = ('layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
            'convolution_param { num_output: 4 kernel_size: 3 pad: PAD group: 2 } }\n' + ip("fc", "conv", 1))
    for pad in (0, 1):
        model = caffe_net(body.replace("PAD", str(pad)), (1, 6, 7, 7))
        conv = model.caffe_layers["conv"]
        x = torch.rand(1, 6, 7, 7, dtype=torch.float64)
        y = conv(x)
        r = torch.rand_like(y)
        (tool,) = Flat("toolbox")(conv, [x], [y], [r])
        (norm,) = Flat("normalized")(conv, [x], [y], [r])
        assert norm.sum().item() == pytest.approx(r.sum().item(), rel=1e-12)       # conservative
        # toolbox: every weight 1/9, so without padding the relevance is multiplied by C_in/group = 3
        if pad == 0:
            assert tool.sum().item() == pytest.approx(3 * r.sum().item(), rel=1e-12)
        else:                                                                       # padded taps lose their share
            assert tool.sum().item() < 3 * r.sum().item()
        # input independent, identical over the channels of a group
        (again,) = Flat("toolbox")(conv, [x * 0 + 5], [y], [r])
        torch.testing.assert_close(again, tool)
        torch.testing.assert_close(tool[:, 0], tool[:, 2])
        # by hand for one input position: sum over the outputs of its group whose window covers it
        i, j = 3, 3
        want = sum(r[0, m, oi, oj].item() / 9 for m in range(2) for oi in range(y.shape[2]) for oj in range(y.shape[3])
                   if 0 <= i - (oi - pad) < 3 and 0 <= j - (oj - pad) < 3)
        assert tool[0, 1, i, j].item() == pytest.approx(want, rel=1e-12)


def test_lrn_taylor_is_the_toolbox_type_1_formula():
    body = ('layer { name: "norm" type: "LRN" bottom: "data" top: "norm" '
            'lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 2 } }\n' + ip("fc", "norm", 1))
    model = caffe_net(body, (1, 4, 2, 1))
    lrn = model.caffe_layers["norm"]
    x = torch.tensor([1.0, -2.0, 3.0, 0.5, 2.0, 1.0, -1.0, 4.0], dtype=torch.float64).reshape(1, 4, 2, 1)
    r = torch.tensor([0.3, -0.1, 0.7, 0.2, 0.5, 0.4, -0.6, 0.1], dtype=torch.float64).reshape(1, 4, 2, 1)
    y = lrn(x)
    (got,) = LRNTaylor()(lrn, [x], [y], [r])
    n, a, b, k = 3, 0.5, 0.75, 2.0
    X, R = x[0, :, :, 0].numpy(), r[0, :, :, 0].numpy()
    want = np.zeros_like(X)
    for p in range(2):
        s = [k + a / n * sum(X[cc, p] ** 2 for cc in range(max(0, c - 1), min(4, c + 2))) for c in range(4)]
        for c in range(4):
            own = X[c, p] * (k + a / n * X[c, p] ** 2) ** (-b) * R[c, p]
            cross = sum(-2 * a * b / n * s[cc] ** (-b - 1) * X[cc, p] * R[cc, p]
                        for cc in range(max(0, c - 1), min(4, c + 2)) if cc != c)
            want[c, p] = own + X[c, p] ** 2 * cross
    np.testing.assert_allclose(got[0, :, :, 0].numpy(), want, rtol=1e-12)
    (ident,) = LRNIdentity()(lrn, [x], [y], [r])
    assert ident is r


def test_target_selection_and_errors():
    model, x = branchy(bias=True)
    scores = model.forward_blobs({"data": x})["fc4"]
    rel, rec = explain(model, x, [4, 2], CONSERVATIVE)
    assert rec["classes"] == [4, 2]
    np.testing.assert_allclose(rec["start_scores"], [scores[0, 4].item(), scores[1, 2].item()])
    assert explain(model, x, 3, CONSERVATIVE).record["classes"] == [3, 3]
    with pytest.raises(LRPError, match="out of range"):
        explain(model, x, 5, CONSERVATIVE)
    with pytest.raises(LRPError, match="3 target classes for a batch of 2"):
        explain(model, x, [0, 1, 2], CONSERVATIVE)
    with pytest.raises(LRPError, match="no rule"):
        explain(model, x, 0, Composite([(LayerMatch(types=("InnerProduct",)), Epsilon())]))
    with pytest.raises(LRPError, match="start layer 'nope'"):
        explain(model, x, 0, CONSERVATIVE, start_layer="nope")
    # starting lower explains that layer's output instead
    rec = explain(model, x, 2, CONSERVATIVE, start_layer="fc3").record
    assert rec["start_layer"] == "fc3" and [e["name"] for e in rec["layers"]][-1] == "fc3"
    with pytest.raises(ValueError, match="alpha - beta must be 1"):
        AlphaBeta(2, 2)


def test_rules_per_layer_index_and_name():
    model, x = branchy(bias=True)
    comp = Composite([(LayerMatch(types=("Convolution",), upto="norm1"), Flat()),
                      (LayerMatch(names=("a/3x3",)), Epsilon(0.5)),
                      (LayerMatch(types=("Convolution",)), AlphaBeta(2, 1)),
                      (LayerMatch(types=("InnerProduct",)), Epsilon())])
    rules = {e["name"]: e["rule"] for e in explain(model, x, 0, comp).record["layers"]}
    assert rules["conv1"] == "Flat(mode='toolbox')"
    assert rules["a/3x3"] == "Epsilon(eps=0.5)" and rules["a/1x1"].startswith("AlphaBeta(alpha=2.0, beta=1.0")
    assert rules["norm1"] == "LRNIdentity()"                  # the default when the composite names none


# ---------------------------------------------------------------------------- Caffe layer indices
def test_caffe_layer_indices_follow_caffe_including_inserted_splits(oracle):
    from converters.formats import read_net
    fixture = json.loads((oracle / "nets" / "googlenet_age" / "fixture.json").read_text())
    caffe_table = [layer["name"] for layer in fixture["layers"]]         # real Caffe: Input at 0, Splits inserted
    assert caffe_table[0] == "input"
    net = read_net(oracle / "nets" / "googlenet_age" / "deploy.prototxt")
    ours = dict(zip([layer.name for layer in net.layer], caffe_layer_indices(net)))
    assert ours.pop("input") is None
    for name, index in ours.items():                    # the toolbox's Caffe had no Input layer: one less
        assert caffe_table.index(name) - 1 == index, name
    assert ours["conv2/3x3_reduce"] == 4
    vgg = read_net(oracle / "nets" / "vgg16_gender" / "deploy.prototxt")
    assert dict(zip([layer.name for layer in vgg.layer], caffe_layer_indices(vgg)))["pool2"] == 9
    caffenet = read_net(oracle / "nets" / "caffenet_age" / "deploy.prototxt")
    assert dict(zip([layer.name for layer in caffenet.layer], caffe_layer_indices(caffenet)))["conv1"] == 0


# ---------------------------------------------------------------------------- the paper composite
@pytest.mark.parametrize("net,flat_upto,start", [("caffenet_age", 0, "fc8_agexgender"),
                                                 ("googlenet_age", 4, "loss3/classifier_agexgender"),
                                                 ("vgg16_gender", 9, "fc8-gender")])
def test_paper_composite_on_reduced_oracle_nets(oracle, net, flat_upto, start):
    from conftest import need
    need(oracle, f"nets/{net}/weights.caffemodel", f"nets/{net}/input.npy")
    folder = oracle / "nets" / net
    model = load_caffe(folder / "deploy.prototxt", folder / "weights.caffemodel")
    x = torch.from_numpy(np.load(folder / "input.npy"))
    relevance, record = explain(model, x, "predicted", paper_composite(flat_upto=flat_upto, eps=0.1))
    assert relevance.shape == x.shape and relevance.dtype == torch.float32
    assert torch.isfinite(relevance).all() and relevance.abs().sum() > 0
    assert record["start_layer"] == start
    outputs = np.load(folder / "outputs.npz")
    prob = outputs["prob"] if "prob" in outputs else outputs["loss3/loss3"]
    assert record["classes"] == [int(np.argmax(prob[0]))]
    for entry in record["layers"]:
        if entry["type"] in ("Convolution", "InnerProduct") and entry["index"] <= flat_upto:
            assert entry["rule"] == "Flat(mode='toolbox')", entry
        elif entry["type"] == "Convolution":
            assert entry["rule"] == "AlphaBeta(alpha=2.0, beta=1.0, group0_bias=True)", entry
        elif entry["type"] == "InnerProduct":
            assert entry["rule"] == "Epsilon(eps=0.1)", entry
        elif entry["type"] == "LRN":
            assert entry["rule"] == "LRNTaylor()"
        elif entry["type"] == "Concat":
            np.testing.assert_allclose(entry["relevance_bottom"], entry["relevance_top"], rtol=1e-5)
    # GoogLeNet: the toolbox visits the auxiliary heads (their Softmax injects the probabilities),
    # the corrected variant does not
    aux = [e for e in record["layers"] if e["name"].startswith(("loss1/", "loss2/"))]
    assert bool(aux) == (net == "googlenet_age") and record["variant"] == "toolbox"
    if aux:
        soft = [e for e in aux if e["type"] == "Softmax"]
        assert len(soft) == 2 and all(abs(e["relevance_bottom"][0] - 1) < 1e-5 for e in soft)
        corrected = explain(model, x, "predicted", paper_composite(flat_upto=flat_upto, variant="corrected")).record
        assert not any(e["name"].startswith(("loss1/", "loss2/")) for e in corrected["layers"])
        assert corrected["variant"] == "corrected"
    rgb = render.colorize(relevance[0], "black-firered")
    assert rgb.shape == x.shape[2:] + (3,) and rgb.dtype == np.uint8


# ---------------------------------------------------------------------------- rendering
def test_black_firered_anchors_and_seismic_centre():
    x = np.array([-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0, 0.125, -0.375])
    rgb = render.black_firered(x)
    np.testing.assert_allclose(rgb[:7], [[1, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]])
    np.testing.assert_allclose(rgb[7], [0.5, 0, 0])
    np.testing.assert_allclose(rgb[8], [0, 0.5, 1])
    assert np.allclose(render.seismic(np.array([0.0]))[0], [1, 1, 1], atol=0.01)
    r = np.zeros((3, 4, 4))
    r[0, 1, 1], r[2, 1, 1], r[1, 2, 2] = 2.0, 2.0, -1.0       # channel sum: +4 and -1
    img = render.colorize(r, "black-firered")
    assert img.dtype == np.uint8 and img.shape == (4, 4, 3)
    assert tuple(img[1, 1]) == (255, 255, 255) and tuple(img[0, 0]) == (0, 0, 0)
    assert tuple(img[2, 2]) == (0, 0, 255)                    # -1/4 of the maximum: pure blue
    avg = render.average([r, 3 * r])
    np.testing.assert_allclose(avg, 2 * r.sum(0))


def test_panel_png(tmp_path):
    import cv2
    inp = np.zeros((20, 20, 3), np.uint8)
    hm = render.colorize(np.random.default_rng(0).normal(size=(3, 20, 20)))
    path = render.panel(tmp_path / "p.png", [inp, inp], [[hm, hm], [hm, None]], row_titles=["a", "b"],
                        col_titles=["x", "y"])
    img = cv2.imread(str(path))
    assert img is not None and img.shape[0] > img.shape[1] * 0.8


# ---------------------------------------------------------------------------- zennit (optional)
def _zennit():
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - zennit only needs torchvision.models.resnet's block classes
        tv, models, resnet = (types.ModuleType(n) for n in ("torchvision", "torchvision.models",
                                                             "torchvision.models.resnet"))
        resnet.Bottleneck = type("Bottleneck", (), {})
        resnet.BasicBlock = type("BasicBlock", (), {})
        tv.models, models.resnet = models, resnet
        saved = {k: sys.modules.get(k) for k in ("torchvision", "torchvision.models", "torchvision.models.resnet")}
        sys.modules.update({"torchvision": tv, "torchvision.models": models, "torchvision.models.resnet": resnet})
        try:
            return pytest.importorskip("zennit")
        finally:
            for k, v in saved.items():
                if v is None:
                    sys.modules.pop(k, None)
                else:
                    sys.modules[k] = v
    return pytest.importorskip("zennit")


TINY = """
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 6 kernel_size: 5 pad: 2 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2" convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2" pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layer { name: "fc3" type: "InnerProduct" bottom: "pool2" top: "fc3" inner_product_param { num_output: 10 } }
layer { name: "relu3" type: "ReLU" bottom: "fc3" top: "fc3" }
layer { name: "fc4" type: "InnerProduct" bottom: "fc3" top: "fc4" inner_product_param { num_output: 4 } }
layer { name: "prob" type: "Softmax" bottom: "fc4" top: "prob" }
"""


@pytest.mark.parametrize("flat", [True, False])
def test_agrees_with_zennit_composites(flat):
    zennit = _zennit()
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonAlpha2Beta1, EpsilonAlpha2Beta1Flat
    torch.manual_seed(0)
    nn = torch.nn
    tm = nn.Sequential(nn.Conv2d(3, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2), nn.Conv2d(6, 8, 3, padding=1),
                       nn.ReLU(), nn.AvgPool2d(2, 2), nn.Flatten(), nn.Linear(8 * 5 * 5, 10), nn.ReLU(),
                       nn.Linear(10, 4)).double()
    model = caffe_net(TINY, (2, 3, 20, 20), {name: (m.weight.detach(), m.bias.detach()) for name, m in
                                              (("conv1", tm[0]), ("conv2", tm[3]), ("fc3", tm[7]), ("fc4", tm[9]))})
    x = torch.randn(2, 3, 20, 20, dtype=torch.float64) * 50
    torch.testing.assert_close(model.forward_blobs({"data": x})["fc4"], tm(x))
    eps, target = 0.1, torch.tensor([1, 3])
    composite = (EpsilonAlpha2Beta1Flat if flat else EpsilonAlpha2Beta1)(epsilon=eps)
    with Gradient(model=tm, composite=composite) as attributor:
        _, theirs = attributor(x.clone(), torch.eye(4, dtype=torch.float64)[target] * tm(x).detach())
    entries = [(LayerMatch(types=("Convolution",)), AlphaBeta(2, 1)), (LayerMatch(types=("InnerProduct",)), Epsilon(eps))]
    if flat:
        entries.insert(0, (LayerMatch(types=("Convolution", "InnerProduct"), upto=0), Flat("normalized")))
    ours, _ = explain(model, x, target, Composite(entries))
    assert zennit is not None
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6 * theirs.abs().max().item())


def test_pass_rule_refuses_shape_change():
    model, x = branchy(bias=False)
    with pytest.raises(LRPError, match="Pass needs equal"):
        Pass()(model.caffe_layers["fc3"], [torch.zeros(2, 8, 3, 3)], [torch.zeros(2, 12)], [torch.zeros(2, 12)])


def test_benchmark_script_runs_on_a_reduced_vgg(oracle, tmp_path):
    import subprocess
    from pathlib import Path
    repo = Path(__file__).resolve().parent.parent
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(repo / "benchmarks" / "lrp.py"), "--deploy",
                           str(oracle / "nets" / "vgg16_gender" / "deploy.prototxt"), "--repeat", "1",
                           "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert res["lrp_s"] > 0 and res["fwd_bwd_input_s"] > 0 and "LRP heatmap" in proc.stdout
