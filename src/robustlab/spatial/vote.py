"""Majority-vote inference over random transforms, the test-time defence studied by Engstrom et
al. ("Exploring the Landscape of Spatial Robustness", ICML 2019, Section 5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .threat import SpatialThreat
from .transform import apply_params


class MajorityVote(nn.Module):
    """Predicts the class most of ``k`` random transforms of the input (drawn uniformly from
    ``threat``'s ranges) are classified as. The output is the vote count per class, so its
    argmax is the vote (ties go to the lowest class index).

    To evaluate this defence, attack the wrapper, not the model inside: a grid attack on a
    ``MajorityVote`` searches for a transform of the input that makes the *vote* wrong, which is
    the paper's setting; attacking ``model`` would measure the undefended network.

    ``seed`` fixes the k transforms of every forward pass (the same draws for every call, a
    deterministic function); ``None`` draws from torch's global RNG, which evaluation seeds per
    batch. The vote has no useful gradient: use gradient-free (grid, random) attacks on it."""

    def __init__(self, model: nn.Module, threat: SpatialThreat, k: int = 10,
                 seed: int | None = None):
        super().__init__()
        if k < 1:
            raise UserError(f"MajorityVote needs k >= 1, got {k}")
        self.model, self.threat, self.k, self.seed = model, threat, int(k), seed

    def transforms(self, n: int, device, dtype) -> torch.Tensor:
        """The (k, n, 3) transforms of one forward pass of ``n`` images."""
        gen = None
        if self.seed is not None:
            gen = torch.Generator(device=device)
            gen.manual_seed(self.seed)
        return self.threat.sample(self.k * n, device=device, dtype=dtype,
                                  generator=gen).view(self.k, n, 3)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        params = self.transforms(len(x), x.device, x.dtype)
        xs = apply_params(x.repeat(self.k, 1, 1, 1), params.reshape(-1, 3), self.threat.border,
                          self.threat.canvas_pad(x)).clamp(0.0, 1.0)
        return self.model(xs)

    def predictions(self, x: torch.Tensor) -> torch.Tensor:
        """The (k, n) predicted classes of the k transforms of each image."""
        return self._logits(x).argmax(1).view(self.k, len(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self._logits(x)
        votes = F.one_hot(logits.argmax(1), logits.shape[1]).to(x.dtype)
        return votes.view(self.k, len(x), -1).sum(0)
