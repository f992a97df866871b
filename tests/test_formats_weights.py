"""Caffemodels and binaryproto means through protobuf (converters.formats.weights)."""
import json

import numpy as np
import pytest

from converters.formats import (CaffeFormatError, array_to_blob, blob_shape, blob_to_array,
                                read_blob, read_mean, read_weights, write_mean, write_weights)
from converters.proto import caffe_pb2 as pb


def test_every_oracle_caffemodel_round_trips(oracle, tmp_path):
    files = sorted(oracle.glob("**/*.caffemodel"))
    assert {"nets/caffenet_age/weights.caffemodel", "nets/adiencenet_age/weights.caffemodel",
            "nets/v1_caffemodel/weights_v1.caffemodel", "solver/sgd_step_itersize2/init.caffemodel"} <= {
        p.relative_to(oracle).as_posix() for p in files}
    for path in files:
        net = read_weights(path)
        out = tmp_path / "rt.caffemodel"
        write_weights(net, out)
        again = read_weights(out)
        assert again == net, path  # field-equal
        assert out.read_bytes() == net.SerializeToString()
        if "v1_caffemodel" not in str(path):
            # Caffe's own files come back byte for byte
            assert out.read_bytes() == path.read_bytes(), path


def test_v1_caffemodel_equals_new_style_weights(oracle):
    v1 = read_weights(oracle / "nets/v1_caffemodel/weights_v1.caffemodel")
    new = read_weights(oracle / "nets/adiencenet_age/weights.caffemodel")
    fixture = json.loads((oracle / "nets/v1_caffemodel/fixture.json").read_text())
    new_layers = {layer.name: layer for layer in new.layer}
    checked = 0
    for layer in v1.layer:
        assert layer.type == new_layers[layer.name].type  # V1 enum -> type string
        for j, blob in enumerate(layer.blobs):
            legacy = fixture["legacy_blob_dims"][layer.name][j]
            # the legacy dims are kept, as Caffe's Blob::FromProto reads them
            assert list(blob_shape(blob)) == legacy["legacy_num_channels_height_width"]
            ours = blob_to_array(blob)
            ref = blob_to_array(new_layers[layer.name].blobs[j])
            assert list(ref.shape) == legacy["caffe_blob_shape_after_upgrade"]
            assert np.array_equal(ours.reshape(ref.shape), ref)  # exact
            checked += 1
    assert checked == 12


def test_write_weights_is_atomic(tmp_path):
    out = tmp_path / "w.caffemodel"
    out.write_bytes(b"old")

    net = pb.NetParameter(name="x")
    layer = net.layer.add(name="a", type="Scale")
    array_to_blob(np.ones(3, np.float32), out=layer.blobs.add())
    write_weights(net, out)
    assert read_weights(out) == net
    with pytest.raises(AttributeError):
        write_weights(object(), out)  # fails mid-way: the old file stays, no temp left
    assert read_weights(out) == net
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.caffemodel"]


def test_mean_round_trip(oracle, tmp_path):
    caffe_file = oracle / "protocol/mean_image/Test_fold_is_0/mean.binaryproto"   # compute_image_mean's output
    mean = read_mean(caffe_file)
    write_mean(mean, tmp_path / "m.binaryproto")
    assert np.array_equal(read_mean(tmp_path / "m.binaryproto"), mean)
    # compute_image_mean's layout: legacy num=1 x C x H x W, no shape
    blob = read_blob(tmp_path / "m.binaryproto")
    assert (blob.num, blob.channels, blob.height, blob.width) == (1, 3, 256, 256)
    assert not blob.HasField("shape")
    assert (tmp_path / "m.binaryproto").read_bytes() == caffe_file.read_bytes()
    # a mean written with a shape (newer tools) reads the same
    shaped = array_to_blob(mean[None])
    (tmp_path / "s.binaryproto").write_bytes(shaped.SerializeToString())
    assert np.array_equal(read_mean(tmp_path / "s.binaryproto"), mean)
    with pytest.raises(ValueError):
        write_mean(mean[0], tmp_path / "bad.binaryproto")


def test_upstream_means_match_caffe(oracle, upstream):
    fixture = json.loads((oracle / "binaryproto/fixture.json").read_text())
    assert len(fixture["entries"]) == 3
    for entry in fixture["entries"]:
        path = upstream / entry["upstream_file"]
        assert path.stat().st_size == entry["bytes"]
        blob = read_blob(path)
        fields = entry["proto_fields"]
        assert (blob.num, blob.channels, blob.height, blob.width) == (
            fields["num"], fields["channels"], fields["height"], fields["width"])
        assert blob.HasField("shape") == fields["has_shape"]
        assert len(blob.data) == fields["len_data"] and len(blob.double_data) == 0
        assert list(blob_shape(blob)) == entry["blobproto_to_array"]["shape"]
        mean = read_mean(path)
        assert mean.dtype == np.float32 and mean.shape == (3, 256, 256)
        per_channel = mean.reshape(3, -1).astype(np.float64).mean(1)
        assert np.allclose(per_channel, entry["per_channel_mean_BGR"], rtol=0, atol=1e-9)
        assert float(mean.min()) == entry["min"] and float(mean.max()) == entry["max"]
        assert abs(float(mean.astype(np.float64).sum()) - entry["sum_float64_of_all_values"]) < 1e-6
        for v in entry["values_at"]:
            c, h, w = v["c_h_w"]
            value = mean[c, h, w]
            assert value == np.float32(v["value"])
            assert value.tobytes()[::-1].hex() == v["float32_hex"]  # exact float32 bits


def test_blob_shape_rules():
    blob = pb.BlobProto()
    blob.data.extend([1.0, 2.0])
    assert blob_shape(blob) == (2,)
    blob.num = 0  # a present legacy field switches to the 4-D legacy dims
    assert blob_shape(blob) == (0, 0, 0, 0)
    blob.shape.dim.extend([1, 2])  # shape wins over legacy dims
    assert blob_shape(blob) == (1, 2)
    with pytest.raises(CaffeFormatError, match="expected 6"):
        bad = pb.BlobProto()
        bad.shape.dim.extend([2, 3])
        bad.data.extend([0.0] * 4)
        blob_to_array(bad)


def test_double_data_is_cast():
    blob = pb.BlobProto()
    blob.shape.dim.extend([2])
    blob.double_data.extend([0.1, 1e-50])
    arr = blob_to_array(blob)
    assert arr.dtype == np.float32 and arr[0] == np.float32(0.1) and arr[1] == 0
