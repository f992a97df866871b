"""Restores the mini Caffe oracle of ``tests/data/caffe-oracle`` into a folder with the full oracle's
layout and file names, so that every test runs unchanged on either set.

The folder stores some files xz-compressed (``NAME.xz``; an ``.npz`` as an uncompressed zip of its arrays,
some of them only where MANIFEST.json says ``subset``), keeps the NumPy-drawn weights and inputs as
skeleton + seed (``oracle_draws``) and rebuilds the files that restate others (LMDB arrays, means, the
Data layer crop: ``oracle_derived``; the legacy V1 caffemodel).  ``MANIFEST.json`` gives each restored
file's sha256 as the full oracle has it (for ``lmdb_arrays.npz``, of each array in it), and a file whose
bytes differ is an error, so the restored files (the arrays of a re-zipped ``.npz``) are Caffe's own bytes.
"""
import hashlib
import io
import json
import lzma
import shutil
import zipfile
from pathlib import Path

import oracle_derived
import oracle_draws

MINI = Path(__file__).resolve().parent / "data" / "caffe-oracle"

# how each file is stored -> the pass that restores it (a later pass reads files of the earlier ones)
PASS = {"plain": 0, "xz": 0, "npz_xz": 0, "drawn": 0, "lmdb_arrays": 1, "mean": 1, "drawn_input": 1, "v1": 1,
        "mean_npy": 2, "crop_minus_mean": 3}


def is_packed(folder: Path) -> bool:
    """A folder written by make_mini.py (rather than a full or already restored oracle)."""
    return (folder / "MANIFEST.json").is_file() and (folder / "make_mini.py").is_file()


def _v1_caffemodel(dst: Path) -> bytes:
    """The legacy V1 caffemodel = its text structure with the float data of the new-style AdienceNet
    weights put back (the full oracle's fixture says Caffe found every blob bit-identical)."""
    from google.protobuf import text_format

    from converters.proto import caffe_pb2
    net = caffe_pb2.NetParameter()
    text_format.Parse((dst / "nets/v1_caffemodel/weights_v1_structure.prototxt").read_text(), net)
    ref = caffe_pb2.NetParameter()
    ref.ParseFromString((dst / "nets/adiencenet_age/weights.caffemodel").read_bytes())
    blobs = {layer.name: layer.blobs for layer in ref.layer}
    for layer in net.layers:
        for i, blob in enumerate(layer.blobs):
            blob.data.extend(blobs[layer.name][i].data)
    return net.SerializeToString()


def _build(src: Path, dst: Path, manifest: dict, rel: str) -> bytes:
    entry = manifest[rel]
    how = entry["stored"]
    if how == "plain":
        return (src / rel).read_bytes()
    if how in ("xz", "npz_xz"):
        return lzma.decompress((src / f"{rel}.xz").read_bytes())
    if how in ("drawn", "drawn_input"):
        weights = manifest[entry.get("weights", rel)]
        skeleton = lzma.decompress((src / weights["skeleton"]).read_bytes())
        if how == "drawn":
            return oracle_draws.draw_caffemodel(skeleton, weights["seed"], weights["rescale"])
        return oracle_draws.draw_input(skeleton, weights["seed"], weights["rescale"], entry["shape"])
    if how == "v1":
        return _v1_caffemodel(dst)
    if how == "lmdb_arrays":
        return oracle_derived.npz(oracle_derived.lmdb_arrays_members(dst / entry["lmdb"]))
    if how == "mean":
        return oracle_derived.mean_binaryproto(dst / entry["lmdb"])
    if how == "mean_npy":
        return oracle_derived.mean_npy(dst / entry["binaryproto"])
    if how == "crop_minus_mean":
        return oracle_derived.crop_minus_mean(dst / entry["lmdb"], dst / entry["mean"], entry["crop"])
    raise ValueError(f"{src / 'MANIFEST.json'}: unknown storage {how!r} for {rel}")


def _digests(entry: dict, data: bytes) -> tuple:
    """(what the bytes hash to, what the full oracle's file hashes to) in the entry's terms."""
    if "members" in entry:  # a re-zipped .npz (possibly a documented subset): every array in it is Caffe's
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            got = {name: hashlib.sha256(z.read(name)).hexdigest() for name in z.namelist()}
        return got, entry["members"]
    return hashlib.sha256(data).hexdigest(), entry["sha256"]


def restore(src: Path, dst: Path) -> Path:
    """Writes the full-layout mini oracle under ``dst`` and checks every file's sha256."""
    manifest = json.loads((src / "MANIFEST.json").read_text())["files"]
    shutil.copy2(src / "README.md", dst / "README.md")
    for rel in sorted(manifest, key=lambda r: PASS[manifest[r]["stored"]]):
        data = _build(src, dst, manifest, rel)
        got, want = _digests(manifest[rel], data)
        if got != want:
            raise ValueError(f"{src / rel}: restored bytes differ from the oracle's (sha256 in MANIFEST.json)")
        out = dst / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
    return dst


def main(argv=None) -> int:
    """``python tests/mini_oracle.py DEST``: restore the shipped golden files into DEST (an empty or new
    folder), e.g. to try ``caffe-convert`` on ``DEST/nets/adiencenet_age/``."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python tests/mini_oracle.py DEST   (restores tests/data/caffe-oracle into DEST)",
              file=sys.stderr)
        return 2
    dst = Path(args[0])
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        print(f"mini_oracle: error: {dst}: exists and is not an empty folder", file=sys.stderr)
        return 2
    dst.mkdir(parents=True, exist_ok=True)
    restore(MINI, dst)
    print(f"restored the mini Caffe oracle into {dst} (every file sha256-checked)")
    return 0


if __name__ == "__main__":
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the package, also when not installed
    raise SystemExit(main())
