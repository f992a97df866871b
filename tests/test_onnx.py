"""ONNX export (``converters.onnx_export`` and ``python -m converters onnx``): onnxruntime must
give the PyTorch model's outputs within 1e-4 on the real-Caffe oracle nets (AdienceNet: ceil
pooling; GoogLeNet: three outputs, AVE pooling, Concat) and on a net with every pooling/LRN corner
(AVE divisor at the ceil overhang, pad-clip of MAX, WITHIN_CHANNEL LRN, LRN k = 2, global pooling),
with a dynamic batch axis, through both torch.onnx exporters."""
import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
import onnx  # noqa: E402

import converters  # noqa: E402
from converters.__main__ import main  # noqa: E402
from converters.onnx_export import (ExportError, OnnxExportable, check_onnx, export_onnx,  # noqa: E402
                                    onnx_opset, within_tolerance)

EDGE = """
name: "edge"
input: "data"
input_shape { dim: 1 dim: 4 dim: 13 dim: 12 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 8 kernel_size: 3 pad: 1
          weight_filler { type: "gaussian" std: 0.02 } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "ave" type: "Pooling" bottom: "conv" top: "ave" pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "within" type: "LRN" bottom: "ave" top: "within"
        lrn_param { local_size: 3 alpha: 0.05 beta: 0.75 norm_region: WITHIN_CHANNEL } }
layer { name: "across" type: "LRN" bottom: "within" top: "across" lrn_param { local_size: 5 alpha: 0.03 beta: 0.75 k: 2 } }
layer { name: "max" type: "Pooling" bottom: "across" top: "max" pooling_param { pool: MAX kernel_size: 2 stride: 2 pad: 1 } }
layer { name: "gap" type: "Pooling" bottom: "max" top: "gap" pooling_param { pool: AVE global_pooling: true } }
layer { name: "fc" type: "InnerProduct" bottom: "gap" top: "fc"
        inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 2 } } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


def _graph_inputs(path):
    model = onnx.load(str(path))
    return {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}


def _ops(path):
    return {n.op_type for n in onnx.load(str(path)).graph.node}


@pytest.mark.parametrize("name,outputs", [("adiencenet_age", ["prob"]),
                                          ("googlenet_age", ["loss1/loss1", "loss2/loss1", "loss3/loss3"])])
def test_oracle_nets_export_and_match(oracle, tmp_path, name, outputs):
    from conftest import need
    need(oracle, f"nets/{name}/weights.caffemodel")
    folder = oracle / "nets" / name
    model = converters.load_caffe(folder / "deploy.prototxt", folder / "weights.caffemodel")
    path = export_onnx(model, tmp_path / f"{name}.onnx")
    assert onnx_opset(path) >= 13
    onnx.checker.check_model(str(path))
    assert _graph_inputs(path)["data"][0] == "batch" and _graph_inputs(path)["data"][1:] == list(
        model.input_shapes["data"][1:])
    assert "LRN" in _ops(path) and "Pad" in _ops(path)       # Caffe's LRN op, explicit pooling pads
    result = check_onnx(path, model, batch=3)
    assert list(result) == outputs
    for diff, ref in result.values():
        assert diff <= 1e-4 and within_tolerance(diff, ref)
    # the Caffe golden outputs through onnxruntime
    import onnxruntime as ort
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(outputs, {"data": np.load(folder / "input.npy")})
    ref = np.load(folder / "outputs.npz")
    for key, value in zip(outputs, got):
        assert np.abs(value - ref[key]).max() <= 1e-4
        assert (value.argmax(1) == ref[key].argmax(1)).all()


@pytest.mark.parametrize("exporter,opset", [(True, 18), (False, 13)])
def test_pooling_and_lrn_corners(tmp_path, exporter, opset):
    proto = tmp_path / "edge.prototxt"
    proto.write_text(EDGE)
    torch.manual_seed(0)
    model = converters.load_caffe(proto)
    assert model.blob_shapes["ave"] == (1, 8, 7, 7) and model.blob_shapes["max"] == (1, 8, 4, 4)
    # the export view computes what the converted layers compute (eager, every blob)
    view = OnnxExportable(model, outputs=["ave", "within", "across", "max", "prob"]).eval()
    x = torch.from_numpy(np.random.RandomState(0).uniform(-128, 128, (3, 4, 13, 12)).astype(np.float32))
    with torch.no_grad():
        blobs = model.forward_blobs({"data": x})
        for name, value in zip(view.output_names, view(x)):
            torch.testing.assert_close(value, blobs[name], rtol=1e-5, atol=1e-5 * float(blobs[name].abs().max()))
    path = export_onnx(model, tmp_path / "edge.onnx", opset=opset, dynamo=exporter,
                       outputs=["ave", "across", "max", "prob"])
    assert onnx_opset(path) == opset
    for name, (diff, ref) in check_onnx(path, model, batch=5).items():
        assert within_tolerance(diff, ref), (name, diff, ref)


def test_onnx_cli(oracle, tmp_path, capsys):
    folder = oracle / "nets" / "caffenet_age"
    out = tmp_path / "caffenet.onnx"
    rc = main(["onnx", str(folder / "deploy.prototxt"), str(folder / "weights.caffemodel"), "-o", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "input  data [batch, 3, 227, 227]" in text and "output prob [batch, 8]" in text
    assert "prob: max|onnx - torch| = " in text and "check: OK" in text
    assert out.is_file()
    # a converted model.pt works too; static batch keeps the declared batch
    pt = tmp_path / "model.pt"
    assert main(["convert", str(folder / "deploy.prototxt"), str(folder / "weights.caffemodel"), "-o", str(pt),
                 "-q"]) == 0
    assert main(["onnx", str(pt), "-o", str(tmp_path / "static.onnx"), "--static-batch", "--opset", "13"]) == 0
    assert _graph_inputs(tmp_path / "static.onnx")["data"] == [1, 3, 227, 227]
    capsys.readouterr()
    assert main(["onnx", str(folder / "deploy.prototxt"), "-o", str(tmp_path / "x.onnx"), "--opset", "11"]) == 2
    assert "opset" in capsys.readouterr().err
    assert main(["onnx", str(folder / "deploy.prototxt"), "-o", str(tmp_path / "x.onnx"), "--blob", "nope"]) == 2


def test_export_errors(oracle):
    folder = oracle / "nets" / "adiencenet_age"
    model = converters.load_caffe(folder / "deploy.prototxt")
    with pytest.raises(ExportError, match="opset"):
        export_onnx(model, "unused.onnx", opset=12)
    with pytest.raises(ExportError, match="unknown output"):
        OnnxExportable(model, outputs=["nope"])
