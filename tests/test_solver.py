"""Solver mechanics on a tiny stand-in net (no converter needed): Caffe's update rules against
NumPy references, data order, snapshots/restore (bit-exact), Ctrl-C, CSV log and plot."""
import csv
import math
import signal

import numpy as np
import pytest
import torch
from google.protobuf import text_format
from torch import nn

from converters.formats import filter_net, parse_net, read_weights
from converters.formats.weights import blob_to_array
from converters.proto import caffe_pb2 as pb
from converters.solver import Solver, get_solver
from converters.solver.updates import apply_update, make_rule


# ---------------------------------------------------------------- a minimal CaffeNet stand-in
class MiniNet(nn.Module):
    """Implements the CaffeNet contract for InnerProduct/ReLU/Dropout/SoftmaxWithLoss/
    EuclideanLoss/Accuracy/Flatten nets (Data/Input layers are inputs)."""

    def __init__(self, net_param, phase, level=0, stages=(), input_shapes=None):
        super().__init__()
        self.net_param = filter_net(net_param, phase, level, stages)
        self.phase = phase
        self.input_shapes = dict(input_shapes or {})
        self.input_names, self.loss_weights, self._specs = [], {}, []
        self.caffe_layers = nn.ModuleDict()
        consumed, produced = set(), []
        for layer in self.net_param.layer:
            if layer.type in ("Data", "Input", "DummyData"):
                self.input_names += list(layer.top)
                produced += list(layer.top)
                continue
            consumed.update(layer.bottom)
            produced += [t for t in layer.top if t not in produced]
            if layer.type == "InnerProduct":
                n_in = int(np.prod(self._shape(layer.bottom[0])[1:]))
                mod = nn.Module()
                mod.weight = nn.Parameter(torch.zeros(layer.inner_product_param.num_output, n_in))
                mod.bias = nn.Parameter(torch.zeros(layer.inner_product_param.num_output))
                mod.blob_fillers = [layer.inner_product_param.weight_filler, layer.inner_product_param.bias_filler]
                self.caffe_layers[layer.name] = mod
                self.input_shapes[layer.top[0]] = (self._shape(layer.bottom[0])[0],
                                                   layer.inner_product_param.num_output)
                for i, p in enumerate((mod.weight, mod.bias)):
                    spec = layer.param[i] if i < len(layer.param) else pb.ParamSpec()
                    self._specs.append((layer.name, i, p, spec.lr_mult, spec.decay_mult))
            elif layer.type in ("SoftmaxWithLoss", "EuclideanLoss"):
                self.loss_weights[layer.top[0]] = layer.loss_weight[0] if len(layer.loss_weight) else 1.0
            if layer.type not in ("InnerProduct",):
                for t in layer.top:
                    self.input_shapes.setdefault(t, self._shape(layer.bottom[0]))
        self.output_names = [b for b in produced if b not in consumed]

    def _shape(self, name):
        return tuple(self.input_shapes[name])

    def param_specs(self):
        yield from self._specs

    def forward_blobs(self, inputs):
        blobs = dict(inputs)
        for layer in self.net_param.layer:
            t = layer.type
            if t in ("Data", "Input", "DummyData"):
                continue
            x = blobs[layer.bottom[0]]
            if t == "InnerProduct":
                mod = self.caffe_layers[layer.name]
                y = x.reshape(x.shape[0], -1) @ mod.weight.t() + mod.bias
            elif t == "ReLU":
                y = torch.relu(x)
            elif t == "Dropout":
                if self.training:
                    r = layer.dropout_param.dropout_ratio
                    y = x * (torch.rand(x.shape) >= r).float() / (1 - r)
                else:
                    y = x
            elif t == "SoftmaxWithLoss":
                y = nn.functional.cross_entropy(x, blobs[layer.bottom[1]].long())
            elif t == "EuclideanLoss":
                y = ((x - blobs[layer.bottom[1]]) ** 2).sum() / x.shape[0] / 2
            elif t == "Accuracy":
                y = (x.argmax(1) == blobs[layer.bottom[1]].long()).float().mean()
            else:
                raise NotImplementedError(t)
            blobs[layer.top[0]] = y
        return blobs

    def total_loss(self, blobs):
        return sum(w * blobs[name].sum() for name, w in self.loss_weights.items())


NET = """
name: "mini"
layer { name: "data" type: "Input" top: "data" top: "label" include { phase: TRAIN } }
layer { name: "data" type: "Input" top: "data" top: "label" include { phase: TEST } }
layer { name: "fc1" type: "InnerProduct" bottom: "data" top: "fc1"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  inner_product_param { num_output: 6 weight_filler { type: "gaussian" std: 0.3 }
                        bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu1" type: "ReLU" bottom: "fc1" top: "fc1" }
layer { name: "drop1" type: "Dropout" bottom: "fc1" top: "fc1" dropout_param { dropout_ratio: 0.3 } }
layer { name: "fc2" type: "InnerProduct" bottom: "fc1" top: "fc2"
  param { lr_mult: 10 decay_mult: 1 } param { lr_mult: 20 decay_mult: 0 }
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc2" bottom: "label" top: "loss" }
layer { name: "accuracy" type: "Accuracy" bottom: "fc2" bottom: "label" top: "accuracy"
  include { phase: TEST } }
"""


def builder(net_param, phase, level, stages, input_shapes):
    return MiniNet(net_param, phase, level, stages, input_shapes)


def solver_param(**fields):
    text = """base_lr: 0.05 lr_policy: "step" gamma: 0.5 stepsize: 3 momentum: 0.9
              weight_decay: 0.001 max_iter: 8 display: 0 random_seed: 7 snapshot_prefix: "snap" """
    s = text_format.Parse(text, pb.SolverParameter())
    s.net_param.CopyFrom(parse_net(NET))
    for k, v in fields.items():
        if isinstance(v, list):
            getattr(s, k)[:] = v
        else:
            setattr(s, k, v)
    return s


class Batches:
    """Deterministic in-memory batch source (cursor-based: every instance restarts)."""

    def __init__(self, n=4, dim=5, seed=0):
        g = np.random.default_rng(seed)
        self.x = g.standard_normal((64, dim)).astype(np.float32)
        self.y = (np.arange(64) % 3).astype(np.float32)
        self.n, self.pos = n, 0

    def __call__(self):
        idx = [(self.pos + j) % 64 for j in range(self.n)]
        self.pos += self.n
        return {"data": torch.from_numpy(self.x[idx]), "label": torch.from_numpy(self.y[idx])}


def make(tmp_path, data_seed=0, **fields):
    return Solver(solver_param(**fields), root=tmp_path, train_data=Batches(seed=data_seed),
                  test_data=Batches(seed=99), net_builder=builder, progress=False, verbose=False)


# ---------------------------------------------------------------- update rules vs NumPy references
def _reference(kind, w, grads, rates, it0=0, momentum=0.9, delta=1e-8, rms_decay=0.98, momentum2=0.999,
               lr_mult=2.0, decay=0.01, iter_size=2):
    """Caffe's formulas in float64 (sgd_solver.cpp, nesterov/adagrad/rmsprop/adadelta/adam_solver.cpp)."""
    w = w.astype(np.float64)
    h1, h2 = np.zeros_like(w), np.zeros_like(w)
    for k, (g, rate) in enumerate(zip(grads, rates)):
        g = g.astype(np.float64) / iter_size + decay * w
        lr = rate * lr_mult
        if kind == "SGD":
            h1 = momentum * h1 + lr * g
            upd = h1
        elif kind == "Nesterov":
            old = h1.copy()
            h1 = momentum * h1 + lr * g
            upd = (1 + momentum) * h1 - momentum * old
        elif kind == "AdaGrad":
            h1 = h1 + g * g
            upd = lr * g / (np.sqrt(h1) + delta)
        elif kind == "RMSProp":
            h1 = (1 - rms_decay) * g * g + rms_decay * h1
            upd = lr * g / (np.sqrt(h1) + delta)
        elif kind == "AdaDelta":
            h1 = momentum * h1 + (1 - momentum) * g * g
            u = g * np.sqrt((h2 + delta) / (h1 + delta))
            h2 = momentum * h2 + (1 - momentum) * u * u
            upd = lr * u
        elif kind == "Adam":
            t = it0 + k + 1
            h1 = momentum * h1 + (1 - momentum) * g
            h2 = momentum2 * h2 + (1 - momentum2) * g * g
            upd = lr * math.sqrt(1 - momentum2 ** t) / (1 - momentum ** t) * h1 / (np.sqrt(h2) + delta)
        w = w - upd
    return w, h1, h2


@pytest.mark.parametrize("kind", ["SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam"])
def test_update_rules_match_caffe_formulas(kind):
    g = np.random.default_rng(1)
    w0 = g.standard_normal(50).astype(np.float32)
    grads = [g.standard_normal(50).astype(np.float32) for _ in range(4)]
    rates = [0.01, 0.01, 0.005, 0.005]
    momentum = 0.0 if kind in ("AdaGrad", "RMSProp") else (0.95 if kind == "AdaDelta" else 0.9)
    param = pb.SolverParameter(type=kind, momentum=momentum, delta=1e-6, rms_decay=0.98, momentum2=0.999)
    rule = make_rule(param)
    w = torch.from_numpy(w0.copy())
    hist = [[torch.zeros(50)] for _ in range(rule.histories)]
    for k, (gr, rate) in enumerate(zip(grads, rates)):
        apply_update([w], [torch.from_numpy(gr.copy())], hist, rule, rate, k, [2.0], [1.0], 0.01, "L2", 2)
    ref_w, ref_h1, ref_h2 = _reference(kind, w0, grads, rates, momentum=momentum, delta=float(np.float32(1e-6)),
                                       rms_decay=float(np.float32(0.98)), momentum2=float(np.float32(0.999)))
    np.testing.assert_allclose(w.numpy(), ref_w, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(hist[0][0].numpy(), ref_h1, rtol=2e-4, atol=1e-6)
    if rule.histories == 2:
        np.testing.assert_allclose(hist[1][0].numpy(), ref_h2, rtol=2e-4, atol=1e-8)


def test_l1_regularization_and_clipping():
    rule = make_rule(pb.SolverParameter(type="SGD", momentum=0.0))
    w = torch.tensor([1.0, -2.0, 0.0])
    g = torch.tensor([3.0, 4.0, 0.0])  # norm 5
    scale = apply_update([w], [g], [[torch.zeros(3)]], rule, 1.0, 0, [1.0], [1.0], 0.5, "L1", 1, clip=2.5)
    assert scale == pytest.approx(0.5)
    # grad -> (1.5, 2, 0) + 0.5 * sign(w) = (2, 1.5, 0)
    np.testing.assert_allclose(w.numpy(), [-1.0, -3.5, 0.0])
    with pytest.raises(ValueError, match="Momentum|momentum"):
        make_rule(pb.SolverParameter(type="AdaGrad", momentum=0.9))
    with pytest.raises(ValueError, match="unknown solver type"):
        make_rule(pb.SolverParameter(type="LBFGS"))


# ---------------------------------------------------------------- the Solver on the stand-in net
def test_sgd_iteration_matches_manual_computation(tmp_path):
    s = make(tmp_path, iter_size=2)
    w0 = {k: v.detach().clone() for k, v in s.params.items()}
    assert torch.equal(w0["fc1/1"], torch.full((6,), 0.1))  # constant bias filler
    # Re-run the same first iteration by hand with the same data and dropout draws.
    ref = builder(s.net.net_param, "train", 0, (), s.net.input_shapes)
    for (name, idx, p, _, _), (_, _, q, _, _) in zip(s.net.param_specs(), ref.param_specs()):
        q.data.copy_(p.data)
    data = Batches()
    rng = torch.get_rng_state()
    s.step(1)
    torch.set_rng_state(rng)
    losses = []
    for _ in range(2):
        blobs = ref.forward_blobs(data())
        loss = ref.total_loss(blobs)
        loss.backward()
        losses.append(np.float32(loss.item()))
    assert s.losses[0] == pytest.approx(float((losses[0] + losses[1]) / 2), rel=1e-6)
    lr = np.float32(0.05)
    for (name, idx, q, lr_mult, decay_mult) in ref.param_specs():
        g = q.grad.numpy().astype(np.float64) / 2 + 0.001 * decay_mult * w0[f"{name}/{idx}"].numpy()
        expect = w0[f"{name}/{idx}"].numpy() - lr * lr_mult * g
        np.testing.assert_allclose(s.params[f"{name}/{idx}"].detach().numpy(), expect, rtol=1e-5, atol=1e-7)
    assert s.iter == 1 and s.last_lr == float(np.float32(0.05))


def test_snapshot_restore_is_bit_exact(tmp_path):
    full = make(tmp_path / "a", iter_size=2, test_iter=[2], test_interval=3)
    full.step(7)
    part = make(tmp_path / "b", iter_size=2, test_iter=[2], test_interval=3)
    part.step(4)
    model, state = part.snapshot()
    assert model.endswith("snap_iter_4.caffemodel") and state.endswith("snap_iter_4.solverstate")
    # A fresh solver (different data-source instance, RNG moved on) restores and continues.
    torch.manual_seed(12345)
    resumed = make(tmp_path / "b", iter_size=2, test_iter=[2], test_interval=3)
    resumed.train_feed.source = _skip(Batches(), 8)  # user sources are the caller's; Data layers are restored
    resumed.test_feeds[0].source = _skip(Batches(seed=99), 4)  # tests at 0 and 3
    resumed.restore(state)
    assert resumed.iter == 4 and resumed.current_step == 1
    resumed.step(3)
    for key, value in full.params.items():
        assert torch.equal(value, resumed.params[key]), key
    for a, b in zip(full.history[0], resumed.history[0]):
        assert torch.equal(a, b)
    assert full.losses[4:] == resumed.losses
    assert full.test_results[-1] == resumed.test_results[-1]


def _skip(batches, n):
    for _ in range(n):
        batches()
    return batches


def test_snapshot_files_are_caffe_messages(tmp_path):
    s = make(tmp_path, snapshot=3)
    s.step(3)
    net = read_weights(tmp_path / "snap_iter_3.caffemodel")
    layers = {layer.name: layer for layer in net.layer}
    assert [layer.name for layer in net.layer] == [l.name for l in s.net.net_param.layer]
    assert [tuple(b.shape.dim) for b in layers["fc1"].blobs] == [(6, 5), (6,)]
    np.testing.assert_array_equal(blob_to_array(layers["fc2"].blobs[0]), s.params["fc2/0"].detach().numpy())
    state = pb.SolverState()
    state.ParseFromString((tmp_path / "snap_iter_3.solverstate").read_bytes())
    assert state.iter == 3 and state.current_step == 0 and len(state.history) == 4  # 2 // stepsize 3
    assert state.learned_net == "snap_iter_3.caffemodel"
    np.testing.assert_array_equal(blob_to_array(state.history[0]), s.history[0][0].numpy())
    # a real Caffe solverstate (no sidecar) restores too
    (tmp_path / "snap_iter_3.solverstate.json").unlink()
    other = make(tmp_path)
    other.restore(tmp_path / "snap_iter_3.solverstate")
    assert other.iter == 3 and torch.equal(other.params["fc1/0"], s.params["fc1/0"])


def test_test_interval_averages_outputs_and_logs_csv_png(tmp_path):
    s = make(tmp_path, test_iter=[3], test_interval=2, test_initialization=True, max_iter=4)
    s.solve()
    iters = [it for it, _ in s.test_results]
    assert iters == [0, 2, 4]
    # the mean over test_iter batches of the accuracy
    acc = s.test_results[0][1][0]["accuracy"]
    assert 0 <= acc <= 1 and abs(acc * 12 - round(acc * 12)) < 1e-5
    with open(tmp_path / "snap_log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["iter"] for r in rows] == ["0", "1", "2", "3", "4"]
    assert rows[0]["test0/accuracy"] != "" and rows[1]["test0/accuracy"] == ""
    assert float(rows[3]["lr"]) == pytest.approx(0.025)
    assert (tmp_path / "snap_curve.png").stat().st_size > 1000
    assert (tmp_path / "snap_iter_4.caffemodel").exists()  # snapshot_after_train


def test_ctrl_c_snapshots_then_raises(tmp_path):
    def interrupt(solver):
        if solver.iter == 2:
            signal.raise_signal(signal.SIGINT)

    s = make(tmp_path)
    s.callbacks.append(interrupt)
    with pytest.raises(KeyboardInterrupt):
        s.solve()
    assert s.iter == 2
    assert (tmp_path / "snap_iter_2.caffemodel").exists() and (tmp_path / "snap_iter_2.solverstate").exists()

    def hard_interrupt(solver):
        raise KeyboardInterrupt

    s2 = make(tmp_path / "c")
    s2.callbacks.append(hard_interrupt)
    with pytest.raises(KeyboardInterrupt):
        s2.step(5)
    assert (tmp_path / "c" / "snap_iter_1.solverstate").exists()


def test_learning_rate_and_smoothed_loss(tmp_path):
    s = make(tmp_path, average_loss=3)
    assert [s.learning_rate(k) for k in (0, 2, 3, 6)] == [float(np.float32(x)) for x in
                                                          (0.05, 0.05, 0.025, 0.0125)]
    last = s.step(4)
    # Caffe: the window restarts every step() call; 4 losses with a window of 3
    l = [np.float32(x) for x in s.losses]
    sm = np.float32(0)
    window = []
    for i, x in enumerate(l):
        if len(window) < 3:
            window.append(x)
            sm = np.float32((sm * np.float32(len(window) - 1) + x) / np.float32(len(window)))
        else:
            sm = np.float32(sm + (x - window[i % 3]) / np.float32(3))
            window[i % 3] = x
    assert last == float(sm)


def test_weights_copy_and_errors(tmp_path):
    s = make(tmp_path, snapshot=2)
    s.step(2)
    t = Solver(solver_param(), root=tmp_path, weights="snap_iter_2.caffemodel", train_data=Batches(),
               net_builder=builder, progress=False, verbose=False, log_csv=False, plot=False)
    assert torch.equal(t.params["fc2/0"], s.params["fc2/0"])
    bad = solver_param()
    bad.ClearField("net_param")
    with pytest.raises(ValueError, match="exactly one of"):
        Solver(bad, root=tmp_path, net_builder=builder, progress=False, verbose=False)
    with pytest.raises(ValueError, match="test_iter"):
        Solver(solver_param(test_net=["x.prototxt"]), root=tmp_path, train_data=Batches(), net_builder=builder,
               progress=False, verbose=False)


def test_get_solver_reads_prototxt(tmp_path):
    (tmp_path / "net.prototxt").write_text(NET)
    (tmp_path / "solver.prototxt").write_text(
        'net: "net.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\nmax_iter: 2\nsolver_type: ADAM\n'
        'momentum: 0.9\nsnapshot_prefix: "out/s"\nrandom_seed: 3\n')
    s = get_solver(tmp_path / "solver.prototxt", root=tmp_path, train_data=Batches(), net_builder=builder,
                   progress=False, verbose=False)
    assert s.rule.name == "Adam" and len(s.history) == 2
    s.solve()
    assert (tmp_path / "out" / "s_iter_2.solverstate").exists()
    state = pb.SolverState()
    state.ParseFromString((tmp_path / "out" / "s_iter_2.solverstate").read_bytes())
    assert len(state.history) == 8  # Adam: m and v for 4 blobs


def test_restore_with_random_crops_mirror_and_dropout(oracle, tmp_path):
    """Data layers (TRAIN random crop + mirror, prefetch thread) and Dropout: restore is bit-exact."""
    lmdb = oracle / "solver" / "data" / "lmdb_train"      # convert_imageset's LMDB, 64x64, labels 0..3
    text = NET.replace(
        'layer { name: "data" type: "Input" top: "data" top: "label" include { phase: TRAIN } }',
        f'layer {{ name: "data" type: "Data" top: "data" top: "label" include {{ phase: TRAIN }} '
        f'data_param {{ source: "{lmdb}" batch_size: 3 backend: LMDB }} '
        f'transform_param {{ crop_size: 8 mirror: true scale: 0.01 mean_value: 110 }} }}'
    ).replace("num_output: 3", "num_output: 4")  # labels 0..3

    def build(prefix):
        s = solver_param(iter_size=2, snapshot_prefix=str(tmp_path / prefix))
        s.net_param.CopyFrom(parse_net(text))
        return Solver(s, root=tmp_path, net_builder=builder, progress=False, verbose=False)

    full = build("full")
    assert full.net.input_shapes["data"] == (3, 3, 8, 8)
    full.step(6)
    part = build("part")
    part.step(2)
    _, state = part.snapshot()
    part.train_feed.close()
    torch.manual_seed(0)
    resumed = build("part")
    resumed.restore(state)
    resumed.step(4)
    for key, value in full.params.items():
        assert torch.equal(value, resumed.params[key]), key
    assert full.losses[2:] == resumed.losses
    keys = full.train_feed.data_layers[0].last_keys
    assert keys == resumed.train_feed.data_layers[0].last_keys
