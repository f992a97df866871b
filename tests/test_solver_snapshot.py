"""converters.solver.snapshot: Caffe's snapshot names, the .solverstate round trip, resume, the one
caffemodel writer, and the SIGHUP action (snapshot and go on)."""
import signal

import numpy as np
import pytest
import torch
from google.protobuf import text_format

import converters.caffemodel as caffemodel
from converters.formats import CaffeFormatError, blob_to_array, parse_net, read_weights
from converters.proto import caffe_pb2 as pb
from converters.solver import Solver, SolverError
from converters.solver import snapshot as snapshots

NET = """
name: "tiny"
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 4 dim: 5 } shape { dim: 4 } } }
layer { name: "fc1" type: "InnerProduct" bottom: "data" top: "fc1"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 }
                              bias_filler { type: "constant" value: 0.1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc1" bottom: "label" top: "loss" }
"""


class Batches:
    """Deterministic in-memory batches (4 x 5 data, labels 0..2)."""

    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)

    def __call__(self):
        return {"data": torch.from_numpy(self.rng.normal(size=(4, 5)).astype(np.float32)),
                "label": torch.from_numpy(self.rng.integers(0, 3, size=4).astype(np.float32))}


def make(tmp_path, prefix="snap", solver_type="SGD", **fields):
    text = (f'base_lr: 0.1 lr_policy: "step" gamma: 0.5 stepsize: 2 momentum: 0.9 max_iter: 6 display: 0 '
            f'random_seed: 3 snapshot_prefix: "{prefix}" type: "{solver_type}"')
    param = text_format.Parse(text, pb.SolverParameter())
    param.net_param.CopyFrom(parse_net(NET))
    for key, value in fields.items():
        setattr(param, key, value)
    return Solver(param, root=tmp_path, train_data=Batches(), progress=False, verbose=False,
                  log_csv=False, plot=False)


def test_names_follow_caffe():
    assert snapshots.snapshot_filenames("out/s", 12) == ("out/s_iter_12.caffemodel", "out/s_iter_12.solverstate")
    assert snapshots.sidecar_path("a/s_iter_3.solverstate") == "a/s_iter_3.solverstate.json"
    # Caffe records the model file as it built it: relative prefix -> relative name
    assert snapshots.learned_net_name("out/s", 7, "/run/out/s_iter_7.caffemodel") == "out/s_iter_7.caffemodel"
    assert snapshots.learned_net_name("/abs/s", 7, "/abs/s_iter_7.caffemodel") == "/abs/s_iter_7.caffemodel"


def test_solverstate_round_trip(tmp_path):
    history = [[torch.arange(6, dtype=torch.float32).reshape(2, 3), torch.tensor([0.5, -1.25])],
               [torch.full((2, 3), 2.0), torch.zeros(2)]]
    state = snapshots.solver_state(9, 2, "s_iter_9.caffemodel", history)
    path = tmp_path / "s_iter_9.solverstate"
    path.write_bytes(state.SerializeToString())
    back = snapshots.read_solver_state(path)
    assert (back.iter, back.current_step, back.learned_net) == (9, 2, "s_iter_9.caffemodel")
    assert [tuple(b.shape.dim) for b in back.history] == [(2, 3), (2,), (2, 3), (2,)]
    target = [[torch.empty(2, 3), torch.empty(2)], [torch.empty(2, 3), torch.empty(2)]]
    snapshots.check_history(back, target, path, "Nesterov")
    snapshots.load_history(back, target, path)
    for mine, theirs in zip(sum(history, []), sum(target, [])):
        assert torch.equal(mine, theirs)
    with pytest.raises(SolverError, match=r"incorrect length of history blobs \(4 in the file, Adam on this net "
                                          r"needs 2\)"):
        snapshots.check_history(back, [target[0]], path, "Adam")
    with pytest.raises(SolverError, match="history blob 1 has shape"):
        snapshots.check_history(back, [[torch.empty(2, 3), torch.empty(3)], target[1]], path, "Nesterov")


def test_bad_solverstates_name_the_file(tmp_path):
    with pytest.raises(CaffeFormatError, match="missing.solverstate.*file not found"):
        snapshots.read_solver_state(tmp_path / "missing.solverstate")
    junk = tmp_path / "junk.solverstate"
    junk.write_bytes(b"\xff\xff\xff")
    with pytest.raises(CaffeFormatError, match="junk.solverstate.*not a valid solverstate"):
        snapshots.read_solver_state(junk)
    with pytest.raises(SolverError, match="HDF5"):
        snapshots.read_solver_state(tmp_path / "x.solverstate.h5")


def test_resume_restores_iter_history_and_weights(tmp_path):
    s = make(tmp_path)
    s.step(3)
    model_file, state_file = s.snapshot()
    assert model_file == str(tmp_path / "snap_iter_3.caffemodel")
    assert state_file == str(tmp_path / "snap_iter_3.solverstate")
    state = snapshots.read_solver_state(state_file)
    assert (state.iter, state.current_step, state.learned_net) == (3, 1, "snap_iter_3.caffemodel")
    fresh = make(tmp_path)
    assert fresh.iter == 0 and not torch.equal(fresh.history[0][0], s.history[0][0])
    fresh.restore(state_file)
    assert (fresh.iter, fresh.current_step) == (3, 1)
    for a, b in zip(s.history[0], fresh.history[0]):
        assert torch.equal(a, b)
    for key, value in s.params.items():
        assert torch.equal(value, fresh.params[key]), key
    # fed the same batch (a user source is the caller's, not restored), both take the same step
    s.train_feed.source, fresh.train_feed.source = Batches(5), Batches(5)
    s.step(1)
    fresh.step(1)
    assert s.losses[-1] == fresh.losses[-1] and torch.equal(s.params["fc1/0"], fresh.params["fc1/0"])


def test_bad_restore_leaves_the_solver_unchanged(tmp_path):
    s = make(tmp_path)
    s.step(2)
    _, state_file = s.snapshot()
    state = snapshots.read_solver_state(state_file)
    del state.history[-1]
    short = tmp_path / "short.solverstate"
    short.write_bytes(state.SerializeToString())
    fresh = make(tmp_path)
    before = {k: v.clone() for k, v in fresh.params.items()}
    with pytest.raises(SolverError, match="short.solverstate: incorrect length of history blobs"):
        fresh.restore(short)
    assert fresh.iter == 0 and fresh.current_step == 0
    assert all(torch.equal(before[k], v) for k, v in fresh.params.items())
    state = snapshots.read_solver_state(state_file)
    state.learned_net = "nowhere.caffemodel"
    lost = tmp_path / "lost.solverstate"
    lost.write_bytes(state.SerializeToString())
    with pytest.raises(CaffeFormatError, match="learned_net 'nowhere.caffemodel' not found"):
        fresh.restore(lost)
    assert fresh.iter == 0


def test_snapshot_goes_through_the_one_caffemodel_writer(tmp_path, monkeypatch):
    s = make(tmp_path, solver_type="Adam")
    s.step(2)
    calls = []
    real = caffemodel.write_caffemodel

    def spy(model, fh):
        calls.append(model)
        return real(model, fh)

    monkeypatch.setattr(caffemodel, "write_caffemodel", spy)
    model_file, state_file = s.snapshot()
    assert calls == [s.net]
    with open(model_file, "rb") as fh:
        assert fh.read() == caffemodel.caffemodel_bytes(s.net)
    net = read_weights(model_file)
    fc1 = next(layer for layer in net.layer if layer.name == "fc1")
    np.testing.assert_array_equal(blob_to_array(fc1.blobs[0]), s.params["fc1/0"].detach().numpy())
    # Adam's history: m and v for each of the 2 blobs, float32 BlobProtos with shape
    state = snapshots.read_solver_state(state_file)
    assert [tuple(b.shape.dim) for b in state.history] == [(3, 5), (3,), (3, 5), (3,)]
    np.testing.assert_array_equal(blob_to_array(state.history[2]), s.history[1][0].numpy())


def test_history_blobs_are_encoded_by_the_one_blob_encoder(tmp_path, monkeypatch):
    import converters.formats.blobs as blobs
    seen = []
    real = blobs.encode_blob

    def spy(arr, legacy=False):
        seen.append(np.asarray(arr).shape)
        return real(arr, legacy)

    monkeypatch.setattr(blobs, "encode_blob", spy)
    snapshots.solver_state(1, 0, "x", [[torch.zeros(2, 3), torch.zeros(4)]])
    assert seen == [(2, 3), (4,)]


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_sighup_snapshots_and_training_goes_on(tmp_path):
    def hangup(solver):
        if solver.iter == 2:
            signal.raise_signal(signal.SIGHUP)

    previous = signal.getsignal(signal.SIGHUP)
    s = make(tmp_path)
    s.callbacks.append(hangup)
    s.step(5)
    assert signal.getsignal(signal.SIGHUP) == previous       # handlers are put back
    assert s.iter == 5
    # the request is served after the next iteration, as Caffe checks it after each one
    assert sorted(p.name for p in tmp_path.glob("*.solverstate")) == ["snap_iter_3.solverstate"]
    assert snapshots.read_solver_state(tmp_path / "snap_iter_3.solverstate").iter == 3

    # a hangup the process ignores (nohup) stays ignored
    ignored = tmp_path / "nohup"
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        t = make(ignored)
        t.callbacks.append(hangup)
        t.step(4)
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert not list(ignored.glob("*.solverstate"))
