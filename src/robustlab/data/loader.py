"""Batch order as index tensors: plain epochs, and epochs that mix real with extra images.

All randomness comes from the ``generator`` passed in (on the CPU), so a resumed run that
re-creates the generator for an epoch gets the same batches again.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ..errors import UserError


def iterate_batches(n: int, batch_size: int, *, shuffle: bool = False,
                    generator: torch.Generator | None = None,
                    drop_last: bool = False) -> Iterator[torch.Tensor]:
    """Index tensors (int64, CPU) covering ``range(n)`` once, in order or shuffled."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]


def split_batch(batch_size: int, extra_fraction: float) -> tuple[int, int]:
    """(real, extra) examples per batch; the extra count is round(batch_size * extra_fraction)."""
    if not 0.0 <= extra_fraction <= 1.0:
        raise UserError(f"extra_fraction must be in [0, 1], got {extra_fraction}")
    n_extra = round(batch_size * extra_fraction)
    return batch_size - n_extra, n_extra


def batches_per_epoch(n_real: int, n_extra: int, batch_size: int, extra_fraction: float) -> int:
    """How many batches :func:`mix_batches` yields: one pass over the real data, or over the
    extra data when batches hold no real examples."""
    k_real, _ = split_batch(batch_size, extra_fraction)
    if k_real == 0:
        return -(-n_extra // batch_size)
    return -(-n_real // k_real)


def _extra_stream(n_extra: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    while True:  # sample without replacement; a fresh permutation each pass over the extra set
        yield torch.randperm(n_extra, generator=generator)


def mix_batches(n_real: int, n_extra: int, batch_size: int, extra_fraction: float,
                generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of (real_idx, extra_idx) batches.

    Every batch holds round(batch_size * extra_fraction) extra examples, the rest real, the
    real:extra ratio of Gowal et al. (2021) and Bartoldson et al. (2024). The epoch is one
    shuffled pass over the real set (the last batch may hold fewer real examples); extra
    examples are drawn without replacement, starting a new permutation when used up.
    ``extra_fraction`` 0 gives only real examples (``extra_idx`` empty).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    k_real, k_extra = split_batch(batch_size, extra_fraction)
    if k_extra and n_extra <= 0:
        raise UserError(f"extra_fraction {extra_fraction} asks for extra images, but the extra "
                        "set is empty")
    empty = torch.empty(0, dtype=torch.long)
    real_order = torch.randperm(n_real, generator=generator)
    pool = _extra_stream(n_extra, generator) if k_extra else None
    buffer = empty

    def take_extra() -> torch.Tensor:
        nonlocal buffer
        if pool is None:
            return empty
        while len(buffer) < k_extra:
            buffer = torch.cat([buffer, next(pool)])
        out, buffer = buffer[:k_extra], buffer[k_extra:]
        return out

    for _ in range(batches_per_epoch(n_real, n_extra, batch_size, extra_fraction)):
        if k_real:
            real, real_order = real_order[:k_real], real_order[k_real:]
        else:
            real = empty
        yield real, take_extra()
