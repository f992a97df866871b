"""Shared fixtures: where the real-Caffe oracle files and the upstream data live.

Both sit in ``../shared`` beside the checkout; ``CAFFE_ORACLE_DIR`` and ``UPSTREAM_DIR``
override the paths.  Tests that need them skip with the reason when they are absent.
"""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ORACLE = Path(os.environ.get("CAFFE_ORACLE_DIR", REPO.parent / "shared" / "caffe-oracle"))
UPSTREAM = Path(os.environ.get("UPSTREAM_DIR", REPO.parent / "shared" / "upstream"))
UPSTREAM_REPO = UPSTREAM / "lapuschkin-2017"


@pytest.fixture(scope="session")
def oracle() -> Path:
    if not ORACLE.is_dir():
        pytest.skip(f"real-Caffe oracle files not found at {ORACLE} (set CAFFE_ORACLE_DIR)")
    return ORACLE


@pytest.fixture(scope="session")
def upstream() -> Path:
    if not UPSTREAM_REPO.is_dir():
        pytest.skip(f"upstream data files not found at {UPSTREAM_REPO} (set UPSTREAM_DIR)")
    return UPSTREAM_REPO
