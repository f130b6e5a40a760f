"""SGLD with momentum on the joint energy E(x, y) = −f(x)_y: class-conditional sampling from a
classifier read as an energy-based model (Mirza et al., ECCV 2024, Sec. 5).

One step, as in the authors' sampler (``sample_q_SGLD`` in
OmnAI-Lab/Robust-Classifiers-under-the-lens-of-EBM, image_generation/utils.py):

    v ← μ·v − (α/2)·∇_x E(x, y)
    x ← clip_[0,1](x + v + √(2α)·σ·ξ),   ξ ~ N(0, I)

Defaults: step α = 1 and noise σ = 0.001 are the authors' code defaults (``step_size=1``,
``noise_variance=0.001``, used as the standard deviation of ξ, scaled by √(2α)); 100 steps is
the default of their ``new_samples``. Momentum μ is a setting of their sampler whose code
default is 0 (plain SGLD) and which the paper tunes; 0.9 here is our choice, not theirs.
For comparison, JEM (Grathwohl et al., ICLR 2020) samples with step 1, noise std 0.01, 20 steps
and no momentum, from a replay buffer, on images in [−1, 1].
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError


class SGLD:
    name = "sgld"

    def __init__(self, steps: int = 100, step_size: float = 1.0, momentum: float = 0.9,
                 noise_std: float = 0.001):
        if int(steps) != steps or steps < 1:
            raise UserError(f"sgld: steps must be a positive integer, got {steps}")
        if not step_size > 0:
            raise UserError(f"sgld: step_size must be > 0, got {step_size}")
        if not 0 <= momentum < 1:
            raise UserError(f"sgld: momentum must be in [0, 1), got {momentum}")
        if not noise_std >= 0:
            raise UserError(f"sgld: noise_std must be >= 0, got {noise_std}")
        self.steps, self.step_size = int(steps), float(step_size)
        self.momentum, self.noise_std = float(momentum), float(noise_std)

    def settings(self) -> dict:
        return {"steps": self.steps, "step_size": self.step_size, "momentum": self.momentum,
                "noise_std": self.noise_std}

    def __call__(self, model: nn.Module, x0: torch.Tensor, y: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        was = model.training
        model.eval()
        x = x0.detach().clone()
        v = torch.zeros_like(x)
        scale = (2 * self.step_size) ** 0.5 * self.noise_std
        try:
            for _ in range(self.steps):
                x.requires_grad_(True)
                e = -model(x).gather(1, y.view(-1, 1)).sum()
                (g,) = torch.autograd.grad(e, x)
                with torch.no_grad():
                    v = self.momentum * v - 0.5 * self.step_size * g
                    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
                    x = (x + v + scale * noise).clamp_(0.0, 1.0)
        finally:
            model.train(was)
        return x.detach()
