"""``python -m converters convert`` and the two round trips: model.pt (load_converted) and
caffemodel (save_caffemodel -> load_caffe)."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import converters
from converters.__main__ import main
from converters.formats import CaffeFormatError, blob_shape, read_weights
from conftest import need

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_convert_cli_round_trip(oracle, tmp_path, capsys):
    folder = oracle / "nets/caffenet_age"
    out = tmp_path / "model.pt"
    rc = main(["convert", str(folder / "deploy.prototxt"), str(folder / "weights.caffemodel"), "-o", str(out)])
    assert rc == 0
    assert "wrote" in capsys.readouterr().out
    raw = torch.load(out, weights_only=True)
    assert raw["format"] == converters.convert.FORMAT and isinstance(raw["net_param"], bytes)
    model = converters.load_converted(out)
    direct = converters.load_caffe(folder / "deploy.prototxt", folder / "weights.caffemodel")
    a, b = model.state_dict(), direct.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.from_numpy(np.load(folder / "input.npy"))
    ref = np.load(folder / "outputs.npz")["prob"]
    with torch.inference_mode():
        prob = model(x).numpy()
        assert np.array_equal(prob, direct(x).numpy())
    assert np.abs(prob - ref).max() <= 1e-4 * np.abs(ref).max() + 1e-5
    assert model.output_names == ["prob"] and model.input_shapes == {"data": (1, 3, 227, 227)}


@pytest.mark.parametrize("net", ["caffenet_age", "googlenet_age"])
def test_save_caffemodel_round_trip(oracle, tmp_path, net):
    need(oracle, f"nets/{net}/weights.caffemodel")
    folder = oracle / "nets" / net
    model = converters.load_caffe(folder / "deploy.prototxt", folder / "weights.caffemodel")
    converters.save_caffemodel(model, tmp_path / "again.caffemodel")
    written = read_weights(tmp_path / "again.caffemodel")
    original = read_weights(folder / "weights.caffemodel")
    with_blobs = [(l.name, [blob_shape(b) for b in l.blobs]) for l in written.layer if len(l.blobs)]
    assert with_blobs == [(l.name, [blob_shape(b) for b in l.blobs]) for l in original.layer if len(l.blobs)]
    again = converters.load_caffe(folder / "deploy.prototxt", tmp_path / "again.caffemodel")
    assert again.missing_weights == []
    a, b = model.state_dict(), again.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_legacy_v1_caffemodel_converts_and_writes_new_format(oracle, tmp_path):
    folder = oracle / "nets/v1_caffemodel"
    rc = main(["convert", str(folder / "deploy.prototxt"), str(folder / "weights_v1.caffemodel"),
               "-o", str(tmp_path / "m.pt"), "--caffemodel-out", str(tmp_path / "new.caffemodel"), "-q"])
    assert rc == 0
    written = read_weights(tmp_path / "new.caffemodel")
    fc6 = next(l for l in written.layer if l.name == "fc6")
    assert [tuple(b.shape.dim) for b in fc6.blobs] == [(64, 2352), (64,)]      # Caffe 1.0 shapes (48*7*7 inputs)
    model = converters.load_converted(tmp_path / "m.pt")
    assert converters.load_caffe(folder / "deploy.prototxt", tmp_path / "new.caffemodel").state_dict().keys() \
        == model.state_dict().keys()


def test_convert_cli_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.prototxt"
    bad.write_text('name: "x"\nlayer { name: "a" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 } } }\n'
                   'layer { name: "p" type: "Python" bottom: "data" top: "b" }\n'
                   'layer { name: "q" type: "MultiBoxLoss" bottom: "b" top: "c" }\n')
    rc = main(["convert", str(bad), "-o", str(tmp_path / "m.pt")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err
    assert "'p' (Python)" in err and "'q' (MultiBoxLoss)" in err
    rc = main(["convert", str(tmp_path / "missing.prototxt"), "-o", str(tmp_path / "m.pt")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "missing.prototxt" in err and "\n" not in err
    assert not (tmp_path / "m.pt").exists()


def test_load_converted_rejects_other_files(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CaffeFormatError, match="not a converted model"):
        converters.load_converted(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(CaffeFormatError, match="junk.pt"):
        converters.load_converted(tmp_path / "junk.pt")


def test_python_dash_m_converters_convert(oracle, tmp_path):
    folder = oracle / "nets/adiencenet_age"
    proc = subprocess.run([sys.executable, "-m", "converters", "convert", str(folder / "deploy.prototxt"),
                           str(folder / "weights.caffemodel"), "-o", str(tmp_path / "a.pt"),
                           "--input-shape", "data=2,3,227,227"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    model = converters.load_converted(tmp_path / "a.pt")
    assert model.input_shapes == {"data": (2, 3, 227, 227)} and model.blob_shapes["pool5"] == (2, 48, 7, 7)


@pytest.mark.parametrize("argv0,prog", [("/usr/local/bin/caffe-convert", "caffe-convert"),
                                        ("/x/converters/__main__.py", "python -m converters")])
def test_usage_and_errors_carry_the_name_it_was_called_by(monkeypatch, capsys, argv0, prog):
    monkeypatch.setattr(sys, "argv", [argv0])
    with pytest.raises(SystemExit):
        main(["--help"])
    assert capsys.readouterr().out.startswith(f"usage: {prog} [-h]")
    assert main(["inspect", "/nonexistent/weights.caffemodel"]) == 2
    assert capsys.readouterr().err.startswith(f"{prog} inspect: error: /nonexistent/weights.caffemodel")
