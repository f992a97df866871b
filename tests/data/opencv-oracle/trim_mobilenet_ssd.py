"""Make ``mobilenet_ssd_head/`` from the shared ``opencv-oracle/mobilenet_ssd`` case (run once; kept
for provenance).  The full case (6.6 MB) is too big for the repository; the trimmed one keeps the
SSD head of the same OpenCV 4.14 run: every Permute, Flatten, PriorBox, Concat, Reshape, Softmax
and the DetectionOutput layer of the real deploy prototxt, fed with OpenCV's own outputs of the
twelve ``*_mbox_loc`` / ``*_mbox_conf`` convolutions (``inputs.npz``).  PriorBox reads only the
shapes of its bottoms, so the feature maps and ``data`` are zero blobs of the real shapes.
Every value in ``expected.npz`` is OpenCV's, copied unchanged.

    python tests/data/opencv-oracle/trim_mobilenet_ssd.py SHARED_ORACLE_DIR
"""
import json
import sys
from pathlib import Path

import numpy as np
from google.protobuf import text_format

from converters import infer_shapes
from converters.formats import read_net
from converters.proto import caffe_pb2 as pb

HEAD_TYPES = {"Permute", "Flatten", "PriorBox", "Concat", "Reshape", "Softmax", "DetectionOutput"}


def main(shared: str) -> None:
    src = Path(shared) / "mobilenet_ssd"
    dst = Path(__file__).resolve().parent / "mobilenet_ssd_head"
    dst.mkdir(exist_ok=True)
    net = read_net(src / "deploy.prototxt")
    shapes = infer_shapes(net)
    expected = np.load(src / "expected.npz")
    head = [layer for layer in net.layer if layer.type in HEAD_TYPES]
    produced = {t for layer in head for t in layer.top}
    needed = list(dict.fromkeys(b for layer in head for b in layer.bottom if b not in produced))
    out = pb.NetParameter(name="mobilenet_ssd_head")
    inp = out.layer.add(name="input", type="Input")
    inputs = {}
    for b in needed:
        inp.top.append(b)
        inp.input_param.shape.add().dim.extend(shapes[b])
        inputs[b] = expected[b] if b in expected.files else np.zeros(shapes[b], np.float32)
    for layer in head:
        out.layer.add().CopyFrom(layer)
    (dst / "deploy.prototxt").write_text(text_format.MessageToString(out).replace("converters.caffe.", ""))
    np.savez_compressed(dst / "inputs.npz", **inputs)
    np.savez_compressed(dst / "expected.npz", **{l.name: expected[l.name] for l in head if l.name in expected.files})
    fixture = json.loads((src / "fixture.json").read_text())
    keep = {k: fixture[k] for k in ("opencv", "preprocessing", "upstream", "tolerance", "detection") if k in fixture}
    keep["trimmed_from"] = "opencv-oracle/mobilenet_ssd (see trim_mobilenet_ssd.py)"
    keep["head_inputs"] = needed
    (dst / "fixture.json").write_text(json.dumps(keep, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
