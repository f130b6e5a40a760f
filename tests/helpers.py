"""Small real datasets and configs the tests make for themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make_blocks_npz(path: Path, n: int, seed: int, size: int = 28, classes: int = 4,
                    noise: float = 0.35) -> Path:
    """A learnable 4-class image set: class k is a bright 8×8 block in quadrant k, plus noise.
    A cnn-small learns it in a few hundred steps, and PGD at eps 0.3 breaks a standard model."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    images = rng.uniform(0, noise, size=(n, size, size, 1))
    half = size // 2
    for i, k in enumerate(labels):
        r0 = (k // 2) * half + rng.integers(0, half - 8)
        c0 = (k % 2) * half + rng.integers(0, half - 8)
        images[i, r0:r0 + 8, c0:c0 + 8, 0] += 0.6
    images = (np.clip(images, 0, 1) * 255).round().astype(np.uint8)
    np.savez(path, image=images, label=labels.astype(np.int64))
    return path


def tiny_config(tmp_path: Path, noise: float = 0.35, **sections) -> Path:
    """A TOML config training cnn-small on the blocks set; ``sections`` override keys, e.g.
    ``train={"epochs": 2}``."""
    train = make_blocks_npz(tmp_path / "train.npz", 384, seed=0, noise=noise)
    test = make_blocks_npz(tmp_path / "test.npz", 128, seed=1, noise=noise)
    base = {
        "run": {"name": "tiny", "seed": 0, "runs_dir": str(tmp_path / "runs"), "threads": 1},
        "data": {"name": "npz", "path": str(train), "test_path": str(test), "val_size": 64},
        "model": {"arch": "cnn-small", "norm": "none"},
        "train": {"epochs": 2, "batch_size": 32, "objective": "ce", "lr": 0.05,
                  "schedule": "onecycle", "val_n": 64, "val_attack_steps": 3},
        "eval": {"n": 128, "attacks": ["pgd"]},
    }
    for sec, kv in sections.items():
        for k, v in kv.items():
            if isinstance(v, dict):
                base[sec].setdefault(k, {}).update(v)
            else:
                base.setdefault(sec, {})[k] = v
    from robustlab.config import to_toml

    p = tmp_path / "tiny.toml"
    p.write_text(to_toml(base))
    return p


def _blobs(n: int, gen, means, n_classes: int):
    import torch

    y = torch.randint(0, n_classes, (n,), generator=gen)
    x = (means[y] + 0.08 * torch.randn(n, 1, 8, 8, generator=gen)).clamp(0, 1)
    return x, y


def train_blob_mlp(data_seed: int, n_test: int, n_classes: int = 4):
    """An MLP trained on Gaussian blobs (1×8×8 images in [0, 1]) to 100% clean test accuracy, in
    a second: a real trained model for attack tests. Returns (model, x_test, y_test)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(data_seed)
    means = 0.25 + 0.5 * torch.rand(n_classes, 1, 8, 8, generator=gen)
    x, y = _blobs(2000, gen, means, n_classes)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, n_classes))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    # One thread: on a shared, busy CPU, thread contention makes this tiny loop ten times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(150):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    x_test, y_test = _blobs(n_test, gen, means, n_classes)
    assert accuracy(model, x_test, y_test) == 1.0
    return model, x_test, y_test


def accuracy(model, x, y) -> float:
    import torch

    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())
