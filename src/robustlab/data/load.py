"""``load(name, split)``: a dataset split as an in-memory :class:`ImageData`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .cifar import load_cifar
from .files import ensure_files, verify_files
from .idx import load_idx_pair
from .imagedata import ImageData
from .npz import load_npz, npz_spec
from .registry import get_spec
from .spec import DatasetSpec
from .svhn import load_svhn_mat

SPLITS = ("train", "val", "test")


def val_carve(n: int, val_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, val indices): ``val_size`` of ``range(n)`` drawn with a fixed seed, the
    rest for training; both sorted, disjoint, and the same on every call with the same seed."""
    if val_size < 0:
        raise UserError(f"val_size must be >= 0, got {val_size}")
    if val_size >= n:
        raise UserError(f"val_size {val_size} leaves no training examples: the training set "
                        f"has {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


def _writable(a: np.ndarray) -> np.ndarray:
    # torch warns on (and must not write through) arrays backed by immutable bytes
    return a if a.flags.writeable else a.copy()


def _read(spec: DatasetSpec, split: str, data_dir, download: bool
          ) -> tuple[np.ndarray, np.ndarray]:
    files = ensure_files(spec, split, data_dir=data_dir, download_missing=download)
    paths = {f.filename: p for f, p in files.items()}
    if spec.format == "idx":
        prefix = "train" if split == "train" else "t10k"
        return load_idx_pair(paths[f"{prefix}-images-idx3-ubyte.gz"],
                             paths[f"{prefix}-labels-idx1-ubyte.gz"], spec.num_classes)
    if spec.format == "cifar":
        (f, path), = files.items()
        folder = f.extracted or ""
        return load_cifar(path, folder, spec.extra[f"{split}_members"], spec.extra["label_key"],
                          spec.num_classes)
    if spec.format == "svhn":
        return load_svhn_mat(paths[f"{split}_32x32.mat"])
    raise AssertionError(f"no reader for format {spec.format!r}")


def load(name: str, split: str, *, data_dir: str | os.PathLike | None = None,
         download: bool = True, val_size: int = 0, val_seed: int = 0,
         path: str | os.PathLike | None = None) -> ImageData:
    """One split of a dataset, images uint8 N×C×H×W on the CPU.

    With ``val_size > 0``, "train" is the training set less a fixed-seed carve of ``val_size``
    examples and "val" is that carve. ``npz`` needs ``path``; its "train" and "test" are the
    whole file. SVHN also has the split "extra".
    """
    spec = get_spec(name)
    allowed = tuple(dict.fromkeys(SPLITS + spec.splits))
    if split not in allowed:
        raise UserError(f"{name}: unknown split {split!r}; choose from {', '.join(allowed)}")
    if split == "val" and val_size <= 0:
        raise UserError(f"{name}: the val split is carved from train; give val_size > 0")
    if spec.format == "npz":
        if not path:
            raise UserError("dataset npz needs the path of an .npz file: --data-path FILE "
                            "on the command line, data.path in a config, path= in code")
        images, labels = load_npz(path)
        spec = npz_spec(spec, Path(path), images, labels)
        # N×H×W×C viewed as N×C×H×W (channels-last strides): no copy of millions of images
        x = torch.from_numpy(_writable(images)).permute(0, 3, 1, 2)
    else:
        if path:
            raise UserError(f"{name}: path= is only for npz; use data_dir= to say where "
                            f"{name}'s files are")
        images, labels = _read(spec, "train" if split == "val" else split, data_dir, download)
        x = torch.from_numpy(_writable(images))
    data = ImageData(x, torch.from_numpy(_writable(labels)), spec)
    if split in ("train", "val") and val_size > 0:
        train_idx, val_idx = val_carve(len(data), val_size, val_seed)
        data = data.subset(val_idx if split == "val" else train_idx)
    return data


def fetch(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Find, or download and check, every (non-optional) file of a dataset."""
    spec = get_spec(name)
    if spec.format == "npz":
        raise UserError("npz data is not downloaded: it is a file you give with path=")
    return list(ensure_files(spec, None, data_dir=data_dir, download_missing=True).values())


def verify(name: str, data_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """Each file's status: "ok", "missing", "mismatch" or "unchecked"."""
    spec = get_spec(name)
    return verify_files(spec, data_dir)
