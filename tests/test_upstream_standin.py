"""The synthetic upstream stand-in (tests/upstream_standin.py) is what the tests running on it assume:
its manifest pins its files, its fold files carry the quirks, and -- where the real files are present --
its nets and solvers have the real ones' structure, so a test passing on it proves what it proves on them."""
import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest
from google.protobuf import text_format

import upstream_standin as S
from converters.formats import read_net, read_solver


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    return S.build(tmp_path_factory.mktemp("standin"))


def test_manifest_pins_every_file_of_the_tree(standin):
    m = json.loads(standin.manifest.read_text())
    on_disk = sorted(p.relative_to(standin.root).as_posix() for p in standin.root.rglob("*") if p.is_file())
    assert [f["path"] for f in m["files"]] == on_disk and len(on_disk) == standin.facts["n_files"]
    for f in m["files"][::40]:
        data = (standin.root / f["path"]).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (f["size"], f["sha256"])
    assert m["layout"] == json.loads(S.MANIFEST.read_text())["layout"]


def test_fold_files_carry_the_quirks(standin):
    rows = [line.split("\t") for k in range(5) for line in
            (standin.root / f"folds/original_txt_files/fold_{k}_data.txt").read_text().splitlines()[1:]]
    ages, genders = Counter(r[3] for r in rows), Counter(r[4] for r in rows)
    assert ages["(25, 23)"] and sum(n for a, n in ages.items() if a not in S.AGE_STRINGS) > ages["(25, 23)"]
    assert genders["u"] and genders[""] and genders["m"] and genders["f"]
    assert len(rows) > len({tuple(r) for r in rows})                     # duplicated rows
    users = [{r[0] for r in (line.split("\t") for line in (standin.root / f"folds/original_txt_files/"
              f"fold_{k}_data.txt").read_text().splitlines()[1:])} for k in range(5)]
    assert sum(map(len, users)) == len(set().union(*users))               # subject-disjoint folds


def _structure(path: Path):
    """Layers without what the stand-in does not copy: fillers (xavier's std is ignored by Caffe),
    accuracy-layer names, and the data paths' root folder."""
    out = []
    for layer in read_net(path).layer:
        for p in (layer.convolution_param, layer.inner_product_param):
            p.ClearField("weight_filler")
            p.ClearField("bias_filler")
        if layer.type == "Accuracy":
            layer.name = layer.top[0] = "accuracy"
        if layer.type == "Data":
            layer.data_param.source = layer.data_param.source.split("AgeGenderDeepLearning")[-1]
            layer.transform_param.mean_file = layer.transform_param.mean_file.split("AgeGenderDeepLearning")[-1]
        out.append(text_format.MessageToString(layer, as_one_line=True))
    return out


def test_nets_and_solvers_have_the_real_ones_structure(upstream, standin):
    """Against the real files: the same file list and, per net, the same layers in the same order."""
    real = sorted(p.relative_to(upstream).as_posix() for p in upstream.rglob("*") if p.is_file())
    mine = sorted(p.relative_to(standin.root).as_posix() for p in standin.root.rglob("*") if p.is_file())
    assert real == mine
    nets = [r for r in real if r.endswith(".prototxt") and "/solver_" not in r]
    for rel in [r for r in nets if "fold_is_" not in r or "fold_is_1" in r]:   # every deploy, one fold each
        assert _structure(upstream / rel) == _structure(standin.root / rel), rel
    for rel in [r for r in real if "/solver_" in r]:
        a, b = read_solver(upstream / rel), read_solver(standin.root / rel)
        if rel.startswith("model_definitions/age_finetuning_googlenet/"):
            a.max_iter = b.max_iter  # the committed 980 of one folder (a left-over, spec 3.1)
        assert a == b, rel
