"""LRP rules as small objects, one per way of redistributing relevance through one Caffe layer.

What it owns: the maths of each rule, applied to one converted Caffe layer (a module of
:mod:`converters.layers`) given the layer's recorded bottoms ``xs``, tops ``ys`` and the relevance
of its tops ``rs`` (``None`` where no relevance reached a top).  ``rule(layer, xs, ys, rs)`` returns
one relevance tensor (or ``None``) per bottom.  Rules never run hooks or touch the model: linear
maps use the layer's own weights and hyper-parameters (``conv`` forward, ``conv2d_input`` as the
transposed map), routing layers use the Jacobian-transpose of the layer's own forward.

Conventions (those of the paper's tool, ``lrp_toolbox``'s Caffe fork; formulas, not code):

* :class:`Epsilon` -- ``R_i = x_i * sum_j w_ij R_j / (z_j + eps * sign(z_j))``, ``z_j`` the layer
  output *with* bias; an output that is exactly 0 is left undivided.
* :class:`AlphaBeta` -- ``alpha = 1 + beta`` (toolbox ``alphabeta_beta``; the paper's
  ``alpha = 2, beta = -1`` is the same rule in its sign convention).  Positive part
  ``z+_j = sum_i (w+ x+ + w- x-) + max(b, 0)``, negative part ``z-_j = sum_i (w- x+ + w+ x-) + min(b, 0)``
  (bias in the denominators, no relevance for it: toolbox bias treatment 0); ``R_i = alpha *
  (x+ w+ + x- w-) R_j / z+_j - beta * (x+ w- + x- w+) R_j / z-_j``; an empty side gets nothing.
* :class:`Flat` -- relevance spread over the receptive field regardless of the input.
  ``mode="toolbox"``: every weight set to ``1 / (kernel_h * kernel_w)`` (the toolbox: the relevance
  is multiplied by ``C_in / group`` and padded positions keep their share, i.e. it is lost);
  ``mode="normalized"``: each output's relevance divided by the number of in-image inputs it sees
  (conservative; zennit's ``Flat``).
* :class:`WSquare` -- ``R_i = sum_j w_ij^2 / sum_i' w_i'j^2 R_j`` (in-image inputs only).
* :class:`Pass` -- identity (ReLU, Dropout, LRN type 0).  :class:`WinnerTakesAll` -- max pooling:
  all relevance to the input Caffe's forward picked (first maximum in row-major order).
  :class:`Proportional` -- z-rule for sum-like layers (average pooling, Eltwise SUM):
  ``R_i = x_i * dz_j/dx_i * R_j / z_j``; the pooling divisor cancels.
* :class:`LRNTaylor` -- the toolbox's ``lrn_backward_type 1`` (the demonstrator's setting), see
  its docstring.  :class:`ConcatSplit`, :class:`SliceJoin`, :class:`SplitSum`, :class:`Reshape`
  move relevance with the data.
"""
from __future__ import annotations

import math
import weakref

import torch
import torch.nn.functional as F
import torch.nn.grad as nn_grad
from converters.errors import InputError


_SIGN_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class LRPError(ValueError, InputError):
    """A layer/rule combination that cannot be explained (the message names the layer)."""


def _name(layer) -> str:
    return f"layer '{getattr(layer, 'caffe_name', '?')}' ({getattr(layer, 'caffe_type', type(layer).__name__)})"


def _stabilize_toolbox(z: torch.Tensor, eps: float) -> torch.Tensor:
    """``z + eps * sign(z)``; exactly-zero entries become 1 (left undivided, as the toolbox)."""
    d = z + eps * torch.sign(z)
    return torch.where(z == 0, torch.ones_like(z), d)


def _safe_div(num: torch.Tensor, den: torch.Tensor, positive: bool) -> torch.Tensor:
    """``num / den`` where ``den`` is strictly positive (``positive``) or strictly negative, else 0."""
    ok = den > 0 if positive else den < 0
    return num / torch.where(ok, den, math.inf)


def vjp(layer, xs, grads_out):
    """Jacobian-transpose products of ``layer``'s own forward: ``[J_k^T g for each bottom k]``."""
    leaves = [x.detach().requires_grad_(True) for x in xs]
    with torch.enable_grad():
        out = layer(*leaves)
    outs = [out] if isinstance(out, torch.Tensor) else list(out)
    pairs = [(o, g) for o, g in zip(outs, grads_out) if g is not None]
    if not pairs:
        return [None] * len(xs)
    grads = torch.autograd.grad([o for o, _ in pairs], leaves, [g for _, g in pairs], allow_unused=True)
    return [g if g is not None else torch.zeros_like(x) for g, x in zip(grads, xs)]


# ---------------------------------------------------------------------------- linear maps
class LinearMap:
    """The bias-free linear part of a Convolution/Deconvolution/InnerProduct layer with a given weight."""

    def __init__(self, layer):
        self.layer = layer
        self.kind = layer.caffe_type
        self.weight = layer.weight.detach()
        b = getattr(layer, "bias", None)
        self.bias = None if b is None else b.detach()
        if self.kind == "Convolution":
            if layer.axis != 1:
                raise LRPError(f"{_name(layer)}: convolution over axis {layer.axis} is not supported by LRP")
            self.nd = len(layer.kernel)
            self._conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[self.nd]
            self._conv_t = {1: nn_grad.conv1d_input, 2: nn_grad.conv2d_input, 3: nn_grad.conv3d_input}[self.nd]
        elif self.kind == "Deconvolution":
            if layer.axis != 1:
                raise LRPError(f"{_name(layer)}: deconvolution over axis {layer.axis} is not supported by LRP")
            self.nd = len(layer.kernel)
            self._deconv = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[self.nd]
        elif self.kind == "InnerProduct":
            self.nd = 0
        else:
            raise LRPError(f"{_name(layer)}: not a linear layer (Convolution, Deconvolution, InnerProduct)")

    # forward / transposed map with a replacement weight ------------------------------------
    def forward(self, x, w):
        L = self.layer
        if self.kind == "Convolution":
            return self._conv(x, w, None, L.stride, L.pad, L.dilation, L.group)
        if self.kind == "Deconvolution":
            return self._deconv(x, w, None, L.stride, L.pad, 0, L.group, L.dilation)
        lead = tuple(x.shape[:L.axis])
        flat = x.reshape(math.prod(lead), L.k)
        y = flat @ w if L.transpose else flat @ w.t()
        return y.reshape(lead + (L.num_output,))

    def backward(self, s, w, x):
        """``W^T s`` for the map with weight ``w`` (``x`` gives the bottom's shape)."""
        L = self.layer
        if self.kind == "Convolution":
            return self._conv_t(tuple(x.shape), w, s, L.stride, L.pad, L.dilation, L.group)
        if self.kind == "Deconvolution":
            leaf = x.detach().requires_grad_(True)
            with torch.enable_grad():
                y = self.forward(leaf, w)
            return torch.autograd.grad(y, leaf, s)[0]
        lead = tuple(x.shape[:L.axis])
        flat = s.reshape(math.prod(lead), L.num_output)
        g = flat @ w.t() if L.transpose else flat @ w
        return g.reshape(x.shape)

    def sign_split(self):
        """``(w+, w-, stacked)`` of the layer's weight, cached per layer while the weight is unchanged
        (``stacked`` is the convolution weight of :meth:`pair`, None for other layers)."""
        w = self.weight
        key = (w.data_ptr(), self.layer.weight._version, w.dtype, w.device, tuple(w.shape))
        hit = _SIGN_CACHE.get(self.layer)
        if hit is not None and hit[0] == key:
            return hit[1]
        wp, wn = w.clamp(min=0), w.clamp(max=0)
        value = (wp, wn, self.stack(wp, wn) if self.kind == "Convolution" else None)
        _SIGN_CACHE[self.layer] = (key, value)
        return value

    def stack(self, wa, wb):
        g, m = self.layer.group, wa.shape[0]
        if g == 1:
            return torch.cat([wa, wb], dim=0)
        tail = tuple(wa.shape[1:])
        # groups: Caffe/torch keep each group's outputs together, so interleave per group
        w2 = torch.cat([wa.reshape((g, m // g) + tail), wb.reshape((g, m // g) + tail)], dim=1)
        return w2.reshape((2 * m,) + tail)

    def pair(self, wa, wb, x, w2=None):
        """Two maps at once for bottoms shaped like ``x``: ``forward(inp) -> (Wa inp, Wb inp)`` and
        ``backward(sa, sb) -> Wa^T sa + Wb^T sb``.  For convolutions both weights are stacked into
        one call (one larger GEMM is about 1.5x faster on CPU than two); ``w2`` is that stacked
        weight if already known."""
        if self.kind != "Convolution":
            return ((lambda inp: (self.forward(inp, wa), self.forward(inp, wb))),
                    (lambda sa, sb: self.backward(sa, wa, x) + self.backward(sb, wb, x)))
        g, m = self.layer.group, wa.shape[0]
        w2 = self.stack(wa, wb) if w2 is None else w2
        if g == 1:

            def forward(inp):
                out = self.forward(inp, w2)
                return out[:, :m], out[:, m:]

            def backward(sa, sb):
                return self.backward(torch.cat([sa, sb], dim=1), w2, x)

            return forward, backward

        def forward(inp):
            out = self.forward(inp, w2)
            n, sp = out.shape[0], tuple(out.shape[2:])
            out = out.reshape((n, g, 2, m // g) + sp)
            return out[:, :, 0].reshape((n, m) + sp), out[:, :, 1].reshape((n, m) + sp)

        def backward(sa, sb):
            n, sp = sa.shape[0], tuple(sa.shape[2:])
            both = torch.stack([sa.reshape((n, g, m // g) + sp), sb.reshape((n, g, m // g) + sp)], dim=2)
            return self.backward(both.reshape((n, 2 * m) + sp), w2, x)

        return forward, backward

    def bias_view(self, b, y):
        if self.kind == "InnerProduct":
            return b
        return b.reshape((1, -1) + (1,) * (y.dim() - 2))

    # flat / receptive-field helpers ---------------------------------------------------------
    def kernel_size(self) -> int:
        return math.prod(self.layer.kernel) if self.nd else 1

    def spread_uniform(self, s, x, per_kernel: float):
        """``W1^T s`` for a weight of all ``per_kernel`` (every input of a group gets the same)."""
        L = self.layer
        if self.kind == "InnerProduct":
            lead = tuple(x.shape[:L.axis])
            tot = s.reshape(math.prod(lead), L.num_output).sum(1) * per_kernel
            return tot.reshape(lead + (1,) * (x.dim() - len(lead))).expand(x.shape).contiguous()
        if self.kind == "Deconvolution":
            return self.backward(s, torch.full_like(self.weight, per_kernel), x)
        n, c = x.shape[0], x.shape[1]
        g, m = L.group, s.shape[1]
        ssum = s.reshape(n, g, m // g, *s.shape[2:]).sum(2)            # (N, G, *out)
        k = torch.full((g, 1) + tuple(L.kernel), per_kernel, dtype=s.dtype, device=s.device)
        shape = (n, g) + tuple(x.shape[2:])
        spread = self._conv_t(shape, k, ssum, L.stride, L.pad, L.dilation, g)   # (N, G, *in)
        return spread.unsqueeze(2).expand(n, g, c // g, *x.shape[2:]).reshape(x.shape).contiguous()

    def inputs_seen(self, x):
        """Per output: the number of in-image inputs in its receptive field (all channels of its group)."""
        L = self.layer
        if self.kind == "InnerProduct":
            return float(L.k)
        if self.kind == "Deconvolution":
            return self.forward(torch.ones_like(x), torch.ones_like(self.weight))
        c = x.shape[1]
        ones = torch.ones((1, 1) + tuple(x.shape[2:]), dtype=x.dtype, device=x.device)
        k = torch.ones((1, 1) + tuple(L.kernel), dtype=x.dtype, device=x.device)
        return self._conv(ones, k, None, L.stride, L.pad, L.dilation, 1) * (c // L.group)


# ---------------------------------------------------------------------------- rule base
class Rule:
    """A relevance rule: ``rule(layer, xs, ys, rs) -> list of bottom relevances``."""

    supports: tuple[str, ...] = ()      # Caffe types the rule applies to; () = any

    def __call__(self, layer, xs, ys, rs, state=None):
        if self.supports and layer.caffe_type not in self.supports:
            raise LRPError(f"{_name(layer)}: rule {self!r} applies to {', '.join(self.supports)} layers only")
        if state is None:
            return self.relevance(layer, xs, ys, rs)
        return self.relevance(layer, xs, ys, rs, state=state)

    def relevance(self, layer, xs, ys, rs):
        raise NotImplementedError

    def forward_with_state(self, layer, xs):
        """Optionally run the layer's forward in a way that also yields what the rule needs later:
        ``(tops, state)``, or None to let the walker run the layer itself."""
        return None

    def describe(self) -> str:
        return repr(self)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self):
        return hash((type(self).__name__, repr(self)))


class _PerPair(Rule):
    """A rule for layers whose bottom k produces top k (Caffe's multi-bottom Convolution, neurons)."""

    def relevance(self, layer, xs, ys, rs, state=None):
        states = state if state is not None else [None] * len(xs)
        return [None if r is None else (self.one(layer, x, y, r) if st is None else self.one(layer, x, y, r, st))
                for x, y, r, st in zip(xs, ys, rs, states)]

    def one(self, layer, x, y, r):
        raise NotImplementedError


_LINEAR = ("Convolution", "Deconvolution", "InnerProduct")


# ---------------------------------------------------------------------------- learnable layers
class Epsilon(_PerPair):
    """epsilon-rule (toolbox ``epsstab``).  Also works for any affine layer (Scale, BatchNorm) via
    the layer's own Jacobian."""

    def __init__(self, eps: float = 0.1):
        if eps < 0:
            raise ValueError(f"Epsilon: eps must be >= 0, got {eps}")
        self.eps = float(eps)

    def one(self, layer, x, y, r):
        s = r / _stabilize_toolbox(y, self.eps)
        if layer.caffe_type in _LINEAR:
            op = LinearMap(layer)
            return x * op.backward(s, op.weight, x)
        if layer.caffe_type in ("Scale", "Bias", "BatchNorm"):
            return x * vjp(layer, [x], [s])[0]
        raise LRPError(f"{_name(layer)}: the epsilon rule needs an affine layer")


class AlphaBeta(_PerPair):
    """alpha-beta rule, ``alpha - beta = 1`` (toolbox convention, ``beta >= 0``)."""

    supports = _LINEAR

    def __init__(self, alpha: float = 2.0, beta: float = 1.0, group0_bias: bool = True):
        if beta < 0 or alpha < 0:
            raise ValueError(f"AlphaBeta: alpha and beta must be >= 0 (toolbox convention), got {alpha}, {beta}")
        if abs(alpha - beta - 1.0) > 1e-12:
            raise ValueError(f"AlphaBeta: alpha - beta must be 1, got alpha={alpha}, beta={beta}")
        self.alpha, self.beta = float(alpha), float(beta)
        self.group0_bias = bool(group0_bias)

    def rule_bias(self, op):
        """The bias the rule's denominators use.  Toolbox quirk (``group0_bias``): for a grouped
        convolution its alpha-beta code reads ``blobs_[1]->cpu_data()[routind]`` with a group-local
        output index, so every group uses the biases of group 0 (output channel j of group g gets
        ``b[j - g * C_out / group]``); the layer's forward keeps its own biases."""
        b = op.bias
        g = getattr(op.layer, "group", 1) if op.kind == "Convolution" else 1
        if b is None or g == 1 or not self.group0_bias:
            return b
        return b[:b.shape[0] // g].repeat(g)

    @staticmethod
    def _parts(op, x):
        """(z+ and z- without bias, nonneg flag, the pair backward) for bottom ``x``."""
        wp, wn, w2 = op.sign_split()
        pair_forward, pair_backward = op.pair(wp, wn, x, w2)
        nonneg = bool((x >= 0).all())
        if nonneg:                                       # post-ReLU inputs: two of the four cases vanish
            zp, zn = pair_forward(x)
        else:
            (pp, pn), (np_, nn) = pair_forward(x.clamp(min=0)), pair_forward(x.clamp(max=0))
            zp, zn = pp + nn, pn + np_
        return zp, zn, nonneg, pair_backward

    def forward_with_state(self, layer, xs):
        """Convolutions: the top as ``z+ + z- + bias`` from the rule's own (stacked) convolution, so
        the layer's plain forward is not run as well (equal up to float rounding, ~1e-7 relative)."""
        if layer.caffe_type != "Convolution":
            return None
        op = LinearMap(layer)
        tops, states = [], []
        for x in xs:
            zp, zn, nonneg, pair_backward = self._parts(op, x)
            y = torch.add(zp, zn)
            if op.bias is not None:
                y.add_(op.bias_view(op.bias, y))
            tops.append(y)
            states.append((zp, zn, nonneg, pair_backward))
        return tops, states

    def one(self, layer, x, y, r, state=None):
        op = LinearMap(layer)
        zp, zn, nonneg, pair_backward = self._parts(op, x) if state is None else state
        bias = self.rule_bias(op)
        if bias is not None:
            zp = zp + op.bias_view(bias.clamp(min=0), zp)
            zn = zn + op.bias_view(bias.clamp(max=0), zn)
        sp = _safe_div(r, zp, positive=True).mul_(self.alpha)
        sn = _safe_div(r, zn, positive=False).mul_(-self.beta)
        if nonneg:
            return x * pair_backward(sp, sn)             # alpha x w+ R/z+ - beta x w- R/z-
        xp, xn = x.clamp(min=0), x.clamp(max=0)
        return xp * pair_backward(sp, sn) + xn * pair_backward(sn, sp)


class Flat(_PerPair):
    """Flat rule; ``mode`` ``"toolbox"`` (weights ``1/(kh*kw)``, as the paper's tool) or
    ``"normalized"`` (conservative, each output's relevance shared by the in-image inputs it sees).

    For InnerProduct both modes share each output's relevance equally among its ``K`` inputs."""

    supports = _LINEAR
    MODES = ("toolbox", "normalized")

    def __init__(self, mode: str = "toolbox"):
        if mode not in self.MODES:
            raise ValueError(f"Flat: mode must be one of {self.MODES}, got {mode!r}")
        self.mode = mode

    def one(self, layer, x, y, r):
        op = LinearMap(layer)
        if op.kind == "InnerProduct":
            return op.spread_uniform(r, x, 1.0 / layer.k)
        if self.mode == "toolbox":
            return op.spread_uniform(r, x, 1.0 / op.kernel_size())
        seen = op.inputs_seen(x)
        return op.spread_uniform(r / seen, x, 1.0)


class WSquare(_PerPair):
    """w^2 rule (toolbox type 104 below the flat index): ``R_i = sum_j w_ij^2 / sum_i' w_i'j^2 R_j``."""

    supports = _LINEAR

    def one(self, layer, x, y, r):
        op = LinearMap(layer)
        w2 = op.weight * op.weight
        z = op.forward(torch.ones_like(x), w2)
        return op.backward(_safe_div(r, z, positive=True), w2, x)


# ---------------------------------------------------------------------------- pass-through layers
class Pass(_PerPair):
    """Identity: the top's relevance is the bottom's (ReLU, Dropout, LRN type 0, Softmax)."""

    def one(self, layer, x, y, r):
        if r.shape != x.shape:
            raise LRPError(f"{_name(layer)}: Pass needs equal bottom/top shapes, got {tuple(x.shape)} -> "
                           f"{tuple(r.shape)}")
        return r


class PassThrough(Rule):
    """Identity from the top to the FIRST bottom (shape kept); other bottoms (Scale's or Bias's
    second bottom, the learned factor) get none.

    The default for the layers that only rescale or bend each activation on its own: BatchNorm,
    Scale, Bias, Power, Sigmoid, TanH, PReLU, ELU, AbsVal, BNLL, Exp, Log, Clip, Swish, MVN.
    Chosen over folding BatchNorm/Scale into the preceding convolution: the relevance a layer
    receives is what the next rule computed for its output, and the rule below (alpha-beta,
    epsilon) recomputes its own ``z`` from its own weights, so passing through is conservative
    by construction and needs no change of the net."""

    def relevance(self, layer, xs, ys, rs):
        r = rs[0]
        if r is None:
            return [None] * len(xs)
        if r.shape != xs[0].shape:
            raise LRPError(f"{_name(layer)}: PassThrough needs equal bottom/top shapes, got {tuple(xs[0].shape)} -> "
                           f"{tuple(r.shape)}")
        return [r] + [None] * (len(xs) - 1)


class SoftmaxInject(Rule):
    """The toolbox's Softmax backward relevance: the bottom's relevance is the Softmax's OUTPUT (the
    probabilities), whatever relevance arrived from above.

    The toolbox's ``Net::Backward_Relevance`` visits every layer with an index below the start
    layer, so in GoogLeNet the auxiliary heads' Softmax layers (``loss1/loss``, ``loss2/...``)
    inject sum-1 relevance per sample into inception_4a and 4d (quirk ``aux_head_injection``).
    ``injects`` tells the walk to run it even when no relevance reached its top."""

    supports = ("Softmax",)
    injects = True

    def relevance(self, layer, xs, ys, rs):
        return [ys[0].clone()] + [None] * (len(xs) - 1)


class WinnerTakesAll(Rule):
    """All relevance of an output to the input that won Caffe's max (pooling MAX, Eltwise MAX)."""

    def relevance(self, layer, xs, ys, rs):
        return vjp(layer, xs, rs)


class Proportional(Rule):
    """z-rule for sum-like layers (AVE pooling, Eltwise SUM): ``R_i = x_i dz_j/dx_i R_j / z_j``.

    Outputs with ``|z_j| <= min_abs`` pass no relevance on (the toolbox skips windows whose input
    sum is below 1e-6); ``eps`` adds ``eps * sign(z)`` to the denominator."""

    def __init__(self, eps: float = 0.0, min_abs: float = 0.0):
        self.eps, self.min_abs = float(eps), float(min_abs)

    def relevance(self, layer, xs, ys, rs):
        ss = []
        for y, r in zip(ys, rs):
            if r is None:
                ss.append(None)
                continue
            ok = y.abs() > self.min_abs
            den = torch.where(ok, y + self.eps * torch.sign(y), torch.ones_like(y))
            ss.append(torch.where(ok, r / den, torch.zeros_like(r)))
        grads = vjp(layer, xs, ss)
        return [None if g is None else x * g for x, g in zip(xs, grads)]


class AveragePooling(Rule):
    """AVE (and global average) pooling as the toolbox: ``R_i = sum_j R_j x_i / S_j`` with ``S_j`` the
    sum of the inputs of window ``j`` clipped to the image (Caffe's divisor cancels).

    Windows with ``|S_j| < threshold`` (1e-6 in the toolbox) cannot be divided by.
    ``near_zero="toolbox"`` copies the toolbox's quirk: such a window *adds its input* ``x_i`` to
    ``R_i`` instead of a share of ``R_j`` (its relevance is lost and ``x_i`` appears);
    ``near_zero="uniform"`` (the corrected variant) shares ``R_j`` equally among the window's
    in-image inputs, so the layer conserves relevance."""

    supports = ("Pooling",)
    MODES = ("toolbox", "uniform")

    def __init__(self, near_zero: str = "toolbox", threshold: float = 1e-6):
        if near_zero not in self.MODES:
            raise ValueError(f"AveragePooling: near_zero must be one of {self.MODES}, got {near_zero!r}")
        self.near_zero, self.threshold = near_zero, float(threshold)

    @staticmethod
    def window_sum(layer, x):
        """Per output window: the sum of its in-image inputs (Caffe's windows and output size)."""
        kernel, stride, pad, out = layer.geometry(x.shape[2], x.shape[3])
        xp = layer._pad_to_windows(x, kernel, stride, pad, out, 0.0)
        return F.avg_pool2d(xp, kernel, stride, divisor_override=1)[:, :, :out[0], :out[1]]

    def relevance(self, layer, xs, ys, rs):
        x, r = xs[0], rs[0]
        if r is None:
            return [None]
        leaf = x.detach().requires_grad_(True)
        with torch.enable_grad():
            total = self.window_sum(layer, leaf)
        small = total.detach().abs() < self.threshold
        share = torch.where(small, torch.zeros_like(r), r / torch.where(small, torch.ones_like(r), total.detach()))
        if self.near_zero == "toolbox":
            # x_i * sum_j [i in j] (R_j / S_j + [|S_j| small]): the toolbox adds x_i per small window
            back = torch.autograd.grad(total, leaf, share + small.to(r.dtype))[0]
            return [x * back]
        count = self.window_sum(layer, torch.ones_like(x))
        uniform = torch.where(small, r / count.clamp(min=1), torch.zeros_like(r))
        back = torch.autograd.grad(total, leaf, share, retain_graph=True)[0]
        spread = torch.autograd.grad(total, leaf, uniform)[0]
        return [x * back + spread]


class PoolingRule(Rule):
    """Pooling dispatcher: ``max`` rule for MAX pooling, ``ave`` rule for AVE pooling."""

    supports = ("Pooling",)

    def __init__(self, max_rule: Rule | None = None, ave_rule: Rule | None = None):
        self.max_rule = max_rule or WinnerTakesAll()
        self.ave_rule = ave_rule or AveragePooling()

    def relevance(self, layer, xs, ys, rs):
        from ..layers.pooling import AVE, MAX
        if layer.method == MAX:
            return self.max_rule(layer, xs, ys, rs)
        if layer.method == AVE:
            return self.ave_rule(layer, xs, ys, rs)
        raise LRPError(f"{_name(layer)}: no LRP rule for STOCHASTIC pooling")

    def for_layer(self, layer) -> Rule:
        from ..layers.pooling import AVE, MAX
        return {MAX: self.max_rule, AVE: self.ave_rule}.get(layer.method, self)


class EltwiseRule(Rule):
    """Eltwise dispatcher: Proportional for SUM, WinnerTakesAll for MAX; PROD is refused."""

    supports = ("Eltwise",)

    def __init__(self, sum_rule: Rule | None = None, max_rule: Rule | None = None):
        self.sum_rule = sum_rule or Proportional(min_abs=1e-12)
        self.max_rule = max_rule or WinnerTakesAll()

    def for_layer(self, layer) -> Rule:
        from ..layers.eltwise import MAX, SUM
        return {SUM: self.sum_rule, MAX: self.max_rule}.get(layer.operation, self)

    def relevance(self, layer, xs, ys, rs):
        rule = self.for_layer(layer)
        if rule is self:
            raise LRPError(f"{_name(layer)}: no LRP rule for Eltwise PROD")
        return rule(layer, xs, ys, rs)


# ---------------------------------------------------------------------------- LRN
class LRNIdentity(Pass):
    """LRN: relevance passed through unchanged (toolbox ``lrn_backward_type 0``)."""

    supports = ("LRN",)


class LRNTaylor(_PerPair):
    """LRN relevance as the toolbox's ``lrn_backward_type 1`` (set by its demonstrator), ACROSS_CHANNELS.

    With ``s_c = k + alpha/n * sum_{|c'-c| <= (n-1)/2} x_c'^2`` (the forward's scale)::

        R_in_c = x_c (k + alpha/n x_c^2)^(-beta) R_c
                 - 2 alpha beta / n * x_c^2 * sum_{c' != c, |c'-c| <= (n-1)/2} s_c'^(-beta-1) x_c' R_c'

    i.e. the output the channel would have with its neighbours at zero, times its relevance, plus
    the first-order cross terms of the neighbours.  Not conservative: relevance is scaled by about
    the activation.  WITHIN_CHANNEL LRN (which the toolbox does not cover) passes relevance through.
    """

    supports = ("LRN",)

    def one(self, layer, x, y, r):
        from ..layers.lrn import ACROSS
        if layer.region != ACROSS:
            return r
        n_, c, h, w = x.shape
        a_n = layer.alpha / layer.size
        sq = x * x

        def window_sum(t):
            return F.avg_pool2d(t.reshape(n_, 1, c, h * w), (layer.size, 1), stride=1,
                                padding=(layer.pre, 0), divisor_override=1).reshape(n_, c, h, w)

        scale = window_sum(sq) * a_n + layer.k
        own = x * (sq * a_n + layer.k).pow(-layer.beta)
        a = (-2.0 * a_n * layer.beta) * scale.pow(-layer.beta - 1.0) * x * r
        return own * r + sq * (window_sum(a) - a)


# ---------------------------------------------------------------------------- data movement
class ConcatSplit(Rule):
    """Concat: the top's relevance cut back into the bottoms along the concat axis."""

    supports = ("Concat",)

    def relevance(self, layer, xs, ys, rs):
        r = rs[0]
        if r is None:
            return [None] * len(xs)
        if len(xs) == 1:
            return [r]
        return list(torch.split(r, [x.shape[layer.axis] for x in xs], dim=layer.axis))


class SliceJoin(Rule):
    """Slice: the tops' relevances joined back (a top without relevance contributes zeros)."""

    supports = ("Slice",)

    def relevance(self, layer, xs, ys, rs):
        if all(r is None for r in rs):
            return [None]
        if len(ys) == 1:
            return [rs[0]]
        parts = [torch.zeros_like(y) if r is None else r for y, r in zip(ys, rs)]
        return [torch.cat(parts, dim=layer.axis)]


class SplitSum(Rule):
    """Split (explicit or Caffe's implicit one): relevances of the copies are summed."""

    supports = ("Split",)

    def relevance(self, layer, xs, ys, rs):
        got = [r for r in rs if r is not None]
        if not got:
            return [None]
        total = got[0]
        for r in got[1:]:
            total = total + r
        return [total]


class Reshape(_PerPair):
    """Flatten/Reshape: the relevance takes the bottom's shape."""

    def one(self, layer, x, y, r):
        return r.reshape(x.shape)


class Route(Rule):
    """Any pure data-routing layer (Crop, Tile...): the Jacobian-transpose of its forward."""

    def relevance(self, layer, xs, ys, rs):
        return vjp(layer, xs, rs)
