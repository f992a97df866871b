"""converters.caffemodel: the one CopyTrainedLayersFrom and the one streaming caffemodel writer,
used by load_caffe, pycaffe's Net and the solver alike."""
import pytest
import torch

import converters
from converters.caffemodel import caffemodel_bytes, copy_trained_layers, layer_blobs
from converters.formats import CaffeFormatError, parse_net, parse_weights
from converters.proto import caffe_pb2 as pb

NET = """
name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 4 } }
layer { name: "ip2" type: "InnerProduct" bottom: "ip" top: "ip2" inner_product_param { num_output: 2 }
        param { name: "shared_w" } }
layer { name: "ip3" type: "InnerProduct" bottom: "ip" top: "ip3" inner_product_param { num_output: 2 }
        param { name: "shared_w" } }
"""


def _net():
    torch.manual_seed(0)
    return converters.load_caffe(parse_net(NET), phase="test")


def test_written_caffemodel_reads_back_identically():
    net = _net()
    weights = parse_weights(caffemodel_bytes(net))
    assert [layer.name for layer in weights.layer] == ["data", "ip", "ip2", "ip3"]
    # a sharing layer saves the shared blob too, as Caffe's ToProto does
    assert [len(layer.blobs) for layer in weights.layer] == [0, 2, 2, 2]
    other = converters.load_caffe(parse_net(NET), weights, phase="test")
    for (_, mine), (_, theirs) in zip(layer_blobs(net), layer_blobs(other)):
        for a, b in zip(mine, theirs):
            assert torch.equal(a, b)


def test_caffemodel_layer_without_blobs_is_an_error_as_in_caffe():
    """Caffe: CHECK_EQ(target_blobs.size(), source_layer.blobs_size()) "Incompatible number of
    blobs for layer" - also when the caffemodel's layer has no blobs at all."""
    weights = parse_weights(caffemodel_bytes(_net()))
    weights.layer[1].ClearField("blobs")
    with pytest.raises(CaffeFormatError, match="incompatible number of blobs: the caffemodel has 0") as err:
        copy_trained_layers(_net(), weights)
    assert "ip" in str(err.value)


def test_solver_copies_weights_by_the_same_rule(tmp_path):
    from google.protobuf import text_format

    from converters.solver import Solver

    text = NET.replace('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }',
                       'layer { name: "data" type: "Input" top: "data" top: "label" '
                       'input_param { shape { dim: 2 dim: 3 } shape { dim: 2 } } }')
    text += 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }\n'
    param = text_format.Parse('base_lr: 0.1 lr_policy: "fixed" max_iter: 1 display: 0 snapshot_prefix: "s"',
                              pb.SolverParameter())
    param.net_param.CopyFrom(parse_net(text))
    solver = Solver(param, root=tmp_path, progress=False, verbose=False, log_csv=False, plot=False,
                    train_data=lambda: {"data": torch.zeros(2, 3), "label": torch.zeros(2)})
    weights = parse_weights(caffemodel_bytes(_net()))
    solver.copy_trained_layers(weights)
    assert torch.equal(solver.net.caffe_layers["ip"].weight.detach(),
                       torch.from_numpy(converters.formats.blob_to_array(weights.layer[1].blobs[0])))
    weights.layer[1].ClearField("blobs")
    with pytest.raises(CaffeFormatError, match="incompatible number of blobs"):
        solver.copy_trained_layers(weights)
