"""Faster R-CNN's region proposal layer, type ``Proposal`` (``proposal_param``, OpenCV's schema;
the computation is py-faster-rcnn's ``rpn/proposal_layer.py``, whose own layer is type Python).

Fork rules (py-faster-rcnn, TEST): bottoms rpn_cls_prob_reshape ``[1, 2A, H, W]`` (the last A
channels are the foreground scores), rpn_bbox_pred ``[1, 4A, H, W]``, im_info ``[1, 3]`` =
(height, width, scale).  Anchors (``generate_anchors``): base box ``[0, 0, base-1, base-1]``; per
ratio ``ws = round(sqrt(base^2 / ratio))``, ``hs = round(ws * ratio)`` (NumPy's round, half to even),
per scale ``ws*scale x hs*scale``, centred on the base box's centre (ratio-major); shifted by
``(x, y) * feat_stride`` over the map (rows outer, columns, then anchors).  Deltas decoded with
``w = x2 - x1 + 1``, ``ctr = x1 + 0.5 w``, ``x1' = ctr' - 0.5 w'``, ``x2' = ctr' + 0.5 w'``; clipped to
``[0, im_w - 1] x [0, im_h - 1]``; boxes narrower or lower than ``min_size * im_scale`` dropped; score
order (descending; stable here), first ``pre_nms_topn``; NMS with ``+1`` areas keeping IoU <=
``nms_thresh``; first ``post_nms_topn``.  Outputs rois ``[R, 5]`` (column 0 = 0) and, as top 1,
scores ``[R, 1]``.  Batch 1 only.
OpenCV 4 (``semantics="opencv"``, ``layers/proposal_layer.cpp``): ``min_size`` ignored, scores > 0
only, outputs zero-padded to ``post_nms_topn`` rows.
"""
from __future__ import annotations

import numpy as np
import torch

from .base import CaffeLayer, need_bottoms, need_tops
from .registry import ConversionError, current_semantics, register


def generate_anchors(base_size: int, ratios, scales) -> np.ndarray:
    base = np.array([0, 0, base_size - 1, base_size - 1], dtype=np.float64)
    w, h = base[2] - base[0] + 1, base[3] - base[1] + 1
    cx, cy = base[0] + 0.5 * (w - 1), base[1] + 0.5 * (h - 1)
    out = []
    for r in ratios:
        ws = np.round(np.sqrt(w * h / r))
        hs = np.round(ws * r)
        for s in scales:
            sw, sh = ws * s, hs * s
            out.append([cx - 0.5 * (sw - 1), cy - 0.5 * (sh - 1), cx + 0.5 * (sw - 1), cy + 0.5 * (sh - 1)])
    return np.asarray(out)


def nms_plus_one(boxes: np.ndarray, scores: np.ndarray, thresh: float) -> list[int]:
    """py-faster-rcnn's nms (``+1`` pixel areas): indices kept in score order."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        xx1, yy1 = np.maximum(x1[i], x1[order[1:]]), np.maximum(y1[i], y1[order[1:]])
        xx2, yy2 = np.minimum(x2[i], x2[order[1:]]), np.minimum(y2[i], y2[order[1:]])
        inter = np.maximum(0.0, xx2 - xx1 + 1) * np.maximum(0.0, yy2 - yy1 + 1)
        ovr = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[1:][ovr <= thresh]
    return keep


class Proposal(CaffeLayer):
    def __init__(self, layer, phase, opencv):
        super().__init__(layer, phase)
        p = layer.proposal_param
        self.opencv = opencv
        self.stride, self.min_size = int(p.feat_stride), int(p.min_size)
        self.pre, self.post, self.nms = int(p.pre_nms_topn), int(p.post_nms_topn), float(p.nms_thresh)
        ratios = list(p.ratio) or [0.5, 1.0, 2.0]
        scales = list(p.scale) or [8.0, 16.0, 32.0]
        self.anchors = generate_anchors(int(p.base_size), ratios, scales)

    def forward(self, cls_prob, bbox_pred, im_info):
        if cls_prob.shape[0] != 1:
            raise ConversionError(self.caffe_name, "only single item batches are supported")
        a = self.anchors.shape[0]
        scores = cls_prob.detach().cpu().double().numpy()[0, a:]           # [A, H, W]
        deltas = bbox_pred.detach().cpu().double().numpy()[0]              # [4A, H, W]
        info = im_info.detach().cpu().double().numpy().reshape(-1)
        h, w = scores.shape[1:]
        sx, sy = np.meshgrid(np.arange(w) * self.stride, np.arange(h) * self.stride)
        shifts = np.stack([sx.ravel(), sy.ravel(), sx.ravel(), sy.ravel()], axis=1)
        anchors = (self.anchors[None] + shifts[:, None]).reshape(-1, 4)
        scores = scores.transpose(1, 2, 0).reshape(-1)
        deltas = deltas.transpose(1, 2, 0).reshape(-1, 4)
        widths = anchors[:, 2] - anchors[:, 0] + 1
        heights = anchors[:, 3] - anchors[:, 1] + 1
        cx, cy = anchors[:, 0] + 0.5 * widths, anchors[:, 1] + 0.5 * heights
        pcx, pcy = deltas[:, 0] * widths + cx, deltas[:, 1] * heights + cy
        pw, ph = np.exp(deltas[:, 2]) * widths, np.exp(deltas[:, 3]) * heights
        boxes = np.stack([pcx - 0.5 * pw, pcy - 0.5 * ph, pcx + 0.5 * pw, pcy + 0.5 * ph], axis=1)
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, info[1] - 1)
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, info[0] - 1)
        if self.opencv:
            keep = scores > 0
        else:
            ms = self.min_size * info[2]
            keep = ((boxes[:, 2] - boxes[:, 0] + 1) >= ms) & ((boxes[:, 3] - boxes[:, 1] + 1) >= ms)
        boxes, scores = boxes[keep], scores[keep]
        order = np.argsort(-scores, kind="stable")
        if self.pre > 0:
            order = order[:self.pre]
        boxes, scores = boxes[order], scores[order]
        kept = nms_plus_one(boxes, scores, self.nms)
        if self.post > 0:
            kept = kept[:self.post]
        rows = len(kept) if not self.opencv else self.post
        rois = np.zeros((rows, 5), np.float32)
        out_scores = np.zeros((rows, 1), np.float32)
        rois[:len(kept), 1:] = boxes[kept]
        out_scores[:len(kept), 0] = scores[kept]
        dev = cls_prob.device
        return torch.from_numpy(rois).to(dev), torch.from_numpy(out_scores).to(dev)


@register("Proposal")
def convert_proposal(layer, shapes, phase):
    need_bottoms(layer, shapes, 3)
    need_tops(layer, (1, 2))
    cls, bbox, info = (tuple(s) for s in shapes)
    opencv = current_semantics() == "opencv"
    mod = Proposal(layer, phase, opencv)
    a = mod.anchors.shape[0]
    if len(cls) != 4 or cls[1] != 2 * a or len(bbox) != 4 or bbox[1] != 4 * a or bbox[2:] != cls[2:]:
        raise ConversionError(layer, f"needs scores [1, {2 * a}, H, W] and deltas [1, {4 * a}, H, W] for "
                                     f"{a} anchors, got {cls} and {bbox}")
    if int(np.prod(info)) < 3:
        raise ConversionError(layer, f"im_info must hold (height, width, scale), got shape {info}")
    rows = mod.post if opencv else 1          # py-faster-rcnn reshapes its tops at Forward
    tops = [(rows, 5), (rows, 1)][:len(layer.top)]
    return (mod if len(layer.top) == 2 else _FirstOnly(layer, phase, mod)), tops


class _FirstOnly(CaffeLayer):
    def __init__(self, layer, phase, inner):
        super().__init__(layer, phase)
        self.inner = inner

    def forward(self, *xs):
        return self.inner(*xs)[0]
