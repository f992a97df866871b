"""Oracle files that are plain functions of other oracle files, rebuilt by the mini oracle.

Some files of the full Caffe oracle restate what another file holds: ``lmdb_arrays.npz`` is the pixel
arrays, labels and keys of an LMDB as pycaffe read them, ``mean.binaryproto`` is ``compute_image_mean``
of an LMDB, ``mean.npy`` the same values as an array, ``data_test.npy`` the Data layer's TEST crop of the
LMDB minus the mean.  The mini oracle stores the source only and rebuilds these here with a few lines of
NumPy/protobuf that stand apart from the package under test; ``mini_oracle.restore`` checks every rebuilt
file against the sha256 of Caffe's own file (for the ``.npz``, of each array in it), so the proof is the
hash, not this code.
"""
import io
import zipfile
from pathlib import Path

import numpy as np


def read_lmdb(path: Path):
    """[(key, label, uint8 C x H x W)] in key order, read with python-lmdb and closed again (the package
    under test opens the same folder later, and python-lmdb allows one open environment per folder)."""
    import lmdb

    from converters.proto import caffe_pb2
    env = lmdb.open(str(path), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            items = []
            for key, value in txn.cursor():
                d = caffe_pb2.Datum.FromString(value)
                items.append((key.decode(), d.label,
                              np.frombuffer(d.data, np.uint8).reshape(d.channels, d.height, d.width)))
    finally:
        env.close()
    return items


def _npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def lmdb_arrays_members(lmdb_path: Path) -> dict:
    """The members of ``lmdb_arrays.npz`` as .npy bytes, in the oracle's order."""
    items = read_lmdb(lmdb_path)
    return {"arrays.npy": _npy(np.stack([a for _, _, a in items])),
            "labels.npy": _npy(np.array([lab for _, lab, _ in items], np.int32)),
            "keys.npy": _npy(np.array([k for k, _, _ in items]))}


def npz(members: dict) -> bytes:
    """An (uncompressed) .npz holding these .npy members."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def image_mean(lmdb_path: Path) -> np.ndarray:
    """compute_image_mean: a float32 running sum of the uint8 pixels, divided by the count in float32."""
    arrays = [a for _, _, a in read_lmdb(lmdb_path)]
    total = np.zeros(arrays[0].shape, np.float32)
    for a in arrays:
        total += a.astype(np.float32)
    return total / np.float32(len(arrays))


def mean_binaryproto(lmdb_path: Path) -> bytes:
    """compute_image_mean's file: a BlobProto with the legacy 1 x C x H x W dims."""
    from converters.proto import caffe_pb2
    mean = image_mean(lmdb_path)
    blob = caffe_pb2.BlobProto(num=1, channels=mean.shape[0], height=mean.shape[1], width=mean.shape[2])
    blob.data.extend(mean.ravel().tolist())
    return blob.SerializeToString()


def mean_npy(binaryproto: Path) -> bytes:
    from converters.proto import caffe_pb2
    blob = caffe_pb2.BlobProto.FromString(binaryproto.read_bytes())
    return _npy(np.array(blob.data, np.float32).reshape(blob.channels, blob.height, blob.width))


def crop_minus_mean(lmdb_path: Path, mean_npy_path: Path, crop: int) -> bytes:
    """The Data layer's TEST transform: centre crop at (H - crop) // 2, float(datum) - mean, no mirror."""
    arrays = np.stack([a for _, _, a in read_lmdb(lmdb_path)])
    mean = np.load(mean_npy_path)
    off = (arrays.shape[2] - crop) // 2
    window = np.s_[:, off:off + crop, off:off + crop]
    return _npy(np.stack([a[window].astype(np.float32) - mean[window] for a in arrays]))
