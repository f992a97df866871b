"""LRP as the real lrp_toolbox computes it: golden relevance maps of its Caffe code, and its quirks
checked against independent float64 numpy computations on small hand-made nets.

Golden cases: ``LRP_ORACLE_DIR``, else ``../shared/lrp-oracle``, else the subset packed in
``tests/data/lrp-oracle`` (see its README).  Their nets: the conftest ``oracle`` (``CAFFE_ORACLE_DIR``, else
``../shared/caffe-oracle``, else the restored ``tests/data/caffe-oracle``).  Compared as the oracle's README
says: ``max|R - R_golden| <= 1e-4 * max|R_golden|`` and the total within 1e-4 relative.

The numpy references below write every linear layer as a dense matrix built from the layer's
geometry by loops (no torch), so they share no code with :mod:`converters.lrp`.
"""
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from converters import load_caffe
from converters.formats.prototxt import parse_net
from converters.lrp import Quirks, caffe_layer_indices, explain, paper_composite, toolbox_composite

REPO = Path(__file__).resolve().parent.parent
IN_REPO_LRP = REPO / "tests" / "data" / "lrp-oracle"
SHARED_LRP = REPO.parent / "shared" / "lrp-oracle"


def _first_dir(env, *candidates):
    if os.environ.get(env):
        return Path(os.environ[env])
    for c in candidates:
        if c.is_dir():
            return c
    return None


LRP_ORACLE = _first_dir("LRP_ORACLE_DIR", SHARED_LRP, IN_REPO_LRP)
CASES = sorted(p.name for p in LRP_ORACLE.iterdir() if (p / "case.json").is_file()) if LRP_ORACLE else []


def load_golden(case_dir: Path):
    """(input (1, 3, H, W) float32, relevance (3, H, W) float32) from the oracle's .npy files or
    from the packed ``golden.npz`` of tests/data/lrp-oracle (lossless, see its pack.py)."""
    if (case_dir / "input.npy").is_file():
        return np.load(case_dir / "input.npy"), np.load(case_dir / "relevance.npy")
    z = np.load(case_dir / "golden.npz")
    x = (z["pixels_q16"] / 257.0 - z["mean_bgr"][:, None, None]).astype(np.float32)[None]
    r = z["relevance"]
    if r.ndim == 2:                     # the three channels were identical
        r = np.broadcast_to(r, (3,) + r.shape)
    return x, np.ascontiguousarray(r)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _case_net(case: dict, oracle: Path):
    """The case's net from the Caffe oracle in use (conftest ``oracle``: the full set, or the mini
    set restored with its weights re-drawn and sha256-checked)."""
    files = {}
    for key in ("deploy_prototxt", "caffemodel"):
        rel = Path(case["net"][key])                    # caffe-oracle/nets/<net>/<file>
        path = oracle.joinpath(*rel.parts[1:])
        if not path.is_file():
            pytest.skip(f"net file {path} of golden case {case['case']} not found")
        if _sha256(path) != case["net"][key + "_sha256"]:
            pytest.skip(f"{path} is not the file the golden case {case['case']} was computed with (sha256 differs)")
        files[key] = path
    return load_caffe(files["deploy_prototxt"], files["caffemodel"])


@pytest.mark.parametrize("case_name", CASES or [pytest.param(None, marks=pytest.mark.skip(
    reason="no LRP golden cases (LRP_ORACLE_DIR, ../shared/lrp-oracle, tests/data/lrp-oracle)"))])
def test_golden_case_matches_the_toolbox(case_name, oracle):
    case_dir = LRP_ORACLE / case_name
    case = json.loads((case_dir / "case.json").read_text())
    model = _case_net(case, oracle)
    x, golden = load_golden(case_dir)
    s = case["lrp_settings"]
    comp = toolbox_composite(s["relpropformulatype"], s["auxiliaryvariable_maxlayerindexforflatdistinconv"],
                             eps=s["epsstab"], beta=s["alphabeta_beta"],
                             lrn="taylor" if s.get("lrn_backward_type", 1) == 1 else "identity")
    ex = explain(model, torch.from_numpy(x), case["target_class"], comp)
    assert ex.record["start_layer"] == case["start_layer"]["name"]
    assert ex.record["start_layer_index"] == case["start_layer"]["index"]
    score = case["start_score"]
    assert abs(ex.record["start_scores"][0] - score) <= 1e-5 * max(1.0, abs(score))
    r = ex.relevance[0].double().numpy()
    g = golden.astype(np.float64)
    worst = np.abs(r - g).max() / np.abs(g).max()
    assert worst <= 1e-4, f"{case_name}: max|R - R_golden| / max|R_golden| = {worst:.3g}"
    assert abs(r.sum() - g.sum()) <= 1e-4 * abs(g.sum())
    assert ex.record["variant"] == "toolbox" and all(ex.record["quirks"].values())
    # the layer numbering of the case (2015 Caffe) is ours
    names = [layer.name for layer in model.net_param.layer]
    ours = dict(zip(names, caffe_layer_indices(model.net_param)))
    for entry in case["layers_2015_caffe_numbering"]:
        if entry["name"] in ours:
            assert ours[entry["name"]] == entry["index"], entry
    # per-layer bottom relevance sums as Caffe logged them (6 significant digits)
    log = {e["name"]: e["relevance_bottom"][0] for e in ex.record["layers"]}
    for entry in case["per_layer_bottom_relevance_sums_from_caffe_log"]:
        if entry["layer"] in log:
            want = entry["sum_6_significant_digits"]
            assert abs(log[entry["layer"]] - want) <= 1e-4 * abs(want), entry


def test_grouped_alpha_beta_quirk_matters_on_a_golden_case(oracle):
    """Switching group0_bias off moves a CaffeNet case far outside the tolerance (it is a real quirk)."""
    cases = [c for c in CASES if "caffenet" in c]
    if not cases:
        pytest.skip("no CaffeNet golden case available")
    case_dir = LRP_ORACLE / cases[0]
    case = json.loads((case_dir / "case.json").read_text())
    model = _case_net(case, oracle)
    x, golden = load_golden(case_dir)
    comp = paper_composite(0, quirks=("group0_bias",))
    assert comp.quirks.variant == "mixed" and not comp.quirks.group0_bias
    r = explain(model, torch.from_numpy(x), case["target_class"], comp).relevance[0].double().numpy()
    assert np.abs(r - golden).max() / np.abs(golden).max() > 3e-4


def test_in_repo_subset_is_the_shared_oracle_losslessly():
    if not SHARED_LRP.is_dir():
        pytest.skip(f"shared LRP oracle not found at {SHARED_LRP}: nothing to compare the in-repo subset with")
    packed = sorted(p for p in IN_REPO_LRP.iterdir() if (p / "golden.npz").is_file())
    assert packed, "tests/data/lrp-oracle holds no packed case"
    for case_dir in packed:
        x, r = load_golden(case_dir)
        np.testing.assert_array_equal(x, np.load(SHARED_LRP / case_dir.name / "input.npy"))
        np.testing.assert_array_equal(r, np.load(SHARED_LRP / case_dir.name / "relevance.npy"))
    assert sum(f.stat().st_size for f in IN_REPO_LRP.rglob("*") if f.is_file()) <= 1.5e6


# ============================================================================ numpy references
def conv_matrix(w, in_shape, stride=1, pad=0, group=1):
    """Dense (W, M, out_shape) of a Caffe convolution: ``y = W @ x.ravel()``, M the connectivity (1
    where an output's window covers an in-image input of its group, whatever the weight)."""
    c, h, wd = in_shape
    o, cg, kh, kw = w.shape
    ho, wo = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    W = np.zeros((o * ho * wo, c * h * wd))
    M = np.zeros_like(W)
    og = o // group
    for oc in range(o):
        g = oc // og
        for i in range(ho):
            for j in range(wo):
                row = (oc * ho + i) * wo + j
                for ic in range(cg):
                    for a in range(kh):
                        for b in range(kw):
                            y, x = i * stride - pad + a, j * stride - pad + b
                            if 0 <= y < h and 0 <= x < wd:
                                col = ((g * cg + ic) * h + y) * wd + x
                                W[row, col] += w[oc, ic, a, b]
                                M[row, col] = 1.0
    return W, M, (o, ho, wo)


def pool_matrix(in_shape, k, s):
    """Membership matrix of non-overlapping-or-not AVE windows without padding (k, s; floor size)."""
    c, h, wd = in_shape
    ho, wo = (h - k) // s + 1, (wd - k) // s + 1
    A = np.zeros((c * ho * wo, c * h * wd))
    for ch in range(c):
        for i in range(ho):
            for j in range(wo):
                for a in range(k):
                    for b in range(k):
                        A[(ch * ho + i) * wo + j, (ch * h + i * s + a) * wd + j * s + b] = 1.0
    return A, (c, ho, wo)


def stab(z, eps):
    return np.where(z == 0, 1.0, z + eps * np.sign(z))


def eps_rule(W, x, z, r, eps):
    return x * (W.T @ (r / stab(z, eps)))


def alpha_beta_rule(W, b, x, r, alpha=2.0, beta=1.0):
    z = W * x[None, :]                                        # z_ji
    zp = np.where(z > 0, z, 0).sum(1) + np.maximum(b, 0)
    zn = np.where(z < 0, z, 0).sum(1) + np.minimum(b, 0)
    sp = np.where(zp > 0, r / np.where(zp > 0, zp, 1), 0)
    sn = np.where(zn < 0, r / np.where(zn < 0, zn, 1), 0)
    return (alpha * np.where(z > 0, z, 0) * sp[:, None] - beta * np.where(z < 0, z, 0) * sn[:, None]).sum(0)


def softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


INPUT = 'input: "data"\ninput_shape {{ dim: 1 dim: {c} dim: {h} dim: {w} }}\n'


def make_net(body, c, h, w, seed=0, zero_bias=False):
    model = load_caffe(parse_net('name: "t"\n' + INPUT.format(c=c, h=h, w=w) + body)).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("variance"):
                p.copy_(torch.rand(p.shape, generator=g, dtype=p.dtype) + 0.5)
            elif name.endswith("scale_factor"):
                p.fill_(1.0)
            elif zero_bias and name.endswith("bias"):
                p.zero_()
            else:
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
    return model


def blob(model, layer, i=0):
    return [p.detach().numpy() for p in model.caffe_layers[layer].parameters()][i]


# ============================================================================ aux-head injection
AUX_NET = """
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 3 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "loss1/ave_pool" type: "Pooling" bottom: "conv1" top: "aux_pool" pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layer { name: "loss1/classifier" type: "InnerProduct" bottom: "aux_pool" top: "aux_fc" inner_product_param { num_output: 4 } }
layer { name: "loss1/loss" type: "Softmax" bottom: "aux_fc" top: "aux_prob" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2" convolution_param { num_output: 4 kernel_size: 3 pad: 1 group: 1 } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "fc" type: "InnerProduct" bottom: "conv2" top: "fc" inner_product_param { num_output: 3 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


def aux_reference(model, x, target, inject=True, eps=0.1, flat_per_kernel=True):
    """float64 numpy: the toolbox's formula 102 (flat at conv1) on AUX_NET."""
    xv = x[0].numpy().ravel()
    W1, M1, s1 = conv_matrix(blob(model, "conv1"), (2, 6, 6), 1, 1)
    y1 = np.maximum(W1 @ xv + blob(model, "conv1", 1).repeat(36), 0)
    A, sp = pool_matrix(s1, 2, 2)
    p = A @ y1 / 4.0
    Wa = blob(model, "loss1/classifier")
    fa = Wa @ p + blob(model, "loss1/classifier", 1)
    W2, _, s2 = conv_matrix(blob(model, "conv2"), s1, 1, 1)
    b2 = blob(model, "conv2", 1).repeat(36)
    y2 = np.maximum(W2 @ y1 + b2, 0)
    Wf = blob(model, "fc")
    f = Wf @ y2 + blob(model, "fc", 1)
    r_f = np.zeros_like(f)
    r_f[target] = f[target]
    r_y2 = eps_rule(Wf, y2, f, r_f, eps)
    r_y1 = alpha_beta_rule(W2, b2, y1, r_y2)
    if inject:
        r_fa = softmax(fa)                                     # the aux Softmax injects its output
        r_p = eps_rule(Wa, p, fa, r_fa, eps)
        sums = A @ y1
        r_y1 = r_y1 + y1 * (A.T @ np.where(np.abs(sums) < 1e-6, 0, r_p / np.where(sums == 0, 1, sums))
                            + A.T @ (np.abs(sums) < 1e-6))
    if flat_per_kernel:
        r_x = M1.T @ (r_y1 / 9.0)
    else:
        r_x = M1.T @ (r_y1 / M1.sum(1))
    return r_x.reshape(x.shape[1:]), f


def test_aux_head_softmax_injects_its_probabilities_as_the_toolbox():
    model = make_net(AUX_NET, 2, 6, 6, seed=1)
    x = torch.randn(1, 2, 6, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    # the toolbox, then only this quirk switched off (to isolate it)
    for comp, inject in ((paper_composite(0), True), (paper_composite(0, quirks=("aux_head_injection",)), False)):
        ex = explain(model, x, 1, comp)
        want, f = aux_reference(model, x, 1, inject=inject)
        assert ex.record["start_layer"] == "fc" and abs(ex.record["start_scores"][0] - f[1]) < 1e-12
        np.testing.assert_allclose(ex.relevance[0].numpy(), want, rtol=1e-9, atol=1e-12 * np.abs(want).max())
        visited = {e["name"] for e in ex.record["layers"]}
        assert ("loss1/loss" in visited) == inject and "prob" not in visited
        assert ex.record["quirks"]["aux_head_injection"] == inject
    # the injected relevance is the probabilities: sum 1 at the aux Softmax's bottom
    log = {e["name"]: e for e in explain(model, x, 1, paper_composite(0)).record["layers"]}
    assert abs(log["loss1/loss"]["relevance_bottom"][0] - 1.0) < 1e-12


def test_corrected_variant_conserves_relevance_where_the_toolbox_does_not():
    """Zero biases, epsilon 0, LRN identity: the corrected variant gives exactly the score back;
    the toolbox's quirks (aux injection, flat weights 1/(kh*kw) times C_in) do not."""
    model = make_net(AUX_NET, 2, 6, 6, seed=3, zero_bias=True)
    x = torch.rand(1, 2, 6, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    corrected = explain(model, x, 0, toolbox_composite(0, None, eps=0.0, variant="corrected")).record
    assert corrected["variant"] == "corrected" and not any(corrected["quirks"].values())
    assert abs(corrected["relevance_sums"][0] - corrected["start_scores"][0]) < 1e-10 * abs(
        corrected["start_scores"][0])
    flat = explain(model, x, 0, toolbox_composite(102, 0, eps=0.0, variant="corrected")).record
    conv1 = next(e for e in flat["layers"] if e["name"] == "conv1")
    np.testing.assert_allclose(conv1["relevance_bottom"], conv1["relevance_top"], rtol=1e-10)
    toolbox = explain(model, x, 0, toolbox_composite(102, 0, eps=0.0)).record
    conv1 = next(e for e in toolbox["layers"] if e["name"] == "conv1")
    assert conv1["relevance_bottom"][0] > 1.5 * conv1["relevance_top"][0]     # x C_in = 2, minus padding
    assert abs(toolbox["relevance_sums"][0] - toolbox["start_scores"][0]) > 1e-3


# ============================================================================ formulas 0 / 100 / 102
FORMULA_NET = """
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2" convolution_param { num_output: 4 kernel_size: 3 stride: 2 group: 2 } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "fc" type: "InnerProduct" bottom: "conv2" top: "fc" inner_product_param { num_output: 3 } }
"""


@pytest.mark.parametrize("formula", [0, 100, 102])
def test_formulas_0_100_102_by_numpy(formula):
    model = make_net(FORMULA_NET, 2, 7, 7, seed=5)
    x = torch.randn(1, 2, 7, 7, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    xv = x[0].numpy().ravel()
    W1, M1, s1 = conv_matrix(blob(model, "conv1"), (2, 7, 7), 1, 1)
    b1 = blob(model, "conv1", 1).repeat(49)
    z1 = W1 @ xv + b1
    y1 = np.maximum(z1, 0)
    W2, _, s2 = conv_matrix(blob(model, "conv2"), s1, 2, 0, 2)
    b2_true = blob(model, "conv2", 1)
    n2 = s2[1] * s2[2]
    z2 = W2 @ y1 + b2_true.repeat(n2)
    y2 = np.maximum(z2, 0)
    Wf = blob(model, "fc")
    f = Wf @ y2 + blob(model, "fc", 1)
    r = np.zeros(3)
    r[2] = f[2]
    r_y2 = eps_rule(Wf, y2, f, r, 0.1)
    if formula == 0:
        r_y1 = eps_rule(W2, y1, z2, r_y2, 0.1)
        r_x = eps_rule(W1, xv, z1, r_y1, 0.1)
    else:
        b2_group0 = np.array([b2_true[j % 2] for j in range(4)]).repeat(n2)   # the toolbox's bias quirk
        r_y1 = alpha_beta_rule(W2, b2_group0, y1, r_y2)
        r_x = alpha_beta_rule(W1, b1, xv, r_y1) if formula == 100 else M1.T @ (r_y1 / 9.0)
    ex = explain(model, x, 2, toolbox_composite(formula, 0 if formula == 102 else None, eps=0.1))
    np.testing.assert_allclose(ex.relevance[0].numpy().ravel(), r_x, rtol=1e-9, atol=1e-12 * np.abs(r_x).max())


# ============================================================================ LRN types 0 and 1
LRN_NET = """
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 5 kernel_size: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "norm1" type: "LRN" bottom: "conv1" top: "norm1" lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "norm1" top: "fc" inner_product_param { num_output: 2 } }
"""


@pytest.mark.parametrize("lrn_type", [0, 1])
def test_lrn_backward_types_by_numpy(lrn_type):
    model = make_net(LRN_NET, 2, 3, 3, seed=7)
    x = torch.randn(1, 2, 3, 3, generator=torch.Generator().manual_seed(8), dtype=torch.float64) * 2
    W1, _, s1 = conv_matrix(blob(model, "conv1"), (2, 3, 3))
    a = np.maximum(W1 @ x[0].numpy().ravel() + blob(model, "conv1", 1).repeat(9), 0).reshape(5, 9)
    n, alpha, beta, k = 3, 0.5, 0.75, 2.0
    scale = np.array([k + alpha / n * sum(a[m] ** 2 for m in range(max(0, c - 1), min(5, c + 2)))
                      for c in range(5)])
    y = a * scale ** -beta
    Wf = blob(model, "fc")
    f = Wf @ y.ravel() + blob(model, "fc", 1)
    r = np.array([f[0], 0.0])
    r_y = eps_rule(Wf, y.ravel(), f, r, 0.1).reshape(5, 9)
    if lrn_type == 0:
        r_a = r_y
    else:                              # the oracle README's formula, channel by channel
        r_a = np.zeros_like(r_y)
        for c in range(5):
            cross = sum(-2 * alpha / n * beta * a[j] * scale[j] ** (-beta - 1) * r_y[j]
                        for j in range(max(0, c - 1), min(5, c + 2)) if j != c)
            r_a[c] = r_y[c] * a[c] * (k + alpha / n * a[c] ** 2) ** -beta + a[c] ** 2 * cross
    ex = explain(model, x, 0, toolbox_composite(100, None, lrn="identity" if lrn_type == 0 else "taylor"),
                 layer_relevances=True)
    got = ex.blob_relevances["conv1"]                  # relevance at the LRN's bottom (post-ReLU conv1)
    np.testing.assert_allclose(got[0].numpy().reshape(5, 9), r_a, rtol=1e-9, atol=1e-12)


# ============================================================================ average pooling near zero
def test_average_pooling_near_zero_window_quirk():
    body = ('layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" pooling_param { pool: AVE '
            'kernel_size: 2 stride: 2 } }\n'
            'layer { name: "fc" type: "InnerProduct" bottom: "pool" top: "fc" inner_product_param { num_output: 1 '
            'bias_term: false } }\n')
    model = make_net(body, 1, 2, 4, seed=9)
    with torch.no_grad():
        model.caffe_layers["fc"].weight.copy_(torch.tensor([[1.0, 2.0]], dtype=torch.float64))
    # window 0 sums to exactly 0 (|sum| < 1e-6), window 1 to 10
    x = torch.tensor([[[[1.0, -1.0, 1.0, 2.0], [3.0, -3.0, 3.0, 4.0]]]], dtype=torch.float64)
    score = 0.0 * 1.0 + 2.5 * 2.0
    # fc (eps 0.1): R_pool = p * w * R / (z + 0.1) -> window 0 has p = 0 -> 0; window 1 gets 5 * 5/5.1
    r1 = 2.5 * 2.0 * score / (score + 0.1)
    toolbox = explain(model, x, 0, toolbox_composite(0, None)).relevance[0, 0].numpy()
    want = np.array([[1.0, -1.0, r1 / 10, 2 * r1 / 10], [3.0, -3.0, 3 * r1 / 10, 4 * r1 / 10]])
    np.testing.assert_allclose(toolbox, want, rtol=1e-12)       # the toolbox adds x_i in window 0
    corrected = explain(model, x, 0, toolbox_composite(0, None, quirks=("avgpool_near_zero",))).relevance
    want[:, :2] = 0.0                                           # window 0's relevance (0) shared equally
    np.testing.assert_allclose(corrected[0, 0].numpy(), want, rtol=1e-12)


# ============================================================================ flat index numbering
SPLIT_NET = """
layer { name: "conv_a" type: "Convolution" bottom: "data" top: "a" convolution_param { num_output: 2 kernel_size: 3 pad: 1 } }
layer { name: "conv_b" type: "Convolution" bottom: "a" top: "b" convolution_param { num_output: 2 kernel_size: 3 pad: 1 } }
layer { name: "conv_c" type: "Convolution" bottom: "a" top: "c" convolution_param { num_output: 2 kernel_size: 3 pad: 1 } }
layer { name: "cat" type: "Concat" bottom: "b" bottom: "c" top: "cat" }
layer { name: "fc" type: "InnerProduct" bottom: "cat" top: "fc" inner_product_param { num_output: 2 } }
"""


def test_flat_index_uses_the_2015_numbering_with_split_layers():
    model = make_net(SPLIT_NET, 1, 5, 5, seed=10)
    assert caffe_layer_indices(model.net_param) == [None, 0, 2, 3, 4, 5]   # Input: none; Split of "a": 1
    assert caffe_layer_indices(model.net_param, numbering_2015=False) == [None, 0, 1, 2, 3, 4]
    x = torch.rand(1, 1, 5, 5, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    toolbox = {e["name"]: e["rule"] for e in explain(model, x, 0, paper_composite(2)).record["layers"]}
    assert toolbox["conv_a"].startswith("Flat") and toolbox["conv_b"].startswith("Flat")
    assert toolbox["conv_c"].startswith("AlphaBeta")
    plain = explain(model, x, 0, paper_composite(2, quirks=("numbering_2015",))).record
    assert plain["quirks"]["numbering_2015"] is False
    rules = {e["name"]: (e["index"], e["rule"]) for e in plain["layers"]}
    assert rules["conv_c"][0] == 2 and rules["conv_c"][1].startswith("Flat")


def test_quirk_names_and_variants():
    assert Quirks.names() == ("group0_bias", "aux_head_injection", "flat_per_kernel", "avgpool_near_zero",
                              "numbering_2015")
    assert Quirks().variant == "toolbox" and Quirks.corrected().variant == "corrected"
    assert Quirks.resolve("corrected", on=("group0_bias",)).variant == "mixed"
    with pytest.raises(ValueError, match="unknown quirk 'nope'"):
        Quirks.resolve("toolbox", off=("nope",))
    with pytest.raises(ValueError, match="variant must be one of"):
        Quirks.resolve("fixed")
    comp = paper_composite(0, variant="corrected")
    assert comp.describe()["variant"] == "corrected"
    assert "Flat(mode='normalized')" in [e["rule"] for e in comp.describe()["entries"]]
