"""The follow-up studies (``run.py --study mtl2022 | fusion2022``): model sizes, losses, early stopping,
the FairFace/UTKFace readers, fusion routing, the per-race breakdown, and tiny end-to-end runs on
synthetic data (1 epoch, small inputs, one torch thread).  Offline; no real data or weights."""
import json

import cv2
import numpy as np
import pytest
import torch

from reproduce import modes, run
from reproduce.studies import run_study
from reproduce.studies import datasets as D
from reproduce.studies import fusion2022, models, published
from reproduce.studies.train_loop import (EarlyStopping, binary_loss, fit, multitask_loss, run_early_stopping,
                                          softmax_loss, validation_loss)


def cli(argv):
    """The study mode's parser (``run.py --study ...`` / ``run.py study ...``) and run_study."""
    return run_study(modes.build_parser("study").parse_args(argv))


FAST = ["--epochs", "1", "--workers", "0", "--threads", "1", "--no-progress"]


# ---------------------------------------------------------------------------- mtl2022 models
@pytest.mark.parametrize("kind,count", [("gender", 7_192_065), ("age", 7_192_968), ("multitask", 14_287_625)])
def test_mtl2022_parameter_counts_equal_published(kind, count):
    assert models.mtl_param_count(kind) == count
    row = next(r for r in published.study("mtl2022")["rows"] if r.get("model") == kind)
    assert row["published_params"] == count


def test_mtl2022_table1_shapes():
    net = models.mtl_model("multitask", 227).eval()
    sizes = []
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[1:])))
             for name, m in net.trunk.named_children() if name[:4] in ("conv", "pool")]
    with torch.no_grad():
        out = net(torch.zeros(1, 3, 227, 227))
    for h in hooks:
        h.remove()
    assert sizes == [(24, 221, 221), (24, 110, 110), (64, 106, 106), (64, 52, 52), (96, 50, 50), (96, 24, 24)]
    assert out["gender"].shape == (1,) and out["age"].shape == (1, 8)
    # the multi-task net = the shared trunk + the two single-task branches
    trunk = models.count_params(net.trunk)
    assert trunk == 97_408
    assert models.mtl_param_count("gender") + models.mtl_param_count("age") - trunk == 14_287_625


# ---------------------------------------------------------------------------- losses, early stopping
def test_multitask_loss_weighting():
    g = torch.randn(6, generator=torch.Generator().manual_seed(0))
    a = torch.randn(6, 8, generator=torch.Generator().manual_seed(1))
    labels = {"gender": torch.tensor([0, 1, 1, -1, 0, 1]), "age": torch.tensor([3, -1, 0, 7, 2, 5])}
    lg = torch.nn.functional.binary_cross_entropy_with_logits(g[[0, 1, 2, 4, 5]], torch.tensor([0., 1, 1, 0, 1]))
    la = torch.nn.functional.cross_entropy(a[[0, 2, 3, 4, 5]], torch.tensor([3, 0, 7, 2, 5]))
    out = {"gender": g, "age": a}
    assert torch.allclose(binary_loss(g, labels["gender"]), lg)
    assert torch.allclose(softmax_loss(a, labels["age"]), la)
    for gamma in (0.0, 0.25, 0.5, 1.0):
        assert torch.allclose(multitask_loss(out, labels, gamma), gamma * lg + (1 - gamma) * la)
    # no annotated image for a task: that term is 0 (and still differentiable)
    none = {"gender": torch.full((6,), -1), "age": labels["age"]}
    assert torch.allclose(multitask_loss(out, none, 0.3), 0.7 * la)
    with pytest.raises(ValueError):
        multitask_loss(out, labels, 1.5)


def test_early_stopping_on_a_toy_loss_sequence():
    seq = [1.0, 0.8, 0.9, 0.7, 0.75, 0.72, 0.71, 0.74, 0.5]
    assert run_early_stopping(seq, patience=3) == (7, 4)         # best 0.7 at epoch 4, stops after 5, 6, 7
    assert run_early_stopping(seq, patience=5) == (9, 9)         # never 5 in a row: runs out, best is the last
    assert run_early_stopping([1.0, 1.0, 1.0], patience=2) == (3, 1)   # equal is no improvement
    assert run_early_stopping([1.0, 0.95, 0.9], patience=1, min_delta=0.06) == (2, 1)
    es = EarlyStopping(patience=2)
    for epoch, v in enumerate([3.0, 2.0, 2.5, 2.1], start=1):
        es.step(v, {"w": torch.tensor(float(epoch))})
    assert es.stop and es.best_epoch == 2 and es.best_state["w"].item() == 2.0


def test_fit_restores_the_best_checkpoint():
    torch.manual_seed(0)
    x = torch.randn(32, 1)
    y = 3 * x
    data = [(x, {"y": y})]
    model = torch.nn.Linear(1, 1)
    loss = lambda out, lab: torch.nn.functional.mse_loss(out, lab["y"])  # noqa: E731

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = model

        def forward(self, inp):
            return self.lin(inp)

    m = M()
    opt = torch.optim.SGD(m.parameters(), lr=1.2)          # overshoots: the loss bounces, then grows
    hist = fit(m, data, data, loss, opt, max_epochs=12, patience=3, progress=False)
    assert hist.best_epoch == int(np.argmin(hist.val_loss)) + 1
    assert hist.epochs == len(hist.val_loss) and hist.epochs - hist.best_epoch <= 3
    assert validation_loss(m, data, loss, "cpu") == pytest.approx(hist.best_val_loss, rel=1e-6)
    assert hist.val_loss[-1] > hist.best_val_loss


# ---------------------------------------------------------------------------- readers
def _jpg(path, value=128, size=32):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((size, size, 3), value, np.uint8)
    img[: size // 2] = 255 - value
    assert cv2.imwrite(str(path), img)


def write_fairface(root, n_train=32, n_val=16, seed=0):
    rng = np.random.default_rng(seed)
    for part, n in (("train", n_train), ("val", n_val)):
        lines = ["file,age,gender,race,service_test"]
        for i in range(n):
            age, gender = D.FAIRFACE_AGES[i % 9], D.FAIRFACE_GENDERS[i % 2]
            race = D.FAIRFACE_RACES[(i // 2) % 7]
            _jpg(root / part / f"{i + 1}.jpg", value=40 if gender == "Male" else 200 + int(rng.integers(0, 20)))
            lines.append(f"{part}/{i + 1}.jpg,{age},{gender},{race},{'True' if i % 3 else 'False'}")
        (root / D.FAIRFACE_FILES[part]).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def write_utkface(root, n=40):
    for i in range(n):
        age, gender, race = (i * 7) % 117, i % 2, (i // 2) % 5
        _jpg(root / f"{age}_{gender}_{race}_2017011617{i:07d}.jpg.chip.jpg", value=40 + 150 * gender)
    return root


def test_fairface_reader(tmp_path):
    root = write_fairface(tmp_path / "ff", n_train=9, n_val=2)
    items = D.read_fairface_csv(root / "fairface_label_train.csv", root)
    assert len(items) == 9 and items[0].key == "train/1.jpg" and items[0].path == root / "train" / "1.jpg"
    assert items[8].labels == {"gender": 0, "age": 8, "race": 4}          # more than 70, Male, Middle Eastern
    assert items[3].labels == {"gender": 1, "age": 3, "race": 1}          # 20-29, Female, Indian
    # the older CSVs without service_test parse too
    (tmp_path / "old.csv").write_text("file,age,gender,race\nval/1.jpg,3-9,Female,Latino_Hispanic\n")
    assert D.read_fairface_csv(tmp_path / "old.csv")[0].labels == {"gender": 1, "age": 1, "race": 5}


@pytest.mark.parametrize("line,needle", [
    ("train/2.jpg,70+,Male,White,True", "unknown age group '70+'"),
    ("train/2.jpg,20-29,male,White,True", "unknown gender 'male'"),
    ("train/2.jpg,20-29,Male,Asian,True", "unknown race 'Asian'"),
    ("train/2.jpg,20-29,Male,White", "expected 5 comma-separated columns"),
    ("train/2.jpg,20-29,Male,White,yes", "service_test"),
    (",20-29,Male,White,True", "relative image path"),
])
def test_fairface_reader_names_file_and_line(tmp_path, line, needle):
    f = tmp_path / "fairface_label_train.csv"
    f.write_text(f"file,age,gender,race,service_test\ntrain/1.jpg,0-2,Female,Black,False\n{line}\n")
    with pytest.raises(D.DatasetError) as err:
        D.read_fairface_csv(f)
    assert str(err.value).startswith(f"{f}:3: ") and needle in str(err.value)


def test_fairface_reader_bad_header(tmp_path):
    f = tmp_path / "x.csv"
    f.write_text("file,gender,age,race\n")
    with pytest.raises(D.DatasetError, match=r"x\.csv:1: expected the header"):
        D.read_fairface_csv(f)


def test_utkface_reader(tmp_path):
    root = write_utkface(tmp_path / "utk", n=6)
    (root / "notes.txt").write_text("not an image")
    (root / "part2").mkdir()
    _jpg(root / "part2" / "116_1_4_20170120134315346.jpg")              # in-the-wild naming, max age
    items, skipped = D.read_utkface_dir(root)
    assert len(items) == 7 and not skipped
    by_key = {it.key: it.labels for it in items}
    assert by_key["part2/116_1_4_20170120134315346.jpg"] == {"gender": 1, "age": 8, "race": 4}
    assert by_key["7_1_0_20170116170000001.jpg.chip.jpg"] == {"gender": 1, "age": 1, "race": 0}
    assert [D.age_group(a) for a in (0, 2, 3, 9, 10, 19, 20, 69, 70, 116)] == [0, 0, 1, 1, 2, 2, 3, 7, 8, 8]
    # a name without the race field (as three files of the public release) -> error naming the file
    bad = root / "39_1_20170116174525125.jpg.chip.jpg"
    _jpg(bad)
    with pytest.raises(D.DatasetError) as err:
        D.read_utkface_dir(root)
    assert str(bad) in str(err.value) and "--skip-malformed" in str(err.value)
    items, skipped = D.read_utkface_dir(root, skip_malformed=True)
    assert len(items) == 7 and skipped == [bad.name]
    for name, needle in (("117_0_0_20170116174525125.jpg", "age 117"), ("20_2_0_20170116174525125.jpg", "gender 2"),
                         ("20_0_5_20170116174525125.jpg", "race 5")):
        with pytest.raises(D.DatasetError, match=needle) as err:
            D.parse_utk_name(name)
        assert name in str(err.value)


def test_join_targets_is_a_multiset_join():
    joined = D.join_targets({"gender": [("a", 0), ("b", 1), ("a", 0)], "age": [("a", 3), ("c", 5), ("a", 4), ("a", 6)]})
    assert joined == [("a", {"gender": 0, "age": 3}), ("b", {"gender": 1, "age": -1}), ("a", {"gender": 0, "age": 4}),
                      ("c", {"gender": -1, "age": 5}), ("a", {"gender": -1, "age": 6})]


# ---------------------------------------------------------------------------- fusion routing, breakdown
class Const(torch.nn.Module):
    def __init__(self, outputs):
        super().__init__()
        self.outputs = outputs
        self.seen = []

    def forward(self, x):
        self.seen.append(x[:, 0, 0, 0].tolist())
        return {t: v.expand(x.shape[0], -1).clone() for t, v in self.outputs.items()}


def test_fusion_routes_by_predicted_gender():
    class Gender(torch.nn.Module):
        def forward(self, x):                   # female when the first pixel is positive
            f = x[:, 0, 0, 0]
            return {"gender": torch.stack([-f, f], 1)}

    male = Const({"age": torch.tensor([[5.0, 0, 0]]), "race": torch.tensor([[0.0, 7]])})
    female = Const({"age": torch.tensor([[0.0, 0, 9]]), "race": torch.tensor([[8.0, 0]])})
    model = fusion2022.FusionModel(Gender(), {0: male, 1: female})
    x = torch.tensor([1.0, -2.0, 3.0, -4.0, 5.0]).view(5, 1, 1, 1).expand(5, 3, 2, 2)
    out = model(x)
    assert model.last_route.tolist() == [1, 0, 1, 0, 1]
    assert out["gender"].argmax(1).tolist() == [1, 0, 1, 0, 1]
    assert out["age"].argmax(1).tolist() == [2, 0, 2, 0, 2]
    assert out["race"].argmax(1).tolist() == [0, 1, 0, 1, 0]
    assert male.seen == [[-2.0, -4.0]] and female.seen == [[1.0, 3.0, 5.0]]   # each image to one expert only


def test_per_race_breakdown_table():
    races = np.array([0, 0, 1, 1, 1, 3])
    labels = np.array([2, 3, 4, 4, 1, 0])
    pred = np.array([2, 0, 4, 4, 4, 0])
    names = D.FAIRFACE_RACES
    table = fusion2022.accuracy_by(pred, labels, races, names)
    assert table["East Asian"] == (2, 0.5)
    assert table["Indian"] == (3, pytest.approx(2 / 3))
    assert table["White"] == (1, 1.0) and table["Black"] == (0, None)
    from reproduce.studies.outputs import breakdown_markdown
    md = breakdown_markdown("age accuracy per race", list(names), {"ours": table}, {"East Asian": 0.74})
    assert "| East Asian | 74.0 | 50.0 (n=2) |" in md and "| Black | - | - |" in md


# ---------------------------------------------------------------------------- CLI: list, missing inputs
def test_list_prints_each_study_with_published_numbers(capsys):
    assert cli(["--study", "mtl2022", "--list"]) == 0
    text = capsys.readouterr().out
    for s in ("7,192,065", "7,192,968", "14,287,625", "84.8 +- 1.1", "46.8 +- 3.7", "84.0 +- 1.4", "47.3 +- 4.9",
              "89.3 +- 1.4", "49.4 +- 4.9", "86.8 +- 1.4", "50.7 +- 5.1", "50.8", "34.2", "26.0", "14.2"):
        assert s in text
    assert cli(["--study", "fusion2022", "--list"]) == 0
    text = capsys.readouterr().out
    for s in ("0.916", "0.551", "0.661", "0.935", "0.579", "0.698", "0.196", "0.850", "0.740", "Latino_Hispanic"):
        assert s in text
    assert cli(["--list"]) is None and cli(["--study", "lapuschkin2017", "--list"]) is None   # default study


def test_missing_data_or_weights_exit_2(tmp_path, capsys):
    assert cli(["--study", "mtl2022", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "neither --adience DIR" in err and "Adience-data.html" in err and "--init FILE was not given" in err
    assert cli(["--study", "mtl2022", "--adience", str(tmp_path / "nope"), "--fold-lists", str(tmp_path),
                "--row", "gender"]) == 2
    err = capsys.readouterr().err
    assert "nope/aligned does not exist" in err and "fold lists not found" in err
    assert cli(["--study", "fusion2022"]) == 2
    err = capsys.readouterr().err
    assert "https://github.com/joojs/fairface" in err and "https://susanqq.github.io/UTKFace/" in err
    assert "--init FILE was not given" in err
    assert cli(["--study", "fusion2022", "--fairface", str(tmp_path), "--init", "scratch"]) == 2
    assert "fairface_label_train.csv not found" in capsys.readouterr().err
    utk = write_utkface(tmp_path / "utk", n=4)
    _jpg(utk / "61_1_20170109150557335.jpg.chip.jpg")
    assert cli(["--study", "fusion2022", "--utkface", str(utk), "--init", "scratch", "--out", str(tmp_path / "o")]) == 2
    assert "61_1_20170109150557335.jpg.chip.jpg: file name does not parse" in capsys.readouterr().err
    assert cli(["--study", "mtl2022", "--row", "bogus"]) == 2
    assert "not a row of study mtl2022" in capsys.readouterr().err
    assert cli(["--study", "mtl2022", "--gamma", "2", "--list"]) == 2


# ---------------------------------------------------------------------------- tiny end-to-end runs
TINY_PROTOTXT = """name: "tiny"
input: "data"
input_shape { dim: 1 dim: 3 dim: 40 dim: 40 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 8 kernel_size: 3 stride: 2 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2"
        convolution_param { num_output: 16 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc3" type: "InnerProduct" bottom: "pool2" top: "fc3"
        inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "prob" type: "Softmax" bottom: "fc3" top: "prob" }
"""


@pytest.fixture(scope="module")
def adience(tmp_path_factory):
    from reproduce import folds, synthetic
    import converters

    root = tmp_path_factory.mktemp("studies")
    synthetic.generate(root / "adience", seed=0, rows_per_fold=30, users_per_fold=3, image_size=48)
    folds.make_fold_lists(root / "adience", root / "folds", variants=["i"], test_folds=[0])
    (root / "tiny.prototxt").write_text(TINY_PROTOTXT)
    converters.save_caffemodel(converters.load_caffe(str(root / "tiny.prototxt")), root / "tiny.caffemodel")
    return root


def test_mtl2022_tiny_run(adience, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--study", "mtl2022", "--adience", str(adience / "adience"), "--fold-lists", str(adience / "folds"),
            "--folds", "0", "--input-size", "40", "--resize", "48", "--transfer-input-size", "40", "--batch", "16",
            "--backbone", str(adience / "tiny.prototxt"), "--init", str(adience / "tiny.caffemodel"),
            "--trainable-layers", "3", "--gamma", "0.3", "--out", str(out), *FAST]
    assert cli(argv) == 0
    text = capsys.readouterr().out
    assert "| adience | multi-task model | gender | 84.0 +- 1.4 |" in text
    res = json.loads((out / "results.json").read_text())
    cells = {(c["row"], c["target"]): c for c in res["cells"]}
    assert set(cells) == {("baseline", "gender"), ("baseline", "age"), ("gender", "gender"), ("age", "age"),
                          ("multitask", "gender"), ("multitask", "age"), ("transfer", "gender"), ("transfer", "age")}
    mt = cells[("multitask", "age")]
    assert mt["published"]["paper"] == {"acc": 0.473, "acc_std": 0.049, "epochs": 26.0}
    assert mt["published_params"] == 14_287_625 and mt["gamma"] == 0.3
    assert [f["fold"] for f in mt["folds"]] == [0] and mt["folds"][0]["epochs"] == 1
    assert 0.0 <= mt["mean"]["acc"] <= 1.0 and mt["mean"]["epochs"] == 1.0
    base = cells[("baseline", "gender")]
    assert base["empty"] and base["published"]["paper"]["acc"] == 0.868 and not base["folds"]
    tr = cells[("transfer", "gender")]
    assert tr["backbone_blob"] == "pool2" and tr["trainable_backbone_layers"] == ["conv2", "relu2", "pool2"]
    # the frozen backbone layer kept its weights, the trainable one moved
    import converters
    ref = converters.load_caffe(str(adience / "tiny.prototxt"), str(adience / "tiny.caffemodel")).state_dict()
    ck = torch.load(out / "checkpoints" / "transfer_fold0.pt")
    assert torch.equal(ck["backbone.layers.conv1.weight"], ref["layers.conv1.weight"])
    assert not torch.equal(ck["backbone.layers.conv2.weight"], ref["layers.conv2.weight"])
    csv_text = (out / "results.csv").read_text()
    assert csv_text.startswith("study,dataset,row,name,target,fold,images,acc,epochs")
    assert "mtl2022,adience,multitask,multi-task model,age,0," in csv_text
    assert (out / "results.png").stat().st_size > 1000
    assert (out / "predictions" / "multitask_fold0.csv").is_file()
    # a second run reuses every fold result from the cache
    assert cli(argv) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["summary"]["cached_fold_results"] == 4
    assert again["cells"] == res["cells"]


def test_fusion2022_tiny_run(tmp_path, capsys):
    ff = write_fairface(tmp_path / "fairface", n_train=40, n_val=14)
    utk = write_utkface(tmp_path / "utk", n=30)
    init = tmp_path / "resnet18_w4.pth"
    torch.save(models.ResNet("resnet18", width=4).state_dict(), init)
    out = tmp_path / "out"
    argv = ["--study", "fusion2022", "--fairface", str(ff), "--utkface", str(utk), "--init", str(init),
            "--arch", "resnet18", "--resnet-width", "4", "--input-size", "32", "--resize", "36", "--batch", "8",
            "--out", str(out), *FAST]
    assert cli(argv) == 0
    text = capsys.readouterr().out
    assert "FairFace: age accuracy per race" in text and "| East Asian | 74.0 |" in text
    res = json.loads((out / "results.json").read_text())
    cells = {(c["dataset"], c["row"], c["target"]): c for c in res["cells"]}
    assert len(cells) == 12
    assert cells[("fairface", "fusion", "gender")]["published"]["paper"] == {"acc": 0.935}
    assert cells[("fairface", "end2end", "race")]["published"]["paper"] == {"acc": 0.661}
    assert cells[("utkface", "end2end", "age")]["published"]["paper"] == {"acc": 0.196}
    assert cells[("utkface", "fusion", "age")]["published"]["paper"] is None
    age = cells[("fairface", "fusion", "age")]
    assert age["folds"][0]["images"] == 14 and 0.0 <= age["mean"]["acc"] <= 1.0
    assert set(age["epochs_by_model"]) == {"gender", "male", "female"}
    by_race = {b["group"]: b for b in age["by_race"]}
    assert by_race["East Asian"]["published"] == 0.74 and sum(b["images"] for b in age["by_race"]) == 14
    assert {b["group"] for b in cells[("utkface", "end2end", "race")]["by_race"]} == set(D.UTK_RACES)
    e2e = cells[("fairface", "end2end", "gender")]
    assert e2e["folds"][0]["epochs"] == 1 and e2e["sizes"] == {"train": 36, "val": 4}
    assert cells[("fairface", "fusion", "age")]["sizes"]["male"]["train"] == 36       # half repeated to full size
    bd = (out / "breakdown.csv").read_text().splitlines()
    assert bd[0] == "dataset,row,target,by,group,images,acc,published_acc"
    assert any(line.startswith("fairface,fusion,age,race,East Asian,") and line.endswith(",0.74") for line in bd)
    assert (out / "results.png").is_file() and (out / "results.csv").is_file()
    # weights of another net are refused with the file named, exit 2
    torch.save(models.ResNet("resnet34", width=4).state_dict(), tmp_path / "r34.pth")
    argv[argv.index(str(init))] = str(tmp_path / "r34.pth")
    argv[argv.index("--out") + 1] = str(tmp_path / "out2")
    assert cli(argv) == 2
    assert "r34.pth: not a resnet18" in capsys.readouterr().err


def test_study_options_are_the_study_modes_own():
    """The study mode's parser leaves the study settings at None and the study code fills in its own
    (normalized); its --init is a weights FILE while the train mode's --init is a folder, and
    run.py's flag style parses the same namespace."""
    from reproduce.studies import normalized
    argv = ["--study", "fusion2022", "--init", "x.pth", "--resize", "36"]
    args = modes.build_parser("study").parse_args(argv)
    assert args.seed is None and args.init == "x.pth" and args.resize == 36
    ns = normalized(args)
    assert ns.seed == 0 and ns.workers == 2 and ns.resnet_width == 64 and ns.backbone_mean == "104,117,123"
    assert vars(run.build_parser().parse_args(argv)) == vars(args)
    assert vars(run.build_parser().parse_args(["study", "fusion2022", *argv[2:]])) == vars(args)
    study_init = modes.build_parser("study")._option_string_actions["--init"]
    train_init = modes.build_parser("train")._option_string_actions["--init"]
    assert study_init.metavar == "FILE" and train_init.metavar == "DIR"


def test_mtl2022_from_lmdbs_with_ten_crops(adience, tmp_path, capsys):
    """--lmdb: the 2017 LMDB layout; the LMDB keys (%08d_<path>) join the age and gender entries like the
    lists do; --test-crops 10 scores the 2017 10-crop average."""
    from converters.formats.lmdb_io import convert_imageset
    lists = adience / "folds" / D.ADIENCE_LIST_DIR / "test_fold_is_0"
    for t in ("gender", "age"):
        for part in ("train", "val", "test"):
            convert_imageset(adience / "adience" / "aligned", lists / f"{t}_{part}.txt",
                             D.adience_lmdb_path(tmp_path / "lmdbs", 0, t, part), resize_height=48, resize_width=48,
                             shuffle=True, seed=f"{t}/{part}", progress=False)
    from_lmdb = D.lmdb_items(tmp_path / "lmdbs", 0, "val")
    from_lists = D.adience_items(adience / "adience", adience / "folds", 0, "val")
    assert sorted((it.key, sorted(it.labels.items())) for it in from_lmdb) == \
        sorted((it.key, sorted(it.labels.items())) for it in from_lists)
    assert from_lmdb[0].image.shape == (3, 48, 48) and from_lmdb[0].path is None
    out = tmp_path / "out"
    assert cli(["--study", "mtl2022", "--lmdb", str(tmp_path / "lmdbs"), "--row", "gender", "--folds", "0",
                "--input-size", "40", "--resize", "48", "--batch", "16", "--test-crops", "10", "--out", str(out),
                *FAST]) == 0
    cell = next(c for c in json.loads((out / "results.json").read_text())["cells"] if c["row"] == "gender")
    n_test = len(D.read_adience_list(lists / "gender_test.txt"))
    assert cell["folds"][0]["images"] == n_test
    assert json.loads((out / "results.json").read_text())["settings"]["test_crops"] == 10


def test_transfer_backbone_cut_on_the_2017_nets(upstream_tree):
    """Default cut = the last 4-D blob (include_top=False): GoogLeNet's auxiliary heads are pruned, the
    trailing dropout of the classifier is left out.  The 2017 deploys are the real ones, else the
    stand-in's (same families, tests/upstream_standin.py)."""
    upstream = upstream_tree.root
    from converters.formats import filter_net, read_net
    cases = {"age_fromscratch_googlenet": "pool5/7x7_s1", "age_fromscratch_caffereference": "pool5",
             "age_net_definitions": "pool5"}
    for folder, blob in cases.items():
        net = filter_net(read_net(upstream / "model_definitions" / folder / "deploy.prototxt"), "TEST")
        assert models.default_blob(net, "data", 227) == blob
        cut = models.truncate_net(net, blob)
        names = [layer.name for layer in cut.layer]
        assert cut.layer[-1].top[-1] == blob and not any(n.startswith(("loss1/", "loss2/", "fc")) for n in names)
    with pytest.raises(models.ModelError, match="no blob 'nope'"):
        models.truncate_net(net, "nope")
