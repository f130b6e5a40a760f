"""Single-step attacks: FGSM (Goodfellow et al., ICLR 2015), FGSM with random start (Wong et
al., ICLR 2020, "Fast is better than free") and the N-FGSM training perturbation (de Jorge et
al., NeurIPS 2022)."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from ..threat import LpThreat
from .base import Attack, AttackResult
from .losses import get_loss
from .pgd import input_gradient, is_success, random_start, steepest_step


class FGSM(Attack):
    """One signed-gradient step of ``step_size`` (default ε, Goodfellow et al. 2015), projected
    back into the ℓ∞ ball and the box. With ``random_start`` the step starts from a uniform point
    of the ball, as in Wong et al. (2020), who pair it with a step of 1.25·ε for training.

    ``clip_delta`` must stay True: an :class:`Attack`'s output is threat-checked, so it cannot
    leave the ball. For an unclipped training perturbation use :func:`n_fgsm_perturbation`."""

    name = "fgsm"

    def __init__(self, threat: LpThreat, random_start: bool = False,
                 step_size: float | None = None, clip_delta: bool = True, loss: str = "ce"):
        if not clip_delta:
            raise UserError("fgsm: clip_delta=False would leave the threat model, which an attack "
                            "may not; use robustlab.attacks.fgsm.n_fgsm_perturbation for an "
                            "unclipped training-time perturbation")
        if threat.norm != "linf":
            raise UserError(f"fgsm is defined for linf threat models, got {threat.norm}; "
                            f"use pgd with steps=1 for {threat.norm}")
        self.threat = threat
        self.random_start = random_start
        self.step_size = threat.eps if step_size is None else float(step_size)
        self.clip_delta = clip_delta
        self.loss = loss
        self._loss_fn = get_loss(loss)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        x0 = random_start(x, self.threat) if self.random_start else x
        if self.threat.eps > 0:
            _, _, grad = input_gradient(model, x0, self._loss_fn, y)
            x_adv = self.threat.project(x0 + steepest_step(grad, "linf", self.step_size), x)
        else:
            x_adv = x.clone()
        with torch.no_grad():
            success = is_success(model(x_adv), y)
        return AttackResult(x_adv, success)


def n_fgsm_perturbation(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                        noise: float | None = None, step: float | None = None) -> torch.Tensor:
    """N-FGSM (de Jorge et al., NeurIPS 2022): x + η + step·sign(∇ℓ(x + η)) with η uniform in
    [−noise, noise]; defaults noise = 2ε, step = ε, the paper's setting.

    The result is clipped to [0, 1] only, not to the ε-ball: its ℓ∞ distance reaches 3ε by
    design. It is therefore a training-time perturbation, not an :class:`Attack`, and is not
    threat-checked; the caller chooses the model mode (see :func:`~.base.model_mode`).
    """
    noise = 2 * eps if noise is None else noise
    step = eps if step is None else step
    x = x.detach()
    x_noisy = (x + torch.empty_like(x).uniform_(-noise, noise)).clamp(0.0, 1.0)
    _, _, grad = input_gradient(model, x_noisy, get_loss("ce"), y)
    return (x_noisy + step * grad.sign()).clamp(0.0, 1.0).detach()
