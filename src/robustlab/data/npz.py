"""Extra training images in one .npz file: ``image`` uint8 N×H×W×C (or N×H×W) and ``label``.

This is the format for the millions of generated images that robust training mixes into each
batch (Gowal et al., 2021; Wang et al., 2023; Bartoldson et al., 2024). Its spec comes from the
file: classes = max label + 1, channels and size from the images, mean/std measured on a
fixed-seed sample of them.
"""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataError
from .spec import DatasetSpec

STATS_SAMPLE = 20_000  # images; the third decimal of mean/std is stable well before this


def load_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(images N×H×W×C uint8, labels N int64), checked."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such npz file")
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = list(f.keys())
            if "image" not in keys or "label" not in keys:
                raise DataError(f"{path}: expected arrays 'image' and 'label', found {keys}")
            images, labels = f["image"], f["label"]
    except DataError:
        raise
    except ValueError as e:
        # numpy reads a non-zip file as a pickle and then suggests allow_pickle, which would
        # run arbitrary code: never suggest it.
        if "pickle" in str(e) or "Object arrays" in str(e):
            if zipfile.is_zipfile(path):
                raise DataError(f"{path}: truncated or corrupt npz file (an array of Python "
                                "objects; robustlab reads only numeric arrays)") from None
            raise DataError(f"{path}: not an npz file of arrays (no zip archive inside; made "
                            "with np.savez(path, image=..., label=...)?)") from None
        raise DataError(f"{path}: truncated or corrupt npz file ({e})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise DataError(f"{path}: truncated or corrupt npz file ({type(e).__name__}: {e})"
                        ) from None
    if images.dtype != np.uint8:
        raise DataError(f"{path}: 'image' must be uint8 (0..255), got {images.dtype}")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[3] not in (1, 3) or images.shape[1] != images.shape[2]:
        raise DataError(f"{path}: 'image' must be N×H×W×C with square images and C in (1, 3), "
                        f"got shape {images.shape}")
    labels = labels.reshape(-1) if labels.ndim == 2 and labels.shape[1] == 1 else labels
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{path}: {len(images)} images but 'label' of shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: 'label' must be integers, got {labels.dtype}")
    if len(labels) and labels.min() < 0:
        raise DataError(f"{path}: negative label {labels.min()}")
    return images, labels.astype(np.int64)


def channel_stats(images_nhwc: np.ndarray, sample: int = STATS_SAMPLE, seed: int = 0
                  ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std on the [0, 1] scale, from at most ``sample`` images."""
    n = len(images_nhwc)
    if n == 0:
        c = images_nhwc.shape[-1]
        return (0.5,) * c, (0.5,) * c
    idx = np.arange(n) if n <= sample else np.sort(
        np.random.default_rng(seed).choice(n, sample, replace=False))
    x = images_nhwc[idx].astype(np.float64) / 255.0
    mean = x.mean(axis=(0, 1, 2))
    std = x.std(axis=(0, 1, 2))
    std = np.where(std > 1e-6, std, 1.0)  # a constant image set must not divide by zero
    return tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std)


def npz_spec(base: DatasetSpec, path: Path, images: np.ndarray, labels: np.ndarray
             ) -> DatasetSpec:
    num_classes = int(labels.max()) + 1 if len(labels) else 0
    mean, std = channel_stats(images)
    return dataclasses.replace(
        base, num_classes=num_classes, in_channels=int(images.shape[3]),
        image_size=int(images.shape[1]), mean=mean, std=std,
        classes=[str(k) for k in range(num_classes)], extra={"path": str(path)})
