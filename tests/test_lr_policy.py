"""Learning-rate policies vs real Caffe's SGDSolver::GetLearningRate (exact float32)."""
import json

import numpy as np
import pytest

from converters.proto import caffe_pb2 as pb
from converters.solver.lr_policy import LearningRateSchedule, get_learning_rate, learning_rates


def _solver_param(fields):
    s = pb.SolverParameter()
    for key, value in fields.items():
        if isinstance(value, list):
            getattr(s, key).extend(value)
        else:
            setattr(s, key, value)
    return s


def _policies(oracle):
    return json.loads((oracle / "solver" / "lr_policies.json").read_text())["policies"]


@pytest.mark.parametrize("name", ["fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid"])
def test_matches_caffe_exactly(oracle, name):
    policy = next(p for p in _policies(oracle) if p["lr_policy"] == name)
    param = _solver_param(policy["solver_fields"])
    ours = learning_rates(param, len(policy["lr"]))
    assert ours == policy["lr"]  # exact float32 values
    for value, logged in zip(ours, policy["lr_logged"]):
        assert float(f"{np.float32(value):.6g}") == float(logged)


def test_multistep_current_step_log(oracle):
    policy = next(p for p in _policies(oracle) if p["lr_policy"] == "multistep")
    sched = LearningRateSchedule(_solver_param(policy["solver_fields"]))
    changes = []
    for k in range(len(policy["lr"])):
        before = sched.current_step
        sched(k)
        if sched.current_step != before:
            changes.append({"iter_index": k, "step": sched.current_step})
    assert changes == policy["multistep_log"]


def test_multistep_advances_one_step_per_call():
    # Caffe advances current_step at most once per iteration: restoring at iteration 30
    # with current_step 0 catches up over the next calls, not at once.
    param = _solver_param({"base_lr": 1.0, "lr_policy": "multistep", "gamma": 0.5, "stepvalue": [5, 10]})
    rate, step = get_learning_rate(param, 30, 0)
    assert (rate, step) == (0.5, 1)
    rate, step = get_learning_rate(param, 31, step)
    assert (rate, step) == (0.25, 2)


def test_step_sets_current_step_and_errors():
    param = _solver_param({"base_lr": 0.1, "lr_policy": "step", "gamma": 0.1, "stepsize": 10})
    assert get_learning_rate(param, 25, 0)[1] == 2
    with pytest.raises(ValueError, match="unknown lr_policy"):
        get_learning_rate(_solver_param({"base_lr": 0.1, "lr_policy": "cosine"}), 0)
    with pytest.raises(ValueError, match="stepsize"):
        get_learning_rate(_solver_param({"base_lr": 0.1, "lr_policy": "step"}), 0)
