"""Relevance as pictures: colour maps, fold averages and figure panels, written as PNG.

What it owns (the upstream ``apply_heatmap.py`` / ``compute_average_heatmaps.py`` conventions):

* A relevance map ``(C, H, W)`` is **summed over the colour channels**, divided by its maximum
  absolute value (so 0 stays at the centre of the colour map), then coloured.
* ``black-firered`` (the upstream scripts' map), defined here as a piecewise-linear map of
  ``x = R / max|R|`` in [-1, 1] through the anchors

      x:   -1     -0.5   -0.25   0      0.25   0.5     1
           white  cyan   blue    black  red    yellow  white

  i.e. positive relevance (evidence for the class) ramps black -> red -> yellow -> white, negative
  relevance (evidence against) black -> blue -> cyan -> white, symmetrically.
* ``seismic``: matplotlib's map of ``(x + 1) / 2`` (blue negative, white zero, red positive).
* 8-bit conversion truncates ``255 * rgb`` as upstream did.
* Fold averages add the channel-summed raw maps and divide by their number, with no per-map
  normalisation (upstream "fAVG").
* Panels: the inputs in the top row, below them one row per model, as in the paper's
  Figures 2, 4 and 5.

Knows nothing of the paper's models; ``reproduce/explain.py`` decides what goes in a panel.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

CMAPS = ("black-firered", "seismic")
# (x, (r, g, b)) anchors of black-firered, x = R / max|R|
BLACK_FIRERED = ((-1.0, (1.0, 1.0, 1.0)), (-0.5, (0.0, 1.0, 1.0)), (-0.25, (0.0, 0.0, 1.0)),
                 (0.0, (0.0, 0.0, 0.0)), (0.25, (1.0, 0.0, 0.0)), (0.5, (1.0, 1.0, 0.0)),
                 (1.0, (1.0, 1.0, 1.0)))


def _array(r) -> np.ndarray:
    if hasattr(r, "detach"):
        r = r.detach().cpu().numpy()
    return np.asarray(r, dtype=np.float64)


def channel_sum(relevance) -> np.ndarray:
    """(C, H, W) -> (H, W) by summing the channels; (1, C, H, W) allowed; (H, W) returned as is."""
    r = _array(relevance)
    if r.ndim == 4:
        if r.shape[0] != 1:
            raise ValueError(f"one relevance map at a time, got a batch of {r.shape[0]}")
        r = r[0]
    if r.ndim == 3:
        return r.sum(axis=0)
    if r.ndim == 2:
        return r
    raise ValueError(f"expected a relevance map (C, H, W) or (H, W), got shape {r.shape}")


def normalize(r2d) -> np.ndarray:
    """``R / max|R|`` in [-1, 1] (all zeros stay zeros)."""
    r = _array(r2d)
    m = np.max(np.abs(r)) if r.size else 0.0
    return r / m if m > 0 else np.zeros_like(r)


def black_firered(x) -> np.ndarray:
    """RGB floats in [0, 1] for ``x`` in [-1, 1] (values outside are clipped)."""
    x = np.clip(_array(x), -1.0, 1.0)
    xs = np.array([a for a, _ in BLACK_FIRERED])
    rgb = np.array([c for _, c in BLACK_FIRERED])
    return np.stack([np.interp(x, xs, rgb[:, k]) for k in range(3)], axis=-1)


def black_firered_cmap():
    """The same map as a matplotlib colour map over [0, 1] (0 <-> x = -1)."""
    from matplotlib.colors import LinearSegmentedColormap
    return LinearSegmentedColormap.from_list("black-firered", [((a + 1) / 2, c) for a, c in BLACK_FIRERED])


def seismic(x) -> np.ndarray:
    from matplotlib import colormaps
    x = np.clip(_array(x), -1.0, 1.0)
    return colormaps["seismic"]((x + 1.0) / 2.0)[..., :3]


def colorize(relevance, cmap: str = "black-firered") -> np.ndarray:
    """Relevance ((C, H, W) or channel-summed (H, W)) -> uint8 RGB (H, W, 3)."""
    x = normalize(channel_sum(relevance))
    if cmap == "black-firered":
        rgb = black_firered(x)
    elif cmap == "seismic":
        rgb = seismic(x)
    else:
        raise ValueError(f"unknown colour map {cmap!r} (known: {', '.join(CMAPS)})")
    return (np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def average(relevances) -> np.ndarray:
    """Mean of the channel-summed maps (no per-map normalisation), as upstream's fold average."""
    maps = [channel_sum(r) for r in relevances]
    if not maps:
        raise ValueError("no relevance maps to average")
    shapes = {m.shape for m in maps}
    if len(shapes) != 1:
        raise ValueError(f"relevance maps of different sizes cannot be averaged: {sorted(shapes)}")
    return np.mean(np.stack(maps), axis=0)


def input_rgb(bgr) -> np.ndarray:
    """An image as the net saw it, for display: (C, H, W) or (H, W, C) BGR 0..255 -> uint8 RGB."""
    a = _array(bgr)
    if a.ndim == 4:
        a = a[0]
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return np.clip(a[..., ::-1], 0, 255).astype(np.uint8)


def write_png(path, rgb) -> Path:
    """Write uint8 RGB (H, W, 3) as PNG (parent folders created)."""
    import cv2
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8:
        rgb = (np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1])):
        raise OSError(f"{path}: cannot write the PNG")
    return path


def panel(path, inputs, rows, row_titles=None, col_titles=None, title: str | None = None,
          cell_inches: float = 1.8) -> Path:
    """A figure like the paper's: ``inputs`` (uint8 RGB, one per column) in the top row, then one
    row per model with that model's heatmap (uint8 RGB) under each input; ``None`` leaves a cell
    blank.  Written as PNG."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n_cols = max([len(inputs)] + [len(r) for r in rows])
    n_rows = 1 + len(rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(cell_inches * n_cols + 1.2, cell_inches * n_rows + 0.4),
                             squeeze=False)
    grid = [list(inputs)] + [list(r) for r in rows]
    labels = ["input"] + list(row_titles or [""] * len(rows))
    for i in range(n_rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            img = grid[i][j] if j < len(grid[i]) else None
            if img is not None:
                ax.imshow(np.asarray(img), interpolation="nearest")
            if j == 0 and labels[i]:
                ax.set_ylabel(labels[i], fontsize=8)
            if i == 0 and col_titles and j < len(col_titles) and col_titles[j]:
                ax.set_title(col_titles[j], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
