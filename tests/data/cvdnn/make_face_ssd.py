"""Write ``face_ssd_small.prototxt``: a net shaped like OpenCV's res10 300x300 SSD face detector
(ResNet-10 trunk with pre-activation blocks, an L2-normalised 38x38 head and five more heads,
PriorBox sizes 30..315, DetectionOutput with OpenCV's ``clip``) with the trunk widths divided by
``--div`` (default 8), for tests with random weights.  Facts from the published deploy prototxt
(opencv/opencv samples/dnn/face_detector/deploy.prototxt); text written here.

    python tests/data/cvdnn/make_face_ssd.py [--div 8]
"""
import argparse
from pathlib import Path

HEADS = [  # (name, source blob, min, max, aspect ratios, step)
    ("conv4_3_norm", "conv4_3_norm", 30, 60, [2], 8),
    ("fc7", "fc7", 60, 111, [2, 3], 16),
    ("conv6_2", "conv6_2_h", 111, 162, [2, 3], 32),
    ("conv7_2", "conv7_2_h", 162, 213, [2, 3], 64),
    ("conv8_2", "conv8_2_h", 213, 264, [2], 100),
    ("conv9_2", "conv9_2_h", 264, 315, [2], 300),
]


def build(div: int) -> str:
    out = ['name: "res10_300x300_ssd_small"', 'input: "data"',
           "input_shape { dim: 1 dim: 3 dim: 300 dim: 300 }"]

    def add(text):
        out.append("layer { " + text + " }")

    def bn_scale_relu(prefix, blob, top=None, relu=True):
        add(f'name: "{prefix}_bn" type: "BatchNorm" bottom: "{blob}" top: "{top or blob}"')
        add(f'name: "{prefix}_scale" type: "Scale" bottom: "{top or blob}" top: "{top or blob}" '
            f'scale_param {{ bias_term: true }}')
        if relu:
            add(f'name: "{prefix}_relu" type: "ReLU" bottom: "{top or blob}" top: "{top or blob}"')

    def conv(name, bottom, n, k, s=1, p=0, dil=1, bias=True, top=None):
        extra = f" dilation: {dil}" if dil != 1 else ""
        add(f'name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{top or name}" convolution_param {{ '
            f'num_output: {n} kernel_size: {k} stride: {s} pad: {p}{extra} bias_term: {str(bias).lower()} }}')

    w = lambda c: max(4, c // div)  # noqa: E731
    bn_scale_relu("data", "data", top="data_bn", relu=False)
    conv("conv1_h", "data_bn", w(32), 7, 2, 3)
    bn_scale_relu("conv1", "conv1_h")
    add('name: "conv1_pool" type: "Pooling" bottom: "conv1_h" top: "conv1_pool" '
        'pooling_param { pool: MAX kernel_size: 3 stride: 2 }')
    # block 64: identity shortcut
    conv("layer_64_1_conv1_h", "conv1_pool", w(32), 3, 1, 1, bias=False)
    bn_scale_relu("layer_64_1_2", "layer_64_1_conv1_h")
    conv("layer_64_1_conv2_h", "layer_64_1_conv1_h", w(32), 3, 1, 1, bias=False)
    add('name: "layer_64_1_sum" type: "Eltwise" bottom: "layer_64_1_conv2_h" bottom: "conv1_pool" '
        'top: "layer_64_1_sum"')
    prev = "layer_64_1_sum"
    for width, out_c, stride, mid, dil in [(128, 128, 2, 128, 1), (256, 256, 2, 256, 1), (512, 256, 1, 128, 2)]:
        p = f"layer_{width}_1"
        bn_scale_relu(f"{p}_1", prev, top=f"{p}_bn1")
        conv(f"{p}_conv1", f"{p}_bn1", w(mid), 3, stride, 1, bias=False)
        bn_scale_relu(f"{p}_2", f"{p}_conv1")
        conv(f"{p}_conv2", f"{p}_conv1", w(out_c), 3, 1, dil, dil=dil, bias=False)
        conv(f"{p}_conv_expand", f"{p}_bn1", w(out_c), 1, stride, 0, bias=False)
        add(f'name: "{p}_sum" type: "Eltwise" bottom: "{p}_conv2" bottom: "{p}_conv_expand" top: "{p}_sum"')
        prev = f"{p}_sum"
    bn_scale_relu("last", prev, relu=False)
    add(f'name: "last_relu" type: "ReLU" bottom: "{prev}" top: "fc7"')
    prev = "fc7"
    for k, (n1, n2, s, p) in zip(range(6, 10), [(128, 256, 2, 1), (64, 128, 2, 1), (64, 128, 1, 0), (64, 128, 1, 0)]):
        conv(f"conv{k}_1_h", prev, w(n1), 1)
        add(f'name: "conv{k}_1_relu" type: "ReLU" bottom: "conv{k}_1_h" top: "conv{k}_1_h"')
        conv(f"conv{k}_2_h", f"conv{k}_1_h", w(n2), 3, s, p)
        add(f'name: "conv{k}_2_relu" type: "ReLU" bottom: "conv{k}_2_h" top: "conv{k}_2_h"')
        prev = f"conv{k}_2_h"
    add('name: "conv4_3_norm" type: "Normalize" bottom: "layer_256_1_bn1" top: "conv4_3_norm" '
        'norm_param { across_spatial: false scale_filler { type: "constant" value: 20 } channel_shared: false }')
    for name, src, lo, hi, ratios, step in HEADS:
        n_priors = 2 + 2 * len(ratios)
        for kind, n in (("loc", 4 * n_priors), ("conf", 2 * n_priors)):
            conv(f"{name}_mbox_{kind}", src, n, 3, 1, 1)
            add(f'name: "{name}_mbox_{kind}_perm" type: "Permute" bottom: "{name}_mbox_{kind}" '
                f'top: "{name}_mbox_{kind}_perm" permute_param {{ order: 0 order: 2 order: 3 order: 1 }}')
            add(f'name: "{name}_mbox_{kind}_flat" type: "Flatten" bottom: "{name}_mbox_{kind}_perm" '
                f'top: "{name}_mbox_{kind}_flat" flatten_param {{ axis: 1 }}')
        ar = " ".join(f"aspect_ratio: {r}" for r in ratios)
        add(f'name: "{name}_mbox_priorbox" type: "PriorBox" bottom: "{src}" bottom: "data" '
            f'top: "{name}_mbox_priorbox" prior_box_param {{ min_size: {lo} max_size: {hi} {ar} flip: true '
            f'clip: false variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 step: {step} offset: 0.5 }}')
    for kind, axis in (("loc", 1), ("conf", 1), ("priorbox", 2)):
        suffix = "priorbox" if kind == "priorbox" else f"{kind}_flat"
        bottoms = " ".join(f'bottom: "{h[0]}_mbox_{suffix}"' for h in HEADS)
        add(f'name: "mbox_{kind}" type: "Concat" {bottoms} top: "mbox_{kind}" concat_param {{ axis: {axis} }}')
    add('name: "mbox_conf_reshape" type: "Reshape" bottom: "mbox_conf" top: "mbox_conf_reshape" '
        'reshape_param { shape { dim: 0 dim: -1 dim: 2 } }')
    add('name: "mbox_conf_softmax" type: "Softmax" bottom: "mbox_conf_reshape" top: "mbox_conf_softmax" '
        'softmax_param { axis: 2 }')
    add('name: "mbox_conf_flatten" type: "Flatten" bottom: "mbox_conf_softmax" top: "mbox_conf_flatten" '
        'flatten_param { axis: 1 }')
    add('name: "detection_out" type: "DetectionOutput" bottom: "mbox_loc" bottom: "mbox_conf_flatten" '
        'bottom: "mbox_priorbox" top: "detection_out" detection_output_param { num_classes: 2 '
        'share_location: true background_label_id: 0 nms_param { nms_threshold: 0.45 top_k: 400 } '
        'code_type: CENTER_SIZE keep_top_k: 200 confidence_threshold: 0.01 clip: true }')
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--div", type=int, default=8)
    args = ap.parse_args()
    (Path(__file__).resolve().parent / "face_ssd_small.prototxt").write_text(build(args.div))
