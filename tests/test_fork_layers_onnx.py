"""ONNX export of the fork layers ONNX can express, checked in onnxruntime; the ones it cannot
(DetectionOutput, ...) fail with an error naming the layer, and the net exports up to their bottoms."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from converters import load_caffe
from converters.formats import parse_net

pytestmark = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None
                                or importlib.util.find_spec("onnx") is None,
                                reason="needs onnx and onnxruntime (pip install '.[onnx]')")

NET = '''name: "forks"
input: "data" input_shape { dim: 1 dim: 8 dim: 6 dim: 8 }
input: "a" input_shape { dim: 1 dim: 8 dim: 1 dim: 1 }
layer { name: "dw" type: "ConvolutionDepthwise" bottom: "data" top: "dw" convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "relu6" type: "ReLU6" bottom: "dw" top: "dw" }
layer { name: "norm" type: "Normalize" bottom: "dw" top: "norm" norm_param { across_spatial: false channel_shared: false scale_filler { type: "constant" value: 3 } } }
layer { name: "shuffle" type: "ShuffleChannel" bottom: "norm" top: "shuffle" shuffle_channel_param { group: 2 } }
layer { name: "mish" type: "Mish" bottom: "shuffle" top: "mish" }
layer { name: "axpy" type: "Axpy" bottom: "a" bottom: "mish" bottom: "data" top: "axpy" }
layer { name: "interp" type: "Interp" bottom: "axpy" top: "interp" interp_param { zoom_factor: 2 } }
layer { name: "up" type: "Upsample" bottom: "axpy" top: "up" upsample_param { scale: 2 } }
layer { name: "reorg" type: "Reorg" bottom: "up" top: "reorg" reorg_param { stride: 2 } }
layer { name: "perm" type: "Permute" bottom: "interp" top: "perm" permute_param { order: 0 order: 2 order: 3 order: 1 } }
layer { name: "prior" type: "PriorBox" bottom: "norm" bottom: "data" top: "prior" prior_box_param { min_size: 2 max_size: 4 aspect_ratio: 2 variance: 0.1 } }
'''


def test_fork_layers_export_and_run(tmp_path):
    from converters.onnx_export import check_onnx, export_onnx, within_tolerance
    net = load_caffe(parse_net(NET), channels_last=False)
    with torch.no_grad():
        net.caffe_layers["dw"].weight.copy_(torch.from_numpy(
            np.random.default_rng(0).normal(size=(8, 1, 3, 3)).astype(np.float32)))
    path = export_onnx(net, tmp_path / "forks.onnx", dynamic_batch=False)
    import onnx
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "Resize" in ops
    result = check_onnx(path, net, batch=1)
    assert set(result) == {"perm", "prior", "reorg"}
    for name, (diff, ref) in result.items():
        assert within_tolerance(diff, ref), (name, diff, ref)


def test_detection_output_is_not_exportable_but_the_head_is(tmp_path):
    from converters.onnx_export import ExportError, check_onnx, export_onnx
    case = Path(__file__).resolve().parent / "data" / "opencv-oracle" / "mobilenet_ssd_head"
    net = load_caffe(case / "deploy.prototxt", semantics="opencv", channels_last=False)
    with pytest.raises(ExportError, match=r"layer 'detection_out' \(DetectionOutput\) is not exportable"):
        export_onnx(net, tmp_path / "ssd.onnx")
    path = export_onnx(net, tmp_path / "ssd.onnx", outputs=["mbox_loc", "mbox_conf_flatten", "mbox_priorbox"],
                       dynamic_batch=False)
    result = check_onnx(path, net, batch=1)
    assert result["mbox_priorbox"][0] == 0.0 and result["mbox_loc"][0] == 0.0
    assert result["mbox_conf_flatten"][0] < 1e-5
    expected = np.load(case / "expected.npz")["mbox_priorbox"]
    import onnxruntime as ort
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32)
            for i in session.get_inputs()}
    prior = session.run(["mbox_priorbox"], feed)[0]
    assert np.abs(prior - expected).max() <= 1e-4 * np.abs(expected).max() + 1e-5   # OpenCV's priors


def test_region_is_not_exportable_but_its_bottom_is(tmp_path):
    from converters.onnx_export import ExportError, check_onnx, export_onnx
    text = ('input: "x" input_shape { dim: 1 dim: 14 dim: 3 dim: 4 }\n'
            'layer { name: "perm" type: "Permute" bottom: "x" top: "nhwc" permute_param { order: 0 order: 2 order: 3 order: 1 } }\n'
            'layer { name: "region" type: "Region" bottom: "nhwc" top: "det" region_param { classes: 2 num: 2 '
            'softmax: 1 biases: 1 biases: 2 biases: 3 biases: 4 } }\n')
    net = load_caffe(parse_net(text), channels_last=False)
    with pytest.raises(ExportError, match=r"layer 'region' \(Region\) is not exportable.*bottoms \(nhwc\)"):
        export_onnx(net, tmp_path / "yolo.onnx")
    path = export_onnx(net, tmp_path / "yolo.onnx", outputs=["nhwc"], dynamic_batch=False)
    assert check_onnx(path, net, batch=1)["nhwc"][0] == 0.0
