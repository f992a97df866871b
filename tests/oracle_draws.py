"""The Caffe oracle's random weights and inputs, drawn again from their NumPy seeds.

The oracle's generator drew every weight and every net input with ``numpy.random.RandomState(seed)``
(the recipe is in each ``fixture.json``: layers in net order, blobs in index order, weights
``N(0, sqrt(2 / fan_in))``, biases ``N(0, 0.1)``, the classifier layers then scaled by a recorded factor;
the input ``uniform(-120, 140)`` rounded to 1/8, drawn after the weights).  Caffe only stored them.
RandomState's streams are frozen by NumPy, so the mini oracle keeps the caffemodel's *skeleton* (the
NetParameter Caffe wrote, with its float arrays emptied) plus the seed, and draws the floats again;
``mini_oracle.restore`` then checks the result against the full oracle's sha256, so what a test reads
is byte for byte the file Caffe wrote.
"""
import io

import numpy as np


def _weight_draws(skeleton, seed: int, rescale: dict):
    """(layer, blob index, float32 values) in drawing order, and the generator after the last draw."""
    rng = np.random.RandomState(seed)
    out = []
    for layer in skeleton.layer:
        for i, blob in enumerate(layer.blobs):
            shape = tuple(blob.shape.dim)
            std = np.sqrt(2 / int(np.prod(shape[1:]))) if i == 0 else 0.1
            values = rng.normal(0, std, size=shape).astype(np.float32)
            if layer.name in rescale:  # the pilot-forward factor, applied to the float32 values
                values *= np.float32(rescale[layer.name])
            out.append((layer.name, i, values))
    return out, rng


def parse_skeleton(data: bytes):
    from converters.proto import caffe_pb2
    net = caffe_pb2.NetParameter()
    net.ParseFromString(data)
    return net


def strip(caffemodel: bytes) -> bytes:
    """The skeleton of a caffemodel: the same NetParameter with every blob's ``data`` emptied."""
    net = parse_skeleton(caffemodel)
    for layer in net.layer:
        for blob in layer.blobs:
            del blob.data[:]
    return net.SerializeToString()


def draw_caffemodel(skeleton_bytes: bytes, seed: int, rescale: dict) -> bytes:
    net = parse_skeleton(skeleton_bytes)
    draws, _ = _weight_draws(net, seed, rescale)
    blobs = {(name, i): values for name, i, values in draws}
    for layer in net.layer:
        for i, blob in enumerate(layer.blobs):
            blob.data.extend(blobs[layer.name, i].ravel().tolist())
    return net.SerializeToString()


def draw_input(skeleton_bytes: bytes, seed: int, rescale: dict, shape) -> bytes:
    """input.npy: the draw that followed the weights' in the same generator."""
    _, rng = _weight_draws(parse_skeleton(skeleton_bytes), seed, rescale)
    x = rng.uniform(-120, 140, size=tuple(shape))
    buf = io.BytesIO()
    np.save(buf, (np.round(x * 8) / 8).astype(np.float32))
    return buf.getvalue()
