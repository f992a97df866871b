"""The execution plan (converters.graph): Caffe's in-place, implicit-Split, automatic-top and
parameter-sharing rules as data, and the walkers that follow it."""
import pytest
import torch

import converters
from converters.formats import parse_net
from converters.graph import AUTO_TOP, ExecutionPlan, LearnableParam, ParamShare, plan_params
from converters.layers import ConversionError
from converters.net import ParamSpec

BRANCHY = """
name: "branchy"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "left" type: "Convolution" bottom: "conv1" top: "left"
        convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "right" type: "Convolution" bottom: "conv1" top: "right"
        convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "sum" type: "Eltwise" bottom: "left" bottom: "right" top: "sum" }
"""


def plan_of(text):
    return ExecutionPlan(parse_net(text))


def test_in_place_top_is_a_new_version_of_the_bottom_blob():
    plan = plan_of(BRANCHY)
    conv, relu = plan.steps[1], plan.steps[2]
    assert relu.bottoms == relu.tops == ("conv1",)
    assert relu.in_place(0)
    assert relu.bottom_versions == conv.top_versions
    assert relu.top_versions[0] != conv.top_versions[0]
    assert plan.blob_of[relu.top_versions[0]] == "conv1"
    assert plan.final_version["conv1"] == relu.top_versions[0]
    # the two branches read the rectified version, not the convolution's output
    assert plan.steps[3].bottom_versions == plan.steps[4].bottom_versions == relu.top_versions


def test_blob_read_twice_is_an_implicit_split_and_counts_in_caffe_numbering():
    plan = plan_of(BRANCHY)
    relu = plan.steps[2]
    assert plan.consumers()[relu.top_versions[0]] == 2
    # Caffe (insert_splits.cpp) puts relu1_conv1_0_split right after relu1:
    # data 0, conv1 1, relu1 2, split 3, left 4, right 5, sum 6
    assert plan.caffe_layer_indices() == [0, 1, 2, 4, 5, 6]
    # the lrp_toolbox numbering: the Input layer is no layer
    assert plan.caffe_layer_indices(inputs_as_layers=False) == [None, 0, 1, 3, 4, 5]


def test_split_of_an_input_blob_comes_first_in_toolbox_numbering():
    text = """
    layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 } } }
    layer { name: "a" type: "ReLU" bottom: "data" top: "a" }
    layer { name: "b" type: "ReLU" bottom: "data" top: "b" }
    """
    plan = plan_of(text)
    assert plan.caffe_layer_indices(inputs_as_layers=False) == [None, 1, 2]
    assert plan.caffe_layer_indices() == [0, 2, 3]


def test_outputs_are_unread_blobs_sorted_and_frees_skip_them():
    text = BRANCHY + 'layer { name: "extra" type: "ReLU" bottom: "left" top: "aaa" }\n'
    plan = plan_of(text)
    assert plan.outputs == ["aaa", "sum"]
    frees = {s.name: s.frees for s in plan.steps}
    assert frees["right"] == ("conv1",)      # last reader of conv1
    assert frees["extra"] == ("left",)
    assert frees["sum"] == ("right",)         # 'left' is still read by 'extra'


def test_duplicate_top_and_unknown_bottom_name_the_layer():
    with pytest.raises(ConversionError, match="produced by multiple sources"):
        plan_of(BRANCHY + 'layer { name: "again" type: "ReLU" bottom: "left" top: "sum" }')
    with pytest.raises(ConversionError, match="unknown bottom blob 'nope'") as err:
        plan_of(BRANCHY + 'layer { name: "bad" type: "ReLU" bottom: "nope" top: "x" }')
    assert "bad" in str(err.value)


def test_loss_without_top_gets_automatic_top_with_weight_one():
    text = """
    layer { name: "data" type: "Input" top: "x" top: "y"
            input_param { shape { dim: 2 dim: 3 } shape { dim: 2 } } }
    layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "y" }
    layer { name: "loss2" type: "SoftmaxWithLoss" bottom: "x" bottom: "y" loss_weight: 0.5 }
    """
    plan = plan_of(text)
    assert plan.steps[1].tops == (AUTO_TOP,)
    assert plan.steps[2].tops == (AUTO_TOP + "#2",)
    assert plan.loss_weights == {AUTO_TOP: 1.0, AUTO_TOP + "#2": 0.5}


def test_repeated_layer_names_get_unique_names():
    text = BRANCHY.replace('name: "right"', 'name: "left"')
    plan = plan_of(text)
    assert [s.unique_name for s in plan.steps][3:5] == ["left", "left#2"]


def test_ancestors_keep_only_what_the_step_depends_on():
    text = BRANCHY + 'layer { name: "side" type: "ReLU" bottom: "data" top: "side" }\n'
    plan = plan_of(text)
    assert [s.name for s in plan.ancestors(plan.position_of("sum"))] == ["conv1", "relu1", "left", "right", "sum"]
    assert [s.name for s in plan.ancestors(plan.position_of("left"))] == ["conv1", "relu1", "left"]


SHARED = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "a" type: "InnerProduct" bottom: "data" top: "a" inner_product_param { num_output: 3 }
        param { name: "w" lr_mult: 2 } param { lr_mult: 3 decay_mult: 0 } }
layer { name: "b" type: "InnerProduct" bottom: "a" top: "b" inner_product_param { num_output: 3 }
        param { name: "w" decay_mult: 5 } }
"""


def test_shared_param_is_a_record_of_its_owner():
    plan = plan_of(SHARED)
    params, shares = plan_params(plan, [0, 2, 2], [(), (None, None), (None, None)])
    assert [(p.layer, p.blob_index) for p in params] == [("a", 0), ("a", 1), ("b", 1)]
    assert isinstance(params[0], LearnableParam)
    assert (params[0].lr_mult, params[0].decay_mult) == (2.0, 5.0)   # decay given by the sharer
    assert shares == [ParamShare(position=2, blob_index=0, owner=0, name="w", strict=True)]
    assert params[0].shared_by == [(2, 0)]


def test_shared_param_with_conflicting_lr_mult_is_refused():
    text = SHARED.replace('param { name: "w" decay_mult: 5 }', 'param { name: "w" lr_mult: 7 }')
    with pytest.raises(ConversionError, match="mismatched lr_mult"):
        plan_params(plan_of(text), [0, 2, 2], [(), (None, None), (None, None)])


def test_caffenet_ties_shared_params_and_names_its_specs():
    net = converters.load_caffe(parse_net(SHARED), phase="test")
    specs = list(net.param_specs())
    assert all(isinstance(s, ParamSpec) for s in specs)
    assert [(s.layer, s.blob_index, s.lr_mult, s.decay_mult) for s in specs] == [
        ("a", 0, 2.0, 5.0), ("a", 1, 3.0, 0.0), ("b", 1, 1.0, 1.0)]
    assert net.caffe_layers["b"].weight is net.caffe_layers["a"].weight


def test_every_walker_follows_the_plan():
    """CaffeNet's forward, pycaffe's Net and the ONNX export's module run the same steps."""
    from converters.onnx_export import OnnxExportable
    from converters.pycaffe.net import Net

    torch.manual_seed(0)
    net = converters.load_caffe(parse_net(BRANCHY), phase="test")
    assert [s.unique_name for s in net.plan.steps] == list(net.caffe_layers)
    x = torch.randn(2, 3, 8, 8)
    expected = net(x)
    with torch.no_grad():
        exported = OnnxExportable(net).eval()(x)[0]
    torch.testing.assert_close(exported, expected)
    py = Net._from_model(net)
    out = py.forward(data=x.numpy())["sum"]
    torch.testing.assert_close(torch.from_numpy(out), expected.detach())
    assert [s.unique_name for s in py._steps] == [s.unique_name for s in net.plan.steps]
