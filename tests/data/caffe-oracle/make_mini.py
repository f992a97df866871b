"""Builds this folder (the mini Caffe oracle) from the full oracle: ``python make_mini.py FULL_ORACLE``.

Which files are taken, and how each is stored, is the ``PICK`` table below.  Every file is either copied,
xz-compressed (``NAME.xz``), drawn again from its NumPy seed (the random weights and net inputs, stored
as the caffemodel's skeleton + seed: ``tests/oracle_draws.py``) or rebuilt from other files of this folder
(LMDB arrays, means, the Data layer crop: ``tests/oracle_derived.py``; the legacy V1 caffemodel from its
text structure + the float data of ``nets/adiencenet_age/weights.caffemodel``, which Caffe checked to be
bit-identical).  ``MANIFEST.json`` records the sha256 of every restored file as it is in the full oracle;
this script restores the folder once and fails unless every file comes back with those bytes, and
``tests/mini_oracle.py`` checks them again at every test session.
"""
import hashlib
import json
import lzma
import re
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))          # tests/: mini_oracle, oracle_draws
sys.path.insert(0, str(HERE.parent.parent.parent))   # the repository: converters.proto

import mini_oracle  # noqa: E402
import oracle_derived  # noqa: E402
import oracle_draws  # noqa: E402

NETS = ("caffenet_age", "adiencenet_age", "adiencenet_gender", "googlenet_age", "vgg16_gender")
# blobs.npz (Caffe's every intermediate blob: float32 that hardly compresses) in full for CaffeNet and
# AdienceNet age; the other three nets leave their largest early feature maps to the full set
BLOBS_DROPPED = {
    "googlenet_age": ("conv1/7x7_s2", "pool1/3x3_s2", "pool1/norm1", "conv2/3x3_reduce", "conv2/3x3",
                      "conv2/norm2", "pool2/3x3_s2"),                      # the stem; every inception kept
    "adiencenet_gender": ("conv1", "pool1", "norm1", "conv2", "conv3"),    # batch 10: 1.5 MB for conv1 alone
    "vgg16_gender": ("conv1_1", "conv1_2", "pool1", "conv2_1", "conv2_2", "pool2", "conv3_1", "conv3_2",
                     "conv3_3", "pool3"),                                  # blocks 1-3
}
# the protocol models' seeds are not written in the oracle ("seed per model and fold"); they were found by
# trying RandomState seeds against the first two weights, and the sha256 check of every restored
# caffemodel confirms them: model seed + 10 * fold
PROTOCOL_SEEDS = {"age_fromscratch_caffereference": 1300, "gender_net_definitions": 2300}
TARGET = {"age_fromscratch_caffereference": "age", "gender_net_definitions": "gender"}
FOLDS = range(5)

# relative path in the full oracle -> how it is stored here (a dict for the rebuilt kinds)
PICK = {}
for net in NETS:
    PICK[f"nets/{net}/deploy.prototxt"] = "plain"
    PICK[f"nets/{net}/outputs.npz"] = "plain"
    PICK[f"nets/{net}/fixture.json"] = "xz"
    PICK[f"nets/{net}/weights.caffemodel"] = {"stored": "drawn"}
    PICK[f"nets/{net}/input.npy"] = {"stored": "drawn_input", "weights": f"nets/{net}/weights.caffemodel"}
for net in NETS:
    PICK[f"nets/{net}/blobs.npz"] = {"stored": "npz_xz"}
for name in ("deploy.prototxt", "outputs.npz", "fixture.json", "weights_v1_structure.prototxt"):
    PICK[f"nets/v1_caffemodel/{name}"] = "plain"
PICK["nets/v1_caffemodel/weights_v1.caffemodel"] = {"stored": "v1"}
for name in ("fixture.json", "fillers.prototxt"):
    PICK[f"fillers/{name}"] = "plain"
for name in ("constant.npy", "bilinear.npy"):
    PICK[f"fillers/{name}"] = "xz"
PICK["binaryproto/fixture.json"] = "xz"
PICK["solver/lr_policies.json"] = "xz"
for name in ("fixture.json", "list.txt"):
    PICK[f"solver/data/{name}"] = "plain"
for name in ("lmdb_train/data.mdb", "lmdb_train/lock.mdb"):
    PICK[f"solver/data/{name}"] = "xz"
PICK["solver/data/lmdb_arrays.npz"] = {"stored": "lmdb_arrays", "lmdb": "solver/data/lmdb_train"}
PICK["solver/data/mean.binaryproto"] = {"stored": "mean", "lmdb": "solver/data/lmdb_train"}
PICK["solver/data/mean.npy"] = {"stored": "mean_npy", "binaryproto": "solver/data/mean.binaryproto"}
# weights and momentum buffers after iteration 2 (float32 still agrees with Caffe there); every loss and
# learning rate of the 20 iterations is in trajectory.json
for name in ("solver.prototxt", "train_val.prototxt", "weights_iter_0002.npz", "momentum_iter_0002.npz"):
    PICK[f"solver/sgd_step_itersize2/{name}"] = "plain"
for name in ("init.caffemodel", "trajectory.json", "fixture.json"):
    PICK[f"solver/sgd_step_itersize2/{name}"] = "xz"
# the 10-crop protocol complete: both cells, five folds
PICK["protocol/fixture.json"] = "xz"
PICK["protocol/expected.json"] = "xz"
for model, target in TARGET.items():
    PICK[f"protocol/models/{model}/deploy.prototxt"] = "plain"
    for k in FOLDS:
        PICK[f"protocol/models/{model}/models_test_is_{k}/weights.caffemodel"] = {"stored": "drawn"}
for k in FOLDS:
    for target in TARGET.values():
        PICK[f"protocol/lists/Test_fold_is_{k}/{target}_test.txt"] = "plain"
        for name in ("data.mdb", "lock.mdb"):
            PICK[f"protocol/lmdb/Test_fold_is_{k}/{target}_test_lmdb/{name}"] = "xz"
    PICK[f"protocol/mean_image/Test_fold_is_{k}/mean.binaryproto"] = {
        "stored": "mean", "lmdb": f"protocol/lmdb/Test_fold_is_{k}/gender_test_lmdb"}
# the data pipeline: images -> convert_imageset -> compute_image_mean -> the Data layer's TEST crop
for name in ("fixture.json",):
    PICK[f"transform/{name}"] = "xz"
for name in ("list.txt", "labels_test.npy", "train_val.prototxt"):
    PICK[f"transform/{name}"] = "plain"
for db in ("lmdb_raw", "lmdb_png"):
    for name in ("data.mdb", "lock.mdb"):
        PICK[f"transform/{db}/{name}"] = "xz"
PICK["transform/lmdb_arrays.npz"] = {"stored": "lmdb_arrays", "lmdb": "transform/lmdb_raw"}
PICK["transform/mean.binaryproto"] = {"stored": "mean", "lmdb": "transform/lmdb_raw"}
PICK["transform/mean.npy"] = {"stored": "mean_npy", "binaryproto": "transform/mean.binaryproto"}
PICK["transform/data_test.npy"] = {"stored": "crop_minus_mean", "lmdb": "transform/lmdb_raw",
                                   "mean": "transform/mean.npy", "crop": 227}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def draw_recipe(full: Path, rel: str) -> dict:
    """Seed and classifier factors of a drawn caffemodel, as the full oracle records them."""
    if rel.startswith("nets/"):
        gen = json.loads((full / Path(rel).parent / "fixture.json").read_text())["weights_generation"]
        seed = int(re.fullmatch(r"numpy\.random\.RandomState\((\d+)\)", gen["rng"].split(",")[0]).group(1))
        return {"seed": seed, "rescale": gen["classifier_rescale_factors"]}
    _, _, model, fold, _ = rel.split("/")
    k = int(fold.rsplit("_", 1)[1])
    expected = json.loads((full / "protocol/expected.json").read_text())["results"][model]["folds"]
    (ef,) = [f for f in expected if f["fold"] == k]
    return {"seed": PROTOCOL_SEEDS[model] + 10 * k, "rescale": ef["classifier_rescale_factors"]}


def npz_xz(full: Path, rel: str, entry: dict) -> bytes:
    """An uncompressed .npz of the members kept, xz-compressed (xz packs float32 tighter than the
    deflate inside the oracle's .npz); the entry pins each kept member's sha256."""
    with zipfile.ZipFile(full / rel) as z:
        names = [n[:-len(".npy")] for n in z.namelist()]
        kept = [n for n in names if n not in BLOBS_DROPPED.get(rel.split("/")[1], ())]
        members = {f"{n}.npy": z.read(f"{n}.npy") for n in kept}
    entry["members"] = {name: sha256(data) for name, data in members.items()}
    if len(kept) < len(names):
        entry["subset"] = {"kept": len(kept), "of": len(names), "dropped": [n for n in names if n not in kept]}
    return lzma.compress(oracle_derived.npz(members), preset=9 | lzma.PRESET_EXTREME)


def add_images(full: Path) -> None:
    for image in sorted((full / "transform/images").iterdir()):
        PICK[f"transform/images/{image.name}"] = "plain"  # JPEG/PNG: xz gains nothing


def main(full: Path) -> None:
    add_images(full)
    for old in HERE.iterdir():  # rebuilt from scratch: nothing stale stays behind
        if old.name not in ("README.md", "make_mini.py"):
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    files = {}
    for rel, how in sorted(PICK.items()):
        data = (full / rel).read_bytes()
        entry = dict(how) if isinstance(how, dict) else {"stored": how}
        entry.update(size=len(data), sha256=sha256(data))
        dst = HERE / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if entry["stored"] == "plain":
            dst.write_bytes(data)
        elif entry["stored"] == "xz":
            Path(f"{dst}.xz").write_bytes(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
        elif entry["stored"] == "drawn":
            entry.update(draw_recipe(full, rel), skeleton=f"{rel}.skeleton.xz")
            Path(f"{dst}.skeleton.xz").write_bytes(lzma.compress(oracle_draws.strip(data),
                                                                 preset=9 | lzma.PRESET_EXTREME))
        elif entry["stored"] == "drawn_input":
            entry["shape"] = json.loads((full / Path(rel).parent / "fixture.json").read_text())["input"]["shape"]
        elif entry["stored"] == "npz_xz":
            Path(f"{dst}.xz").write_bytes(npz_xz(full, rel, entry))
        elif entry["stored"] == "lmdb_arrays":  # the arrays are pinned; the zip around them is ours
            with zipfile.ZipFile(full / rel) as z:
                entry["members"] = {name: sha256(z.read(name)) for name in z.namelist()}
        files[rel] = entry
    manifest = {"source": "BVLC Caffe 1.0 oracle (see README.md)", "files": files}
    (HERE / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    with tempfile.TemporaryDirectory() as tmp:  # raises unless every file comes back as Caffe wrote it
        mini_oracle.restore(HERE, Path(tmp))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
