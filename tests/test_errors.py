"""The one user-input error type: every module's user error derives from it, and the CLIs turn it
(and only it, or an OSError naming a file) into one line with exit code 2."""
from __future__ import annotations

import importlib

import pytest

from converters import errors
from converters.errors import InputError

USER_ERRORS = [
    ("converters.formats.errors", "CaffeFormatError"), ("converters.layers.registry", "ConversionError"),
    ("converters.layers.registry", "UnsupportedLayersError"), ("converters.fillers", "FillerError"),
    ("converters.solver.errors", "SolverError"), ("converters.solver.lr_policy", "LrPolicyError"),
    ("converters.solver.data_layer", "DataLayerError"), ("converters.formats.lmdb_check", "LmdbStructureError"),
    ("converters.cvdnn.blob", "BlobError"), ("converters.cvdnn.errors", "CvdnnError"),
    ("converters.cli", "UserError"), ("converters.onnx_export", "ExportError"),
    ("converters.lrp.image", "ImageError"), ("converters.lrp.rules", "LRPError"),
    ("converters.ort_backend", "BackendError"), ("converters.outputs", "OutputPathError"),
    ("reproduce.protocol", "ProtocolError"), ("reproduce.folds", "FoldFileError"),
    ("reproduce.faces", "DetectorError"), ("reproduce.upstream_rewrite", "TrainError"),
    ("reproduce.webdav", "WebDAVError"), ("reproduce.assets", "AssetError"), ("reproduce.grid", "GridError"),
    ("reproduce.demo", "DemoError"), ("reproduce.sources", "SourceError"),
    ("reproduce.studies.datasets", "DatasetError"), ("reproduce.studies.models", "ModelError"),
    ("reproduce.explain", "ExplainError"), ("reproduce.predict", "PredictError"),
    ("reproduce.fetch", "FetchError"), ("reproduce.fetch", "IntegrityError"),
    ("reproduce.options", "UsageError"), ("reproduce.options", "MissingInputs"),
    ("reproduce.cell_model", "CellModelError"),
]


@pytest.mark.parametrize("module,name", USER_ERRORS, ids=[n for _, n in USER_ERRORS])
def test_every_user_error_is_an_input_error(module, name):
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, InputError)


def test_the_old_bases_are_kept():
    # existing ``except ValueError`` / ``except RuntimeError`` clauses must still catch them
    from converters.formats import CaffeFormatError
    from reproduce.assets import AssetError
    assert issubclass(CaffeFormatError, ValueError) and issubclass(AssetError, RuntimeError)


def test_classification_and_one_line():
    assert errors.is_input_error(InputError("x"))
    assert errors.is_input_error(FileNotFoundError(2, "No such file or directory", "/a/b.caffemodel"))
    assert not errors.is_input_error(ValueError("a bug, not the user's input"))
    assert not errors.is_input_error(OSError("no file named"))
    assert errors.one_line(FileNotFoundError(2, "No such file or directory", "/a/b")) == \
        "/a/b: No such file or directory"
    assert errors.one_line(InputError("two\n  lines")) == "two lines"


def test_converters_cli_reports_input_errors_and_keeps_tracebacks_of_bugs(monkeypatch, capsys):
    from converters import __main__ as cli
    from converters.cli import inspect as inspect_cmd

    def bad_input(args):
        raise InputError("deploy.prototxt:3:1: expected a field name")
    monkeypatch.setattr(inspect_cmd, "run", bad_input)
    assert cli.main(["inspect", "x.prototxt"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("inspect: error: deploy.prototxt:3:1: expected a field name") and "\n" not in err

    def bug(args):
        raise ValueError("internal")
    monkeypatch.setattr(inspect_cmd, "run", bug)
    with pytest.raises(ValueError, match="internal"):
        cli.main(["inspect", "x.prototxt"])
