"""Datum LMDBs, convert_imageset and compute_image_mean against real Caffe (oracle transform/)."""
import json

import lmdb
import numpy as np
import pytest

from converters.formats import (CaffeFormatError, shared_env, array_to_datum, compute_image_mean,
                                convert_imageset, iter_lmdb, lmdb_info, read_imageset_list,
                                read_mean, write_lmdb, write_mean)
from converters.proto import caffe_pb2 as pb
from conftest import need


@pytest.fixture(scope="module")
def transform(oracle):
    folder = oracle / "transform"
    need(oracle, "transform/lmdb_arrays.npz", "transform/images", "transform/lmdb_raw", "transform/lmdb_png")
    ref = np.load(folder / "lmdb_arrays.npz")
    fixture = json.loads((folder / "fixture.json").read_text())
    return folder, {k: ref[k] for k in ref.files}, fixture


def _read_all(path, **kw):
    items = list(iter_lmdb(path, **kw))
    keys = [k for k, _, _ in items]
    labels = np.array([lab for _, lab, _ in items])
    return keys, labels, np.stack([a for _, _, a in items])


def _raw_values(path):
    # through the package's registry: python-lmdb refuses a second open of the same folder
    with shared_env(path).begin() as txn:
        return list(txn.cursor())


@pytest.mark.parametrize("db", ["lmdb_raw", "lmdb_png"])
def test_parse_caffe_lmdbs_exactly(transform, db):
    folder, ref, fixture = transform
    keys, labels, arrays = _read_all(folder / db)
    assert keys == list(ref["keys"]) == fixture["lmdb"]["keys"]
    assert np.array_equal(labels, ref["labels"])
    assert arrays.dtype == np.uint8 and arrays.shape == (8, 3, 256, 256)
    assert np.array_equal(arrays, ref["arrays"])


def test_lmdb_info(transform):
    folder, ref, _ = transform
    for db, encoded in (("lmdb_raw", False), ("lmdb_png", True)):
        info = lmdb_info(folder / db)
        assert info.count == 8 and info.shape == (3, 256, 256) and info.encoded is encoded
        labels, counts = np.unique(ref["labels"], return_counts=True)
        assert info.labels == dict(zip(labels.tolist(), counts.tolist()))
        assert info.first_key == ref["keys"][0] and info.last_key == ref["keys"][-1]
        assert "entries      8" in info.describe()


def test_read_mean_equals_caffe(transform):
    folder, _, fixture = transform
    mean = read_mean(folder / "mean.binaryproto")
    assert mean.dtype == np.float32 and mean.shape == (3, 256, 256)
    assert np.array_equal(mean, np.load(folder / "mean.npy"))
    per_channel = mean.reshape(3, -1).astype(np.float64).mean(1)
    assert np.allclose(per_channel, fixture["mean"]["per_channel_mean_BGR"], rtol=0, atol=1e-9)


@pytest.mark.parametrize("db", ["lmdb_raw", "lmdb_png"])
def test_compute_image_mean_matches_caffe(transform, tmp_path, db):
    # compute_image_mean: float32 running sum, divided by the count in float32
    folder, _, _ = transform
    caffe_mean = read_mean(folder / "mean.binaryproto")
    ours = compute_image_mean(folder / db, tmp_path / "mean.binaryproto")
    assert ours.dtype == np.float32 and ours.shape == caffe_mean.shape
    diff = float(np.abs(ours - caffe_mean).max())
    assert diff <= 1e-4
    assert diff == 0.0  # bit-exact in fact
    if db == "lmdb_raw":
        # and the file is byte-identical to the tool's output (legacy 1x3x256x256 dims)
        assert (tmp_path / "mean.binaryproto").read_bytes() == (folder / "mean.binaryproto").read_bytes()


def test_test_phase_transform_from_our_readers(transform):
    # Data layer, TEST: crop 227 at h_off = w_off = (256 - 227) // 2 = 14, no mirror,
    # out = float(datum) - mean (per pixel); fed by our LMDB and mean readers.
    folder, _, _ = transform
    _, _, arrays = _read_all(folder / "lmdb_raw")
    mean = read_mean(folder / "mean.binaryproto")
    off = (256 - 227) // 2
    crop = np.s_[:, off:off + 227, off:off + 227]
    out = np.stack([a[crop].astype(np.float32) - mean[crop] for a in arrays])
    expected = np.load(folder / "data_test.npy")
    assert out.shape == expected.shape == (8, 3, 227, 227)
    assert np.array_equal(out, expected)


@pytest.mark.parametrize("db,encode", [("lmdb_raw", ""), ("lmdb_png", "png")])
def test_convert_imageset_rebuilds_caffe_lmdbs(transform, tmp_path, db, encode):
    # convert_imageset --resize_height=256 --resize_width=256 [--encoded --encode_type=png]
    folder, ref, _ = transform
    out = tmp_path / db
    result = convert_imageset(folder / "images", folder / "list.txt", out, 256, 256,
                              encoded=bool(encode), encode_type=encode, progress=False)
    assert result.count == 8 and result.skipped == []
    keys, labels, arrays = _read_all(out)
    assert keys == list(ref["keys"]) == result.keys
    assert np.array_equal(labels, ref["labels"])
    max_diff = int(np.abs(arrays.astype(np.int16) - ref["arrays"].astype(np.int16)).max())
    print(f"{db}: max pixel difference to Caffe's LMDB = {max_diff}")
    assert max_diff <= 1
    # In this environment the serialized Datums are byte-identical to Caffe's (same OpenCV
    # decoders and zlib); only the LMDB page layout may differ.
    ours, theirs = _raw_values(out), _raw_values(folder / db)
    assert [k for k, _ in ours] == [k for k, _ in theirs]
    if encode == "":
        assert [v for _, v in ours] == [v for _, v in theirs]
    else:
        for (_, v1), (_, v2) in zip(ours, theirs):
            d1, d2 = pb.Datum.FromString(v1), pb.Datum.FromString(v2)
            assert d1.encoded and d2.encoded and d1.label == d2.label
            assert not d1.HasField("channels") and d1.data[:4] == b"\x89PNG"


def test_convert_imageset_guessed_encoding_copies_files(transform, tmp_path):
    # --encoded without --encode_type and without resizing: Caffe 1.0 guesses ".jpg"/".png"
    # from the name, matchExt holds, and ReadFileToDatum stores the file's own bytes.
    folder, ref, _ = transform
    convert_imageset(folder / "images", folder / "list.txt", tmp_path / "db", encoded=True,
                     progress=False)
    for (key, value) in _raw_values(tmp_path / "db"):
        name = key.decode().split("_", 1)[1]
        datum = pb.Datum.FromString(value)
        assert datum.encoded and datum.data == (folder / "images" / name).read_bytes()
    # with resizing the resized image is re-encoded with the file's own format
    convert_imageset(folder / "images", folder / "list.txt", tmp_path / "small", 32, 48,
                     encoded=True, progress=False)
    info = lmdb_info(tmp_path / "small")
    assert info.shape == (3, 32, 48) and info.encoded


def test_convert_imageset_gray_shuffle_and_skips(transform, tmp_path):
    folder, ref, _ = transform
    listfile = tmp_path / "list.txt"
    lines = (folder / "list.txt").read_text().splitlines()
    listfile.write_text("\n".join(lines[:3] + ["missing_file.jpg 5"] + lines[3:]) + "\n")
    with pytest.warns(UserWarning, match="missing_file.jpg"):
        result = convert_imageset(folder / "images", listfile, tmp_path / "gray", 20, 30,
                                  gray=True, progress=False)
    assert result.skipped == ["missing_file.jpg"] and result.count == 8
    # the unreadable line still uses up its index (Caffe: line_id counts every line)
    assert result.keys[3].startswith("00000004_")
    _, _, arrays = _read_all(tmp_path / "gray")
    assert arrays.shape == (8, 1, 20, 30)
    with pytest.warns(UserWarning):
        a = convert_imageset(folder / "images", listfile, tmp_path / "s1", shuffle=True, seed=3,
                             progress=False)
    with pytest.warns(UserWarning):
        b = convert_imageset(folder / "images", listfile, tmp_path / "s2", shuffle=True, seed=3,
                             progress=False)
    assert a.keys == b.keys
    names = [k.split("_", 1)[1] for k in a.keys]
    assert sorted(names) == sorted(line.rsplit(" ", 1)[0] for line in lines)
    # keys are the shuffled line index + name, so the LMDB's key order is the shuffled order
    assert [k for k, _, _ in iter_lmdb(tmp_path / "s1")] == a.keys


def test_convert_imageset_refuses_existing_output(transform, tmp_path):
    folder, _, _ = transform
    (tmp_path / "db").mkdir()
    with pytest.raises(CaffeFormatError, match="already exists"):
        convert_imageset(folder / "images", folder / "list.txt", tmp_path / "db", progress=False)
    convert_imageset(folder / "images", folder / "list.txt", tmp_path / "db", 8, 8,
                     overwrite=True, progress=False)
    assert lmdb_info(tmp_path / "db").count == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db"]  # no temporary folders left


def test_solver_data_lmdb_and_mean_equal_caffe(oracle, tmp_path):
    """The solver's training LMDB (convert_imageset, raw Datums) and its compute_image_mean file:
    parsed exactly as pycaffe read them, and our compute_image_mean writes the same bytes."""
    folder = oracle / "solver" / "data"
    ref = np.load(folder / "lmdb_arrays.npz")
    keys, labels, arrays = _read_all(folder / "lmdb_train")
    assert keys == [str(k) for k in ref["keys"]]
    assert np.array_equal(labels, ref["labels"]) and np.array_equal(arrays, ref["arrays"])
    info = lmdb_info(folder / "lmdb_train")
    assert info.count == len(keys) and not info.encoded
    caffe_mean = read_mean(folder / "mean.binaryproto")
    assert np.array_equal(caffe_mean, np.load(folder / "mean.npy"))
    ours = compute_image_mean(folder / "lmdb_train", tmp_path / "mean.binaryproto")
    assert np.array_equal(ours, caffe_mean)
    assert (tmp_path / "mean.binaryproto").read_bytes() == (folder / "mean.binaryproto").read_bytes()


def test_imageset_list_rules(tmp_path):
    path = tmp_path / "l.txt"
    path.write_text("a b.jpg 3\r\nc.png 0\n\n")
    assert read_imageset_list(path) == [("a b.jpg", 3), ("c.png", 0)]  # split at the last space
    path.write_text("a.jpg 1\nb.jpg\n")
    with pytest.raises(CaffeFormatError, match=r"l\.txt:2"):
        read_imageset_list(path)


def test_write_lmdb_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (3, 5, 7), dtype=np.uint8) for _ in range(5)]
    datum = array_to_datum(arrays[4], 9)
    items = [(f"{i:08d}_x", (i, a)) for i, a in enumerate(arrays[:4])] + [("00000004_y", datum)]
    assert write_lmdb(tmp_path / "db", items) == 5
    got = list(iter_lmdb(tmp_path / "db"))
    assert [k for k, _, _ in got] == [k for k, _ in items]
    assert [lab for _, lab, _ in got] == [0, 1, 2, 3, 9]
    for (_, _, a), b in zip(got, arrays):
        assert np.array_equal(a, b)
    mean = compute_image_mean(tmp_path / "db")
    assert np.array_equal(mean, np.stack(arrays).astype(np.float32).sum(0) / np.float32(5))
    write_mean(mean, tmp_path / "m.binaryproto")
    assert np.array_equal(read_mean(tmp_path / "m.binaryproto"), mean)


def test_float_datum_and_native_decoding(tmp_path):
    import cv2

    datum = pb.Datum(channels=1, height=2, width=2, label=1)
    datum.float_data.extend([0.5, 1.5, 2.5, 3.5])
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    enc = pb.Datum(encoded=True, label=2, data=cv2.imencode(".png", gray)[1].tobytes())
    write_lmdb(tmp_path / "db", [("a", datum), ("b", enc)])
    (_, _, f), (_, _, color) = list(iter_lmdb(tmp_path / "db"))
    assert f.dtype == np.float32 and f.shape == (1, 2, 2) and f[0, 1, 1] == 3.5
    assert color.shape == (3, 3, 4) and np.array_equal(color[2], gray)  # IMREAD_COLOR
    native = list(iter_lmdb(tmp_path / "db", mode="native"))[1][2]
    assert native.shape == (1, 3, 4)  # IMREAD_UNCHANGED keeps one channel


def test_lmdb_errors(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(CaffeFormatError, match="not an LMDB"):
        list(iter_lmdb(tmp_path / "plain"))
    lmdb.open(str(tmp_path / "empty")).close()
    with pytest.raises(CaffeFormatError, match="no entries"):
        list(iter_lmdb(tmp_path / "empty"))
    write_lmdb(tmp_path / "junk", [("k1", b"\xff\xff\xff\xff not a datum")])
    with pytest.raises(CaffeFormatError, match="entry 'k1'"):
        list(iter_lmdb(tmp_path / "junk"))
