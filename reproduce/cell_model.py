"""The model of one paper table cell and one test fold: the files that make it, and the loaded net.

Every mode that runs a cell's fold model (the table run, ``--predict`` on a paper cell,
``--explain``, the offline demo) resolves it here, so "the model of cell X, fold K" means the
same files everywhere:

* weights: ``<weights>/<cell folder>/models_test_is_K/<weights name>`` (the name pattern takes
  ``{iter}``, ``{fold}``, ``{folder}``; the iteration defaults to the cell's final snapshot);
* deploy: ``<weights>/<cell folder>/deploy.prototxt`` when that file exists (a net trained with
  another deploy brings its own), else the upstream deploy from the asset store;
* mean: ``<means>/mean_image{,_unaligned,_mixed}/Test_fold_is_K/mean.binaryproto`` of the cell's
  mean variant when a means folder is given, else the upstream mean image from the asset store.

:func:`resolve_cell_files` does only that (no torch; the table run fingerprints its cache with
the paths before it decides to load anything); :func:`load_cell_files` loads resolved files:
``converters.load_caffe`` in the TEST phase, every layer of the deploy given weights by the
caffemodel (a caffemodel of another net is an error, not a half-random model), ``eval()``, on the
device, and, when asked, behind onnxruntime (:func:`converters.ort_backend.for_inference`);
:func:`load_cell_model` is both.  A missing or unusable input is a :class:`CellModelError` (an
:class:`~converters.errors.InputError`) naming the file and the option that sets it.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from converters.errors import InputError

from . import sources

WEIGHTS_ARCHIVE = sources.LINKS["weights"]


class CellModelError(ValueError, InputError):
    """A cell's fold model cannot be made: the message names the file and the option."""


@dataclass(frozen=True)
class CellFiles:
    """Where the model of ``cell``, fold ``fold``, snapshot ``iteration`` comes from."""
    cell: object            # reproduce.grid.Cell
    fold: int
    iteration: int
    deploy: Path
    weights: Path
    mean: Path | None       # None: no mean wanted (``with_mean=False``)


@dataclass
class CellModel:
    """A loaded fold model with its mean image and the files it came from (for provenance)."""
    files: CellFiles
    model: object           # converters.net.CaffeNet, or an OrtNet of it
    mean: object            # float32 (C, H, W) numpy array as read_mean gives it, or None

    @property
    def deploy(self) -> Path:
        return self.files.deploy

    @property
    def weights(self) -> Path:
        return self.files.weights

    @property
    def mean_file(self) -> Path | None:
        return self.files.mean


def weights_file(cell, fold: int, weights_dir, weights_name: str | None = None, iteration: int | None = None) -> Path:
    """The caffemodel path of ``cell``'s fold ``fold`` (not checked: callers list missing ones together)."""
    name = weights_name or sources.DEFAULT_WEIGHTS_NAME
    return sources.weights_path(weights_dir, cell.folder, int(fold), int(iteration or cell.final_iter), name)


class _Store:
    """The asset store, made only when an upstream file is actually needed."""

    def __init__(self, store):
        self._store = store

    def get(self):
        if self._store is None:
            from .assets import AssetStore
            self._store = AssetStore(progress=False)
        return self._store


def resolve_cell_files(cell, fold: int, weights_dir, *, weights_name: str | None = None,
                       iteration: int | None = None, means_dir=None, store=None,
                       with_mean: bool = True) -> CellFiles:
    """The deploy, weights and mean files of ``cell``'s fold ``fold`` (see the module docstring).

    ``store``: a :class:`reproduce.assets.AssetStore` for the upstream deploy and means (default:
    one with the default root and mirror, made only if needed).  Files from the store are fetched
    and checked by it; the others must exist.  Raises :class:`CellModelError`."""
    from .assets import AssetError

    if getattr(cell, "empty", False) or not getattr(cell, "folder", None):
        raise CellModelError(f"{getattr(cell, 'label', cell)} is empty in the paper: no model to load")
    fold = int(fold)
    iteration = int(iteration or cell.final_iter)
    name = weights_name or sources.DEFAULT_WEIGHTS_NAME
    if not weights_dir:
        raise CellModelError(f"{cell.label} ({cell.folder}): --weights DIR is needed (DIR/{cell.folder}/"
                             f"models_test_is_K/{name.format(iter=iteration, fold='K', folder=cell.folder)}; "
                             f"model archive: {WEIGHTS_ARCHIVE})")
    weights = weights_file(cell, fold, weights_dir, name, iteration)
    if not weights.is_file():
        raise CellModelError(f"{cell.label} ({cell.folder}) fold {fold}: weights not found: {weights} "
                             f"(model archive: {WEIGHTS_ARCHIVE}; other file names: --weights-name)")
    lazy = _Store(store)
    deploy = sources.deploy_override(weights_dir, cell.folder)
    if deploy is None:
        try:
            deploy = Path(lazy.get().deploy(cell.folder))
        except AssetError as exc:
            raise CellModelError(f"the deploy prototxt of {cell.folder} is needed: {exc}") from None
    mean = None
    if with_mean:
        if means_dir:
            mean = sources.mean_path(means_dir, cell.mean, fold)
            if not mean.is_file():
                raise CellModelError(f"{mean}: mean image of the [{cell.mean}] variant, fold {fold}, not found "
                                     "(--means; needed: the models were trained on mean-subtracted images, "
                                     "without it the probabilities are garbage)")
        else:
            try:
                mean = Path(lazy.get().mean(cell.mean, fold))
            except AssetError as exc:
                raise CellModelError(f"the mean image of the [{cell.mean}] variant, fold {fold}, is needed "
                                     f"(without it the probabilities are garbage) and could not be obtained: "
                                     f"{exc}; or pass --means DIR") from None
    return CellFiles(cell, fold, iteration, Path(deploy), weights, mean)


def read_cell_mean(path):
    """The mean image (C, H, W) float32 of a mean.binaryproto; a BGR mean has 3 channels."""
    from converters.formats import read_mean
    mean = read_mean(path)
    if mean.ndim != 3 or mean.shape[0] != 3:
        raise CellModelError(f"{path}: mean has shape {tuple(mean.shape)}, expected 3 (BGR) channels")
    return mean


def load_cell_files(files: CellFiles, *, device: str = "cpu", backend: str = "torch") -> CellModel:
    """The net of resolved ``files`` (TEST phase, eval mode, on ``device``) and its mean.

    ``backend``: ``torch`` (the CaffeNet itself: what LRP and predict's checks need), or
    ``onnxruntime`` / ``auto`` as :func:`converters.ort_backend.for_inference` resolves them
    (the table run's scoring; outputs limited to the cell's output blob)."""
    import converters

    mean = read_cell_mean(files.mean) if files.mean is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # missing weights are reported below as an error
        model = converters.load_caffe(str(files.deploy), str(files.weights), phase="test")
    missing = list(getattr(model, "missing_weights", ()))
    if missing:
        raise CellModelError(f"{files.weights}: no weights for layer(s) {', '.join(missing)} of {files.deploy} "
                             "(a caffemodel of another net?)")
    model.eval().to(device)
    if backend != "torch":
        from converters import ort_backend
        model = ort_backend.for_inference(model, backend, device, outputs=[files.cell.output_blob])
    return CellModel(files, model, mean)


def load_cell_model(cell, fold: int, weights_dir, *, weights_name: str | None = None, iteration: int | None = None,
                    means_dir=None, store=None, with_mean: bool = True, device: str = "cpu",
                    backend: str = "torch") -> CellModel:
    """The model of ``cell``'s fold ``fold``: :func:`resolve_cell_files` then :func:`load_cell_files`."""
    files = resolve_cell_files(cell, fold, weights_dir, weights_name=weights_name, iteration=iteration,
                               means_dir=means_dir, store=store, with_mean=with_mean)
    return load_cell_files(files, device=device, backend=backend)
