"""Restores the mini Caffe oracle of ``tests/data/caffe-oracle`` into a folder with the full oracle's
layout and file names, so that every test runs unchanged on either set.

The folder stores some files xz-compressed (``NAME.xz``) and rebuilds one (the legacy V1 caffemodel)
from the others; ``MANIFEST.json`` gives each restored file's sha256 as the full oracle has it, and a
file whose bytes differ is an error, so the restored files are Caffe's own bytes.
"""
import hashlib
import json
import lzma
import shutil
from pathlib import Path

MINI = Path(__file__).resolve().parent / "data" / "caffe-oracle"


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


def restore(src: Path, dst: Path) -> Path:
    """Writes the full-layout mini oracle under ``dst`` and checks every file's sha256."""
    manifest = json.loads((src / "MANIFEST.json").read_text())
    shutil.copy2(src / "README.md", dst / "README.md")
    order = sorted(manifest["files"].items(), key=lambda kv: kv[1]["stored"] == "v1")  # v1 needs the others
    for rel, entry in order:
        out = dst / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        how = entry["stored"]
        if how in ("plain", "subset"):
            data = (src / rel).read_bytes()
        elif how == "xz":
            data = lzma.decompress((src / f"{rel}.xz").read_bytes())
        elif how == "v1":
            data = _v1_caffemodel(dst)
        else:
            raise ValueError(f"{src / 'MANIFEST.json'}: unknown storage {how!r} for {rel}")
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise ValueError(f"{src / rel}: restored bytes differ from the oracle's (sha256 in MANIFEST.json)")
        out.write_bytes(data)
    return dst
