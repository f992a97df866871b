"""``reproduce.cell_model``: the files of a cell's fold model (deploy override or the store's,
weights name pattern and iteration, ``--means`` or the store's mean), the load, the errors, and
that the table run, ``--predict``, ``--explain`` and the demo load their cell models through it."""
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from converters.errors import InputError
from converters.formats import write_mean
from reproduce import cell_model, grid, sources
from reproduce.cell_model import CellModelError

CELL = grid.cell(3, "[i]", "A")          # gender, AdienceNet, mean [i], 227x227 crops, final iteration 50000
TINY = ('name: "tiny"\ninput: "data"\ninput_shape { dim: 1 dim: 3 dim: 227 dim: 227 }\n'
        'layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 3 '
        'kernel_size: 57 stride: 57 weight_filler { type: "gaussian" std: 0.01 } } }\n'
        'layer { name: "fc8" type: "InnerProduct" bottom: "conv1" top: "fc8" inner_product_param { num_output: 2 '
        'weight_filler { type: "gaussian" std: 0.1 } } }\n'
        'layer { name: "prob" type: "Softmax" bottom: "fc8" top: "prob" }\n')


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(deploy, caffemodel) of a random 2-class net with the cell's 227x227 input."""
    import converters
    d = tmp_path_factory.mktemp("tiny")
    deploy = d / "deploy.prototxt"
    deploy.write_text(TINY)
    weights = d / "tiny.caffemodel"
    import torch
    with torch.random.fork_rng():       # the fillers draw from torch's RNG: the same net in every session
        torch.manual_seed(0)
        converters.save_caffemodel(converters.load_caffe(str(deploy)), weights)
    return deploy, weights


def archive(root: Path, tiny, folds=(0,), override=True, name=sources.DEFAULT_WEIGHTS_NAME, iteration=None):
    """The model archive layout under root/models and the means under root/means (fold k's mean = k)."""
    deploy, weights = tiny
    models = root / "models"
    if override:
        (models / CELL.folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(deploy, models / CELL.folder / "deploy.prototxt")
    for k in folds:
        w = sources.weights_path(models, CELL.folder, k, iteration or CELL.final_iter, name)
        w.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(weights, w)
        m = sources.mean_path(root / "means", CELL.mean, k)
        m.parent.mkdir(parents=True, exist_ok=True)
        write_mean(np.full((3, 256, 256), float(k), np.float32), m)
    return models, root / "means"


class NoStore:
    """A store that must not be asked: the override and --means cover everything."""

    def deploy(self, folder):
        raise AssertionError(f"store asked for the deploy of {folder}")

    def mean(self, variant, fold):
        raise AssertionError(f"store asked for mean {variant} {fold}")


class FakeStore:
    def __init__(self, deploy, means, fail=False):
        self.deploy_file, self.means, self.fail, self.calls = deploy, means, fail, []

    def deploy(self, folder):
        self.calls.append(("deploy", folder))
        return self.deploy_file

    def mean(self, variant, fold):
        from reproduce.assets import AssetError
        self.calls.append(("mean", variant, fold))
        if self.fail:
            raise AssetError("mean_images/x: cannot be fetched (no network)")
        return sources.mean_path(self.means, variant, fold)


# ---------------------------------------------------------------------------- resolution
def test_override_deploy_name_pattern_iteration_and_means_without_the_store(tmp_path, tiny):
    name = "snap_{folder}_{fold}_{iter}.caffemodel"
    models, means = archive(tmp_path, tiny, folds=(3,), name=name, iteration=1234)
    files = cell_model.resolve_cell_files(CELL, 3, models, weights_name=name, iteration=1234, means_dir=means,
                                          store=NoStore())
    assert files.deploy == models / CELL.folder / "deploy.prototxt"
    assert files.weights == models / CELL.folder / "models_test_is_3" / f"snap_{CELL.folder}_3_1234.caffemodel"
    assert files.mean == means / "mean_image" / "Test_fold_is_3" / "mean.binaryproto"
    assert (files.cell, files.fold, files.iteration) == (CELL, 3, 1234)


def test_without_override_or_means_the_store_gives_deploy_and_mean(tmp_path, tiny):
    models, means = archive(tmp_path, tiny, folds=(2,), override=False)
    store = FakeStore(tiny[0], means)
    files = cell_model.resolve_cell_files(CELL, 2, models, store=store)
    assert store.calls == [("deploy", CELL.folder), ("mean", "i", 2)]
    assert files.deploy == tiny[0] and files.mean == sources.mean_path(means, "i", 2)
    assert files.weights.name == f"caffenet_train_iter_{CELL.final_iter}.caffemodel"   # the cell's final snapshot
    store.calls.clear()
    assert cell_model.resolve_cell_files(CELL, 2, models, store=store, with_mean=False).mean is None
    assert store.calls == [("deploy", CELL.folder)]


def test_missing_weights_is_an_input_error_naming_the_file(tmp_path, tiny):
    models, means = archive(tmp_path, tiny, folds=(0,))
    with pytest.raises(CellModelError) as err:
        cell_model.load_cell_model(CELL, 4, models, means_dir=means, store=NoStore())
    assert isinstance(err.value, InputError)
    want = models / CELL.folder / "models_test_is_4" / f"caffenet_train_iter_{CELL.final_iter}.caffemodel"
    assert str(want) in str(err.value) and "--weights-name" in str(err.value)
    with pytest.raises(CellModelError, match="--weights DIR is needed"):
        cell_model.resolve_cell_files(CELL, 0, None, means_dir=means, store=NoStore())
    with pytest.raises(CellModelError, match="is empty in the paper"):
        cell_model.resolve_cell_files(grid.cell(2, "[i]", "V"), 0, models, store=NoStore())


def test_missing_mean_names_the_file_or_the_store_failure(tmp_path, tiny):
    models, means = archive(tmp_path, tiny, folds=(0, 1))
    (sources.mean_path(means, "i", 1)).unlink()
    with pytest.raises(CellModelError, match="mean_image/Test_fold_is_1/mean.binaryproto: mean image of the"):
        cell_model.resolve_cell_files(CELL, 1, models, means_dir=means, store=NoStore())
    with pytest.raises(CellModelError, match=r"could not be obtained: mean_images/x.*or pass --means DIR"):
        cell_model.resolve_cell_files(CELL, 1, models, store=FakeStore(tiny[0], means, fail=True))


# ---------------------------------------------------------------------------- loading
def test_load_gives_the_eval_net_its_folds_mean_and_the_files(tmp_path, tiny):
    import torch
    models, means = archive(tmp_path, tiny, folds=(0, 3))
    loaded = cell_model.load_cell_model(CELL, 3, models, means_dir=means, store=NoStore())
    assert loaded.model.training is False
    assert loaded.mean.shape == (3, 256, 256) and np.all(loaded.mean == 3.0)      # fold 3's mean, not fold 0's
    assert loaded.weights.parent.name == "models_test_is_3" and loaded.mean_file.parent.name == "Test_fold_is_3"
    assert loaded.deploy == models / CELL.folder / "deploy.prototxt"
    x = torch.rand(2, 3, 227, 227) * 255
    with torch.no_grad():
        prob = loaded.model(x)                                   # the one output: the softmax
    assert prob.shape[:2] == (2, 2) and torch.allclose(prob.sum(1).flatten(), torch.ones(2))


def test_a_caffemodel_of_another_net_is_an_error(tmp_path, tiny):
    import converters
    models, means = archive(tmp_path, tiny, folds=(0,))
    other = tmp_path / "other.prototxt"
    other.write_text(TINY.replace('"fc8"', '"fc_other"'))
    w = sources.weights_path(models, CELL.folder, 0, CELL.final_iter)
    converters.save_caffemodel(converters.load_caffe(str(other)), w)
    with pytest.raises(CellModelError, match=r"no weights for layer\(s\) fc8"):
        cell_model.load_cell_model(CELL, 0, models, means_dir=means, store=NoStore())


# ---------------------------------------------------------------------------- the modes use it
@pytest.fixture
def spy(monkeypatch):
    """Records every call of cell_model.load_cell_files (what load_cell_model also calls)."""
    seen = []
    real = cell_model.load_cell_files

    def record(files, **kw):
        seen.append(files)
        return real(files, **kw)
    monkeypatch.setattr(cell_model, "load_cell_files", record)
    return seen


def _photo(path: Path) -> Path:
    import cv2
    rng = np.random.default_rng(0)
    assert cv2.imwrite(str(path), rng.integers(0, 256, (120, 90, 3), dtype=np.uint8))
    return path


def test_predict_loads_the_cells_fold_models_through_cell_model(tmp_path, tiny, spy):
    from reproduce import predict
    models, means = archive(tmp_path, tiny, folds=(0, 2))
    args = SimpleNamespace(predict=[str(_photo(tmp_path / "a.png"))], table=3, row=["i"], col=["A"], fold="0,2",
                           weights=str(models), means=str(means), assets_dir=str(tmp_path / "assets"),
                           assets_mirror=str(tmp_path / "no-network"), no_progress=True)
    clf = predict.build_classifier(args)
    assert [(f.cell, f.fold) for f in spy] == [(CELL, 0), (CELL, 2)]
    assert [n.model for n in clf.nets] != [] and [n.name for n in clf.nets] == ["fold 0", "fold 2"]
    assert [n.mean_source for n in clf.nets] == [str(f.mean) for f in spy]
    assert [float(n.mean.mean()) for n in clf.nets] == [0.0, 2.0]
    recs, summary = predict.predict(args)
    assert summary["nets"] == 2 and len(recs) == 1 and abs(sum(recs[0]["probs"]) - 1) < 1e-5


def test_explain_loads_through_cell_model(tmp_path, tiny, spy):
    pytest.importorskip("converters.lrp")
    from reproduce import explain
    models, means = archive(tmp_path, tiny, folds=(1,))
    summary = explain.explain_cells([CELL], [_photo(tmp_path / "b.png")], models, folds=[1],
                                    out_dir=tmp_path / "out", means_dir=means, store=NoStore())
    assert [(f.cell, f.fold) for f in spy] == [(CELL, 1)]
    fold = summary["cells"][0]["folds"][1]
    assert fold["weights"] == str(spy[0].weights) and fold["mean"] == str(spy[0].mean)
    assert summary["cells"][0]["deploy"] == str(models / CELL.folder / "deploy.prototxt")


def test_demo_scores_its_models_through_cell_model(tmp_path, monkeypatch):
    from reproduce import demo
    seen = []

    class Stop(Exception):
        pass

    def record(cell, fold, weights_dir, **kw):
        seen.append((cell, fold, Path(weights_dir), kw))
        raise Stop
    monkeypatch.setattr(cell_model, "load_cell_model", record)
    with pytest.raises(Stop):
        demo.evaluate(tmp_path, "age", "m", 3, {"iters": 7, "crop": 56}, "cpu")
    ((cell, fold, weights_dir, kw),) = seen
    assert cell == grid.cell(2, "[m]", "A") and fold == 3 and weights_dir == tmp_path / "models"
    assert kw["iteration"] == 7 and kw["means_dir"] == tmp_path
    # the demo's own layout is what cell_model resolves
    assert demo.model_folder(tmp_path, "age", "m") == weights_dir / cell.folder
    assert demo.mean_file(tmp_path, "m", 3) == sources.mean_path(tmp_path, cell.mean, 3)


def test_the_table_runs_backend_scores_like_torch(tmp_path, tiny):
    """``backend`` as the table run passes it: onnxruntime gives the torch net's probabilities."""
    import torch
    pytest.importorskip("onnxruntime")
    from converters.ort_backend import OrtNet
    models, means = archive(tmp_path, tiny, folds=(0,))
    files = cell_model.resolve_cell_files(CELL, 0, models, means_dir=means, store=NoStore())
    ort = cell_model.load_cell_files(files, backend="onnxruntime")
    net = cell_model.load_cell_files(files)
    assert isinstance(ort.model, OrtNet) and not isinstance(net.model, OrtNet)
    # small seeded inputs: the random net's logits stay small, so summation order cannot move the softmax
    x = torch.rand(3, 3, 227, 227, generator=torch.Generator().manual_seed(0)) * 4 - 2
    with torch.no_grad():
        want = net.model(x)
        assert want.min() > 0.05                                 # not saturated: a real comparison
        torch.testing.assert_close(ort.model(x), want, atol=1e-5, rtol=0)


def test_the_table_run_loads_through_cell_model(tmp_path, tiny, spy, monkeypatch):
    """``run.py --table``'s Runner resolves and loads each fold model through cell_model, and its
    cache fingerprint and results name the files cell_model resolved."""
    from reproduce import table
    models, means = archive(tmp_path, tiny, folds=(2,))
    args = SimpleNamespace(weights=str(models), weights_name=sources.DEFAULT_WEIGHTS_NAME, means=str(means),
                           device="cpu", backend="torch", batch=2, no_progress=True, source="paper", lmdb=None)
    runner = table.Runner(args, tmp_path / "out", NoStore())
    rng = np.random.default_rng(1)
    images = [(f"{i:08d}", i % 2, rng.integers(0, 256, (3, 256, 256), dtype=np.uint8)) for i in range(3)]
    monkeypatch.setattr(runner, "data", lambda cell, fold: (iter(images), len(images), {"test": "in memory"}))
    job = table.Job(CELL, 2, CELL.final_iter, sources.weights_path(models, CELL.folder, 2, CELL.final_iter))
    result = runner.run_job(job)
    assert [(f.cell, f.fold) for f in spy] == [(CELL, 2)]
    assert result["deploy"] == str(spy[0].deploy) == str(models / CELL.folder / "deploy.prototxt")
    assert result["mean_file"] == str(spy[0].mean) and result["weights"] == str(spy[0].weights)
    assert runner.images == 3
