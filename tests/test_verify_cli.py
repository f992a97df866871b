"""``python -m converters verify`` (the conversion against OpenCV's Caffe importer) and
``python -m converters export-caffemodel`` (model.pt back to a caffemodel)."""
import numpy as np
import pytest

import converters
from converters.__main__ import main
from converters.cli import verify

needs_opencv = pytest.mark.skipif(verify.opencv_status()[0] is None, reason="needs OpenCV 4.x (cv2 < 5)")

LRN_K2 = """
name: "lrn_k2"
input: "data"
input_shape { dim: 1 dim: 3 dim: 15 dim: 15 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 8 kernel_size: 3 stride: 2 pad: 1
          weight_filler { type: "gaussian" std: 0.05 } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "norm" type: "LRN" bottom: "pool" top: "norm" lrn_param { local_size: 5 alpha: 0.1 beta: 0.75 k: 2 } }
layer { name: "within" type: "LRN" bottom: "norm" top: "within"
        lrn_param { local_size: 3 alpha: 0.1 beta: 0.75 norm_region: WITHIN_CHANNEL } }
layer { name: "fc" type: "InnerProduct" bottom: "within" top: "fc"
        inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


@needs_opencv
def test_verify_oracle_net_with_blobs(oracle, capsys):
    folder = oracle / "nets" / "adiencenet_age"
    rc = main(["verify", str(folder / "deploy.prototxt"), str(folder / "weights.caffemodel"),
               "--input-shape", "2,3,227,227", "--seed", "3", "--blobs"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "input data (2, 3, 227, 227), seed 3" in out and "OpenCV 4." in out
    for blob in ("conv1", "pool1", "norm1", "pool5", "fc6", "prob"):
        assert f"  {blob} " in out
    assert "ok (output)" in out and "result: OK" in out
    assert "LRN k" not in out                                # AdienceNet: k = 1


@needs_opencv
def test_verify_googlenet_outputs_and_every_blob(oracle, capsys):
    from conftest import need
    need(oracle, "nets/googlenet_age/weights.caffemodel")
    folder = oracle / "nets" / "googlenet_age"
    args = ["verify", str(folder / "deploy.prototxt"), str(folder / "weights.caffemodel")]
    assert main(args) == 0
    out = capsys.readouterr().out
    for blob in ("loss1/loss1", "loss2/loss1", "loss3/loss3"):
        assert blob in out
    assert "result: OK - 3 blob(s)" in out
    # every blob, including the inception branches OpenCV would otherwise write into the Concat buffer
    assert main(args + ["--blobs"]) == 0
    out = capsys.readouterr().out
    assert "inception_3a/pool_proj" in out and "inception_5b/output" in out and "result: OK - 94 blob(s)" in out


@needs_opencv
def test_verify_lrn_k_note_and_failure_exit(tmp_path, capsys, monkeypatch):
    proto = tmp_path / "net.prototxt"
    proto.write_text(LRN_K2)
    model = converters.load_caffe(proto)
    weights = tmp_path / "net.caffemodel"
    converters.save_caffemodel(model, weights)
    assert main(["verify", str(proto), str(weights), "--blobs"]) == 0
    out = capsys.readouterr().out
    assert "OpenCV ignores LRN k" in out and "'norm' (k=2)" in out and "result: OK" in out
    # a conversion that disagrees with OpenCV -> exit 1, the blob is named
    from converters.layers.lrn import LRN
    original = LRN.forward
    monkeypatch.setattr(LRN, "forward", lambda self, x: original(self, x) * 1.01)
    assert main(["verify", str(proto), str(weights)]) == 1
    out = capsys.readouterr().out
    assert "TOO LARGE" in out and "result: FAILED" in out and "prob" in out


def test_verify_without_opencv_and_bad_input(oracle, monkeypatch, capsys):
    folder = oracle / "nets" / "adiencenet_age"
    args = ["verify", str(folder / "deploy.prototxt"), str(folder / "weights.caffemodel")]
    monkeypatch.setattr(verify, "opencv_status", lambda: (None, "OpenCV 5.0.0 has no Caffe importer"))
    assert main(args) == 0
    assert "not run - OpenCV 5.0.0 has no Caffe importer" in capsys.readouterr().out
    monkeypatch.undo()
    if verify.opencv_status()[0] is None:
        pytest.skip("needs OpenCV 4.x for the input checks")
    assert main(args + ["--input-shape", "1,3,227"]) == 2
    assert "--input-shape" in capsys.readouterr().err
    assert main(args + ["--input-shape", "label=1,3,227,227"]) == 2
    assert main([args[0], args[1], str(folder / "missing.caffemodel")]) == 2


@pytest.mark.parametrize("net", ["caffenet_age", "vgg16_gender"])
def test_export_caffemodel_round_trip(oracle, tmp_path, capsys, net):
    from conftest import need
    need(oracle, f"nets/{net}/weights.caffemodel")
    folder = oracle / "nets" / net
    pt = tmp_path / "model.pt"
    assert main(["convert", str(folder / "deploy.prototxt"), str(folder / "weights.caffemodel"), "-o", str(pt),
                 "-q"]) == 0
    out = tmp_path / "back.caffemodel"
    proto = tmp_path / "back.prototxt"
    assert main(["export-caffemodel", str(pt), "-o", str(out), "--prototxt-out", str(proto)]) == 0
    assert "wrote" in capsys.readouterr().out
    a = converters.load_caffe(folder / "deploy.prototxt", folder / "weights.caffemodel")
    b = converters.load_caffe(proto, out)
    assert not b.missing_weights
    for (name, idx, p, _, _), (name2, idx2, q, _, _) in zip(a.param_specs(), b.param_specs()):
        assert (name, idx) == (name2, idx2)
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())
    assert main(["export-caffemodel", str(tmp_path / "nope.pt"), "-o", str(out)]) == 2
