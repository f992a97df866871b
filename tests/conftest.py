"""Shared fixtures: where the real-Caffe oracle files and the upstream data live.

The Caffe oracle (golden files written by BVLC Caffe 1.0) is looked up in this order:

1. ``CAFFE_ORACLE_DIR`` if set;
2. ``../shared/caffe-oracle`` beside the checkout, when present (the full set, 62 MB);
3. ``tests/data/caffe-oracle``, the mini set that ships with the repository (restored once per session
   into a temporary folder with the full set's layout, every file checked against its sha256).

So every oracle test runs on a clean clone; a test whose files only the full set has skips and names
them (``need``).  The upstream data (``../shared/upstream``, override ``UPSTREAM_DIR``) are the paper
repository's own files, which are never copied into this repository: tests of facts about them
(``upstream``) skip without; tests of our code on files of their shape (``upstream_tree``) run on the
real files when present, else on a synthetic stand-in written by ``tests/upstream_standin.py``.
"""
import os
from pathlib import Path

import pytest

import mini_oracle
import upstream_standin

REPO = Path(__file__).resolve().parent.parent
FULL_ORACLE = REPO.parent / "shared" / "caffe-oracle"
UPSTREAM = Path(os.environ.get("UPSTREAM_DIR", REPO.parent / "shared" / "upstream"))
UPSTREAM_REPO = UPSTREAM / "lapuschkin-2017"


def oracle_source() -> Path:
    """The oracle folder as chosen by the rules of the module docstring (possibly a packed mini set)."""
    if os.environ.get("CAFFE_ORACLE_DIR"):
        return Path(os.environ["CAFFE_ORACLE_DIR"])
    if FULL_ORACLE.is_dir():
        return FULL_ORACLE
    return mini_oracle.MINI


@pytest.fixture(scope="session")
def oracle(tmp_path_factory) -> Path:
    src = oracle_source()
    if not src.is_dir():
        pytest.skip(f"real-Caffe oracle files not found at {src} (CAFFE_ORACLE_DIR)")
    if mini_oracle.is_packed(src):
        return mini_oracle.restore(src, tmp_path_factory.mktemp("caffe-oracle"))
    return src


def need(oracle: Path, *relpaths: str) -> None:
    """Skip, naming the files, when the oracle in use (the mini set) lacks some of them."""
    missing = [rel for rel in relpaths if not (oracle / rel).exists()]
    if missing:
        pytest.skip(f"not in the mini Caffe oracle: {', '.join(missing)} (only in the full set: "
                    f"put it at ../shared/caffe-oracle or set CAFFE_ORACLE_DIR)")


def assert_predictions_equal_caffes(out: Path, folder: str, expected_cell: dict, atol: float = 1e-4) -> int:
    """``run.py``'s per-image predictions CSVs of one protocol-oracle cell against Caffe's expected.json:
    the LMDB key order, the label, the 10-crop / bottom-right / true-centre predictions exactly and the
    10-crop mean probabilities within ``atol``.  Returns the number of images checked."""
    import csv

    import numpy as np

    n = 0
    for ef in expected_cell["folds"]:
        with open(out / "predictions" / f"{folder}_fold{ef['fold']}.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert [r["key"] for r in rows] == [im["key"] for im in ef["images"]]   # LMDB key order
        for r, im in zip(rows, ef["images"]):
            assert int(r["label"]) == im["label"]
            assert (int(r["prediction"]), int(r["prediction_single"]), int(r["prediction_centre"])) == \
                (im["pred_10crop"], im["pred_single_bottomright"], im["pred_single_center"])
            probs = np.array([float(r[f"prob_{c}"]) for c in range(expected_cell["n_classes"])])
            np.testing.assert_allclose(probs, im["prob_10crop_mean"], atol=atol, rtol=0)
            n += 1
    return n


@pytest.fixture(scope="session")
def upstream() -> Path:
    if not UPSTREAM_REPO.is_dir():
        pytest.skip(f"upstream data files not found at {UPSTREAM_REPO} (set UPSTREAM_DIR)")
    return UPSTREAM_REPO


@pytest.fixture(scope="session")
def upstream_tree(tmp_path_factory) -> upstream_standin.UpstreamTree:
    """The upstream files when present, else the synthetic stand-in (see upstream_standin)."""
    if UPSTREAM_REPO.is_dir():
        return upstream_standin.real(UPSTREAM_REPO)
    return upstream_standin.build(tmp_path_factory.mktemp("upstream-standin"))


@pytest.fixture
def upstream_pins(upstream_tree, monkeypatch) -> upstream_standin.UpstreamTree:
    """``upstream_tree`` with its manifest in force for the product code (``$REPRO_ASSETS_MANIFEST``)."""
    monkeypatch.setenv("REPRO_ASSETS_MANIFEST", str(upstream_tree.manifest))
    return upstream_tree
