"""Solver ``device`` option and Caffe 1.0 multi-GPU data parallelism (torch.distributed, gloo, 2 CPU workers).

Caffe's DataLayer::Skip gives record i to rank i % W and NCCL::on_gradients_ready sums the diffs and
scales by 1/W, so W workers of batch B equal one worker of batch W*B reading the records in order.
"""
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from converters.formats import parse_net, write_lmdb
from converters.proto import caffe_pb2 as pb
from converters.solver import Solver
from converters.solver.data_layer import DataLayer

N_RECORDS = 11  # odd: Caffe's offset keeps counting across the wrap-around
ITERS = 4


def _net(lmdb: str, batch: int) -> str:
    return f'''name: "tiny"
layer {{ name: "data" type: "Data" top: "data" top: "label" include {{ phase: TRAIN }}
  data_param {{ source: "{lmdb}" batch_size: {batch} backend: LMDB }} transform_param {{ scale: 0.01 }} }}
layer {{ name: "data" type: "Data" top: "data" top: "label" include {{ phase: TEST }}
  data_param {{ source: "{lmdb}" batch_size: 3 backend: LMDB }} transform_param {{ scale: 0.01 }} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  inner_product_param {{ num_output: 4 weight_filler {{ type: "gaussian" std: 0.3 }} bias_filler {{ type: "constant" value: 0.1 }} }} }}
layer {{ name: "relu" type: "ReLU" bottom: "ip1" top: "ip1" }}
layer {{ name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param {{ num_output: 3 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }}
layer {{ name: "acc" type: "Accuracy" bottom: "ip2" bottom: "label" top: "acc" include {{ phase: TEST }} }}
'''


def _make_lmdb(path: Path):
    rng = np.random.default_rng(3)
    items = [(f"{i:08d}", (i % 3, rng.integers(0, 256, (1, 2, 3), dtype=np.uint8))) for i in range(N_RECORDS)]
    write_lmdb(path, items)


def _solver_param(tmp: Path, batch: int, prefix: str) -> pb.SolverParameter:
    s = pb.SolverParameter(base_lr=0.1, lr_policy="fixed", momentum=0.9, weight_decay=0.01, iter_size=2,
                           max_iter=ITERS, snapshot=2, snapshot_prefix=str(tmp / prefix), random_seed=5,
                           display=1, test_interval=2, test_iter=[2], test_initialization=False)
    s.net_param.CopyFrom(parse_net(_net(str(tmp / "db"), batch)))
    return s


def _worker(rank: int, world: int, tmp: str):
    import torch.distributed as dist
    tmp = Path(tmp)
    dist.init_process_group("gloo", init_method=f"file://{tmp / 'rendezvous'}", rank=rank, world_size=world)
    try:
        torch.manual_seed(100 + rank)  # would make the fillers differ: the broadcast must fix that
        solver = Solver(_solver_param(tmp, 2, "ddp"), root=tmp, progress=False, verbose=False, prefetch=0)
        assert (solver.rank, solver.world_size) == (rank, world)
        keys = []
        solver.callbacks.append(lambda s: keys.append(s.train_feed.data_layers[0].last_keys))
        solver.solve()
        out = {k: v.detach().numpy().tolist() for k, v in solver.params.items()}
        dist.barrier()
        # restore (every rank reads rank 0's files; the sidecar gives each rank its own data position)
        resumed = Solver(_solver_param(tmp, 2, "ddp2"), root=tmp, progress=False, verbose=False, prefetch=0)
        resumed.restore(tmp / "ddp_iter_2.solverstate")
        resumed.step(ITERS - 2)
        for key, value in solver.params.items():
            assert torch.equal(value, resumed.params[key]), key
        assert resumed.losses == solver.losses[2:]
        (tmp / f"rank{rank}.json").write_text(json.dumps({"params": out, "losses": solver.losses,
                                                           "tests": len(solver.test_results), "keys": keys}))
    finally:
        dist.destroy_process_group()


def test_ddp_matches_single_worker_with_double_batch(tmp_path):
    _make_lmdb(tmp_path / "db")
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    # the single-process reference: batch 2B, records in order
    ref = Solver(_solver_param(tmp_path, 4, "ref"), root=tmp_path, progress=False, verbose=False, prefetch=0)
    assert ref.world_size == 1
    ref.solve()
    for key, value in ref.params.items():
        expected = value.detach().numpy()
        for r in ranks:
            got = np.asarray(r["params"][key], dtype=np.float32)
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=key)
    # Caffe's interleaving: rank 0 gets records 0, 2, 4, ...; rank 1 gets 1, 3, 5, ... (offset not reset at wrap)
    # (the callback sees each iteration's last micro-batch: offsets 8k+4+r and 8k+6+r of 2 workers x 2 x B=2)
    for r, run in enumerate(ranks):
        assert len(run["keys"]) == ITERS
        for k, keys in enumerate(run["keys"]):
            assert [int(x) for x in keys] == [(8 * k + 4 + r) % N_RECORDS, (8 * k + 6 + r) % N_RECORDS]
    # only rank 0 tests and writes snapshots / logs
    assert ranks[0]["tests"] > 0 and ranks[1]["tests"] == 0
    assert (tmp_path / f"ddp_iter_{ITERS}.caffemodel").exists()
    assert (tmp_path / "ddp_log.csv").exists()
    sidecar = json.loads((tmp_path / f"ddp_iter_{ITERS}.solverstate.json").read_text())
    assert len(sidecar["ranks"]) == 2
    assert sidecar["ranks"][1]["train_data"][0]["offset"] == sidecar["ranks"][0]["train_data"][0]["offset"] + 1
    # the displayed loss is rank 0's own (its half of the records), not the reference's
    assert ranks[0]["losses"] != ranks[1]["losses"]


def test_data_layer_skip_matches_caffe():
    recs = [(f"{i}", i, np.full((1, 1, 1), i, np.uint8)) for i in range(5)]
    layer = pb.LayerParameter(name="d", type="Data", top=["data", "label"])
    layer.data_param.source = "x"
    layer.data_param.batch_size = 3
    layer.data_param.backend = pb.DataParameter.LMDB
    got = []
    for rank in range(2):
        dl = DataLayer(layer, "train", reader=lambda path: iter(recs), rank=rank, world_size=2)
        got.append([dl.next_batch()["label"].tolist() for _ in range(2)])
    # offsets 0..11 over 5 records: rank 0 takes even offsets, rank 1 odd ones
    assert got[0] == [[0, 2, 4], [1, 3, 0]]
    assert got[1] == [[1, 3, 0], [2, 4, 1]]
    test = DataLayer(layer, "test", reader=lambda path: iter(recs), rank=1, world_size=2)
    assert test.next_batch()["label"].tolist() == [0, 1, 2]  # TEST never skips (only rank 0 tests)


def test_device_cpu_is_identical_to_default(tmp_path):
    _make_lmdb(tmp_path / "db")
    a = Solver(_solver_param(tmp_path, 2, "a"), root=tmp_path, progress=False, verbose=False)
    b = Solver(_solver_param(tmp_path, 2, "b"), root=tmp_path, progress=False, verbose=False, device="cpu")
    assert b.device == torch.device("cpu") and a.device is None
    # the test net still shares the train net's parameters after the move
    train = {(n, i): p for n, i, p, _, _ in b.net.param_specs()}
    for n, i, p, _, _ in b.test_nets[0].param_specs():
        assert p.data_ptr() == train[(n, i)].data_ptr()
    a.solve()
    b.solve()
    for key, value in a.params.items():
        assert torch.equal(value, b.params[key]), key
    assert a.losses == b.losses
    for key, value in a.history_arrays().items():
        np.testing.assert_array_equal(value, b.history_arrays()[key])
    assert (tmp_path / f"a_iter_{ITERS}.caffemodel").read_bytes() == (tmp_path / f"b_iter_{ITERS}.caffemodel").read_bytes()
    c = Solver(_solver_param(tmp_path, 2, "c"), root=tmp_path, progress=False, verbose=False, device="cpu")
    c.restore(tmp_path / f"b_iter_{ITERS}.solverstate")
    for key, value in b.params.items():
        assert torch.equal(value, c.params[key]), key


def test_every_numpy_conversion_goes_through_cpu():
    import converters.solver.solver as mod
    src = Path(mod.__file__).read_text()
    for line in src.splitlines():
        if ".numpy()" in line:
            assert ".cpu().numpy()" in line, line
    assert not re.search(r"torch\.from_numpy\([^)]*\)\.to\(", src)
