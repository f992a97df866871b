"""The committed schema module: in sync with caffe.proto, and numbered as BVLC Caffe numbers it."""
import importlib.util

import pytest

from converters.proto import caffe_pb2 as pb
from converters.proto import regen


def test_committed_module_is_up_to_date():
    if importlib.util.find_spec("grpc_tools") is None:
        pytest.skip("grpcio-tools (protoc) is not installed: cannot regenerate caffe_pb2.py")
    assert regen.TARGET.read_text() == regen.render(), \
        "caffe_pb2.py is stale: run python -m converters.proto.regen"


def test_package_name_avoids_clashes():
    assert pb.DESCRIPTOR.package == "converters.caffe"
    assert pb.NetParameter.DESCRIPTOR.full_name == "converters.caffe.NetParameter"


# (message, field, number) as in BVLC Caffe's src/caffe/proto/caffe.proto
KNOWN_NUMBERS = [
    (pb.NetParameter, "name", 1), (pb.NetParameter, "layers", 2), (pb.NetParameter, "input", 3),
    (pb.NetParameter, "input_dim", 4), (pb.NetParameter, "state", 6),
    (pb.NetParameter, "input_shape", 8), (pb.NetParameter, "layer", 100),
    (pb.LayerParameter, "name", 1), (pb.LayerParameter, "type", 2), (pb.LayerParameter, "bottom", 3),
    (pb.LayerParameter, "top", 4), (pb.LayerParameter, "param", 6), (pb.LayerParameter, "blobs", 7),
    (pb.LayerParameter, "include", 8), (pb.LayerParameter, "exclude", 9),
    (pb.LayerParameter, "loss_weight", 5), (pb.LayerParameter, "phase", 10),
    (pb.LayerParameter, "transform_param", 100), (pb.LayerParameter, "loss_param", 101),
    (pb.LayerParameter, "convolution_param", 106), (pb.LayerParameter, "data_param", 107),
    (pb.LayerParameter, "inner_product_param", 117), (pb.LayerParameter, "input_param", 143),
    (pb.LayerParameter, "lrn_param", 118), (pb.LayerParameter, "pooling_param", 121),
    (pb.V1LayerParameter, "layer", 1), (pb.V1LayerParameter, "name", 4),
    (pb.V1LayerParameter, "type", 5), (pb.V1LayerParameter, "blobs", 6),
    (pb.V1LayerParameter, "blobs_lr", 7), (pb.V1LayerParameter, "weight_decay", 8),
    (pb.V1LayerParameter, "include", 32), (pb.V1LayerParameter, "param", 1001),
    (pb.PoolingParameter, "round_mode", 13), (pb.PoolingParameter, "pool", 1),
    (pb.BlobProto, "num", 1), (pb.BlobProto, "data", 5), (pb.BlobProto, "diff", 6),
    (pb.BlobProto, "shape", 7), (pb.BlobProto, "double_data", 8), (pb.BlobShape, "dim", 1),
    (pb.Datum, "channels", 1), (pb.Datum, "data", 4), (pb.Datum, "label", 5),
    (pb.Datum, "float_data", 6), (pb.Datum, "encoded", 7),
    (pb.SolverParameter, "net", 24), (pb.SolverParameter, "base_lr", 5),
    (pb.SolverParameter, "iter_size", 36), (pb.SolverParameter, "type", 40),
    (pb.ParamSpec, "lr_mult", 3), (pb.ParamSpec, "decay_mult", 4),
]


@pytest.mark.parametrize("message,name,number", KNOWN_NUMBERS,
                         ids=[f"{m.DESCRIPTOR.name}.{n}" for m, n, _ in KNOWN_NUMBERS])
def test_field_numbers_match_caffe(message, name, number):
    assert message.DESCRIPTOR.fields_by_name[name].number == number


def test_enum_values_match_caffe():
    lt = pb.V1LayerParameter.LayerType
    assert lt.Value("CONVOLUTION") == 4 and lt.Value("INNER_PRODUCT") == 14
    assert lt.Value("SOFTMAX_LOSS") == 21 and lt.Value("ABSVAL") == 35
    assert pb.TRAIN == 0 and pb.TEST == 1
    assert pb.PoolingParameter.PoolMethod.Value("AVE") == 1
    assert pb.PoolingParameter.RoundMode.Value("CEIL") == 0


def test_packed_fields_as_caffe():
    # Caffe declares BlobProto.data/diff/double_* and BlobShape.dim packed; Datum.float_data not
    for msg, name in ((pb.BlobProto, "data"), (pb.BlobProto, "diff"), (pb.BlobProto, "double_data"),
                      (pb.BlobProto, "double_diff"), (pb.BlobShape, "dim")):
        blob = msg()
        getattr(blob, name).extend([1, 2])
        raw = blob.SerializeToString()
        number = msg.DESCRIPTOR.fields_by_name[name].number
        assert raw[0] == (number << 3) | 2 and raw.count(raw[:1]) == 1  # one length-delimited run
    d = pb.Datum()
    d.float_data.extend([1.0, 2.0])
    assert d.SerializeToString() == b"\x35\x00\x00\x80\x3f\x35\x00\x00\x00\x40"
