"""Builds this folder (the mini Caffe oracle) from the full oracle: ``python make_mini.py FULL_ORACLE``.

Which files are taken, and how each is stored, is the ``PICK`` table below.  Nothing is recomputed:
every file is either copied, xz-compressed (``NAME.xz``, restored byte for byte), rebuilt from other
files of this folder (the legacy V1 caffemodel: its text structure + the float data of
``nets/adiencenet_age/weights.caffemodel``, which Caffe checked to be bit-identical) or, for the two
JSON files marked ``subset``, cut down to the entries of the files kept.  ``MANIFEST.json`` records the
sha256 of every restored file as it is in the full oracle; ``tests/mini_oracle.py`` checks them.
"""
import hashlib
import json
import lzma
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# relative path in the full oracle -> how it is stored here
PICK = {}
for net in ("caffenet_age", "adiencenet_age"):
    for name in ("deploy.prototxt", "weights.caffemodel", "blobs.npz", "outputs.npz"):
        PICK[f"nets/{net}/{name}"] = "plain"
    for name in ("input.npy", "fixture.json"):
        PICK[f"nets/{net}/{name}"] = "xz"
for name in ("deploy.prototxt", "outputs.npz", "fixture.json", "weights_v1_structure.prototxt"):
    PICK[f"nets/v1_caffemodel/{name}"] = "plain"
PICK["nets/v1_caffemodel/weights_v1.caffemodel"] = "v1"
# deploy + fixture only: the layer tables (Caffe's layer indices with its inserted Splits), no weights
for net in ("googlenet_age", "vgg16_gender"):
    for name in ("deploy.prototxt", "fixture.json"):
        PICK[f"nets/{net}/{name}"] = "xz"
for name in ("fixture.json", "fillers.prototxt"):
    PICK[f"fillers/{name}"] = "plain"
for name in ("constant.npy", "bilinear.npy"):
    PICK[f"fillers/{name}"] = "xz"
PICK["binaryproto/fixture.json"] = "xz"
PICK["solver/lr_policies.json"] = "xz"
for name in ("fixture.json", "list.txt", "lmdb_arrays.npz"):
    PICK[f"solver/data/{name}"] = "plain"
for name in ("lmdb_train/data.mdb", "lmdb_train/lock.mdb", "mean.binaryproto", "mean.npy"):
    PICK[f"solver/data/{name}"] = "xz"
# weights and momentum buffers after iteration 2 (float32 still agrees with Caffe there); every loss and
# learning rate of the 20 iterations is in trajectory.json
for name in ("solver.prototxt", "train_val.prototxt", "weights_iter_0002.npz", "momentum_iter_0002.npz"):
    PICK[f"solver/sgd_step_itersize2/{name}"] = "plain"
for name in ("init.caffemodel", "trajectory.json", "fixture.json"):
    PICK[f"solver/sgd_step_itersize2/{name}"] = "xz"
# the 10-crop protocol: one cell (AdienceNet gender), test fold 0 complete
PROTOCOL_MODEL, PROTOCOL_FOLD = "gender_net_definitions", 0
PICK["protocol/fixture.json"] = "xz"
PICK["protocol/expected.json"] = "subset"
PICK[f"protocol/models/{PROTOCOL_MODEL}/deploy.prototxt"] = "plain"
PICK[f"protocol/models/{PROTOCOL_MODEL}/models_test_is_{PROTOCOL_FOLD}/weights.caffemodel"] = "xz"
PICK[f"protocol/mean_image/Test_fold_is_{PROTOCOL_FOLD}/mean.binaryproto"] = "xz"
PICK[f"protocol/lists/Test_fold_is_{PROTOCOL_FOLD}/gender_test.txt"] = "plain"
for name in ("data.mdb", "lock.mdb"):
    PICK[f"protocol/lmdb/Test_fold_is_{PROTOCOL_FOLD}/gender_test_lmdb/{name}"] = "xz"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def protocol_subset(full: dict) -> dict:
    """expected.json restricted to the kept model and fold; the five-fold summaries are dropped (they
    need the other folds)."""
    out = {k: v for k, v in full.items() if k != "results"}
    model = dict(full["results"][PROTOCOL_MODEL])
    model["folds"] = [f for f in model["folds"] if f["fold"] == PROTOCOL_FOLD]
    for key in ("all_folds", "confmats_summed"):
        model.pop(key, None)
    out["results"] = {PROTOCOL_MODEL: model}
    out["mini_subset"] = {"models": [PROTOCOL_MODEL], "folds": [PROTOCOL_FOLD],
                          "dropped": ["the other model and folds", "all_folds", "confmats_summed"]}
    return out


def main(full: Path) -> None:
    manifest = {"source": "BVLC Caffe 1.0 oracle (see README.md)", "files": {}}
    for rel, how in sorted(PICK.items()):
        data = (full / rel).read_bytes()
        entry = {"stored": how, "size": len(data), "sha256": sha256(data)}
        dst = HERE / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if how == "plain":
            dst.write_bytes(data)
        elif how == "xz":
            Path(f"{dst}.xz").write_bytes(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
        elif how == "subset":
            text = json.dumps(protocol_subset(json.loads(data)), indent=1) + "\n"
            dst.write_text(text)
            entry = {"stored": how, "size": len(text.encode()), "sha256": sha256(text.encode()),
                     "full_sha256": entry["sha256"]}
        elif how != "v1":
            raise ValueError(how)
        manifest["files"][rel] = entry
    (HERE / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
