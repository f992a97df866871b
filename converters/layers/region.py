"""YOLOv2's ``Region`` layer, with OpenCV 4's definition (``modules/dnn/src/layers/region_layer.cpp``).

The Caffe YOLO ports (the caffe-yolo / Caffe-YOLOv2 forks) disagree with each other on the layer's
parameter message, its input layout and where the anchors live, and none of them is a runtime
people still run; OpenCV 4's dnn module is the one de-facto runtime of YOLOv2 Caffe nets, so this
layer follows it under both ``semantics`` settings.  Its rules:

* bottom 0: NHWC ``[N, H, W, A*(5+C)]`` (a ``Permute`` with order 0,2,3,1 before it in the net);
  the ``5+C`` values of one anchor are consecutive: ``tx, ty, tw, th, to, c_1 .. c_C``.  An
  optional bottom 1 (4-D, e.g. the image) gives the sizes that divide ``w`` / ``h``.
* ``region_param`` (OpenCV's names; OpenCV reads it as an unknown message, by name): ``classes``
  (>= 1), ``coords`` (must be 4), ``anchors`` (the count, default 5), ``softmax`` / ``logistic``
  (one must be set; softmax wins when both are), ``thresh`` (0.2), ``nms_threshold`` (0.4; 0: no
  NMS), ``classfix`` (-1: objectness < 0.5 counts as 0), ``scale_x_y`` (1), ``new_coords`` (0).
  OpenCV's Caffe importer drops a minus sign from such values and reads ``true`` as false (write
  ``1``): with ``semantics="opencv"`` the numbers are taken as OpenCV receives them (``classfix:
  -1`` has no effect there); the default ``"fork"`` semantics apply them as written.
* anchors: the layer's one weight blob, ``2*A`` values ``(w, h)`` per anchor in grid cells, as
  OpenCV requires; the forks' ``biases`` list in ``region_param`` (with ``num`` as the count when
  ``anchors`` is absent) is accepted instead, and then the layer has no blob.
* per anchor at row ``y``, column ``x``: ``bx = (x + (sigmoid(tx) - .5)*scale_x_y + .5) / W``,
  ``by`` alike over ``H``, ``bw = exp(tw)*anchor_w / Wn``, ``bh = exp(th)*anchor_h / Hn`` (``Wn``,
  ``Hn``: bottom 1's width/height, else ``W``/``H``), objectness ``sigmoid(to)``, class ``j``:
  ``p_j = objectness * softmax(c)_j`` (or ``sigmoid(c_j)``), set to 0 when ``p_j <= thresh``.
  ``new_coords: 1`` (YOLOv4x-mish) takes the raw values: ``bx = (x + (tx - .5)*scale_x_y + .5)/W``,
  ``bw = tw^2 * 4 * anchor_w / Wn``, objectness ``to``, ``p_j = to * c_j`` (classfix then compares
  ``to`` with ``thresh``).
* NMS (``nms_threshold`` > 0), per image and per class: boxes ``(bx - bw/2, by - bh/2, bw, bh)``,
  candidates the class scores > ``thresh`` in descending (stable) order, a box kept when its IoU
  with every kept box is <= ``nms_threshold``; the class score of every other box becomes 0.
* output: ``[H*W*A, 5+C]`` for batch 1, ``[N, H*W*A, 5+C]`` otherwise (rows in input order).
"""
from __future__ import annotations

import numpy as np
import torch

from .base import CaffeLayer, need_bottoms, need_tops
from .registry import ConversionError, current_semantics, register


def rect_iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """OpenCV's rectangle overlap of ``(x, y, w, h)`` boxes: intersection over union, 1 when both
    areas are 0 (``jaccardDistance`` returns 0 there), in double precision as ``Rect2d``."""
    # infinite boxes (exp overflow) give a NaN overlap, which fails "<= nms_threshold" as in C++
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ix = np.minimum(box[0] + box[2], others[:, 0] + others[:, 2]) - np.maximum(box[0], others[:, 0])
        iy = np.minimum(box[1] + box[3], others[:, 1] + others[:, 3]) - np.maximum(box[1], others[:, 1])
        inter = np.where((ix > 0) & (iy > 0), ix * iy, 0.0)
        areas = box[2] * box[3] + others[:, 2] * others[:, 3]
        iou = inter / (areas - inter)
    return np.where(areas <= np.finfo(np.float64).eps, 1.0, iou)


def class_nms(rows: np.ndarray, classes: int, thresh: float, nms_threshold: float) -> np.ndarray:
    """Per-class NMS of one image's ``[H*W*A, 5+C]`` rows (in place and returned)."""
    boxes = rows[:, :4].astype(np.float64)
    with np.errstate(invalid="ignore"):
        boxes[:, 0] -= boxes[:, 2] / 2
        boxes[:, 1] -= boxes[:, 3] / 2
    for k in range(classes):
        scores = rows[:, 5 + k].copy()
        cand = np.flatnonzero(scores > thresh)
        order = cand[np.argsort(-scores[cand], kind="stable")]
        kept: list[int] = []
        for i in order:
            if not kept or np.all(rect_iou(boxes[i], boxes[kept]) <= nms_threshold):
                kept.append(int(i))
        rows[:, 5 + k] = 0
        rows[kept, 5 + k] = scores[kept]
    return rows


class Region(CaffeLayer):
    def __init__(self, layer, phase, *, classes, anchors, biases, softmax, thresh, nms_threshold,
                 classfix, scale_x_y, new_coords):
        super().__init__(layer, phase)
        self.classes, self.anchors = classes, anchors
        self.softmax, self.thresh, self.nms_threshold = softmax, thresh, nms_threshold
        self.classfix, self.scale_x_y, self.new_coords = classfix, scale_x_y, new_coords
        if biases is None:      # OpenCV: the anchors are the layer's weight blob
            self.add_blob("biases", (2 * anchors,), requires_grad=False)
            self.fixed_biases = None
        else:
            self.register_buffer("fixed_biases", torch.tensor(biases, dtype=torch.float32), persistent=False)

    def anchor_sizes(self) -> torch.Tensor:
        b = self.biases if self.fixed_biases is None else self.fixed_biases
        return b.reshape(self.anchors, 2)

    def forward(self, x, norm=None):
        n, h, w, _ = x.shape
        hn, wn = (norm.shape[2], norm.shape[3]) if norm is not None else (h, w)
        t = x.reshape(n, h, w, self.anchors, 5 + self.classes)
        anchor = self.anchor_sizes().to(x.device, x.dtype)
        col = torch.arange(w, device=x.device, dtype=x.dtype).reshape(1, 1, w, 1)
        row = torch.arange(h, device=x.device, dtype=x.dtype).reshape(1, h, 1, 1)
        if self.new_coords:
            dx, dy = t[..., 0], t[..., 1]
            bw, bh = t[..., 2] * t[..., 2] * 4, t[..., 3] * t[..., 3] * 4
            obj = t[..., 4]
            probs = t[..., 5:]
            # region_layer.cpp: with new_coords the classfix cut compares with thresh, not 0.5
            cut = self.thresh
        else:
            dx, dy = torch.sigmoid(t[..., 0]), torch.sigmoid(t[..., 1])
            bw, bh = torch.exp(t[..., 2]), torch.exp(t[..., 3])
            obj = torch.sigmoid(t[..., 4])
            probs = torch.softmax(t[..., 5:], dim=-1) if self.softmax else torch.sigmoid(t[..., 5:])
            cut = 0.5
        bx = (col + (dx - 0.5) * self.scale_x_y + 0.5) / w
        by = (row + (dy - 0.5) * self.scale_x_y + 0.5) / h
        bw = bw * anchor[:, 0] / wn
        bh = bh * anchor[:, 1] / hn
        scale = torch.where(obj < cut, torch.zeros_like(obj), obj) if self.classfix == -1 else obj
        p = scale.unsqueeze(-1) * probs
        p = torch.where(p > self.thresh, p, torch.zeros_like(p))
        out = torch.cat([torch.stack([bx, by, bw, bh, obj], dim=-1), p], dim=-1)
        out = out.reshape(n, h * w * self.anchors, 5 + self.classes)
        if self.nms_threshold > 0:
            rows = out.detach().to("cpu", torch.float32).numpy().copy()
            for i in range(n):
                class_nms(rows[i], self.classes, self.thresh, self.nms_threshold)
            kept = torch.from_numpy(rows[:, :, 5:] != 0).to(x.device)
            out = torch.cat([out[..., :5], torch.where(kept, out[..., 5:], torch.zeros_like(out[..., 5:]))], dim=-1)
        return out[0] if n == 1 else out

    def extra_repr(self):
        return (f"caffe_name={self.caffe_name!r}, classes={self.classes}, anchors={self.anchors}, "
                f"{'softmax' if self.softmax else 'logistic'}, thresh={self.thresh}, "
                f"nms_threshold={self.nms_threshold}")


@register("Region")
def convert_region(layer, shapes, phase):
    need_bottoms(layer, shapes, (1, 2))
    need_tops(layer, 1)
    p = layer.region_param
    classes, coords = int(p.classes), int(p.coords)
    anchors = int(p.anchors) if p.HasField("anchors") else int(p.num) if p.HasField("num") else 5
    # OpenCV's constructor asserts (CV_Assert) these; refuse them here with the reason
    if coords != 4:
        raise ConversionError(layer, f"coords must be 4 (OpenCV's Region supports only 4), got {coords}")
    if classes < 1 or anchors < 1:
        raise ConversionError(layer, f"needs classes >= 1 and anchors >= 1, got classes {classes}, "
                                     f"anchors {anchors}")
    if not (p.softmax or p.logistic):
        raise ConversionError(layer, "needs softmax: 1 or logistic: 1 in region_param (OpenCV requires one)")
    thresh, nms_threshold, classfix, scale_x_y = float(p.thresh), float(p.nms_threshold), int(p.classfix), float(p.scale_x_y)
    if current_semantics() == "opencv":
        # OpenCV's Caffe importer reads an unknown message's values as strings and drops a minus
        # sign: `classfix: -1` reaches the layer as 1 (no effect), `thresh: -0.1` as 0.1
        thresh, nms_threshold, classfix, scale_x_y = abs(thresh), abs(nms_threshold), abs(classfix), abs(scale_x_y)
    if not nms_threshold >= 0:
        raise ConversionError(layer, f"nms_threshold must be >= 0, got {nms_threshold}")
    if p.new_coords not in (0, 1):
        raise ConversionError(layer, f"new_coords must be 0 or 1, got {p.new_coords}")
    biases = list(p.biases) or None
    if biases is not None and len(biases) != 2 * anchors:
        raise ConversionError(layer, f"region_param has {len(biases)} biases, {anchors} anchors need "
                                     f"{2 * anchors} (w, h per anchor)")
    x = tuple(shapes[0])
    cell = 5 + classes
    if len(x) != 4 or x[3] != anchors * cell:
        raise ConversionError(layer, f"bottom must be NHWC [N, H, W, anchors*(5+classes)] = "
                                     f"[N, H, W, {anchors * cell}] (a Permute 0,2,3,1 before it), got {x}")
    if len(shapes) == 2 and len(shapes[1]) != 4:
        raise ConversionError(layer, f"bottom 1 (sizes for w/h) must be 4-D, got {tuple(shapes[1])}")
    module = Region(layer, phase, classes=classes, anchors=anchors, biases=biases, softmax=bool(p.softmax),
                    thresh=thresh, nms_threshold=nms_threshold, classfix=classfix,
                    scale_x_y=scale_x_y, new_coords=int(p.new_coords))
    rows = x[1] * x[2] * anchors
    return module, [(rows, cell) if x[0] == 1 else (x[0], rows, cell)]
