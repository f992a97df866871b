"""SSD's DetectionOutput (weiliu89/caffe ``detection_output_layer.cpp`` and ``bbox_util.cpp``).

Fork rules (default, ``semantics="fork"``):
* bottoms: loc ``[N, P*L*4]`` (L = 1 with ``share_location``, else ``num_classes``; prior-major,
  then label, then coordinate), conf ``[N, P*num_classes]`` (class fastest), priors
  ``[1, 2, P*4]`` (boxes, then variances; channel 1 unused with ``variance_encoded_in_target``).
* decode (``DecodeBBox``): CORNER ``prior + var*loc``; CENTER_SIZE centre ``prior_c +
  var*loc*prior_size``, size ``exp(var*loc)*prior_size``; CORNER_SIZE ``prior_corner +
  var*loc*prior_size``; with ``variance_encoded_in_target`` the variances are not applied.
* per image and class except ``background_label_id``: scores strictly greater than
  ``confidence_threshold`` (absent: -FLT_MAX), stable sort by score descending, first ``top_k``
  (``nms_param``, when > -1), greedy NMS keeping a box whose Jaccard overlap with every kept one is
  <= the threshold (``eta`` < 1 lowers the threshold after each kept box while it is > 0.5).
  Overlap of normalized boxes; no intersection -> 0; an inverted box has size 0.
* ``keep_top_k`` > -1: the keep_top_k highest scores of the image survive.
* output ``[1, 1, kept, 7]`` rows ``[image, label, score, xmin, ymin, xmax, ymax]``, per image by
  label ascending then score descending; nothing kept at all -> one row ``[i, -1, -1, ...]`` per
  image.
OpenCV 4 semantics (``semantics="opencv"``, ``layers/detection_output_layer.cpp``): output always
``[1, 1, keep_top_k*N, 7]`` with an image's rows by score over all classes and all-zero rows after
the last detection; ``confidence_threshold`` 0 when absent; ``eta`` ignored; ``clip`` (OpenCV's
field 1000) clamps decoded boxes to [0, 1] before NMS; CORNER_SIZE unknown (error).
"""
from __future__ import annotations

import numpy as np
import torch

from ..proto import caffe_pb2 as pb
from .base import FLT_MAX, CaffeLayer, need_bottoms, need_tops
from .registry import ConversionError, current_semantics, register

CORNER, CENTER_SIZE, CORNER_SIZE = (pb.PriorBoxParameter.CORNER, pb.PriorBoxParameter.CENTER_SIZE,
                                    pb.PriorBoxParameter.CORNER_SIZE)


def decode_boxes(prior: np.ndarray, var: np.ndarray | None, loc: np.ndarray, code_type: int) -> np.ndarray:
    """Decode ``loc`` [P, 4] against ``prior`` [P, 4] (var None: variance encoded in target)."""
    with np.errstate(over="ignore", invalid="ignore"):      # exp overflow -> inf, as in C++
        return _decode(prior, var, loc, code_type)


def _decode(prior, var, loc, code_type):
    v = np.ones_like(prior) if var is None else var
    pw = prior[:, 2] - prior[:, 0]
    ph = prior[:, 3] - prior[:, 1]
    if code_type == CORNER:
        return prior + v * loc
    if code_type == CORNER_SIZE:
        size = np.stack([pw, ph, pw, ph], axis=1)
        return prior + v * loc * size
    cx = (prior[:, 0] + prior[:, 2]) / 2
    cy = (prior[:, 1] + prior[:, 3]) / 2
    dcx = v[:, 0] * loc[:, 0] * pw + cx
    dcy = v[:, 1] * loc[:, 1] * ph + cy
    dw = np.exp(v[:, 2] * loc[:, 2]) * pw
    dh = np.exp(v[:, 3] * loc[:, 3]) * ph
    return np.stack([dcx - dw / 2, dcy - dh / 2, dcx + dw / 2, dcy + dh / 2], axis=1)


def box_size(b: np.ndarray) -> np.ndarray:
    """Normalized BBoxSize: 0 for an inverted box."""
    with np.errstate(invalid="ignore", over="ignore"):
        w, h = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
        return np.where((w < 0) | (h < 0), 0.0, w * h)


def jaccard(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """JaccardOverlap of one normalized box with each of ``others`` (0 without intersection)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return _jaccard(box, others)


def _jaccard(box, others):
    ix0 = np.maximum(box[0], others[:, 0])
    iy0 = np.maximum(box[1], others[:, 1])
    ix1 = np.minimum(box[2], others[:, 2])
    iy1 = np.minimum(box[3], others[:, 3])
    disjoint = (others[:, 0] > box[2]) | (others[:, 2] < box[0]) | (others[:, 1] > box[3]) | (others[:, 3] < box[1])
    inter = np.where(disjoint, 0.0, (ix1 - ix0) * (iy1 - iy0))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        union = box_size(box) + box_size(others) - inter
        # plain division as the C++ does: a NaN overlap (infinite boxes) fails "<= threshold"
        out = inter / union
    return np.where(disjoint, 0.0, out)


def nms_fast(boxes: np.ndarray, scores: np.ndarray, threshold: float, nms_threshold: float,
             top_k: int, eta: float) -> list[int]:
    """ApplyNMSFast: indices kept, in descending score order (stable for equal scores)."""
    cand = np.flatnonzero(scores > threshold)
    order = cand[np.argsort(-scores[cand], kind="stable")]
    if top_k > -1:
        order = order[:top_k]
    kept: list[int] = []
    adaptive = nms_threshold
    for idx in order:
        keep = True
        if kept:
            keep = bool(np.all(jaccard(boxes[idx], boxes[kept]) <= adaptive))
        if keep:
            kept.append(int(idx))
            if eta < 1 and adaptive > 0.5:
                adaptive *= eta
    return kept


class DetectionOutput(CaffeLayer):
    def __init__(self, layer, phase, num_priors):
        super().__init__(layer, phase)
        p = layer.detection_output_param
        self.opencv = current_semantics() == "opencv"
        self.num_classes = int(p.num_classes)
        self.share_location = bool(p.share_location)
        self.background = int(p.background_label_id)
        self.code_type = int(p.code_type)
        self.variance_in_target = bool(p.variance_encoded_in_target)
        self.keep_top_k = int(p.keep_top_k)
        self.nms_threshold = float(p.nms_param.nms_threshold)
        self.top_k = int(p.nms_param.top_k) if p.nms_param.HasField("top_k") else -1
        self.eta = 1.0 if self.opencv else float(p.nms_param.eta)
        if p.HasField("confidence_threshold"):
            self.confidence = float(p.confidence_threshold)
        else:
            self.confidence = 0.0 if self.opencv else -FLT_MAX
        self.clip = bool(p.clip)
        self.num_priors = num_priors

    def _detect_image(self, loc, conf, prior, var):
        """(label, score, box) rows of one image, in the fork's order (label, then score)."""
        P, C = self.num_priors, self.num_classes
        L = 1 if self.share_location else C
        loc = loc.reshape(P, L, 4)
        conf = conf.reshape(P, C)
        decoded = {}
        for c in range(C):
            if c == self.background:
                continue
            li = 0 if self.share_location else c
            if li not in decoded:
                boxes = decode_boxes(prior, var, loc[:, li], self.code_type).astype(np.float32)
                if self.clip:
                    boxes = np.clip(boxes, 0.0, 1.0)
                decoded[li] = boxes
        per_label: dict[int, list[int]] = {}
        for c in range(C):
            if c == self.background:
                continue
            boxes = decoded[0 if self.share_location else c]
            per_label[c] = nms_fast(boxes, conf[:, c], self.confidence, self.nms_threshold, self.top_k, self.eta)
        pairs = [(conf[i, c], c, i) for c, idx in per_label.items() for i in idx]
        if self.keep_top_k > -1 and len(pairs) > self.keep_top_k:
            pairs.sort(key=lambda t: -t[0])            # std::sort by score, descending
            pairs = pairs[:self.keep_top_k]
            if not self.opencv:
                # the fork re-collects per label (map order: label ascending), score order inside
                pairs.sort(key=lambda t: t[1])
        elif not self.opencv:
            pairs.sort(key=lambda t: t[1])            # per label, each already in NMS (score) order
        if self.opencv:
            pairs.sort(key=lambda t: -t[0])            # OpenCV: an image's rows by score
        return [(c, float(s), decoded[0 if self.share_location else c][i]) for s, c, i in pairs]

    def forward(self, loc, conf, prior):
        n = loc.shape[0]
        loc_np = loc.detach().to("cpu", torch.float32).numpy().reshape(n, -1)
        conf_np = conf.detach().to("cpu", torch.float32).numpy().reshape(n, -1)
        prior_np = prior.detach().to("cpu", torch.float32).numpy().reshape(prior.shape[0], prior.shape[1], -1)
        pri = prior_np[0, 0].reshape(-1, 4)
        var = None if self.variance_in_target else prior_np[0, 1].reshape(-1, 4)
        rows = []
        for i in range(n):
            for c, s, box in self._detect_image(loc_np[i], conf_np[i], pri, var):
                rows.append([i, c, s, *box.tolist()])
        if self.opencv:
            out = np.zeros((self.keep_top_k * n, 7), dtype=np.float32)
            if rows:
                out[:len(rows)] = np.asarray(rows, dtype=np.float32)
        elif rows:
            out = np.asarray(rows, dtype=np.float32)
        else:
            out = np.full((n, 7), -1.0, dtype=np.float32)
            out[:, 0] = np.arange(n)
        return torch.from_numpy(out.reshape(1, 1, -1, 7)).to(loc.device)

    def extra_repr(self):
        return (f"caffe_name={self.caffe_name!r}, classes={self.num_classes}, "
                f"share_location={self.share_location}, keep_top_k={self.keep_top_k}, "
                f"semantics={'opencv' if self.opencv else 'fork'}")


@register("DetectionOutput")
def convert_detection_output(layer, shapes, phase):
    need_bottoms(layer, shapes, 3)
    need_tops(layer, 1)
    p = layer.detection_output_param
    opencv = current_semantics() == "opencv"
    if opencv:
        missing = [f for f in ("num_classes", "share_location", "background_label_id", "code_type",
                               "keep_top_k") if not p.HasField(f)]
        if not p.nms_param.HasField("nms_threshold"):
            missing.append("nms_param.nms_threshold")
        if missing:
            raise ConversionError(layer, f"OpenCV semantics require {', '.join(missing)} in the prototxt")
        if p.keep_top_k <= 0:
            raise ConversionError(layer, f"OpenCV semantics need keep_top_k > 0 (got {p.keep_top_k}: "
                                         f"OpenCV 4 sizes its output keep_top_k*N rows)")
        if p.code_type == CORNER_SIZE:
            raise ConversionError(layer, "CORNER_SIZE is not in OpenCV's schema")
    if not p.HasField("num_classes") or p.num_classes < 1:
        raise ConversionError(layer, "must specify num_classes (> 0)")
    if p.nms_param.nms_threshold < 0:
        raise ConversionError(layer, "nms_threshold must be non negative")
    if p.share_location and p.background_label_id == -1:
        # weiliu89: the shared location set has label -1 == background and is never decoded
        # (CHECK "Could not find location predictions"); OpenCV fails the same way.
        raise ConversionError(layer, "share_location with background_label_id -1 is not supported "
                                     "by the fork (its shared boxes carry label -1)")
    loc, conf, prior = (tuple(s) for s in shapes)
    if len(prior) != 3 or prior[2] % 4:
        raise ConversionError(layer, f"prior bottom must be [1, 2, P*4], got {prior}")
    num_priors = prior[2] // 4
    L = 1 if p.share_location else p.num_classes
    n_loc = int(np.prod(loc[1:])) if len(loc) > 1 else 0
    n_conf = int(np.prod(conf[1:])) if len(conf) > 1 else 0
    if n_loc != num_priors * L * 4:
        raise ConversionError(layer, f"number of priors ({num_priors}) must match number of location "
                                     f"predictions (loc {loc} holds {n_loc} values per image, need "
                                     f"{num_priors * L * 4})")
    if n_conf != num_priors * p.num_classes:
        raise ConversionError(layer, f"number of priors ({num_priors}) must match number of confidence "
                                     f"predictions (conf {conf} holds {n_conf} per image, need "
                                     f"{num_priors * p.num_classes})")
    if not p.variance_encoded_in_target and prior[1] < 2:
        raise ConversionError(layer, f"prior bottom {prior} has no variance channel (set "
                                     f"variance_encoded_in_target or give [1, 2, P*4])")
    if p.code_type not in (CORNER, CENTER_SIZE, CORNER_SIZE):
        raise ConversionError(layer, f"unknown code_type {p.code_type}")
    mod = DetectionOutput(layer, phase, num_priors)
    # Caffe's Reshape gives [1, 1, 1, 7] (the row count is known only after Forward); OpenCV's
    # output is always keep_top_k * N rows.
    rows = p.keep_top_k * loc[0] if opencv else 1
    return mod, [(1, 1, rows, 7)]
