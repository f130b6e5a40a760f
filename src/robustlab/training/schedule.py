"""Learning-rate schedules as pure functions of the global step.

A pure function (rather than a stateful torch scheduler) makes resume trivial and exact: the
learning rate of step t is the same whether the run was interrupted or not.
"""

from __future__ import annotations

import math


def lr_at(step: int, *, total_steps: int, base_lr: float, schedule: str, warmup_steps: int = 0,
          milestones: list[int] | None = None, gamma: float = 0.1) -> float:
    """Learning rate for ``step`` (0-based). ``milestones`` are in steps for ``step``.

    - constant: base_lr after warm-up.
    - step: multiplied by ``gamma`` at each milestone (Madry et al.; Rice et al. 2020 use 100, 150).
    - cosine: half-cosine from base_lr to 0 (Loshchilov and Hutter, 2017).
    - onecycle: linear up to base_lr at 40% of training, then linearly to 0; the cyclic rate of
      Wong et al. (2020), which makes single-step adversarial training converge in few epochs.
    Warm-up is linear from 0 over ``warmup_steps`` and applies to every schedule but onecycle,
    which has its own ramp.
    """
    total_steps = max(1, total_steps)
    if schedule == "onecycle":
        peak = 0.4 * total_steps
        if step < peak:
            return base_lr * (step + 1) / peak
        return base_lr * max(0.0, (total_steps - step) / (total_steps - peak))
    if warmup_steps and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    if schedule == "step":
        k = sum(1 for m in (milestones or []) if step >= m)
        return base_lr * gamma**k
    if schedule == "cosine":
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * base_lr * (1 + math.cos(math.pi * min(1.0, t)))
    raise ValueError(f"unknown schedule {schedule!r}")
