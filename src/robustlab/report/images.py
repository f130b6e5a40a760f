"""Image grids as arrays and PNG files or bytes (for embedding in HTML as base64).

Drawn with matplotlib's object API on an Agg canvas: no pyplot state, no display needed.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np

from ..io import atomic_write_bytes


def _as_numpy(images) -> np.ndarray:
    if hasattr(images, "detach"):  # a torch tensor, on any device
        images = images.detach().float().cpu().numpy()
    return np.asarray(images, dtype=np.float32)


def image_grid(images, nrow: int = 8, padding: int = 2, pad_value: float = 1.0, *,
               row_gap: int = 0) -> np.ndarray:
    """Float images N×C×H×W in [0, 1] (C = 1 or 3) tiled ``nrow`` to a row, as an H×W×3 float
    array in [0, 1]. ``row_gap`` adds blank pixels under each row (room for captions)."""
    x = _as_numpy(images)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected N×C×H×W images with C in (1, 3), got {x.shape}")
    n, c, h, w = x.shape
    if c == 1:
        x = np.repeat(x, 3, axis=1)
    nrow = max(1, min(nrow, n)) if n else 1
    nrows = -(-n // nrow) if n else 1
    cell_h = h + padding + row_gap
    grid = np.full((nrows * cell_h + padding, nrow * (w + padding) + padding, 3), pad_value,
                   dtype=np.float32)
    for k in range(n):
        r, col = divmod(k, nrow)
        top, left = padding + r * cell_h, padding + col * (w + padding)
        grid[top:top + h, left:left + w] = x[k].transpose(1, 2, 0)
    return np.clip(grid, 0.0, 1.0)


def _png_of_array(arr: np.ndarray, scale: int = 1) -> bytes:
    import matplotlib.image as mpimg

    arr = _as_numpy(arr)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if scale > 1:  # nearest-neighbour: small images stay crisp
        arr = arr.repeat(scale, axis=0).repeat(scale, axis=1)
    buf = io.BytesIO()
    mpimg.imsave(buf, np.clip(arr, 0.0, 1.0), format="png")
    return buf.getvalue()


def _png_with_labels(images, nrow: int, labels: Sequence[str] | None,
                     row_labels: Sequence[str] | None, scale: int, padding: int) -> bytes:
    """One axes showing the exact-pixel grid, captions drawn in the gap under each image and
    row labels to the left; one image pixel is ``scale`` PNG pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x = _as_numpy(images)
    h, w = x.shape[-2:]
    n = len(x)
    nrow = max(1, min(nrow, n)) if n else 1
    font_px = 10  # a 7-point caption at 100 dpi
    gap = -(-(font_px + 2) // scale) if labels else 0
    grid = image_grid(x, nrow, padding, row_gap=gap)
    gh, gw = grid.shape[:2]
    dpi = 100
    left = 110 if row_labels else 0
    width = gw * scale + left
    fig = Figure(figsize=(width / dpi, gh * scale / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((left / width, 0, gw * scale / width, 1))
    ax.imshow(grid, interpolation="nearest")
    ax.axis("off")
    cell_h = h + padding + gap
    for k, text in enumerate(labels or []):
        r, c = divmod(k, nrow)
        ax.text(padding + c * (w + padding) + w / 2, padding + r * cell_h + h + 0.5, str(text),
                ha="center", va="top", fontsize=7)
    for r, text in enumerate(row_labels or []):
        ax.text(-2, padding + r * cell_h + h / 2, str(text), ha="right", va="center",
                fontsize=8, clip_on=False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def grid_png_bytes(images, nrow: int = 8, labels: Sequence[str] | None = None,
                   scale: int = 1, padding: int = 2, *,
                   row_labels: Sequence[str] | None = None) -> bytes:
    """PNG bytes of a grid of N×C×H×W images in [0, 1], each pixel ``scale``× larger; optional
    ``labels`` (a caption under each image) and ``row_labels`` (a name left of each row)."""
    if labels is not None or row_labels is not None:
        return _png_with_labels(images, nrow, labels, row_labels, scale, padding)
    return _png_of_array(image_grid(images, nrow, padding), scale)


def save_png(array_or_tensor, path: str | os.PathLike, *, nrow: int = 8,
             labels: Sequence[str] | None = None, row_labels: Sequence[str] | None = None,
             scale: int = 1) -> str:
    """Write an H×W×3 (or H×W) image, or a grid of an N×C×H×W batch, as a PNG, atomically."""
    x = _as_numpy(array_or_tensor)
    if x.ndim == 4 or labels is not None or row_labels is not None:
        data = grid_png_bytes(x, nrow, labels=labels, scale=scale, row_labels=row_labels)
    elif x.ndim == 3 and x.shape[0] in (1, 3) and x.shape[2] not in (1, 3):
        data = _png_of_array(x.transpose(1, 2, 0) if x.shape[0] == 3 else x[0], scale)
    elif x.ndim == 3 and x.shape[2] == 1:
        data = _png_of_array(x[..., 0], scale)
    else:
        data = _png_of_array(x, scale)
    return str(atomic_write_bytes(path, data))
