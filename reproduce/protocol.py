"""The paper's test protocol, exactly as upstream ``evaluation_scripts/score_models.py`` computes it.

Per image (a 256x256 BGR uint8 Datum of the test LMDB):

1. the **full 256x256 mean image** of the model's training variant is subtracted pixel-wise, in BGR
   and on the 0..255 scale, **before** any crop (no raw_scale);
2. ``caffe.io.oversample``: crops of SxS (S = 227 for AdienceNet/CaffeNet, 224 for GoogLeNet/VGG16)
   at (row, col) = (0, 0), (0, W-S), (H-S, 0), (H-S, W-S) and the centre
   ``int(H/2 - S/2)`` (14 for 227, 16 for 224), then the left-right mirrors of these five, in that order;
3. the softmax rows of the output blob (``prob``; ``loss3/loss3`` for GoogLeNet, auxiliary heads
   ignored) of the 10 crops are averaged (arithmetic mean), prediction = argmax.

Single-crop figures: upstream's "centre" crop is taken at offset ``256 - S`` on both axes, i.e. the
**bottom-right corner** (quirk Q-E1; equal to oversample crop 3).  We report it as upstream computed
it (``*_single``) and with the true centre ``(256 - S)//2`` (``*_centre``; equal to crop 4).

Metrics: accuracy; ``one_off_accuracy`` = mean(|pred - label| <= 1) (also for gender, where it is
trivially 1); confusion matrices indexed ``[prediction, label]``; per fold, then the unweighted mean
over the folds and the population standard deviation (ddof 0).

Knows nothing of table cells, files or folder layouts: it scores (key, label, image) samples with a
model.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from converters.errors import InputError

N_CROPS = 10
CORNER_BOTTOM_RIGHT = 3  # index of the upstream single "centre" crop inside the 10 crops (Q-E1)
CENTRE = 4  # index of the true centre crop

METRICS = ("acc", "one_off", "acc_single", "one_off_single", "acc_centre", "one_off_centre")
METRIC_NAMES = {
    "acc": "10-crop accuracy", "one_off": "10-crop 1-off accuracy",
    "acc_single": "single crop accuracy (upstream 'centre' = bottom-right corner, offset 256-S)",
    "one_off_single": "single crop 1-off (bottom-right corner)",
    "acc_centre": "single crop accuracy (true centre, offset (256-S)//2)",
    "one_off_centre": "single crop 1-off (true centre)",
}


class ProtocolError(ValueError, InputError):
    """Inputs that do not fit the protocol (image/mean shape, output blob)."""


# ---------------------------------------------------------------------------- crops
def crop_offsets(height: int, width: int, size: int) -> list[tuple[int, int]]:
    """(row, col) of the five ``caffe.io.oversample`` crops: 4 corners then the truncated centre."""
    if size > height or size > width:
        raise ProtocolError(f"crop size {size} larger than the image {height}x{width}")
    centre = (int(height / 2.0 - size / 2.0), int(width / 2.0 - size / 2.0))
    return [(0, 0), (0, width - size), (height - size, 0), (height - size, width - size), centre]


def single_crop_offset(height: int, size: int) -> int:
    """Upstream's single "centre" crop offset (Q-E1): the full difference, on both axes, from the height."""
    return height - size


def centre_crop_offset(height: int, size: int) -> int:
    """The true centre offset, as Caffe's Data layer in TEST phase: (H - S) // 2."""
    return (height - size) // 2


def input_layout(model) -> torch.memory_format:
    """The memory format a converted net runs in (channels-last for TEST nets by default)."""
    return getattr(model, "input_memory_format", None) or torch.contiguous_format


def oversample(images, size: int, memory_format=torch.contiguous_format) -> torch.Tensor:
    """10 crops per image like ``caffe.io.oversample``: (N, C, H, W) -> (N, 10, C, S, S).

    Order: top-left, top-right, bottom-left, bottom-right, centre, then the left-right mirrors of
    these five in the same order.  ``memory_format=torch.channels_last`` lays the crops out so that
    ``.reshape(N * 10, C, S, S)`` is already channels-last (one copy instead of three for nets
    that run in that layout).
    """
    x = torch.as_tensor(images)
    if x.dim() != 4:
        raise ProtocolError(f"expected images as (N, C, H, W), got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    out = torch.empty((n * N_CROPS, c, size, size), dtype=x.dtype, device=x.device,
                      memory_format=memory_format).view(n, N_CROPS, c, size, size)
    half = N_CROPS // 2
    for k, (r, col) in enumerate(crop_offsets(h, w, size)):
        crop = x[:, :, r:r + size, col:col + size]
        out[:, k].copy_(crop)
        out[:, half + k].copy_(crop.flip(-1))
    return out


# ---------------------------------------------------------------------------- metrics
def accuracy(pred, label) -> float:
    pred, label = np.asarray(pred), np.asarray(label)
    return float(np.mean(pred == label)) if len(label) else float("nan")


def one_off_accuracy(pred, label) -> float:
    """Fraction of predictions within one class of the label (|pred - label| <= 1, exact hits included)."""
    pred, label = np.asarray(pred, dtype=np.int64), np.asarray(label, dtype=np.int64)
    return float(np.mean(np.abs(pred - label) <= 1)) if len(label) else float("nan")


def confusion_matrix(pred, label, n_classes: int) -> np.ndarray:
    """Counts indexed [prediction, label] (as upstream)."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(pred, dtype=np.int64), np.asarray(label, dtype=np.int64)), 1)
    return cm


def aggregate(values) -> tuple[float, float]:
    """Unweighted mean over folds and population standard deviation (ddof 0), as upstream's "all" line."""
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0:
        return float("nan"), float("nan")
    return float(np.mean(arr)), float(np.std(arr))


def upstream_string(mean: float, std: float) -> str:
    """``str(round(mean, 3)) + ' +- ' + str(round(std, 3))`` as upstream writes the "all:" line."""
    return f"{round(mean, 3)} +- {round(std, 3)}"


def aggregate_folds(folds: list[dict], metrics=METRICS) -> tuple[dict, dict]:
    mean, std = {}, {}
    for m in metrics:
        mean[m], std[m] = aggregate(f[m] for f in folds)
    return mean, std


# ---------------------------------------------------------------------------- scoring
@dataclass
class Predictions:
    """Per-image results of one fold."""
    keys: list = field(default_factory=list)
    labels: np.ndarray = None  # (N,) int64
    prob: np.ndarray = None  # (N, C) float32, mean of the 10 crops
    prob_single: np.ndarray = None  # (N, C) bottom-right crop (upstream single "centre")
    prob_centre: np.ndarray = None  # (N, C) true centre crop
    crops: np.ndarray | None = None  # (N, 10, C) when kept
    seconds: float = 0.0  # wall time of the forward passes (incl. crop assembly)

    @property
    def pred(self) -> np.ndarray:
        return np.argmax(self.prob, axis=1)

    @property
    def pred_single(self) -> np.ndarray:
        return np.argmax(self.prob_single, axis=1)

    @property
    def pred_centre(self) -> np.ndarray:
        return np.argmax(self.prob_centre, axis=1)

    def __len__(self) -> int:
        return len(self.keys)


def fold_metrics(p: Predictions, n_classes: int) -> dict:
    labels = p.labels
    out = {"images": len(p)}
    conf = {}
    for suffix, pred in (("", p.pred), ("_single", p.pred_single), ("_centre", p.pred_centre)):
        out["acc" + suffix] = accuracy(pred, labels)
        out["one_off" + suffix] = one_off_accuracy(pred, labels)
        conf[{"": "oversampled", "_single": "single", "_centre": "centre"}[suffix]] = \
            confusion_matrix(pred, labels, n_classes).tolist()
    out["confmat"] = conf
    return out


def output_of(model, x: torch.Tensor, blob: str) -> torch.Tensor:
    """The ``blob`` output of a converted Caffe net for input ``x`` as (N, C)."""
    out = model(x)
    if isinstance(out, dict):
        if blob not in out:
            out = _all_blobs(model, x)
            if blob not in out:
                raise ProtocolError(f"the net has no blob {blob!r}")
        out = out[blob]
    else:
        names = list(getattr(model, "output_names", None) or [blob])
        if blob not in names:
            blobs = _all_blobs(model, x)
            if blob not in blobs:
                raise ProtocolError(f"the net has no blob {blob!r} (outputs: {', '.join(names)})")
            out = blobs[blob]
    return out.reshape(out.shape[0], -1)


def crop_outputs(model, images: torch.Tensor, input_size: int, output_blob: str,
                 memory_format=torch.contiguous_format) -> np.ndarray:
    """The 10-crop scoring step: float (B, C, H, W) images (mean already subtracted) -> the
    ``output_blob`` rows of their ``caffe.io.oversample`` crops as float32 (B, 10, K), one forward
    pass of B x 10 crops.  ``run.py --predict`` scores through it, :func:`evaluate` (which builds the
    crops of the next batch ahead) through its :func:`crop_scores`."""
    crops = oversample(images, input_size, memory_format)  # (B, 10, C, S, S)
    b = crops.shape[0]
    return crop_scores(model, crops.reshape(b * N_CROPS, *crops.shape[2:]), b, output_blob)


def crop_scores(model, crops: torch.Tensor, n_images: int, output_blob: str) -> np.ndarray:
    """One forward pass of ``n_images x 10`` crops (image-major) -> float32 (n_images, 10, K)."""
    out = output_of(model, crops, output_blob)
    return out.reshape(n_images, N_CROPS, -1).detach().float().cpu().numpy()


def _all_blobs(model, x):
    names = list(getattr(model, "input_names", None) or ["data"])
    return model.forward_blobs({names[0]: x})


def _batches(samples: Iterable, batch: int) -> Iterator[list]:
    chunk = []
    for s in samples:
        chunk.append(s)
        if len(chunk) == batch:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@contextlib.contextmanager
def strict_float32():
    """Full float32 convolutions and matmuls on CUDA (no TF32), as Caffe computes; restored afterwards."""
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _check_images(imgs: np.ndarray, chunk, mean_shape) -> None:
    if imgs.dtype != np.uint8:
        raise ProtocolError(f"expected uint8 images, got {imgs.dtype}")
    if imgs.shape[1:] != tuple(mean_shape):
        raise ProtocolError(f"image {chunk[0][0]!r} has shape {imgs.shape[1:]} but the mean image has "
                            f"{tuple(mean_shape)}: the full mean is subtracted before cropping")
    if imgs.shape[2] != imgs.shape[3]:
        raise ProtocolError(f"image {chunk[0][0]!r} is not square ({imgs.shape[2]}x{imgs.shape[3]}); "
                            "the upstream single crop assumes square images")


def oversample_minus_mean(imgs: np.ndarray, mean: np.ndarray, size: int, channels_last: bool = False) -> torch.Tensor:
    """The protocol's net input for uint8 images (N, C, H, W) on the CPU: (N * 10, C, S, S) float32.

    Equal value for value to :func:`oversample` of ``imgs - mean`` (each element is one float32
    subtraction either way), in one pass: every crop is cut from the uint8 image and the matching
    window of the mean, so the full-size float image is never built.  ``channels_last``: the result
    has channels-last strides (the layout the converted TEST nets run in), without a further copy.
    """
    n, c, h, w = imgs.shape
    if channels_last:
        out = np.empty((n, N_CROPS, size, size, c), dtype=np.float32)
        src, msrc = imgs.transpose(0, 2, 3, 1), mean.transpose(1, 2, 0)       # (N, H, W, C), (H, W, C)
        col_axis = 3
    else:
        out = np.empty((n, N_CROPS, c, size, size), dtype=np.float32)
        src, msrc = imgs, mean
        col_axis = 4
    half = N_CROPS // 2
    for k, (r, col) in enumerate(crop_offsets(h, w, size)):
        if channels_last:
            crop, mcrop = src[:, r:r + size, col:col + size], msrc[r:r + size, col:col + size]
        else:
            crop, mcrop = src[:, :, r:r + size, col:col + size], msrc[:, r:r + size, col:col + size]
        np.subtract(crop, mcrop, out=out[:, k], dtype=np.float32)
        out[:, half + k] = np.flip(out[:, k], axis=col_axis - 1)
    t = torch.from_numpy(out)
    if channels_last:
        t = t.permute(0, 1, 4, 2, 3)        # (N, 10, C, S, S) view with channels-last strides per crop
    return t.reshape(n * N_CROPS, c, size, size)


def evaluate(model, samples: Iterable, mean, input_size: int, output_blob: str, batch: int = 16,
             device="cpu", keep_crops: bool = False,
             progress: Callable[[int], None] | None = None) -> Predictions:
    """Score ``samples`` = iterable of (key, label, uint8 (C, H, W) BGR) with the 10-crop protocol.

    ``batch`` images (10 x ``batch`` crops) go through the net per forward pass. ``mean`` is the
    (C, H, W) float32 mean image of the images' full size (BGR).  On CUDA, TF32 is switched off for
    the duration (Caffe computes in full float32).  On the CPU the next batch's crops are built
    (:func:`oversample_minus_mean`) in a helper thread while the net runs on the current one.
    """
    device = torch.device(device)
    mean_np = np.ascontiguousarray(np.asarray(mean, dtype=np.float32))
    mean_t = torch.as_tensor(mean_np, device=device) if device.type != "cpu" else None
    layout = input_layout(model)
    channels_last = layout == torch.channels_last

    def prepare():
        chunk = next(chunks, None)          # reading/decoding the samples happens here too
        if chunk is None:
            return None, None
        imgs = np.stack([np.asarray(s[2]) for s in chunk])
        _check_images(imgs, chunk, mean_np.shape)
        if device.type == "cpu":
            return chunk, oversample_minus_mean(imgs, mean_np, input_size, channels_last)
        # mean subtraction on the full image in float32 (equal to upstream's float64 difference
        # of a uint8 and a float32 value rounded to the float32 net input)
        x = torch.from_numpy(imgs).to(device).to(torch.float32) - mean_t
        crops = oversample(x, input_size, layout)
        return chunk, crops.reshape(crops.shape[0] * N_CROPS, *crops.shape[2:])

    keys, labels, probs = [], [], []
    seconds = 0.0
    chunks = _batches(samples, max(1, int(batch)))
    with torch.inference_mode(), strict_float32(), _prefetcher(device.type == "cpu") as submit:
        t0 = time.perf_counter()
        pending = submit(prepare)
        while True:
            chunk, x = pending.result()
            if chunk is None:
                break
            pending = submit(prepare)     # the next batch is read and cropped during this forward pass
            b = len(chunk)
            probs.append(crop_scores(model, x, b, output_blob))
            keys.extend(s[0] for s in chunk)
            labels.extend(int(s[1]) for s in chunk)
            if progress is not None:
                progress(b)
        seconds = time.perf_counter() - t0
    all_crops = np.concatenate(probs) if probs else np.zeros((0, N_CROPS, 0), np.float32)
    return Predictions(
        keys=keys, labels=np.asarray(labels, dtype=np.int64),
        prob=np.mean(all_crops, axis=1, dtype=np.float32),
        prob_single=all_crops[:, CORNER_BOTTOM_RIGHT].copy(),
        prob_centre=all_crops[:, CENTRE].copy(),
        crops=all_crops if keep_crops else None, seconds=seconds)


class _Done:
    """An already computed result (the interface of a Future)."""

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


@contextlib.contextmanager
def _prefetcher(threaded: bool):
    """``submit(prepare)`` -> a future of ``prepare()``.  ``threaded``: one helper thread (so calls run
    one at a time, in order; numpy's copies release the GIL); else computed at once."""
    if not threaded:
        yield lambda prepare: _Done(prepare())
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="protocol-crops") as pool:
        yield pool.submit
