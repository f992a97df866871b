"""The deploy prototxt of OpenCV's res10 300x300 SSD face detector, written from its published facts.

What it owns: the net's architecture as text (:func:`res10_prototxt`) - a ResNet-10 trunk of
pre-activation blocks (BatchNorm + Scale + ReLU before each convolution), an L2-normalised head on
the 38x38 map (``Normalize``, scale 20 per channel) and five more heads (19x19 ... 1x1), PriorBox
min sizes 30, 60, 111, 162, 213, 264 (max = the next one, 315 last; steps 8 ... 300; variances
0.1/0.1/0.2/0.2; not clipped), one face class, DetectionOutput with NMS 0.45 / top 400, keep 200,
confidence 0.01 and OpenCV's ``clip``.  Layer names are the published ones (the caffemodel's
blobs are matched by them).  Facts from opencv/opencv ``samples/dnn/face_detector/deploy.prototxt``
(the training prototxts' ``_h`` suffixes included); the text is generated here.  ``div`` > 1 gives a
narrower net of the same shape for tests.
"""
from __future__ import annotations

# (min_size, max_size, extra aspect ratios, step) per head; name -> the blob it reads
HEADS = [
    ("conv4_3_norm", "conv4_3_norm", 30, 60, (2,), 8),
    ("fc7", "fc7", 60, 111, (2, 3), 16),
    ("conv6_2", "conv6_2_h", 111, 162, (2, 3), 32),
    ("conv7_2", "conv7_2_h", 162, 213, (2, 3), 64),
    ("conv8_2", "conv8_2_h", 213, 264, (2,), 100),
    ("conv9_2", "conv9_2_h", 264, 315, (2,), 300),
]

# pre-activation blocks: (prefix, input, BN/Scale/ReLU names before conv1 (None: the block reads the
# pooled map directly), conv1 name, its BN/Scale/ReLU names, conv2 name, expand name (None: identity),
# mid width, out width, stride, dilation of conv2)
BLOCKS = [
    ("layer_64_1", "conv1_pool", None, "layer_64_1_conv1_h",
     ("layer_64_1_bn2_h", "layer_64_1_scale2_h", "layer_64_1_relu2"), "layer_64_1_conv2_h", None, 32, 32, 1, 1),
    ("layer_128_1", "layer_64_1_sum", ("layer_128_1_bn1_h", "layer_128_1_scale1_h", "layer_128_1_relu1"),
     "layer_128_1_conv1_h", ("layer_128_1_bn2", "layer_128_1_scale2", "layer_128_1_relu2"), "layer_128_1_conv2",
     "layer_128_1_conv_expand_h", 128, 128, 2, 1),
    ("layer_256_1", "layer_128_1_sum", ("layer_256_1_bn1", "layer_256_1_scale1", "layer_256_1_relu1"),
     "layer_256_1_conv1", ("layer_256_1_bn2", "layer_256_1_scale2", "layer_256_1_relu2"), "layer_256_1_conv2",
     "layer_256_1_conv_expand", 256, 256, 2, 1),
    ("layer_512_1", "layer_256_1_sum", ("layer_512_1_bn1", "layer_512_1_scale1", "layer_512_1_relu1"),
     "layer_512_1_conv1_h", ("layer_512_1_bn2_h", "layer_512_1_scale2_h", "layer_512_1_relu2"),
     "layer_512_1_conv2_h", "layer_512_1_conv_expand_h", 128, 256, 1, 2),
]
EXTRA = [(6, 128, 256, 2, 1), (7, 64, 128, 2, 1), (8, 64, 128, 1, 0), (9, 64, 128, 1, 0)]


def res10_prototxt(div: int = 1, name: str = "res10_300x300_ssd") -> str:
    """The deploy prototxt text; ``div`` divides the trunk widths (heads keep their sizes)."""
    out = [f'name: "{name}"', 'input: "data"', "input_shape { dim: 1 dim: 3 dim: 300 dim: 300 }"]

    def add(text):
        out.append("layer { " + text + " }")

    def w(c):
        return max(4, c // div)

    def conv(lname, bottom, n, k, s=1, p=0, dil=1, bias=True, top=None):
        extra = (f" dilation: {dil}" if dil != 1 else "") + ("" if bias else " bias_term: false")
        add(f'name: "{lname}" type: "Convolution" bottom: "{bottom}" top: "{top or lname}" convolution_param {{ '
            f'num_output: {n} kernel_size: {k} stride: {s} pad: {p}{extra} }}')

    def bn_scale(bn, scale, bottom, top):
        add(f'name: "{bn}" type: "BatchNorm" bottom: "{bottom}" top: "{top}"')
        add(f'name: "{scale}" type: "Scale" bottom: "{top}" top: "{top}" scale_param {{ bias_term: true }}')

    def relu(rname, bottom, top=None):
        add(f'name: "{rname}" type: "ReLU" bottom: "{bottom}" top: "{top or bottom}"')

    bn_scale("data_bn", "data_scale", "data", "data_bn")
    conv("conv1_h", "data_bn", w(32), 7, 2, 3)
    bn_scale("conv1_bn_h", "conv1_scale_h", "conv1_h", "conv1_h")
    relu("conv1_relu", "conv1_h")
    add('name: "conv1_pool" type: "Pooling" bottom: "conv1_h" top: "conv1_pool" '
        'pooling_param { kernel_size: 3 stride: 2 }')   # MAX: the default
    for prefix, src, pre, c1, mid_names, c2, expand, mid, width, stride, dil in BLOCKS:
        x = src
        if pre is not None:
            x = pre[0]
            bn_scale(pre[0], pre[1], src, x)
            relu(pre[2], x)
        conv(c1, x, w(mid), 3, stride, 1, bias=False)
        bn_scale(mid_names[0], mid_names[1], c1, c1)
        relu(mid_names[2], c1)
        conv(c2, c1, w(width), 3, 1, dil, dil=dil, bias=False)
        if expand is not None:
            conv(expand, x, w(width), 1, stride, 0, bias=False)
        add(f'name: "{prefix}_sum" type: "Eltwise" bottom: "{c2}" bottom: "{expand or src}" top: "{prefix}_sum"')
    bn_scale("last_bn_h", "last_scale_h", "layer_512_1_sum", "layer_512_1_sum")
    relu("last_relu", "layer_512_1_sum", "fc7")
    prev = "fc7"
    for k, n1, n2, s, p in EXTRA:
        conv(f"conv{k}_1_h", prev, w(n1), 1)
        relu(f"conv{k}_1_relu", f"conv{k}_1_h")
        conv(f"conv{k}_2_h", f"conv{k}_1_h", w(n2), 3, s, p)
        relu(f"conv{k}_2_relu", f"conv{k}_2_h")
        prev = f"conv{k}_2_h"
    add('name: "conv4_3_norm" type: "Normalize" bottom: "layer_256_1_bn1" top: "conv4_3_norm" '
        'norm_param { across_spatial: false scale_filler { type: "constant" value: 20 } channel_shared: false }')
    for head, src, lo, hi, ratios, step in HEADS:
        n_priors = 2 + 2 * len(ratios)              # min, sqrt(min*max), each ratio and its flip
        for kind, n in (("loc", 4 * n_priors), ("conf", 2 * n_priors)):
            conv(f"{head}_mbox_{kind}", src, n, 3, 1, 1)
            add(f'name: "{head}_mbox_{kind}_perm" type: "Permute" bottom: "{head}_mbox_{kind}" '
                f'top: "{head}_mbox_{kind}_perm" permute_param {{ order: 0 order: 2 order: 3 order: 1 }}')
            add(f'name: "{head}_mbox_{kind}_flat" type: "Flatten" bottom: "{head}_mbox_{kind}_perm" '
                f'top: "{head}_mbox_{kind}_flat" flatten_param {{ axis: 1 }}')
        ar = " ".join(f"aspect_ratio: {r}" for r in ratios)
        add(f'name: "{head}_mbox_priorbox" type: "PriorBox" bottom: "{src}" bottom: "data" '
            f'top: "{head}_mbox_priorbox" prior_box_param {{ min_size: {lo} max_size: {hi} {ar} flip: true '
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
