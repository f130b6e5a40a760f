"""TRADES' inner maximisation (Zhang et al., ICML 2019): PGD that maximises
KL(p(·|x) ‖ p(·|x')) over x' in the ε-ball, starting from x + 0.001·N(0, I).

It needs no label: the clean prediction is the reference. Defaults are the paper's CIFAR-10
settings scaled by ``steps``: step size ε/4 with 10 steps (0.007 for ε = 0.031). The adversary of
WEAT (Mirza et al., ECCV 2024) is the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..threat import LpThreat
from .base import Attack, AttackResult


def kl_per_example(logits_nat: torch.Tensor, logits_adv: torch.Tensor) -> torch.Tensor:
    """KL(p_nat ‖ p_adv) per example."""
    return F.kl_div(F.log_softmax(logits_adv, 1), F.log_softmax(logits_nat, 1),
                    reduction="none", log_target=True).sum(1)


class TradesKL(Attack):
    name = "trades-kl"

    def __init__(self, threat: LpThreat, steps: int = 10, step_size: float | None = None,
                 restarts: int = 1):
        self.threat = threat
        self.steps = steps
        self.step_size = step_size if step_size is not None else threat.eps / 4

    def perturb(self, model, x, y) -> AttackResult:
        with torch.no_grad():
            logits_nat = model(x)
        x_adv = self.threat.project(x + 0.001 * torch.randn_like(x), x)
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            loss = kl_per_example(logits_nat, model(x_adv)).sum()
            (g,) = torch.autograd.grad(loss, x_adv)
            with torch.no_grad():
                if self.threat.norm == "linf":
                    step = g.sign()
                else:
                    step = g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
                x_adv = self.threat.project(x_adv + self.step_size * step, x)
        x_adv = x_adv.detach()
        with torch.no_grad():
            success = model(x_adv).argmax(1) != y
        return AttackResult(x_adv, success)
