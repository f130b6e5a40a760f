"""Targeted PGD as a sampler (Santurkar, Tsipras, Tran, Ilyas, Engstrom and Madry, "Image
Synthesis with a Single (Robust) Classifier", NeurIPS 2019): from a class-conditional seed,
minimise the cross-entropy of the target class by ℓ2 projected gradient descent within ε of the
seed.

Their ImageNet settings (the robustness library's generation example): ℓ2, ε = 40, step 1,
60 steps, on 224×224×3 images. ε and the step here default to those scaled by
√(D / 150528) for images of D pixels (ℓ2 distances grow as √D), 60 steps kept.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError

IMAGENET_DIM = 3 * 224 * 224


class TargetedPGD:
    name = "pgd"

    def __init__(self, steps: int = 60, eps: float | None = None,
                 step_size: float | None = None):
        if int(steps) != steps or steps < 1:
            raise UserError(f"pgd sampler: steps must be a positive integer, got {steps}")
        if eps is not None and not eps > 0:
            raise UserError(f"pgd sampler: eps must be > 0, got {eps}")
        if step_size is not None and not step_size > 0:
            raise UserError(f"pgd sampler: step_size must be > 0, got {step_size}")
        self.steps, self.eps, self.step_size = int(steps), eps, step_size

    def _radii(self, x: torch.Tensor) -> tuple[float, float]:
        scale = (x[0].numel() / IMAGENET_DIM) ** 0.5
        eps = self.eps if self.eps is not None else 40.0 * scale
        step = self.step_size if self.step_size is not None else eps / 40.0
        return eps, step

    def settings(self, x: torch.Tensor | None = None) -> dict:
        out = {"steps": self.steps, "eps": self.eps, "step_size": self.step_size, "norm": "l2"}
        if x is not None:
            out["eps"], out["step_size"] = self._radii(x)
        return out

    def __call__(self, model: nn.Module, x0: torch.Tensor, y: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        eps, step = self._radii(x0)
        was = model.training
        model.eval()
        x = x0.detach().clone()
        try:
            for _ in range(self.steps):
                x.requires_grad_(True)
                loss = F.cross_entropy(model(x), y, reduction="sum")
                (g,) = torch.autograd.grad(loss, x)
                with torch.no_grad():
                    gn = g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
                    x = x - step * g / gn
                    d = x - x0
                    dn = d.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
                    x = (x0 + d * torch.clamp(eps / dn.clamp_min(1e-12), max=1.0)).clamp_(0, 1)
        finally:
            model.train(was)
        return x.detach()
