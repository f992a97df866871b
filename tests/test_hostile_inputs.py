"""Regression tests for the fuzzer's findings and a new user's rough edges (issue 13).

One test per class of failure, each with a minimised input built here: the promise is a clear
message naming the file (and layer), exit code 2 from the CLIs, no traceback, no signal, no hang
and no huge allocation (see docs/robustness.md).
"""
import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import converters
from converters import __main__ as cli
from converters.formats import (CaffeFormatError, iter_lmdb, lmdb_info, read_net, read_weight_layers,
                                read_weights, write_lmdb)
from converters.layers import ConversionError
from converters.proto import caffe_pb2 as pb

REPO = Path(__file__).resolve().parent.parent
HEAD = 'name: "t"\ninput: "data"\ninput_shape { dim: 1 dim: 3 dim: 6 dim: 6 }\n'


def run_cli(argv, **kw):
    """``python -m converters ...`` in a fresh interpreter (a signal there cannot kill pytest)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "converters", *map(str, argv)], capture_output=True,
                          text=True, env=env, cwd=str(REPO), timeout=300, **kw)


def one_line_error(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert str(n) in lines[0], lines[0]
    return lines[0]


def in_process(capsys, argv):
    rc = cli.main([str(a) for a in argv])
    return rc, capsys.readouterr()


# ---------------------------------------------------------------------------- LMDB: SIGBUS
def _lmdb(tmp_path):
    db = tmp_path / "db_lmdb"
    rng = np.random.default_rng(0)
    write_lmdb(db, [(f"{i:08d}_x.png", (i, rng.integers(0, 255, (3, 40, 40), dtype=np.uint8)))
                    for i in range(6)])
    return db


def test_truncated_lmdb_is_refused_before_it_is_mapped(tmp_path):
    db = _lmdb(tmp_path)
    data = (db / "data.mdb").read_bytes()
    (db / "data.mdb").write_bytes(data[: len(data) // 2])
    with pytest.raises(CaffeFormatError, match="truncated LMDB") as err:
        list(iter_lmdb(db))
    assert str(db) in str(err.value)
    # the CLI used to die of SIGBUS (exit 135, no message)
    one_line_error(run_cli(["inspect", db]), str(db), "truncated LMDB", "bytes")


@pytest.mark.parametrize("where", ["node offset", "value size"])
def test_bit_flipped_lmdb_page_is_refused_not_mapped(tmp_path, where):
    import struct
    db = tmp_path / "small_lmdb"
    write_lmdb(db, [(f"{i:08d}_x", pb.Datum(channels=1, height=2, width=2, data=bytes(4), label=i))
                    for i in range(3)])
    raw = bytearray((db / "data.mdb").read_bytes())
    psize = struct.unpack_from("<I", raw, 40)[0]
    root = struct.unpack_from("<Q", raw, 128)[0]            # meta page 0: the main tree's root
    meta1_txn = struct.unpack_from("<Q", raw, psize + 144)[0]
    if meta1_txn > struct.unpack_from("<Q", raw, 144)[0]:
        root = struct.unpack_from("<Q", raw, psize + 128)[0]
    page = root * psize
    node = struct.unpack_from("<H", raw, page + 18)[0]      # offset of node 1
    if where == "node offset":
        struct.pack_into("<H", raw, page + 18, 0xFFF0)
    else:
        struct.pack_into("<H", raw, page + node + 2, 0x7FFF)   # data size hi word: ~2 GB inline
    (db / "data.mdb").write_bytes(bytes(raw))
    with pytest.raises(CaffeFormatError, match="corrupt LMDB"):
        lmdb_info(db)
    one_line_error(run_cli(["inspect", db]), str(db), "corrupt LMDB")


# ---------------------------------------------------------------------------- LRN: hang
def _net(tmp_path, layers, head=HEAD, name="net.prototxt"):
    p = tmp_path / name
    p.write_text(head + layers)
    return p


def test_lrn_with_absurd_local_size(tmp_path):
    across = _net(tmp_path, 'layer { name: "n" type: "LRN" bottom: "data" top: "n" '
                            'lrn_param { local_size: 4294967295 } }\n')
    with pytest.raises(ConversionError, match="local_size 4294967295 is too large") as err:
        converters.load_caffe(str(across))
    assert str(across) in str(err.value) and "'n'" in str(err.value)
    # a window wider than the data: exact, and quick (the offsets past C - 1 hit zero padding)
    for region, size in (("ACROSS_CHANNELS", 1001), ("WITHIN_CHANNEL", 2**31 - 1)):
        p = _net(tmp_path, f'layer {{ name: "n" type: "LRN" bottom: "data" top: "n" lrn_param '
                           f'{{ local_size: {size} alpha: 3 beta: 0.75 norm_region: {region} }} }}\n',
                 name=f"{region}.prototxt")
        model = converters.load_caffe(str(p))
        x = torch.randn(1, 3, 6, 6)
        sq = (x * x).double()
        if region == "ACROSS_CHANNELS":   # every channel sees all three; k = 1
            scale = 1 + 3 / size * sq.sum(1, keepdim=True)
        else:                             # every pixel sees the whole image; shift 1, divisor n^2
            scale = 1 + 3 / float(size) ** 2 * sq.sum((2, 3), keepdim=True)
        want = x.double() * scale ** -0.75
        torch.testing.assert_close(model(x).double(), want, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- blob dims
def _caffemodel_with_dims(dims, n_values, legacy=False):
    net = pb.NetParameter()
    blob = net.layer.add(name="fc", type="InnerProduct").blobs.add()
    if legacy:
        blob.num, blob.channels, blob.height, blob.width = dims
    else:
        blob.shape.dim.extend(dims)
    blob.data.extend([0.5] * n_values)
    return net.SerializeToString()


@pytest.mark.parametrize("dims,n,why", [
    ((-1, 2), 2, "negative dimension"),
    ((-2, -1), 2, "negative dimension"),
    ((2**32, 2**32), 0, "INT_MAX"),          # the int64 product wraps to 0: 0 values "match"
    ((65536, 65536), 0, "INT_MAX"),
])
def test_blob_dims_negative_or_overflowing(tmp_path, dims, n, why):
    p = tmp_path / "dims.caffemodel"
    p.write_bytes(_caffemodel_with_dims(dims, n))
    for reader in (read_weight_layers, read_weights):
        with pytest.raises(CaffeFormatError, match=why) as err:
            layers = reader(p)
            if reader is read_weights:
                from converters.formats import blob_to_array
                blob_to_array(layers.layer[0].blobs[0], p, "fc")
        assert str(err.value).startswith(str(p))


def test_nested_groups_and_non_utf8_names(tmp_path):
    nested = tmp_path / "nested.caffemodel"
    nested.write_bytes(b"\x0b" * 1000)       # 1,000 nested group starts
    with pytest.raises(CaffeFormatError, match="nested"):
        read_weight_layers(nested)
    one_line_error(run_cli(["inspect", nested]), str(nested))
    net = pb.NetParameter()
    layer = net.layers.add(name="conv1", type=pb.V1LayerParameter.CONVOLUTION)
    layer.blobs.add().data.extend([1.0, 2.0])
    bad = tmp_path / "v1.caffemodel"
    bad.write_bytes(net.SerializeToString().replace(b"conv1", b"conv\xff"))
    with pytest.raises(CaffeFormatError, match="not UTF-8") as err:
        read_weights(bad)
    assert str(bad) in str(err.value)


# ---------------------------------------------------------------------------- net-level errors
@pytest.mark.parametrize("layers,needles", [
    ('layer { name: "c" type: "Convolution" bottom: "nope" top: "c" convolution_param { num_output: 2 '
     'kernel_size: 1 } }\n', ["'c'", "unknown bottom blob 'nope'"]),
    ('layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { '
     'num_output: 2 weight_filler { type: "no_such_filler" } } }\n', ["'fc'", "unknown filler type 'no_such_filler'"]),
    ('layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { '
     'num_output: 2147483648 } }\n', ["'fc'", "INT_MAX", "GiB"]),
    ('layer { name: "t" type: "Tile" bottom: "data" top: "t" tile_param { tiles: 2147483647 } }\n',
     ["'t'", "INT_MAX"]),
    ('layer { name: "r" type: "Frobnicate" bottom: "data" top: "r" }\n', ["'r'", "Frobnicate"]),
])
def test_net_errors_name_the_prototxt_and_the_layer(tmp_path, layers, needles):
    p = _net(tmp_path, layers)
    with pytest.raises(ConversionError) as err:
        converters.load_caffe(str(p))
    assert str(err.value).startswith(str(p) + ": ")
    for n in needles:
        assert n in str(err.value)
    with pytest.raises(ConversionError, match=str(p)):
        converters.infer_shapes(str(p))
    one_line_error(run_cli(["convert", p, "-o", tmp_path / "m.pt"]), str(p), *needles)


def test_negative_input_dims_are_refused(tmp_path):
    p = _net(tmp_path, "", head=HEAD.replace("dim: 6 dim: 6", "dim: -6 dim: 6"))
    with pytest.raises(ConversionError, match=r"negative dimension in shape \(1, 3, -6, 6\)"):
        converters.load_caffe(str(p))


def test_blob_too_big_for_the_memory_left(monkeypatch, tmp_path):
    from converters.layers import base
    monkeypatch.setattr(base, "available_memory", lambda: 1 << 30)
    p = _net(tmp_path, 'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
                       'inner_product_param { num_output: 3000000 } }\n')   # 3e6 x 108 floats = 1.2 GiB
    with pytest.raises(ConversionError, match=r"needs 1\.2 GiB, more than the 1\.0 GiB") as err:
        converters.load_caffe(str(p))
    assert str(p) in str(err.value)
    converters.infer_shapes(str(p))      # shapes alone allocate nothing: fine


def test_power_with_negative_power_and_zero_scale_is_inf(tmp_path):
    # Caffe: pow(shift, power) in float; 0^-1 = inf (Python's 0.0 ** -1 raises ZeroDivisionError)
    p = _net(tmp_path, 'layer { name: "p" type: "Power" bottom: "data" top: "p" '
                       'power_param { power: -1 scale: 0 } }\n')
    out = converters.load_caffe(str(p))(torch.ones(1, 3, 6, 6))
    assert torch.isinf(out).all() and (out > 0).all()


# ---------------------------------------------------------------------------- images
def _png_header(width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + \
        chunk(b"IEND", b"")


def test_huge_encoded_datum_is_refused_from_its_header(tmp_path):
    db = tmp_path / "huge_lmdb"
    write_lmdb(db, [("00000000_a.png", pb.Datum(encoded=True, label=0, data=_png_header(30000, 30000)))])
    with pytest.raises(CaffeFormatError, match="30000 x 30000 = 900,000,000 pixels") as err:
        lmdb_info(db)
    assert str(db) in str(err.value)


def test_image_header_sizes():
    import cv2
    from converters.formats.image_header import header_size
    for ext in (".png", ".jpg", ".bmp"):
        data = cv2.imencode(ext, np.zeros((37, 53, 3), np.uint8))[1].tobytes()
        assert header_size(data) == (53, 37), ext
    assert header_size(b"not an image at all") is None


# ---------------------------------------------------------------------------- solver
def test_solver_and_lr_policy_errors_are_user_errors(tmp_path):
    from converters.solver.lr_policy import get_learning_rate
    from converters.solver.solver import Solver, SolverError
    bad = pb.SolverParameter(lr_policy="step", stepsize=0, base_lr=0.1)
    with pytest.raises(ValueError) as err:
        get_learning_rate(bad, 0)
    assert type(err.value) is not ValueError     # the CLI prints subclasses as one line, exit 2
    p = tmp_path / "solver.prototxt"
    p.write_text('net: "x.prototxt"\nbase_lr: 0.1\nlr_policy: "step"\nmax_iter: 10\n')
    with pytest.raises(SolverError, match="stepsize > 0") as err:
        Solver(str(p), progress=False, verbose=False, log_csv=False, plot=False)
    assert str(err.value).startswith(str(p))
    p.write_text('net: "x.prototxt"\nbase_lr: 0.1\nlr_policy: "wobbly"\nmax_iter: 10\n')
    with pytest.raises(SolverError, match="unknown lr_policy 'wobbly'"):
        Solver(str(p), progress=False, verbose=False, log_csv=False, plot=False)


# ---------------------------------------------------------------------------- prototxt text
def test_long_blank_runs_are_squeezed_outside_strings(tmp_path):
    from converters.formats.prototxt import _squeeze_blanks
    blanks = " " * 2_000_000
    p = tmp_path / "blank.prototxt"
    p.write_text(HEAD.replace("input:", blanks + "input:") + 'layer { name: "a' + " " * 300 + 'b" '
                 'type: "ReLU" bottom: "data" top: "data" }' + blanks + "\n")
    net = read_net(p)
    assert net.layer[-1].name == "a" + " " * 300 + "b"     # blanks inside a string are data
    assert _squeeze_blanks("x:" + " " * 300 + "1 # c" + " " * 300) == "x: 1 # c" + " " * 300


# ---------------------------------------------------------------------------- output paths and modes
def test_output_into_a_folder_and_file_modes(tmp_path, capsys):
    p = _net(tmp_path, "")
    folder = tmp_path / "empty_dir"
    folder.mkdir()
    rc, cap = in_process(capsys, ["convert", p, "-o", folder])
    assert rc == 2 and "is a folder" in cap.err and ".tmp" not in cap.err
    assert list(folder.iterdir()) == [] and not list(tmp_path.glob("*.tmp"))
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    rc, cap = in_process(capsys, ["convert", p, "-o", blocker / "m.pt"])
    assert rc == 2 and "is a file, not a folder" in cap.err
    old = os.umask(0o022)
    try:
        out = tmp_path / "m.pt"
        assert in_process(capsys, ["convert", p, "-o", out, "--caffemodel-out", tmp_path / "m.caffemodel", "-q"])[0] == 0
        db = _lmdb(tmp_path)
        for f in (out, tmp_path / "m.caffemodel", db / "data.mdb"):
            assert (f.stat().st_mode & 0o777) == 0o644, f
        assert (db.stat().st_mode & 0o777) == 0o755
    finally:
        os.umask(old)


def test_export_caffemodel_says_what_the_file_is(tmp_path, capsys):
    import cv2
    model = tmp_path / "w.caffemodel"
    model.write_bytes(_caffemodel_with_dims((2,), 2))
    jpg = tmp_path / "photo.jpg"
    jpg.write_bytes(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    for f, what in ((model, "a Caffe caffemodel"), (jpg, "a JPEG image")):
        rc, cap = in_process(capsys, ["export-caffemodel", f, "-o", tmp_path / "out.caffemodel"])
        assert rc == 2 and what in cap.err and "model.pt" in cap.err
        assert "weights_only" not in cap.err and len(cap.err) < 400


def test_inspect_prints_the_shortest_float32_decimal(tmp_path, capsys):
    p = tmp_path / "solver.prototxt"
    p.write_text('net: "a"\nbase_lr: 0.001\nweight_decay: 0.0005\ndelta: 1e-08\nlr_policy: "fixed"\n')
    rc, cap = in_process(capsys, ["inspect", p])
    assert rc == 0
    assert "base_lr              0.001\n" in cap.out and "0.0005\n" in cap.out and "1e-08" in cap.out
    assert "0.00100000005" not in cap.out


# ---------------------------------------------------------------------------- pycaffe
def test_pycaffe_load_image_takes_file_objects_and_missing_script(tmp_path):
    import cv2
    from converters.pycaffe.io import load_image
    img = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    cv2.imwrite(str(path), img)
    from_path = load_image(str(path))
    assert from_path.shape == (5, 7, 3)
    np.testing.assert_array_equal(load_image(io.BytesIO(path.read_bytes())), from_path)
    with open(path, "rb") as fh:
        np.testing.assert_array_equal(load_image(fh), from_path)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "converters.pycaffe", str(tmp_path / "missing.py")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "missing.py" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "converters.pycaffe"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 2 and "``" not in proc.stdout + proc.stderr


# ---------------------------------------------------------------------------- reproduce
def test_predict_labels_default_to_class_n_and_accept_inline_names():
    from reproduce import predict
    assert predict.read_labels(None, 2, guess=False) == (("class 0", "class 1"), None)
    assert predict.read_labels("cat,dog", 2, guess=False) == (("cat", "dog"), None)
    assert predict.read_labels(None, 2) == (("male", "female"), "gender")       # a paper cell
    with pytest.raises(predict.PredictError, match="3 names"):
        predict.read_labels("a,b,c", 2)


def test_truncated_jpeg_is_flagged_and_libjpeg_kept_quiet(tmp_path, capfd):
    import cv2
    from reproduce import predict
    img = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    data = cv2.imencode(".jpg", img)[1].tobytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.warns(predict.ImageWarning, match="truncated JPEG"):
        out = predict.read_image(cut)
    assert out.shape == (64, 64, 3)
    assert "Premature end of JPEG" not in capfd.readouterr().err
    good = tmp_path / "good.jpg"
    good.write_bytes(data)
    assert not predict._jpeg_truncated(good) and predict._jpeg_truncated(cut)


def test_unreadable_photo_in_a_folder_becomes_a_row(tmp_path):
    import cv2
    from reproduce import predict

    class Fake:
        resize = (8, 8)

        def probabilities(self, faces):
            return np.tile(np.array([0.25, 0.75], np.float32), (len(faces), 1))

    good = tmp_path / "a.png"
    cv2.imwrite(str(good), np.zeros((8, 8, 3), np.uint8))
    bad = tmp_path / "b.png"
    bad.write_bytes(b"not a png at all")
    paths = predict.list_images([tmp_path])        # a folder: the bad file does not abort the list
    assert paths == [good, bad]
    results = list(predict.predict_images(Fake(), paths))
    assert results[0].error is None and results[1].error and "b.png" in results[1].error
    rec = predict.error_record(results[1], str(bad))
    csv_path = tmp_path / "p.csv"
    predict.write_csv(csv_path, [rec], ("x", "y"))
    assert csv_path.read_text().splitlines()[1].endswith(results[1].error)


def test_bad_out_is_refused_before_any_work(tmp_path, capsys):
    from reproduce import run
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert run.main(["--table", "2", "--row", "i", "--col", "C", "--out", str(blocker)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert run.main(["--predict", str(tmp_path), "--deploy", "d", "--caffemodel", "c",
                     "--out", str(blocker)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_demo_out_option_and_reruns(tmp_path, monkeypatch, capsys):
    from reproduce import demo, run
    seen = {}

    def fake_run_demo(out, **kw):
        seen["out"] = out
        raise demo.DemoError("stop here")
    monkeypatch.setattr(demo, "run_demo", fake_run_demo)
    assert run.main(["--demo", "--out", str(tmp_path / "d")]) == 2
    assert seen["out"] == str(tmp_path / "d")
    assert run.main(["--demo", "--out", str(tmp_path / "d"), "--demo-out", str(tmp_path / "e")]) == 2
    assert "disagree" in capsys.readouterr().err
    # a rerun clears the earlier run's files (stale folds), a foreign folder is refused
    used = tmp_path / "used"
    (used / "predictions").mkdir(parents=True)
    (used / "predictions" / "age_net_definitions_fold4.csv").write_text("stale")
    (used / "results.md").write_text("old")
    with pytest.raises(demo.DemoError, match="not empty"):
        demo._clear_previous(used)
    (used / demo._MARKER).write_text("")
    (used / "mine.txt").write_text("keep")
    assert demo._clear_previous(used) == ["predictions", "results.md"]
    assert sorted(p.name for p in used.iterdir()) == [demo._MARKER, "mine.txt"]
