"""Fork layers without golden files, compared with a live OpenCV 4.x ``cv2.dnn.readNetFromCaffe``
(``semantics="opencv"``), and ``python -m converters verify`` on a fork net.  Skipped, with the
reason, when no OpenCV with a Caffe importer is installed (OpenCV 5 removed it)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from converters import load_caffe
from converters.cli.verify import opencv_status
from converters.formats import parse_net

cv2, STATUS = opencv_status()
pytestmark = pytest.mark.skipif(cv2 is None, reason=f"needs OpenCV 4.x with readNetFromCaffe: {STATUS}")
rng = np.random.default_rng(1616)


def run_opencv(tmp_path, text, inputs, outs):
    path = tmp_path / "net.prototxt"
    path.write_text(text)
    net = cv2.dnn.readNetFromCaffe(str(path))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    for k, v in inputs.items():
        net.setInput(v, k)
    return dict(zip(outs, net.forward(outs)))


def run_ours(text, inputs):
    net = load_caffe(parse_net(text), semantics="opencv", channels_last=False)
    with torch.no_grad():
        blobs = net.forward_blobs({k: torch.from_numpy(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in blobs.items()}


def decl(inputs):
    return "".join(f'input: "{k}" input_shape {{ {" ".join(f"dim: {d}" for d in v.shape)} }}\n'
                   for k, v in inputs.items())


def assert_close(ours, theirs):
    assert ours.size == theirs.size
    tol = 1e-4 * float(np.abs(theirs).max()) + 1e-5
    diff = float(np.abs(ours.reshape(theirs.shape) - theirs).max())
    assert diff <= tol, f"max diff {diff:.3g} > {tol:.3g}"
    return diff


def test_roi_and_psroi_pooling(tmp_path):
    inputs = {"x": rng.normal(size=(2, 18, 12, 14)).astype(np.float32),
              "rois": np.array([[0, 3.4, 5.5, 60.2, 40.7], [1, 0, 0, 100, 90], [0, 20.5, 30.5, 22.5, 31.5],
                                [1, 50, 10, 200, 60], [0, -20, -20, 5, 5]], np.float32)}
    text = decl(inputs) + (
        'layer { name: "roi" type: "ROIPooling" bottom: "x" bottom: "rois" top: "roi" '
        'roi_pooling_param { pooled_h: 3 pooled_w: 4 spatial_scale: 0.0625 } }\n'
        'layer { name: "ps" type: "PSROIPooling" bottom: "x" bottom: "rois" top: "ps" '
        'psroi_pooling_param { spatial_scale: 0.125 output_dim: 2 group_size: 3 } }\n')
    theirs = run_opencv(tmp_path, text, inputs, ["roi", "ps"])
    ours = run_ours(text, inputs)
    for k in ("roi", "ps"):
        assert ours[k].shape == theirs[k].shape
        assert_close(ours[k], theirs[k])


def test_proposal_opencv_semantics(tmp_path):
    a, h, w = 9, 6, 8
    inputs = {"cls": rng.uniform(0, 1, (1, 2 * a, h, w)).astype(np.float32),
              "bbox": rng.normal(0, 0.3, (1, 4 * a, h, w)).astype(np.float32),
              "info": np.array([[96, 128, 1.0]], np.float32)}
    text = decl(inputs) + (
        'layer { name: "prop" type: "Proposal" bottom: "cls" bottom: "bbox" bottom: "info" top: "rois" '
        'proposal_param { feat_stride: 16 base_size: 16 min_size: 16 ratio: 0.5 ratio: 1 ratio: 2 scale: 8 '
        'scale: 16 scale: 32 pre_nms_topn: 200 post_nms_topn: 40 nms_thresh: 0.7 } }\n')
    theirs = run_opencv(tmp_path, text, inputs, ["prop"])["prop"].reshape(-1, 5)
    ours = run_ours(text, inputs)["rois"]
    assert ours.shape == theirs.shape == (40, 5)
    assert_close(ours, theirs)


def test_known_difference_proposal_min_size(tmp_path):
    # py-faster-rcnn drops boxes smaller than min_size * im_scale; OpenCV ignores min_size.
    a, h, w = 9, 4, 4
    inputs = {"cls": rng.uniform(0, 1, (1, 2 * a, h, w)).astype(np.float32),
              "bbox": rng.normal(0, 1.5, (1, 4 * a, h, w)).astype(np.float32),
              "info": np.array([[64, 64, 1.0]], np.float32)}
    text = decl(inputs) + (
        'layer { name: "prop" type: "Proposal" bottom: "cls" bottom: "bbox" bottom: "info" top: "rois" '
        'top: "scores" proposal_param { min_size: 40 pre_nms_topn: 100 post_nms_topn: 100 nms_thresh: 0.9 } }\n')
    fork = load_caffe(parse_net(text), channels_last=False)
    with torch.no_grad():
        rois, scores = (v.numpy() for v in fork({k: torch.from_numpy(v) for k, v in inputs.items()}).values())
    sizes = np.minimum(rois[:, 3] - rois[:, 1] + 1, rois[:, 4] - rois[:, 2] + 1)
    assert len(rois) and sizes.min() >= 40 and rois.shape[0] < 100
    opencv = run_ours(text, inputs)["rois"]
    kept = opencv[np.any(opencv != 0, axis=1)]
    assert opencv.shape == (100, 5) and len(kept) > len(rois)


def test_axpy_reorg_relu6_mish_swish_depthwise(tmp_path):
    inputs = {"a": rng.normal(size=(1, 4, 1, 1)).astype(np.float32),
              "x": rng.normal(size=(1, 4, 6, 8)).astype(np.float32),
              "y": rng.normal(size=(1, 4, 6, 8)).astype(np.float32)}
    text = decl(inputs) + (
        'layer { name: "axpy" type: "Axpy" bottom: "a" bottom: "x" bottom: "y" top: "axpy" }\n'
        'layer { name: "reorg" type: "Reorg" bottom: "x" top: "reorg" reorg_param { stride: 2 } }\n'
        'layer { name: "relu6" type: "ReLU6" bottom: "x" top: "relu6" }\n'
        'layer { name: "mish" type: "Mish" bottom: "x" top: "mish" }\n'
        'layer { name: "swish" type: "Swish" bottom: "x" top: "swish" }\n')
    # Reorg: OpenCV reads its stride from `reorg_stride` (default 2), the forks' reorg_param is ignored
    theirs = run_opencv(tmp_path, text, inputs, ["axpy", "reorg", "relu6", "mish", "swish"])
    ours = run_ours(text, inputs)
    for k, v in theirs.items():
        assert_close(ours[k], v)
    x = inputs["x"]
    np.testing.assert_array_equal(ours["reorg"], x.reshape(1, 6, 2, 8, 2).transpose(0, 2, 4, 1, 3).reshape(1, 16, 3, 4))


def test_normalize_without_scale_blob_and_prior_box_clustered(tmp_path):
    inputs = {"x": rng.normal(size=(1, 4, 5, 6)).astype(np.float32), "data": np.zeros((1, 3, 50, 60), np.float32)}
    text = decl(inputs) + (
        'layer { name: "pbc" type: "PriorBoxClustered" bottom: "x" bottom: "data" top: "pbc" '
        'prior_box_param { width: 8 width: 20 height: 12 height: 6 clip: false variance: 0.1 variance: 0.1 '
        'variance: 0.2 variance: 0.2 } }\n')
    theirs = run_opencv(tmp_path, text, inputs, ["pbc"])
    assert_close(run_ours(text, inputs)["pbc"], theirs["pbc"])


def test_verify_cli_on_a_detection_net(capsys):
    from pathlib import Path

    from converters.__main__ import main
    case = Path(__file__).resolve().parent / "data" / "opencv-oracle" / "detection_output_a"
    rc = main(["verify", str(case / "deploy.prototxt"), str(case / "weights.caffemodel"), "--input-range=0,1"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "semantics='opencv'" in out and "det_center" in out and "detections, score diff" in out


def region_case(tmp_path, n, h, w, a, c, params, spread, seed):
    """A Permute(0,2,3,1) + Region net with its anchors in a caffemodel (OpenCV's weight blob)."""
    from converters.proto import caffe_pb2 as pb
    g = np.random.default_rng(seed)
    inputs = {"x": (g.normal(size=(n, a * (5 + c), h, w)) * spread).astype(np.float32)}
    biases = g.uniform(0.5, 4.0, 2 * a).astype(np.float32)
    text = decl(inputs) + (
        'layer { name: "perm" type: "Permute" bottom: "x" top: "nhwc" permute_param { order: 0 order: 2 order: 3 order: 1 } }\n'
        f'layer {{ name: "region" type: "Region" bottom: "nhwc" top: "region" region_param {{ {params} }} }}\n')
    weights = pb.NetParameter()
    layer = weights.layer.add(name="region", type="Region")
    layer.blobs.add(shape=pb.BlobShape(dim=[2 * a]), data=biases.tolist())
    model = tmp_path / "net.caffemodel"
    model.write_bytes(weights.SerializeToString())
    (tmp_path / "net.prototxt").write_text(text)
    net = cv2.dnn.readNetFromCaffe(str(tmp_path / "net.prototxt"), str(model))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    net.setInput(inputs["x"], "x")
    theirs = net.forward("region")
    ours_net = load_caffe(parse_net(text), str(model), semantics="opencv", channels_last=False)
    with torch.no_grad():
        ours = ours_net.forward_blobs({"x": torch.from_numpy(inputs["x"])})["region"].numpy()
    return ours, theirs


REGION_SETTINGS = {
    "softmax_no_nms": (1, 2, 3, 2, 3, "classes: 3 coords: 4 anchors: 2 softmax: 1 nms_threshold: 0", 1.0),
    "softmax_nms": (1, 6, 5, 3, 4, "classes: 4 anchors: 3 softmax: 1 thresh: 0.2 nms_threshold: 0.4", 2.0),
    "logistic_nms": (1, 6, 5, 3, 4, "classes: 4 anchors: 3 logistic: 1 thresh: 0.1 nms_threshold: 0.3", 2.0),
    "batch2_softmax_nms": (2, 4, 4, 5, 2, "classes: 2 anchors: 5 softmax: 1 nms_threshold: 0.45", 2.0),
    "scale_x_y_classfix": (1, 6, 6, 2, 2, "classes: 2 anchors: 2 softmax: 1 classfix: -1 scale_x_y: 1.1", 2.0),
    "new_coords": (1, 4, 5, 2, 3, "classes: 3 anchors: 2 logistic: 1 new_coords: 1 nms_threshold: 0.4", 0.6),
}


@pytest.mark.parametrize("setting", sorted(REGION_SETTINGS))
def test_region_matches_opencv(tmp_path, setting):
    n, h, w, a, c, params, spread = REGION_SETTINGS[setting]
    ours, theirs = region_case(tmp_path, n, h, w, a, c, params, spread, seed=len(setting))
    rows = h * w * a
    assert theirs.shape == ((rows, 5 + c) if n == 1 else (n, rows, 5 + c)) == ours.shape
    assert_close(ours, theirs)
    # the case exercises the threshold (zeros and survivors) and, with NMS, suppressions
    assert 0 < int((theirs[..., 5:] > 0).sum()) < theirs[..., 5:].size
    if setting.endswith("_nms") and "no_nms" not in setting:
        import re
        plain = re.sub(r"nms_threshold: [0-9.]+", "nms_threshold: 0", params)
        no_nms, _ = region_case(tmp_path, n, h, w, a, c, plain, spread, seed=len(setting))
        assert int((no_nms[..., 5:] > 0).sum()) > int((ours[..., 5:] > 0).sum())
