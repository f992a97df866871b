"""Text nets and solvers: every upstream file, Caffe's V1/input upgrades and NetState rules.

The upstream files are the real ones when present, else the synthetic stand-in's
(tests/upstream_standin.py), generated to the spec's sections 2.1-2.4, so the same counts hold."""
from collections import Counter

import pytest

from converters.formats import (CaffeFormatError, filter_net, layer_included, make_state,
                                parse_net, read_net, read_solver, state_meets_rule)
from converters.proto import caffe_pb2 as pb

# upstream-spec.md section 2.2: layers per file (without the Input layer Caffe adds for
# top-level inputs) and type counts, per family A/C/G/V; "age/gender" where they differ.
COMMON = {
    "A": dict(Convolution=3, ReLU=5, Pooling=3, LRN=2, InnerProduct=3, Dropout=2),
    "C": dict(Convolution=5, ReLU=7, Pooling=3, LRN=2, InnerProduct=3, Dropout=2),
    "G": dict(Convolution=59, ReLU=61, Pooling=16, LRN=2, Concat=9, InnerProduct=5, Dropout=3),
    "V": dict(Convolution=13, ReLU=15, Pooling=5, InnerProduct=3, Dropout=2),
}
DEPLOY = {"A": (19, dict(Softmax=1)), "C": (23, dict(Softmax=1)), "G": (158, dict(Softmax=3)),
          "V": (39, dict(Softmax=1))}
TRAIN_VAL = {  # family -> {target: (layers, extra types)}
    "A": {t: (22, dict(Data=2, Accuracy=1, SoftmaxWithLoss=1)) for t in ("age", "gender")},
    "C": {"age": (27, dict(Data=2, Accuracy=2, SoftmaxWithLoss=1)),
          "gender": (26, dict(Data=2, Accuracy=1, SoftmaxWithLoss=1))},
    "G": {"age": (166, dict(Data=2, SoftmaxWithLoss=3, Accuracy=6)),
          "gender": (163, dict(Data=2, SoftmaxWithLoss=3, Accuracy=3))},
    "V": {"age": (44, dict(Data=2, SoftmaxWithLoss=1, Softmax=1, Accuracy=2)),
          "gender": (43, dict(Data=2, SoftmaxWithLoss=1, Softmax=1, Accuracy=1))},
}


@pytest.fixture(scope="module")
def upstream(upstream_tree):
    """The upstream folder: the real one when present, else the synthetic stand-in built to spec 2.1-2.4."""
    return upstream_tree.root


def family(folder: str) -> str:
    if "net_definitions" in folder:
        return "A"
    if "caffereference" in folder:
        return "C"
    return "G" if "googlenet" in folder else "V"


@pytest.fixture(scope="module")
def upstream_files(upstream):
    files = sorted((upstream / "model_definitions").glob("*/*.prototxt"))
    nets = [f for f in files if not f.name.startswith("solver")]
    solvers = [f for f in files if f.name.startswith("solver")]
    return nets, solvers


@pytest.fixture(scope="module")
def parsed_nets(upstream_files):
    return {f: read_net(f) for f in upstream_files[0]}


def own_layers(net):
    # layers written in the file: the Input layer is Caffe's upgrade of top-level inputs
    return [layer for layer in net.layer if not (layer.type == "Input" and layer.name == "input")]


def test_all_upstream_prototxts_parse(upstream_files, parsed_nets):
    nets, solvers = upstream_files
    assert len(nets) == 233 and len(solvers) == 190
    for f in solvers:
        solver = read_solver(f)
        assert solver.net.startswith("train_val_test_fold_is_") and solver.base_lr > 0
    for f, net in parsed_nets.items():
        assert len(net.layers) == 0 and len(net.input) == 0  # fully upgraded
        assert all(layer.type for layer in net.layer), f


def test_layer_counts_per_family(parsed_nets):
    totals = Counter()
    for f, net in parsed_nets.items():
        fam, target = family(f.parent.name), f.parent.name.split("_")[0]
        layers = own_layers(net)
        counts = Counter(layer.type for layer in layers)
        if f.name == "deploy.prototxt":
            n, extra = DEPLOY[fam]
            totals["deploy"] += len(layers)
        elif f.name.startswith("train_val"):
            n, extra = TRAIN_VAL[fam][target]
            totals["train_val"] += len(layers)
        else:  # age_fromscratch_caffereference/test_fold_is_K: same as C age train_val
            n, extra = TRAIN_VAL["C"]["age"]
            totals["test"] += len(layers)
        assert len(layers) == n, f
        assert counts == Counter({**COMMON[fam], **extra}), f
    assert totals == {"deploy": 2598, "train_val": 13860, "test": 135}


def test_adiencenet_v1_upgrade(upstream):
    for target, batch in (("age", 1), ("gender", 10)):
        net = read_net(upstream / f"model_definitions/{target}_net_definitions/deploy.prototxt")
        first = net.layer[0]
        # UpgradeNetInput: input + 4 input_dim -> layer "input" of type Input
        assert (first.name, first.type, list(first.top)) == ("input", "Input", ["data"])
        assert [list(s.dim) for s in first.input_param.shape] == [[batch, 3, 227, 227]]
        assert [layer.type for layer in net.layer[1:6]] == ["Convolution", "ReLU", "Pooling", "LRN",
                                                            "Convolution"]
        tv = read_net(upstream / f"model_definitions/{target}_net_definitions/train_val_test_fold_is_0.prototxt")
        by_name = {layer.name: layer for layer in tv.layer}
        # blobs_lr / weight_decay -> param { lr_mult decay_mult }
        for name in ("conv1", "conv2", "conv3", "fc6", "fc7"):
            assert [(p.lr_mult, p.decay_mult) for p in by_name[name].param] == [(1, 1), (2, 0)]
        assert [(p.lr_mult, p.decay_mult) for p in by_name["fc8"].param] == [(10, 1), (20, 0)]
        assert by_name["loss"].type == "SoftmaxWithLoss" and by_name["accuracy"].type == "Accuracy"
        assert by_name["fc8"].inner_product_param.weight_filler.std == pytest.approx(0.01)


def test_train_and_test_nets_of_every_train_val(parsed_nets):
    for f, net in parsed_nets.items():
        if not f.name.startswith(("train_val", "test_fold")):
            continue
        train, test = filter_net(net, "train"), filter_net(net, "TEST")
        train_data = [layer for layer in train.layer if layer.type == "Data"]
        test_data = [layer for layer in test.layer if layer.type == "Data"]
        assert len(train_data) == 1 and train_data[0].include[0].phase == pb.TRAIN, f
        assert len(test_data) == 1 and test_data[0].include[0].phase == pb.TEST, f
        assert train_data[0].transform_param.mirror and not test_data[0].transform_param.mirror
        assert not any(layer.type == "Accuracy" for layer in train.layer), f
        assert any(layer.type == "Accuracy" for layer in test.layer), f
        assert train.state.phase == pb.TRAIN and test.state.phase == pb.TEST
        if family(f.parent.name) == "V":  # loss only in TRAIN, prob only in TEST
            assert [layer.name for layer in train.layer if "Softmax" in layer.type] == ["loss"]
            assert [layer.name for layer in test.layer if "Softmax" in layer.type] == ["prob"]


def test_input_shape_and_vgg_input_dim(upstream):
    net = read_net(upstream / "model_definitions/gender_finetuning_vgg16/deploy.prototxt")
    assert [list(s.dim) for s in net.layer[0].input_param.shape] == [[1, 3, 224, 224]]
    net = read_net(upstream / "model_definitions/age_finetuning_googlenet/deploy.prototxt")
    assert [list(s.dim) for s in net.layer[0].input_param.shape] == [[1, 3, 224, 224]]


def test_solver_type_upgrade():
    from converters.formats.prototxt import _parse_text, upgrade_solver

    solver = upgrade_solver(_parse_text(None, 'net: "x"\nsolver_type: NESTEROV\n', pb.SolverParameter()))
    assert solver.type == "Nesterov" and not solver.HasField("solver_type")


def test_data_param_transformation_fields_move():
    net = parse_net('layer { name: "d" type: "Data" top: "data" '
                    'data_param { source: "x" batch_size: 2 crop_size: 227 mirror: true '
                    'mean_file: "m.binaryproto" scale: 0.5 } }')
    t = net.layer[0].transform_param
    assert (t.crop_size, t.mirror, t.mean_file, t.scale) == (227, True, "m.binaryproto", 0.5)
    assert not net.layer[0].data_param.HasField("crop_size")


# ------------------------------------------------------------------ NetState rules
def rule(**kw):
    r = pb.NetStateRule()
    for key, value in kw.items():
        if key in ("stage", "not_stage"):
            getattr(r, key).extend(value)
        else:
            setattr(r, key, value)
    return r


def test_rule_phase():
    assert state_meets_rule(make_state("train"), rule(phase=pb.TRAIN))
    assert not state_meets_rule(make_state("test"), rule(phase=pb.TRAIN))
    assert state_meets_rule(make_state("test"), rule())  # an empty rule always holds


def test_rule_min_max_level():
    assert state_meets_rule(make_state("test", level=2), rule(min_level=2))
    assert not state_meets_rule(make_state("test", level=1), rule(min_level=2))
    assert state_meets_rule(make_state("test", level=3), rule(max_level=3))
    assert not state_meets_rule(make_state("test", level=4), rule(max_level=3))
    assert not state_meets_rule(make_state("test", level=0), rule(min_level=1, max_level=3))


def test_rule_stage_and_not_stage():
    s = make_state("test", stages=["deploy", "fast"])
    assert state_meets_rule(s, rule(stage=["deploy"]))
    assert state_meets_rule(s, rule(stage=["deploy", "fast"]))  # every listed stage needed
    assert not state_meets_rule(s, rule(stage=["deploy", "slow"]))
    assert not state_meets_rule(s, rule(not_stage=["fast"]))
    assert state_meets_rule(s, rule(not_stage=["slow"]))


def test_multiple_include_rules_are_ored_and_exclude_wins():
    layer = pb.LayerParameter(name="l")
    layer.include.extend([rule(phase=pb.TRAIN), rule(stage=["val"])])
    assert layer_included(layer, make_state("train"))
    assert layer_included(layer, make_state("test", stages=["val"]))
    assert not layer_included(layer, make_state("test"))
    excl = pb.LayerParameter(name="e")
    excl.exclude.extend([rule(phase=pb.TEST), rule(min_level=5)])
    assert layer_included(excl, make_state("train"))
    assert not layer_included(excl, make_state("test"))
    assert not layer_included(excl, make_state("train", level=5))
    assert layer_included(pb.LayerParameter(name="free"), make_state("test"))  # no rules: in
    both = pb.LayerParameter(name="both")
    both.include.add(phase=pb.TRAIN)
    both.exclude.add(phase=pb.TEST)
    with pytest.raises(CaffeFormatError, match="layer 'both'"):
        layer_included(both, make_state("train"))


def test_filter_net_uses_the_nets_own_state_stages():
    net = parse_net('state { stage: "deploy" }\n'
                    'layer { name: "a" type: "ReLU" include { stage: "deploy" } }\n'
                    'layer { name: "b" type: "ReLU" include { stage: "extra" } }\n'
                    'layer { name: "c" type: "ReLU" exclude { phase: TRAIN } }\n')
    assert [layer.name for layer in filter_net(net, "test").layer] == ["a", "c"]
    assert [layer.name for layer in filter_net(net, "train", stages=["extra"]).layer] == ["a", "b"]
    with pytest.raises(ValueError):
        make_state("validate")
