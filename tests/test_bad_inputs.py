"""Broken files: every one gives a CaffeFormatError naming the file (and the line or layer where
that applies), and ``python -m converters inspect`` reports it as one line with exit code 2."""
import os
import subprocess
import sys
from pathlib import Path

import lmdb
import numpy as np
import pytest

from converters import __main__ as cli
from converters.formats import (CaffeFormatError, convert_imageset, iter_lmdb, lmdb_info,
                                read_mean, read_net, read_solver, read_weight_arrays, read_weights,
                                write_lmdb)
from converters.proto import caffe_pb2 as pb

REPO = Path(__file__).resolve().parent.parent

GOOD_NET = '''name: "tiny"
input: "data"
input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer {
  name: "conv1"
  type: "Convolution"
  bottom: "data"
  top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 }
}
layer {
  name: "relu1"
  type: "ReLU"
  bottom: "conv1"
  top: "conv1"
}
'''
GOOD_SOLVER = 'net: "train_val.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\nmax_iter: 10\n'


def _caffemodel_bytes():
    net = pb.NetParameter(name="tiny")
    layer = net.layer.add(name="conv1", type="Convolution")
    blob = layer.blobs.add()
    blob.shape.dim.extend([4, 3, 3, 3])
    blob.data.extend(np.linspace(-1, 1, 108).tolist())
    bias = layer.blobs.add()
    bias.shape.dim.extend([4])
    bias.data.extend([0.1, 0.2, 0.3, 0.4])
    return net.SerializeToString()


def _blob_bytes(shape, n):
    blob = pb.BlobProto()
    blob.shape.dim.extend(shape)
    blob.data.extend([1.0] * n)
    return blob.SerializeToString()


def _jpeg_bytes():
    import cv2

    return cv2.imencode(".jpg", np.full((8, 8, 3), 128, np.uint8))[1].tobytes()


def _lmdb_with(path, items):
    env = lmdb.open(str(path), map_size=1 << 20)
    with env.begin(write=True) as txn:
        for key, value in items:
            txn.put(key, value)
    env.close()


# Each case: (id, make(tmp_path) -> path, api(path) raising CaffeFormatError, substrings the
# message must contain besides the file name, extra CLI arguments before the file)
def _w(name, data):
    def make(tmp):
        p = tmp / name
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
        return p
    return make


def _mk_not_lmdb(tmp):
    p = tmp / "not_an_lmdb"
    p.mkdir()
    (p / "readme.txt").write_text("images are elsewhere")
    return p


def _mk_lmdb_junk(tmp):
    p = tmp / "junk_lmdb"
    _lmdb_with(p, [(b"00000000_a.jpg", b"\xff\xfe\xfd garbage, not a Datum")])
    return p


def _mk_lmdb_wrong_size(tmp):
    p = tmp / "badsize_lmdb"
    d = pb.Datum(channels=3, height=4, width=4, data=b"\x00" * 10, label=1)
    _lmdb_with(p, [(b"00000000_x.jpg", d.SerializeToString())])
    return p


def _mk_lmdb_empty(tmp):
    p = tmp / "empty_lmdb"
    lmdb.open(str(p), map_size=1 << 20).close()
    return p


def _mk_lmdb_garbage_file(tmp):
    p = tmp / "fake_lmdb"
    p.mkdir()
    (p / "data.mdb").write_bytes(b"this is not an lmdb file" * 200)
    return p


def _mk_lmdb_bad_image(tmp):
    p = tmp / "badimage_lmdb"
    d = pb.Datum(encoded=True, data=b"\x89PNG broken", label=0)
    _lmdb_with(p, [(b"00000000_x.png", d.SerializeToString())])
    return p


def _truncated_caffemodel(tmp):
    p = tmp / "truncated.caffemodel"
    p.write_bytes(_caffemodel_bytes()[:-37])
    return p


def _blob_count_mismatch(tmp):
    net = pb.NetParameter()
    blob = net.layer.add(name="fc7", type="InnerProduct").blobs.add()
    blob.shape.dim.extend([4, 5])
    blob.data.extend([0.0] * 19)
    p = tmp / "mismatch.caffemodel"
    p.write_bytes(net.SerializeToString())
    return p


def _mixed_layers(tmp):
    net = pb.NetParameter()
    net.layer.add(name="a", type="ReLU").blobs.add().data.extend([1.0])
    net.layers.add(name="b", type=pb.V1LayerParameter.RELU)
    p = tmp / "mixed.caffemodel"
    p.write_bytes(net.SerializeToString())
    return p


CASES = [
    ("malformed_prototxt", _w("broken.prototxt", GOOD_NET.replace("  top: \"conv1\"\n  convolution", "  top: \"conv1\"\n  convolution_param {{ num_output: 4 }\n  convolution", 1)),
     read_net, [":9:22:", "Expected identifier"], []),
    ("unknown_field", _w("unknown.prototxt", GOOD_NET.replace('  type: "ReLU"', '  type: "ReLU"\n  relu_slope: 0.1')),
     read_net, [":14:", 'no field named "relu_slope"'], []),
    ("unterminated_block", _w("open.prototxt", GOOD_NET + "layer {\n  name: \"x\"\n"),
     read_net, [":18:", "Expected"], []),
    ("solver_given_as_net", _w("solver.prototxt", GOOD_SOLVER),
     read_net, [":1:", "looks like a solver"], ["--kind", "net"]),
    ("net_given_as_solver", _w("net.prototxt", GOOD_NET),
     read_solver, [":1:", "looks like a net"], ["--kind", "solver"]),
    ("solver_unknown_field", _w("badsolver.prototxt", GOOD_SOLVER + "learning_rate: 3\n"),
     read_solver, [":5:", "learning_rate"], []),
    ("v1_bad_enum", _w("v1.prototxt", 'layers {\n  name: "conv1"\n  type: CONVOLUTON\n}\n'),
     read_net, [":3:", "CONVOLUTON"], []),
    ("input_dim_count", _w("dims.prototxt", 'input: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 227\n'
                           'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n'),
     read_net, ["input_dim", "got 0 / 3"], []),
    ("include_and_exclude", _w("rules.prototxt", GOOD_NET + 'layer {\n  name: "drop"\n  type: "Dropout"\n'
                               '  bottom: "conv1"\n  top: "conv1"\n  include { phase: TRAIN }\n'
                               '  exclude { phase: TEST }\n}\n'),
     read_net, [":18:", "layer 'drop'", "include and exclude"], []),
    ("empty_prototxt", _w("empty.prototxt", ""), read_net, ["empty file"], []),
    ("caffemodel_as_prototxt", _w("weights.prototxt", _caffemodel_bytes()),
     read_net, ["not a text prototxt"], ["--kind", "net"]),
    ("truncated_caffemodel", _truncated_caffemodel, read_weight_arrays, ["truncated"], []),
    ("truncated_caffemodel_protobuf", _truncated_caffemodel, read_weights, ["truncated or corrupt"], []),
    ("random_bytes", _w("random.caffemodel", np.random.default_rng(7).integers(0, 256, 3000, dtype=np.uint8).tobytes()),
     read_weight_arrays, ["caffemodel"], []),
    ("random_bytes_protobuf", _w("random2.caffemodel", np.random.default_rng(7).integers(0, 256, 3000, dtype=np.uint8).tobytes()),
     read_weights, ["caffemodel"], []),
    ("empty_caffemodel", _w("empty.caffemodel", b""), read_weight_arrays, ["empty file"], []),
    ("empty_caffemodel_protobuf", _w("empty2.caffemodel", b""), read_weights, ["empty file"], []),
    ("text_as_caffemodel", _w("text.caffemodel", GOOD_NET), read_weight_arrays,
     ["text prototxt"], []),
    ("text_as_caffemodel_protobuf", _w("text2.caffemodel", GOOD_NET), read_weights,
     ["text prototxt"], []),
    ("jpeg_as_caffemodel", _w("photo.caffemodel", _jpeg_bytes()), read_weight_arrays, ["JPEG"], []),
    ("jpeg_as_caffemodel_protobuf", _w("photo2.caffemodel", _jpeg_bytes()), read_weights, ["JPEG"], []),
    ("blob_count_mismatch", _blob_count_mismatch, read_weight_arrays,
     ["layer 'fc7'", "holds 19 values, expected 20"], []),
    ("mixed_v1_and_new_layers", _mixed_layers, read_weight_arrays, ["mixes V1"], []),
    ("mean_wrong_dims", _w("flat.binaryproto", _blob_bytes([256, 256], 256 * 256)),
     read_mean, ["shape (256, 256)", "expected (1, C, H, W)"], []),
    ("mean_num_2", _w("two.binaryproto", _blob_bytes([2, 3, 4, 4], 96)), read_mean, ["num=2"], []),
    ("mean_count_mismatch", _w("short.binaryproto", _blob_bytes([1, 3, 4, 4], 40)),
     read_mean, ["holds 40 values, expected 48"], []),
    ("mean_is_caffemodel", _w("model.binaryproto", _caffemodel_bytes()), read_mean, ["no data values"], []),
    ("mean_is_jpeg", _w("photo.binaryproto", _jpeg_bytes()), read_mean, ["JPEG"], []),
    ("not_an_lmdb", _mk_not_lmdb, lambda p: list(iter_lmdb(p)), ["no data.mdb"], []),
    ("lmdb_non_datum", _mk_lmdb_junk, lambda p: list(iter_lmdb(p)),
     ["entry '00000000_a.jpg'", "not a caffe Datum"], []),
    ("lmdb_datum_wrong_size", _mk_lmdb_wrong_size, lambda p: list(iter_lmdb(p)),
     ["entry '00000000_x.jpg'", "48 values expected"], []),
    ("lmdb_undecodable_image", _mk_lmdb_bad_image, lambda p: list(iter_lmdb(p)),
     ["entry '00000000_x.png'", "could not be decoded"], []),
    ("lmdb_empty", _mk_lmdb_empty, lmdb_info, ["no entries"], []),
    ("lmdb_garbage_data_mdb", _mk_lmdb_garbage_file, lmdb_info, ["not a valid LMDB"], []),
    ("missing_file", lambda tmp: tmp / "nowhere.caffemodel", read_weight_arrays, ["not found"], []),
]


@pytest.fixture(params=CASES, ids=[c[0] for c in CASES])
def case(request, tmp_path):
    name, make, api, expected, cli_args = request.param
    return make(tmp_path), api, expected, cli_args


def test_python_api_error_names_file_and_place(case):
    path, api, expected, _ = case
    with pytest.raises(CaffeFormatError) as err:
        api(path)
    message = str(err.value)
    assert message.startswith(str(path)), message
    assert "\n" not in message
    for part in expected:
        assert part in message, (part, message)


def test_cli_inspect_one_line_exit_2(case, capsys):
    path, _, expected, cli_args = case
    code = cli.main(["inspect", *cli_args, str(path)])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(path) in lines[0] and "Traceback" not in err
    assert lines[0].startswith("python -m converters inspect: error: ")
    for part in expected:
        assert part in lines[0], (part, lines[0])


# A few of the cases through a real interpreter, as a user runs it.
SUBPROCESS_CASES = ["malformed_prototxt", "truncated_caffemodel", "not_an_lmdb"]


def test_cli_subprocess(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("CONVERTERS_DEBUG", None)
    for name, make, _, expected, cli_args in CASES:
        if name not in SUBPROCESS_CASES:
            continue
        path = make(tmp_path)
        res = subprocess.run([sys.executable, "-m", "converters", "inspect", *cli_args, str(path)],
                             capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
        assert res.returncode == 2, (name, res.stderr)
        assert "Traceback" not in res.stderr and res.stdout == ""
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and str(path) in lines[0], (name, res.stderr)
        for part in expected:
            assert part in lines[0], (name, part, lines[0])


def test_convert_imageset_bad_list(tmp_path):
    (tmp_path / "list.txt").write_text("a.jpg 1\nb.jpg one\n")
    with pytest.raises(CaffeFormatError) as err:
        convert_imageset(tmp_path, tmp_path / "list.txt", tmp_path / "db", progress=False)
    assert str(err.value).startswith(str(tmp_path / "list.txt") + ":2:")
    assert not (tmp_path / "db").exists()
    write_lmdb(tmp_path / "ok", [("k", (0, np.zeros((1, 2, 2), np.uint8)))])
    with pytest.raises(CaffeFormatError, match="already exists"):
        write_lmdb(tmp_path / "ok", [])


def test_debug_shows_the_traceback(tmp_path):
    path = tmp_path / "empty.caffemodel"
    path.write_bytes(b"")
    with pytest.raises(CaffeFormatError):
        cli.main(["--debug", "inspect", str(path)])
