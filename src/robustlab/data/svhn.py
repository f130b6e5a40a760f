"""SVHN's cropped-digit .mat files (MATLAB v5), read with SciPy.

``X`` is H×W×C×N uint8 and ``y`` is N×1 with the digit 0 stored as label 10 (Netzer et al.,
2011); both are turned into the toolkit's N×C×H×W images and labels 0..9.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError


def load_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path), variable_names=("X", "y"))
    except Exception as e:  # SciPy raises many kinds on a truncated or foreign file
        raise DataError(f"{path}: truncated or corrupt .mat file ({type(e).__name__}: {e})"
                        ) from None
    if "X" not in mat or "y" not in mat:
        raise DataError(f"{path}: expected variables X and y, found "
                        f"{sorted(k for k in mat if not k.startswith('__'))}")
    x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[2] not in (1, 3):
        raise DataError(f"{path}: X should be H×W×C×N, got shape {x.shape}")
    if x.shape[3] != len(y):
        raise DataError(f"{path}: X holds {x.shape[3]} images but y holds {len(y)} labels")
    if x.dtype != np.uint8:
        if x.size and (x.min() < 0 or x.max() > 255):
            raise DataError(f"{path}: X values outside 0..255")
        x = x.astype(np.uint8)
    labels = y.astype(np.int64)
    if len(labels) and (labels.min() < 1 or labels.max() > 10):
        raise DataError(f"{path}: y values should be 1..10 (10 for the digit 0), got "
                        f"{labels.min()}..{labels.max()}")
    labels[labels == 10] = 0
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), labels
