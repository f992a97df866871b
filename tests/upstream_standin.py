"""A synthetic stand-in for the paper's upstream repository, for tests that prove OUR code on files of
its shape when the real files (``../shared/upstream/lapuschkin-2017``) are absent.

What it owns: writing, into an empty folder, a tree laid out like
sebastian-lapuschkin/understanding-age-gender-deep-learning-models (``model_definitions/``,
``folds/``, ``mean_images/``, ``heatmap_drawing/``) from code in this module -- nothing is copied
from the upstream files -- plus a manifest of the written files' sizes and sha256 in the format of
``reproduce/data/upstream_manifest.json``.  :func:`real` describes the real tree the same way, so a
test takes an :class:`UpstreamTree` and runs on either.

How the files are made, and which quirks they carry (``../shared/spec/upstream-spec.md``):

* nets: the four families (AdienceNet in Caffe's old V1 syntax with ``blobs_lr``/``weight_decay`` and
  ``input_dim``; CaffeNet, GoogLeNet with auxiliary heads and VGG16 in the new syntax with
  ``input_shape``, the gender VGG deploys with ``input_dim``) at full size, as spec section 2.3
  describes them; data layers with hard-coded ``<ROOT>/lmdb{sfx}/Test_fold_is_K`` paths, VGG's
  TEST phase on the training LMDB and its loss written without a top (Caffe's AutoTopBlobs),
  Q-G1 (the gender GoogLeNet ``_mixed`` fine-tuning nets read the ``_unaligned`` data), the
  ``test_fold_is_K`` helpers of ``age_fromscratch_caffereference``;
* solvers: spec section 3.1's settings, with per-fold gammas in ``gender_net_definitions_mixed``;
* fold files: five subject-disjoint ``fold_K_data.txt`` with duplicated rows, the ``(25, 23)`` age
  typo (Q-D1), other off-grid ages, ``None``, and ``u``/empty genders;
* fold lists: drawn from those fold files by :func:`upstream_split`, a second implementation of the
  upstream procedure written here from the spec (not :mod:`reproduce.folds`), with its own RNG and
  the lost pool element of Q-D2;
* means: 3x256x256 float BlobProtos in Caffe's legacy num/channels/height/width form whose
  per-channel means are known exactly.
"""
from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
MANIFEST = REPO / "reproduce" / "data" / "upstream_manifest.json"

# where the upstream files said the data lived; deliberately a /home/... path (what the rewrite maps)
ROOT = "/home/standin/AgeGenderDeepLearning"
TARGETS = ("age", "gender")
CLASSES = {"age": 8, "gender": 2}
SUFFIX = {"i": "", "r": "_unaligned", "m": "_mixed"}
LIST_FOLDER = {"i": "train_val_txt_files_per_fold", "r": "squared_unaligned_train_val_txt_files_per_fold",
               "m": "mixed_train_val_txt_files_per_fold"}
# spec 4.4: [m] enters coarse-tilt first, then landmark
PREFIXES = {"i": ("landmark_aligned_face",), "r": ("coarse_tilt_aligned_face",),
            "m": ("coarse_tilt_aligned_face", "landmark_aligned_face")}
AGE_STRINGS = ("(0, 2)", "(4, 6)", "(8, 12)", "(15, 20)", "(25, 32)", "(38, 43)", "(48, 53)", "(60, 100)")
OFF_GRID_AGES = ("(38, 42)", "(38, 48)", "(27, 32)", "(8, 23)", "35", "None")
SYNSET_AGE = ("(0, 2)", "(4, 6)", "(8, 13)", "(15, 20)", "(25, 32)", "(38, 43)", "(48, 53)", "(60, 100)")
# spec 3.1: gender_net_definitions_mixed's solvers of folds 1..3 use another gamma
GAMMA_PER_FOLD = {"gender_net_definitions_mixed": (0.1, 0.3, 0.3, 0.3, 0.1)}
MEAN_BGR = (78.5, 88.25, 115.125)


@dataclass
class UpstreamTree:
    """A folder laid out like the upstream repository and what a test may expect of it.

    ``synthetic`` tells the stand-in from the real files; ``manifest`` is the path of a manifest of
    the tree (for the real tree, the product's own); ``facts`` holds the stand-in's numbers that
    tests compare against (empty for the real tree, whose facts the tests keep as constants)."""
    root: Path
    synthetic: bool
    manifest: Path
    facts: dict = field(default_factory=dict)


def real(root: Path) -> UpstreamTree:
    return UpstreamTree(Path(root), False, MANIFEST)


# ---------------------------------------------------------------------------- text of a net
class Enum(str):
    """A bare protobuf enum value (written without quotes)."""


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Enum):
        return str(v)
    if isinstance(v, str):
        return f'"{v}"'
    return repr(v)


def _block(items, indent: int) -> list[str]:
    pad = "  " * indent
    out = []
    for key, v in items:
        if isinstance(v, list):
            out.append(f"{pad}{key} {{")
            out += _block(v, indent + 1)
            out.append(f"{pad}}}")
        else:
            out.append(f"{pad}{key}: {_value(v)}")
    return out


V1_TYPES = {"Convolution": "CONVOLUTION", "ReLU": "RELU", "Pooling": "POOLING", "LRN": "LRN",
            "InnerProduct": "INNER_PRODUCT", "Dropout": "DROPOUT", "Softmax": "SOFTMAX", "Data": "DATA",
            "Accuracy": "ACCURACY", "SoftmaxWithLoss": "SOFTMAX_LOSS"}


@dataclass
class Layer:
    name: str
    type: str
    bottom: list
    top: list
    params: list = field(default_factory=list)    # [(block name, [(key, value), ...]), ...]
    mults: list = field(default_factory=list)     # [(lr_mult, decay_mult), ...]
    phase: str | None = None
    loss_weight: float | None = None

    def text(self, v1: bool) -> list[str]:
        out = ["layers {" if v1 else "layer {", f'  name: "{self.name}"',
               f"  type: {V1_TYPES[self.type]}" if v1 else f'  type: "{self.type}"']
        out += [f'  bottom: "{b}"' for b in self.bottom] + [f'  top: "{t}"' for t in self.top]
        if v1:
            out += [f"  blobs_lr: {lr:g}" for lr, _ in self.mults]
            out += [f"  weight_decay: {d:g}" for _, d in self.mults]
        else:
            for lr, d in self.mults:
                out += ["  param {", f"    lr_mult: {lr:g}", f"    decay_mult: {d:g}", "  }"]
        if self.loss_weight is not None:
            out.append(f"  loss_weight: {self.loss_weight:g}")
        out += _block(self.params, 1)
        if self.phase and v1:  # the one-line form of the V1 files
            out.append(f"  include: {{ phase: {self.phase} }}")
        elif self.phase:
            out += ["  include {", f"    phase: {self.phase}", "  }"]
        out.append("}")
        return out


def _filler(kind, **kw):
    return [("type", kind)] + [(k, v) for k, v in kw.items()]


class NetBuilder:
    """Layers of one net; ``train`` adds multipliers and fillers (train_val), else a deploy."""

    def __init__(self, train: bool, keep_mults: bool = False):
        self.train, self.layers = train, []
        self.keep_mults = train or keep_mults  # GoogLeNet deploys keep their param blocks

    def add(self, layer: Layer) -> str:
        self.layers.append(layer)
        return layer.top[0] if layer.top else layer.name

    def conv(self, name, bottom, num, k, s=1, pad=0, group=1, wf=None, bf=None, mults=((1, 1), (2, 0))):
        p = [("num_output", num)] + ([("pad", pad)] if pad else []) + [("kernel_size", k)]
        p += ([("stride", s)] if s != 1 else []) + ([("group", group)] if group != 1 else [])
        if self.train and wf:
            p += [("weight_filler", wf), ("bias_filler", bf)]
        return self.add(Layer(name, "Convolution", [bottom], [name], [("convolution_param", p)],
                              list(mults) if self.keep_mults else []))

    def fc(self, name, bottom, num, wf=None, bf=None, mults=((1, 1), (2, 0))):
        p = [("num_output", num)]
        if self.train and wf:
            p += [("weight_filler", wf), ("bias_filler", bf)]
        return self.add(Layer(name, "InnerProduct", [bottom], [name], [("inner_product_param", p)],
                              list(mults) if self.keep_mults else []))

    def relu(self, name, blob):
        return self.add(Layer(name, "ReLU", [blob], [blob]))

    def pool(self, name, bottom, method, k, s, pad=0):
        p = [("pool", Enum(method)), ("kernel_size", k), ("stride", s)] + ([("pad", pad)] if pad else [])
        return self.add(Layer(name, "Pooling", [bottom], [name], [("pooling_param", p)]))

    def lrn(self, name, bottom):
        return self.add(Layer(name, "LRN", [bottom], [name],
                              [("lrn_param", [("local_size", 5), ("alpha", 0.0001), ("beta", 0.75)])]))

    def drop(self, name, blob, ratio):
        return self.add(Layer(name, "Dropout", [blob], [blob], [("dropout_param", [("dropout_ratio", ratio)])]))


def _data_layers(b: NetBuilder, fam: str, target: str, data_sfx: str, fold: int, test_split: str):
    train_batch, test_batch, crop = {"A": (50, 50, 227), "C": (50, 50, 227), "G": (32, 50, 224),
                                     "V": (10, 10, 224)}[fam]
    mean = f"{ROOT}/mean_image{data_sfx}/Test_fold_is_{fold}/mean.binaryproto"
    for phase, split, batch, mirror in (("TRAIN", "train", train_batch, True), ("TEST", test_split, test_batch, False)):
        src = f"{ROOT}/lmdb{data_sfx}/Test_fold_is_{fold}/{target}_{split}_lmdb"
        b.add(Layer("data", "Data", [], ["data", "label"],
                    [("data_param", [("source", src), ("backend", Enum("LMDB")), ("batch_size", batch)]),
                     ("transform_param", [("crop_size", crop), ("mean_file", mean), ("mirror", mirror)])],
                    phase=phase))


def _accuracy(b, name, bottom, top_k=None):
    p = [("accuracy_param", [("top_k", top_k)])] if top_k else []
    b.add(Layer(name, "Accuracy", [bottom, "label"], [name], p, phase="TEST"))


def adiencenet(b: NetBuilder, n: int) -> str:
    g = lambda std: _filler("gaussian", std=std)  # noqa: E731
    c = lambda v: _filler("constant", value=v)    # noqa: E731
    x = b.conv("conv1", "data", 96, 7, s=4, wf=g(0.01), bf=c(0))
    b.relu("relu1", x)
    x = b.lrn("norm1", b.pool("pool1", x, "MAX", 3, 2))
    x = b.conv("conv2", x, 256, 5, pad=2, wf=g(0.01), bf=c(1))
    b.relu("relu2", x)
    x = b.lrn("norm2", b.pool("pool2", x, "MAX", 3, 2))
    x = b.conv("conv3", x, 384, 3, pad=1, wf=g(0.01), bf=c(0))
    b.relu("relu3", x)
    x = b.pool("pool5", x, "MAX", 3, 2)
    for i in (6, 7):
        x = b.fc(f"fc{i}", x, 512, wf=g(0.005), bf=c(1))
        b.relu(f"relu{i}", x)
        b.drop(f"drop{i}", x, 0.5)
    return b.fc("fc8", x, n, wf=g(0.01), bf=c(0), mults=((10, 1), (20, 0)))


def caffenet(b: NetBuilder, n: int) -> str:
    g = lambda std: _filler("gaussian", std=std)  # noqa: E731
    c = lambda v: _filler("constant", value=v)    # noqa: E731
    x = b.conv("conv1", "data", 96, 11, s=4, wf=g(0.01), bf=c(0))
    b.relu("relu1", x)
    x = b.lrn("norm1", b.pool("pool1", x, "MAX", 3, 2))
    x = b.conv("conv2", x, 256, 5, pad=2, group=2, wf=g(0.01), bf=c(1))
    b.relu("relu2", x)
    x = b.lrn("norm2", b.pool("pool2", x, "MAX", 3, 2))
    for i, (num, group, bias) in enumerate(((384, 1, 0), (384, 2, 1), (256, 2, 1)), start=3):
        x = b.conv(f"conv{i}", x, num, 3, pad=1, group=group, wf=g(0.01), bf=c(bias))
        b.relu(f"relu{i}", x)
    x = b.pool("pool5", x, "MAX", 3, 2)
    for i in (6, 7):
        x = b.fc(f"fc{i}", x, 4096, wf=g(0.005), bf=c(1))
        b.relu(f"relu{i}", x)
        b.drop(f"drop{i}", x, 0.5)
    return b.fc("fc8_agexgender", x, n, wf=g(0.01), bf=c(0))


INCEPTION = {"3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64), "4a": (192, 96, 208, 16, 48, 64),
             "4b": (160, 112, 224, 24, 64, 64), "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
             "4e": (256, 160, 320, 32, 128, 128), "5a": (256, 160, 320, 32, 128, 128),
             "5b": (384, 192, 384, 48, 128, 128)}


def googlenet(b: NetBuilder, n: int, finish) -> None:
    """``finish(i, blob)`` adds what follows classifier ``i`` (1, 2: auxiliary heads, 3: the main one)."""
    xa = lambda std: _filler("xavier", std=std)   # noqa: E731  (Caffe's xavier ignores std)
    c = lambda v: _filler("constant", value=v)    # noqa: E731
    x = b.conv("conv1/7x7_s2", "data", 64, 7, s=2, pad=3, wf=xa(0.1), bf=c(0.2))
    b.relu("conv1/relu_7x7", x)
    x = b.lrn("pool1/norm1", b.pool("pool1/3x3_s2", x, "MAX", 3, 2))
    x = b.conv("conv2/3x3_reduce", x, 64, 1, wf=xa(0.1), bf=c(0.2))
    b.relu("conv2/relu_3x3_reduce", x)
    x = b.conv("conv2/3x3", x, 192, 3, pad=1, wf=xa(0.03), bf=c(0.2))
    b.relu("conv2/relu_3x3", x)
    x = b.pool("pool2/3x3_s2", b.lrn("conv2/norm2", x), "MAX", 3, 2)

    def inception(key, x):
        w1, r3, w3, r5, w5, pp = INCEPTION[key]
        p = f"inception_{key}/"
        tops = []
        for name, bottom, num, k, pad in (("1x1", x, w1, 1, 0), ("3x3_reduce", x, r3, 1, 0), ("3x3", None, w3, 3, 1),
                                           ("5x5_reduce", x, r5, 1, 0), ("5x5", None, w5, 5, 2)):
            y = b.conv(p + name, bottom or tops[-1], num, k, pad=pad, wf=xa(0.03), bf=c(0.2))
            b.relu(p + "relu_" + name, y)
            tops.append(y)
        y = b.pool(p + "pool", x, "MAX", 3, 1, pad=1)
        y = b.conv(p + "pool_proj", y, pp, 1, wf=xa(0.1), bf=c(0.2))
        b.relu(p + "relu_pool_proj", y)
        return b.add(Layer(p + "output", "Concat", [tops[0], tops[2], tops[4], y], [p + "output"]))

    def head(i, x):
        y = b.pool(f"loss{i}/ave_pool", x, "AVE", 5, 3)
        y = b.conv(f"loss{i}/conv", y, 128, 1, wf=xa(0.08), bf=c(0.2))
        b.relu(f"loss{i}/relu_conv", y)
        y = b.fc(f"loss{i}/fc", y, 1024, wf=xa(0.02), bf=c(0.2))
        b.relu(f"loss{i}/relu_fc", y)
        b.drop(f"loss{i}/drop_fc", y, 0.7)
        finish(i, b.fc(f"loss{i}/classifier_agexgender", y, n, wf=xa(0.0009765625), bf=c(0)))

    for key in ("3a", "3b"):
        x = inception(key, x)
    x = b.pool("pool3/3x3_s2", x, "MAX", 3, 2)
    for key in ("4a", "4b", "4c", "4d", "4e"):
        x = inception(key, x)
        if key in ("4a", "4d"):
            head(1 if key == "4a" else 2, x)
    x = b.pool("pool4/3x3_s2", x, "MAX", 3, 2)
    for key in ("5a", "5b"):
        x = inception(key, x)
    x = b.pool("pool5/7x7_s1", x, "AVE", 7, 1)
    b.drop("pool5/drop_7x7_s1", x, 0.4)
    finish(3, b.fc("loss3/classifier_agexgender", x, n, wf=xa(0.0009765625), bf=c(0)))


def vgg16(b: NetBuilder, n: int, target: str) -> str:
    x = "data"
    for block, (num, count) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)), start=1):
        for j in range(1, count + 1):
            x = b.conv(f"conv{block}_{j}", x, num, 3, pad=1)  # no fillers: always loaded from a model
            b.relu(f"relu{block}_{j}", x)
        x = b.pool(f"pool{block}", x, "MAX", 2, 2)
    for i in (6, 7):
        x = b.fc(f"fc{i}", x, 4096, mults=((10, 1), (20, 0)))
        b.relu(f"relu{i}", x)
        b.drop(f"drop{i}", x, 0.5)
    return b.fc(f"fc8-{target}", x, n, wf=_filler("gaussian", std=0.01), bf=_filler("constant", value=0),
                mults=((10, 1), (20, 0)))


def family(folder: str) -> str:
    if "net_definitions" in folder:
        return "A"
    if "caffereference" in folder:
        return "C"
    return "G" if "googlenet" in folder else "V"


NET_NAME = {"A": "CaffeNet", "C": "CaffeNet", "G": "GoogleNet", "V": "VGG_ILSVRC_16_layers"}


def net_text(folder: str, kind: str, fold: int = 0) -> str:
    """``kind``: deploy, train_val or test (the ``test_fold_is_K`` helper reading the test LMDB)."""
    fam, target = family(folder), folder.split("_")[0]
    n, v1, train = CLASSES[target], fam == "A", kind != "deploy"
    b = NetBuilder(train, keep_mults=fam == "G")
    head = [f'name: "{NET_NAME[fam]}"']
    if not train:
        size = 227 if fam in "AC" else 224
        batch = 10 if (fam == "A" and target == "gender") else 1
        if fam == "A" or (fam == "V" and target == "gender"):
            head += ['input: "data"'] + [f"input_dim: {d}" for d in (batch, 3, size, size)]
        else:
            head += ['input: "data"', "input_shape {"] + [f"  dim: {d}" for d in (batch, 3, size, size)] + ["}"]
    else:
        sfx = next((s for s in ("_unaligned", "_mixed") if folder.endswith(s)), "")
        if folder == "gender_finetuning_googlenet_mixed":
            sfx = "_unaligned"  # Q-G1: a copy of the _unaligned nets
        test_split = "train" if fam == "V" else ("test" if kind == "test" else "val")
        _data_layers(b, fam, target, sfx, fold, test_split)
    if fam == "G":
        def finish(i, blob):  # each head's loss (train_val) or softmax (deploy) follows its classifier
            name, top = [("loss1/loss", "loss1/loss1"), ("loss2/loss_agexgender", "loss2/loss1"),
                         ("loss3/loss3", "loss3/loss3")][i - 1]
            weight = 1.0 if i == 3 else 0.3
            if train:
                b.add(Layer(name, "SoftmaxWithLoss", [blob, "label"], [top], loss_weight=weight))
                _accuracy(b, f"loss{i}/top-1", blob)
                if target == "age":
                    _accuracy(b, f"loss{i}/top-2", blob, top_k=2)
            else:
                b.add(Layer(name, "Softmax", [blob], [top], loss_weight=weight))
        googlenet(b, n, finish)
    else:
        out = {"A": adiencenet, "C": caffenet}[fam](b, n) if fam in "AC" else vgg16(b, n, target)
        if not train:
            b.add(Layer("prob", "Softmax", [out], ["prob"]))
        elif fam == "V":
            b.add(Layer("loss", "SoftmaxWithLoss", [out, "label"], [], phase="TRAIN"))  # no top: AutoTopBlobs
            b.add(Layer("prob", "Softmax", [out], ["prob"], phase="TEST"))
            _accuracy(b, "accuracy_train_top01", out)
            if target == "age":
                _accuracy(b, "accuracy_train_top02", out, top_k=2)
        else:
            _accuracy(b, "accuracy", out)
            if fam == "C" and target == "age":
                _accuracy(b, "accuracy_top2", out, top_k=2)
            b.add(Layer("loss", "SoftmaxWithLoss", [out, "label"], ["loss"]))
    return "\n".join(head + [line for layer in b.layers for line in layer.text(v1)]) + "\n"


def solver_text(folder: str, fold: int) -> str:
    fam = family(folder)
    lr, gamma, step, max_iter, snap, test_iter, interval, display = {
        "A": (0.001, 0.1, 10000, 950, 50, 1000, 1000, 20), "C": (0.001, 0.1, 10000, 950, 50, 1000, 1000, 20),
        "G": (0.01, 0.1, 55000, 950, 50, 1000, 1000, 20), "V": (0.0001, 0.1, 12500, 2400, 100, 10, 10000, 10)}[fam]
    if "finetuning" in folder and fam in "CG":
        gamma = 0.3
        lr = 0.0005 if fam == "G" else lr
    if fam == "V" and folder.endswith("_mixed"):
        step = 25000
    gamma = GAMMA_PER_FOLD.get(folder, (gamma,) * 5)[fold]
    return (f'net: "train_val_test_fold_is_{fold}.prototxt"\ntest_iter: {test_iter}\ntest_interval: {interval}\n'
            f'base_lr: {lr:g}\nlr_policy: "step"\ngamma: {gamma:g}\nstepsize: {step}\ndisplay: {display}\n'
            f'max_iter: {max_iter}\nmomentum: 0.9\nweight_decay: 0.0005\nsnapshot: {snap}\n'
            f'snapshot_prefix: "caffenet_train"\nsolver_mode: GPU\n')


def model_folders() -> list[str]:
    """The 38 folders (spec 1.3): every filled (target, init, arch, variant) combination."""
    from reproduce import grid
    return sorted({c.folder for c in grid.all_cells() if not c.empty and c.table in (2, 3)})


# ---------------------------------------------------------------------------- fold files and lists
def fold_rows(seed: int = 2017, users_per_fold=(6, 4, 5, 7, 5), rows_per_user: int = 7) -> list[list[list[str]]]:
    """Five folds of 12-column rows; users are fold-disjoint; the quirks of spec 4.1 are mixed in."""
    rng = random.Random(seed)
    folds = []
    for k in range(5):
        rows = []
        for u in range(users_per_fold[k]):
            user = f"{rng.randrange(10**7, 10**8)}@N0{k}"
            for j in range(rows_per_user):
                image = f"{rng.randrange(10**10, 10**11)}_{rng.getrandbits(40):010x}_o.jpg"
                face_id = str(100 * k + 10 * u + j)
                r = rng.random()
                if k == 0 and j == 0:
                    age = "(25, 23)"                       # Q-D1: the repair never fires
                elif r < 0.08:
                    age = rng.choice(OFF_GRID_AGES)
                else:
                    age = rng.choice(AGE_STRINGS)
                gender = rng.choice(("m", "f")) if rng.random() > 0.12 else rng.choice(("u", ""))
                geometry = [str(rng.randrange(0, 2000)) for _ in range(4)]
                rows.append([user, image, face_id, age, gender, *geometry, str(rng.choice((-95, 0, 15))),
                             str(rng.choice((0, 30, -45))), str(rng.randrange(0, 200))])
        rows += [list(rows[i]) for i in (1, 5)]            # duplicated rows are kept upstream
        folds.append(rows)
    return folds


def label(target: str, row: list[str]) -> int | None:
    """Spec 4.2, written independently of reproduce.folds."""
    if target == "age":
        age = {"(25 23)": "(25 32)"}.get(row[3], row[3])  # upstream's repair string lacks the comma
        return AGE_STRINGS.index(age) if age in AGE_STRINGS else None
    return {"m": 0, "f": 1}.get(row[4])


def _path(row, prefix):
    return f"{row[0]}/{prefix}.{row[2]}.{row[1]}"


def upstream_split(folds, k: int, variant: str, rng: random.Random) -> tuple[dict, int, list]:
    """Spec 4.3 for test fold ``k``: {(target, part): [line, ...]}, N and the lost pool element.

    Like upstream, the draw is whatever the RNG gives; unlike it, a draw whose lost element (Q-D2)
    lacks a valid age or gender label is drawn again, so that the loss shows in both targets' lists
    (as it does in every real fold and variant)."""
    prefixes = PREFIXES[variant]
    test = [(row, p) for row in folds[k] for p in prefixes]
    test = rng.sample(test, len(test))
    pool0 = [(row, p) for kk in range(5) if kk != k for row in folds[kk] for p in prefixes]
    while True:
        pool = rng.sample(pool0, len(pool0))
        n10 = len(pool) // 10
        lost = pool[n10]
        if all(label(t, lost[0]) is not None for t in TARGETS):
            break
    parts = {"train": pool[n10 + 1:], "val": pool[:n10], "test": test, "train_subset": pool[n10 + 1: 2 * n10]}
    lists = {}
    for target in TARGETS:
        for part, entries in parts.items():
            lists[(target, part)] = [f"{_path(row, p)} {label(target, row)}" for row, p in entries
                                     if label(target, row) is not None]
    return lists, len(pool), lost


def fold_file_text(rows) -> str:
    header = "user_id\toriginal_image\tface_id\tage\tgender\tx\ty\tdx\tdy\ttilt_ang\tfiducial_yaw_angle\tfiducial_score"
    return header + "\n" + "".join("\t".join(r) + "\n" for r in rows)


# ---------------------------------------------------------------------------- means
def mean_bytes(variant: str, fold: int) -> tuple[bytes, tuple[float, float, float]]:
    """A 3x256x256 mean as Caffe's compute_image_mean writes it (legacy dims, no shape); each channel
    is its base value +-0.25 in a checkerboard, so its mean is the base value exactly."""
    from converters.proto import caffe_pb2 as pb
    base = tuple(m + fold + 0.5 * "irm".index(variant) for m in MEAN_BGR)
    checker = np.indices((256, 256)).sum(0) % 2 * 0.5 - 0.25
    arr = np.stack([b + checker for b in base]).astype(np.float32)
    blob = pb.BlobProto(num=1, channels=3, height=256, width=256)
    blob.data.extend(arr.ravel().tolist())
    return blob.SerializeToString(), base


# ---------------------------------------------------------------------------- the tree
def build(root: Path) -> UpstreamTree:
    """Write the stand-in under ``root/lapuschkin-2017`` and its manifest beside it."""
    tree = Path(root) / "lapuschkin-2017"
    files: dict[str, bytes] = {}
    for folder in model_folders():
        d = f"model_definitions/{folder}/"
        files[d + "deploy.prototxt"] = net_text(folder, "deploy").encode()
        for k in range(5):
            files[d + f"train_val_test_fold_is_{k}.prototxt"] = net_text(folder, "train_val", k).encode()
            files[d + f"solver_test_fold_is_{k}.prototxt"] = solver_text(folder, k).encode()
            if folder == "age_fromscratch_caffereference":
                files[d + f"test_fold_is_{k}.prototxt"] = net_text(folder, "test", k).encode()
    folds = fold_rows()
    for k, rows in enumerate(folds):
        files[f"folds/original_txt_files/fold_{k}_data.txt"] = fold_file_text(rows).encode()
    facts = {"rows": [len(f) for f in folds], "pool_sizes": [], "lists": {}}
    rng = random.Random("stand-in, unseeded upstream")
    for variant in "irm":
        for k in range(5):
            lists, n, _ = upstream_split(folds, k, variant, rng)
            if variant == "i":
                facts["pool_sizes"].append(n)
            for (target, part), lines in lists.items():
                facts["lists"][(variant, k, target, part)] = len(lines)
                files[f"folds/{LIST_FOLDER[variant]}/test_fold_is_{k}/{target}_{part}.txt"] = \
                    "".join(line + "\n" for line in lines).encode()
    facts["test_hist"] = {}
    for k, rows in enumerate(folds):
        for target in TARGETS:
            hist = Counter(label(target, r) for r in rows)
            facts["test_hist"][(k, target)] = [hist[c] for c in range(CLASSES[target])]
    facts["mean_bgr"] = {}
    for variant in "irm":
        for k in range(5):
            data, base = mean_bytes(variant, k)
            files[f"mean_images/mean_image{SUFFIX[variant]}/Test_fold_is_{k}/mean.binaryproto"] = data
            facts["mean_bgr"][(variant, k)] = base
    files["heatmap_drawing/synset_age.txt"] = "\n".join(SYNSET_AGE).encode()
    files["heatmap_drawing/synset_gender.txt"] = b"m\nf"
    for rel, data in files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(data)
    layout = json.loads(MANIFEST.read_text())["layout"]
    manifest = {"repository": "stand-in/understanding-age-gender-deep-learning-models", "commit": "0" * 40,
                "url_template": "https://upstream-stand-in.invalid/{path}", "layout": layout,
                "total_bytes": sum(map(len, files.values())),
                "files": [{"path": rel, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                          for rel, data in sorted(files.items())]}
    mpath = Path(root) / "upstream_manifest.json"
    mpath.write_text(json.dumps(manifest, indent=1))
    facts["n_files"] = len(files)
    return UpstreamTree(tree, True, mpath, facts)
