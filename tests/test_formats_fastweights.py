"""The wire-format caffemodel reader/writer (converters.formats.weights' read_weight_layers /
write_weight_arrays, blobs from converters.formats.blobs) against protobuf."""
from pathlib import Path

import numpy as np
import pytest

from converters.formats import (CaffeFormatError, array_to_blob, blob_to_array, read_weight_arrays,
                                read_weight_layers, read_weights, write_weight_arrays)
from converters.formats import weights, wire
from converters.formats.fastweights import encode_blob
from converters.proto import caffe_pb2 as pb


def oracle_caffemodels(oracle):
    files = sorted(oracle.glob("**/*.caffemodel"))
    assert {"nets/caffenet_age/weights.caffemodel", "nets/adiencenet_age/weights.caffemodel",
            "nets/v1_caffemodel/weights_v1.caffemodel", "solver/sgd_step_itersize2/init.caffemodel"} <= {
        p.relative_to(oracle).as_posix() for p in files}
    return files


def reference_arrays(path):
    net = read_weights(path)
    return net, {layer.name: [blob_to_array(b) for b in layer.blobs] for layer in net.layer}


def assert_same_arrays(got, ref):
    assert list(got) == list(ref)
    for name in ref:
        assert len(got[name]) == len(ref[name]), name
        for a, b in zip(got[name], ref[name]):
            assert a.dtype == np.float32 and a.shape == b.shape, name
            assert np.array_equal(a, b), name


@pytest.mark.parametrize("small", [0, 1 << 40], ids=["streamed", "in-memory"])
def test_equals_protobuf_for_every_oracle_caffemodel(oracle, monkeypatch, small):
    # small=0: every layer/blob is walked field by field on the file; huge: decoded in memory
    monkeypatch.setattr(weights, "_SMALL", small)
    for path in oracle_caffemodels(oracle):
        net, ref = reference_arrays(path)
        got = read_weight_arrays(path)
        assert_same_arrays(got, ref)
        assert got.types == {layer.name: layer.type for layer in net.layer}


def test_v1_caffemodel_types_and_legacy_dims(oracle):
    got = read_weight_arrays(oracle / "nets/v1_caffemodel/weights_v1.caffemodel")
    assert got.types["conv1"] == "Convolution" and got.types["fc6"] == "InnerProduct"
    assert got.types["relu1"] == "ReLU" and got["relu1"] == []
    # V1 blobs keep Caffe's legacy 4-D num/channels/height/width dims (blob_shape rule)
    assert got["fc6"][0].shape == (1, 1, 64, 2352) and got["fc6"][1].shape == (1, 1, 1, 64)


def _serialize_layer(name, typ, blob_bytes):
    layer = pb.LayerParameter(name=name, type=typ)
    for raw in blob_bytes:
        layer.blobs.add().ParseFromString(raw)
    net = pb.NetParameter()
    net.layer.append(layer)
    return net


def _key(field, wiretype):
    return wire.field_key(field, wiretype)


def test_non_packed_repeated_floats_and_dims(tmp_path):
    # Legal protobuf that Caffe never writes: data as one (tag, float) pair per value, dims
    # as individual varints, and two packed chunks that must be concatenated.
    values = np.arange(12, dtype=np.float32) * 0.5 - 2
    body = b"".join(_key(1, 0) + wire.encode_varint(d) for d in (3, 4))
    blob = _key(7, 2) + wire.encode_varint(len(body)) + body
    blob += b"".join(_key(5, 5) + v.tobytes() for v in values[:7])
    blob += _key(5, 2) + wire.encode_varint(8) + values[7:9].tobytes()
    blob += b"".join(_key(5, 5) + v.tobytes() for v in values[9:])
    net = _serialize_layer("ip", "InnerProduct", [bytes(blob)])
    path = tmp_path / "unpacked.caffemodel"
    # write the message in its non-packed form: build the bytes by hand
    layer_body = (_key(1, 2) + b"\x02ip" + _key(2, 2) + b"\x0cInnerProduct"
                  + _key(7, 2) + wire.encode_varint(len(blob)) + blob)
    path.write_bytes(_key(100, 2) + wire.encode_varint(len(layer_body)) + layer_body)
    ref = read_weights(path)
    assert ref == net  # protobuf reads the same message
    got = read_weight_arrays(path)
    assert got["ip"][0].shape == (3, 4)
    assert np.array_equal(got["ip"][0].ravel(), values)
    assert np.array_equal(got["ip"][0], blob_to_array(ref.layer[0].blobs[0]))


def test_double_data_and_legacy_dims(tmp_path):
    blob = pb.BlobProto(num=1, channels=2, height=1, width=3)
    blob.double_data.extend([1.5, -2.25, 3.0, 1e-3, 7.0, 8.0])
    net = pb.NetParameter()
    layer = net.layer.add(name="b", type="Bias")
    layer.blobs.append(blob)
    single = pb.BlobProto()
    single.data.extend([4.0])  # no shape, no legacy dims -> shape (1,)
    layer.blobs.append(single)
    empty = pb.BlobProto()
    empty.shape.SetInParent()  # shape {} -> a scalar: one value expected
    empty.data.extend([9.0])
    layer.blobs.append(empty)
    path = tmp_path / "d.caffemodel"
    path.write_bytes(net.SerializeToString())
    got = read_weight_arrays(path)["b"]
    ref = [blob_to_array(b) for b in read_weights(path).layer[0].blobs]
    assert [a.shape for a in got] == [(1, 2, 1, 3), (1,), ()]
    for a, b in zip(got, ref):
        assert a.shape == b.shape and np.array_equal(a, b) and a.dtype == np.float32


def test_duplicate_names_later_layer_wins_and_layer_list_keeps_both(tmp_path):
    a, b = np.ones((2, 2), np.float32), np.full((3,), 2, np.float32)
    write_weight_arrays([("x", "Scale", [a]), ("x", "Scale", [b])], tmp_path / "dup.caffemodel")
    assert np.array_equal(read_weight_arrays(tmp_path / "dup.caffemodel")["x"][0], b)
    assert len(read_weight_layers(tmp_path / "dup.caffemodel")) == 2


def test_writer_bytes_equal_protobuf_serialization(tmp_path):
    rng = np.random.default_rng(0)
    layers = [("conv1", "Convolution", [rng.standard_normal((4, 3, 2, 2), dtype=np.float32),
                                         rng.standard_normal(4, dtype=np.float32)]),
              ("fc", "InnerProduct", [rng.standard_normal((5, 16), dtype=np.float32)]),
              ("relu", "ReLU", []), ("empty", "Scale", [np.zeros((0,), np.float32)])]
    for legacy in (False, True):
        path = tmp_path / f"w{legacy}.caffemodel"
        n = write_weight_arrays(layers, path, net_name="net", legacy=legacy)
        raw = path.read_bytes()
        assert n == len(raw)
        net = pb.NetParameter(name="net")
        for name, typ, blobs in layers:
            layer = net.layer.add(name=name, type=typ)
            for arr in blobs:
                array_to_blob(arr, legacy=legacy, out=layer.blobs.add())
        assert raw == net.SerializeToString()
        got = read_weight_arrays(path)
        for name, _, blobs in layers:
            for a, b in zip(got[name], blobs):
                want = b.reshape((1,) * (4 - b.ndim) + b.shape) if legacy else b
                assert np.array_equal(a, want) and a.shape == want.shape


def test_oracle_round_trip_through_fast_writer(oracle, tmp_path):
    for path in oracle_caffemodels(oracle)[:4]:
        layers = read_weight_layers(path)
        out = tmp_path / path.name
        write_weight_arrays(layers, out)
        assert_same_arrays(read_weight_arrays(out), read_weight_arrays(path))


def test_array_to_blob_and_blob_to_array_round_trip_large_arrays():
    # 20M floats (their speed: benchmarks/blob_codec.py)
    arr = np.random.default_rng(1).standard_normal(20_000_000, dtype=np.float32).reshape(5000, 4000)
    blob = array_to_blob(arr)
    back = blob_to_array(blob)
    assert back.shape == (5000, 4000) and np.array_equal(back, arr)
    assert tuple(blob.shape.dim) == (5000, 4000) and len(blob.data) == arr.size
    legacy = array_to_blob(arr[:3, :5], legacy=True)
    assert (legacy.num, legacy.channels, legacy.height, legacy.width) == (1, 1, 3, 5)
    assert not legacy.HasField("shape")
    assert np.array_equal(blob_to_array(legacy), arr[:3, :5][None, None])


def test_encode_blob_matches_protobuf():
    arr = np.arange(6, dtype=np.float64).reshape(2, 3)
    blob = pb.BlobProto()
    blob.shape.dim.extend([2, 3])
    blob.data.extend(arr.ravel().tolist())
    assert bytes(encode_blob(arr)) == blob.SerializeToString()


def test_every_truncation_is_an_error_naming_the_file(oracle, tmp_path, monkeypatch):
    src = (oracle / "solver/sgd_step_itersize2/init.caffemodel").read_bytes()
    path = tmp_path / "cut.caffemodel"
    for small in (0, 1 << 40):
        monkeypatch.setattr(weights, "_SMALL", small)
        for cut in sorted(set(np.linspace(1, len(src) - 1, 40).astype(int))):
            path.write_bytes(src[:cut])
            with pytest.raises(CaffeFormatError) as err:
                read_weight_arrays(path)
            assert str(err.value).startswith(str(path))


def test_garbage_is_an_error(tmp_path):
    rng = np.random.default_rng(5)
    path = tmp_path / "junk.caffemodel"
    for i in range(30):
        path.write_bytes(rng.integers(0, 256, size=int(rng.integers(1, 4000)), dtype=np.uint8).tobytes())
        with pytest.raises(CaffeFormatError):
            read_weight_arrays(path)


def test_corrupt_blob_names_the_layer(tmp_path):
    blob = pb.BlobProto()
    blob.shape.dim.extend([2, 3])
    blob.data.extend([1.0] * 5)
    net = pb.NetParameter()
    net.layer.add(name="conv9", type="Convolution").blobs.append(blob)
    path = tmp_path / "bad.caffemodel"
    path.write_bytes(net.SerializeToString())
    with pytest.raises(CaffeFormatError, match=r"layer 'conv9'.*holds 5 values, expected 6"):
        read_weight_arrays(path)


def test_big_layer_is_read_with_bounded_memory(tmp_path):
    # a 64 MB blob: streamed into one preallocated array (tracemalloc sees ~1x the data)
    import tracemalloc

    arr = np.random.default_rng(2).standard_normal((4096, 4096), dtype=np.float32)
    path = tmp_path / "big.caffemodel"
    write_weight_arrays([("fc", "InnerProduct", [arr])], path)
    del arr
    tracemalloc.start()
    got = read_weight_arrays(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    size = Path(path).stat().st_size
    assert got["fc"][0].shape == (4096, 4096)
    assert peak < 1.1 * size, (peak, size)
