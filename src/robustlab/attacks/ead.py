"""EAD, the elastic-net attack (Chen, Sharma, Zhang, Yi and Hsieh, "EAD: Elastic-net attacks to
deep neural networks via adversarial examples", AAAI 2018): Su et al.'s (ECCV 2018) ℓ1 attack.

It minimises ``c·f(x) + ‖x − x0‖₂² + β‖x − x0‖₁`` over the [0, 1] box with FISTA: a gradient
step on the smooth part, then the shrinkage-thresholding operator S_β projected onto the box
(paper Eq. 5), then Nesterov momentum k/(k+3), with the step size decayed as
``lr·(1 − k/steps)^½``. c is binary-searched per example as in C&W. With the ℓ1 decision rule the
successful iterate of smallest ℓ1 is kept ("elastic-net" keeps the smallest elastic-net loss).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import UserError
from ..threat import lp_norm
from .base import AttackResult
from .cw import ConstSearch, MinimalDistortionAttack, margin_loss, succeeded

DECISION_RULES = ("l1", "en")


def shrink_to_box(z: torch.Tensor, x0: torch.Tensor, beta: float) -> torch.Tensor:
    """S_β of the EAD paper: soft-threshold ``z − x0`` by β, then clip to [0, 1]."""
    d = z - x0
    return (x0 + d.sign() * (d.abs() - beta).clamp_min(0)).clamp(0.0, 1.0)


class EAD(MinimalDistortionAttack):
    """EAD with the paper's defaults: β = 1e-3, 1000 FISTA steps with lr 0.01, 9 binary-search
    steps over c from 0.01, κ = 0, ℓ1 decision rule. ``extras["distortion"]`` is the ℓ1 norm."""

    name = "ead"
    norm = "l1"

    def __init__(self, beta: float = 1e-3, steps: int = 1000, binary_search_steps: int = 9,
                 initial_const: float = 0.01, lr: float = 0.01, kappa: float = 0.0,
                 decision_rule: str = "l1", targeted: bool = False,
                 target_mode: str = "least-likely", abort_early: bool = True, seed: int = 0):
        if decision_rule not in DECISION_RULES:
            raise UserError(f"ead: unknown decision_rule {decision_rule!r}; "
                            f"expected one of {', '.join(DECISION_RULES)}")
        super().__init__(steps=steps, binary_search_steps=binary_search_steps,
                         initial_const=initial_const, lr=lr, kappa=kappa, targeted=targeted,
                         target_mode=target_mode, abort_early=abort_early, seed=seed)
        if not beta >= 0:
            raise UserError(f"ead: beta must be >= 0, got {beta}")
        self.beta = float(beta)
        self.decision_rule = decision_rule

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        n = x.shape[0]
        clean_logits, label = self._labels(model, x, y)
        search = ConstSearch(n, self.initial_const, x.device)
        best_score = torch.full((n,), math.inf, device=x.device)
        best_adv = x.clone()
        if not self.targeted:
            best_score[clean_logits.argmax(1) != y] = 0.0
        check_every = max(1, self.steps // 10)
        for _ in range(self.binary_search_steps):
            x_k = x.clone()
            y_k = x.clone()
            success_now = torch.zeros(n, dtype=torch.bool, device=x.device)
            prev = math.inf
            for k in range(self.steps):
                lr = self.lr * (1 - k / self.steps) ** 0.5
                y_k.requires_grad_(True)
                f = margin_loss(model(y_k), label, self.targeted).clamp_min(-self.kappa)
                smooth = (search.const * f + (y_k - x).flatten(1).pow(2).sum(1)).sum()
                (grad,) = torch.autograd.grad(smooth, y_k)
                with torch.no_grad():
                    x_next = shrink_to_box(y_k - lr * grad, x, self.beta)
                    y_k = x_next + k / (k + 3) * (x_next - x_k)
                    x_k = x_next
                    logits = model(x_k)
                    ok = succeeded(logits, label, self.targeted, self.kappa)
                    delta = (x_k - x).flatten(1)
                    l1 = delta.abs().sum(1)
                    if self.decision_rule == "l1":
                        score = l1
                    else:
                        score = delta.pow(2).sum(1) + self.beta * l1
                    better = ok & (score < best_score)
                    best_score = torch.where(better, score, best_score)
                    best_adv[better] = x_k[better]
                    success_now |= ok
                if self.abort_early and (k + 1) % check_every == 0:
                    with torch.no_grad():
                        f_now = margin_loss(logits, label, self.targeted).clamp_min(-self.kappa)
                        loss = float((search.const * f_now + delta.pow(2).sum(1)
                                      + self.beta * l1).sum())
                    if loss > prev * 0.9999:
                        break
                    prev = loss
            search.update(success_now)
        success = torch.isfinite(best_score)
        dist = torch.where(success, lp_norm(best_adv - x, "l1"),
                           torch.full_like(best_score, math.inf))
        extras = {"distortion": dist}
        if self.targeted:
            extras["target"] = label
        return AttackResult(best_adv, success, extras)
