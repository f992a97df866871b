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


def _one_ip_blob(tmp_path, declare):
    """A caffemodel whose ``ip`` layer holds a 4 x 3 weight declared by ``declare(blob)``."""
    weights = parse_weights(caffemodel_bytes(_net()))
    blob = weights.layer[1].blobs[0]
    blob.ClearField("shape")
    declare(blob)
    path = tmp_path / "declared.caffemodel"
    path.write_bytes(weights.SerializeToString())
    return weights, path


@pytest.mark.parametrize("declare,ok", [
    (lambda b: b.shape.dim.extend([4, 3]), True),
    (lambda b: setattr(b, "height", 4) or setattr(b, "width", 3) or setattr(b, "num", 1)
     or setattr(b, "channels", 1), True),                       # legacy 1 x 1 x 4 x 3: Caffe accepts
    (lambda b: b.shape.dim.extend([1, 1, 4, 3]), False),        # a 4-D *shape*: Caffe refuses
    (lambda b: None, False),                                    # no dims at all: Caffe refuses
], ids=["shape", "legacy-4d", "shape-4d", "no-dims"])
def test_path_and_netparameter_get_caffes_shape_rule_alike(tmp_path, declare, ok):
    """A path is read from the wire (fast), a NetParameter through protobuf: same verdict."""
    weights, path = _one_ip_blob(tmp_path, declare)
    for source in (weights, str(path)):
        net = _net()
        if ok:
            assert "ip" in copy_trained_layers(net, source)
        else:
            with pytest.raises(CaffeFormatError, match="cannot copy param 0 weights; shape mismatch"):
                copy_trained_layers(net, source)


def test_solver_and_pycaffe_read_weight_paths_through_the_one_copy(tmp_path, monkeypatch):
    import converters.caffemodel as caffemodel
    from converters import pycaffe

    path = tmp_path / "w.caffemodel"
    path.write_bytes(caffemodel_bytes(_net()))
    read = []
    real = caffemodel.read_weight_layers
    monkeypatch.setattr(caffemodel, "read_weight_layers", lambda p: read.append(str(p)) or real(p))
    proto = tmp_path / "net.prototxt"
    proto.write_text(NET)
    net = pycaffe.Net(str(proto), pycaffe.TEST)
    net.copy_from(str(path))
    converters.load_caffe(parse_net(NET), str(path))
    from google.protobuf import text_format

    from converters.solver import Solver
    text = NET.replace('top: "data" input_param { shape { dim: 2 dim: 3 } } }',
                       'top: "data" top: "label" input_param { shape { dim: 2 dim: 3 } shape { dim: 2 } } }')
    text += 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }\n'
    param = text_format.Parse('base_lr: 0.1 lr_policy: "fixed" max_iter: 1 display: 0 snapshot_prefix: "s"',
                              pb.SolverParameter())
    param.net_param.CopyFrom(parse_net(text))
    solver = Solver(param, root=tmp_path, weights="w.caffemodel", progress=False, verbose=False, log_csv=False,
                    plot=False, train_data=lambda: {"data": torch.zeros(2, 3), "label": torch.zeros(2)})
    assert read == [str(path)] * 3
    assert torch.equal(solver.net.caffe_layers["ip"].weight.detach(), net._model.caffe_layers["ip"].weight.detach())
