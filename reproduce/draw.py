"""The pictures ``--predict`` writes: the photo with every face's box and label
(``annotated/<photo>.png``) and a face's centre crop beside its LRP heatmap in upstream's
``black-firered`` colours (``heatmaps/<photo>_face<i>.png``).  OpenCV drawing on BGR uint8 arrays;
nothing here reads or scores a photo.
"""
from __future__ import annotations

import numpy as np

from reproduce import protocol


def _text(img, text, org, scale, colour=(255, 255, 255), bg=(0, 0, 0)):
    import cv2
    thick = max(1, int(round(scale * 2)))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    x, y = org
    y = max(th + base, y)
    x = max(0, min(x, img.shape[1] - tw - 1))
    cv2.rectangle(img, (x, y - th - base), (x + tw + 2, y + 2), bg, -1)
    cv2.putText(img, text, (x + 1, y - base // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thick, cv2.LINE_AA)


def annotate(img: np.ndarray, records: list[dict]) -> np.ndarray:
    """A copy of the photo with every face box and its label (cv2 drawing)."""
    import cv2
    out = img.copy()
    h, w = out.shape[:2]
    scale = max(0.4, min(h, w) / 500.0)
    for r in records:
        text = f"{r['label_name']} {r['prob']:.2f}"
        if r["face_box"]:
            x, y, bw, bh = r["face_box"]
            thick = max(2, int(round(min(h, w) / 250)))
            cv2.rectangle(out, (x, y), (x + bw - 1, y + bh - 1), (0, 255, 0), thick)
            _text(out, text, (x, y - 4), max(0.4, min(scale, bw / 250.0)), bg=(0, 110, 0))
        else:
            _text(out, text, (4, 4), scale)
    return out


def black_firered(relevance: np.ndarray) -> np.ndarray:
    """(H, W) relevance -> (H, W, 3) uint8 BGR in upstream's ``black-firered`` colour map, scaled by
    max |R| (the LRP package's renderer, channels swapped for OpenCV)."""
    from converters.lrp.render import colorize
    return np.ascontiguousarray(colorize(relevance, "black-firered")[..., ::-1])


def heatmap_picture(face: np.ndarray, relevance: np.ndarray, caption: str) -> np.ndarray:
    """The centre crop beside its heatmap, with the caption."""
    s = relevance.shape[0]
    h, w = face.shape[1:]
    oy, ox = protocol.centre_crop_offset(h, s), protocol.centre_crop_offset(w, s)
    crop = np.ascontiguousarray(face[:, oy:oy + s, ox:ox + s].transpose(1, 2, 0))
    pic = np.concatenate([crop, np.full((s, 4, 3), 255, np.uint8), black_firered(relevance)], axis=1)
    pic = np.ascontiguousarray(pic)
    _text(pic, caption, (2, 2), 0.45)
    return pic
