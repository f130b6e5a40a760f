"""Minimal ℓ∞ distortion by searching over ε, as Su et al. (ECCV 2018) measure it for FGSM and
iterative FGSM (Kurakin, Goodfellow and Bengio, "Adversarial machine learning at scale",
ICLR 2017).

For each example the search doubles ε from ``eps0`` until the attack succeeds, halves it until it
fails, then bisects between the largest failing and the smallest successful ε until they are
``tol`` apart. The smallest successful ε is the distortion (``inf`` if none up to ``eps_max``;
0 if the clean image is already misclassified).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..threat import LpThreat
from .base import Attack, AttackResult

METHODS = ("ifgsm", "fgsm")


def fgsm_at(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor,
            iterations: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(Iterative) FGSM with a per-example ε: ``iterations`` signed-gradient steps of ε/iterations
    on the logit margin (not cross-entropy, whose gradient is exactly zero in float32 on very
    confident predictions, which would stall the search), clipped to the ε-ball and [0, 1].
    Returns the first successful iterate per example (the last iterate where none succeeded)
    and the success flags."""
    eps = eps.view(-1, *([1] * (x.dim() - 1)))
    step = eps / iterations
    x_adv = x.clone()
    found = x.clone()
    success = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for _ in range(iterations):
        x_adv.requires_grad_(True)
        z = model(x_adv)
        other = z.masked_fill(F.one_hot(y, z.shape[1]).bool(), float("-inf")).amax(1)
        loss = (other - z.gather(1, y[:, None]).squeeze(1)).sum()
        (grad,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            x_adv = x_adv + step * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0.0, 1.0)
            # A later iterate can bounce back over the boundary; the first success is kept.
            ok = (model(x_adv).argmax(1) != y) & ~success
            found[ok] = x_adv[ok]
            success |= ok
    found[~success] = x_adv[~success].detach()
    return found, success


def minimal_linf(model: nn.Module, x: torch.Tensor, y: torch.Tensor, method: str = "ifgsm",
                 iterations: int = 50, tol: float = 1e-3, eps0: float = 0.01,
                 eps_max: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example smallest successful ℓ∞ ε of FGSM or iterative FGSM (``iterations`` steps of
    ε/``iterations``; Su et al. use 50), to within ``tol``. Returns ``(distortion, x_adv)``;
    ``x_adv`` is the adversarial example at the returned ε (the clean image where none)."""
    if method not in METHODS:
        raise UserError(f"unknown eps-search method {method!r}; "
                        f"expected one of {', '.join(METHODS)}")
    if not 0 < eps0 <= eps_max <= 1:
        raise UserError(f"eps search needs 0 < eps0 <= eps_max <= 1, got eps0={eps0}, "
                        f"eps_max={eps_max}")
    if not tol > 0 or int(iterations) < 1:
        raise UserError(f"eps search needs tol > 0 and iterations >= 1, got {tol}, {iterations}")
    steps = 1 if method == "fgsm" else int(iterations)
    n = x.shape[0]
    dev = x.device
    lo = torch.zeros(n, device=dev)                  # largest ε known to fail
    hi = torch.full((n,), math.inf, device=dev)      # smallest ε known to succeed
    eps = torch.full((n,), float(eps0), device=dev)
    x_best = x.clone()
    with torch.no_grad():
        wrong = model(x).argmax(1) != y
    hi[wrong] = 0.0
    active = ~wrong
    while bool(active.any()):
        idx = active.nonzero().flatten()
        adv, ok = fgsm_at(model, x[idx], y[idx], eps[idx], steps)
        e = eps[idx]
        hi[idx] = torch.where(ok, e, hi[idx])
        lo[idx] = torch.where(ok, lo[idx], e)
        x_best[idx[ok]] = adv[ok]
        h, lw = hi[idx], lo[idx]
        gave_up = ~torch.isfinite(h) & (lw >= eps_max)
        converged = torch.isfinite(h) & (h - lw <= tol)
        nxt = torch.where(~torch.isfinite(h), torch.clamp(2 * lw, max=eps_max),
                          torch.where(lw == 0, h / 2, (lw + h) / 2))
        # float rounding can stall a bisection whose tol is below float resolution
        stalled = torch.isfinite(h) & ((nxt == h) | (nxt == lw))
        eps[idx] = nxt
        active[idx] = ~(gave_up | converged | stalled)
    return hi, x_best


class EpsSearch(Attack):
    """Minimal ℓ∞ distortion by ε search; ``extras["distortion"]`` holds it per example."""

    name = "eps-search"
    method = "ifgsm"

    def __init__(self, iterations: int = 50, tol: float = 1e-3, eps0: float = 0.01,
                 eps_max: float = 1.0):
        self.iterations = int(iterations)
        self.tol = float(tol)
        self.eps0 = float(eps0)
        self.eps_max = float(eps_max)
        self.threat = LpThreat("linf", self.eps_max)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        dist, x_adv = minimal_linf(model, x, y, self.method, self.iterations, self.tol,
                                   self.eps0, self.eps_max)
        return AttackResult(x_adv, torch.isfinite(dist), {"distortion": dist})


class IFGSMSearch(EpsSearch):
    """Iterative FGSM, 50 steps of ε/50 (Kurakin et al., ICLR 2017, as used by Su et al.)."""

    name = "ifgsm-search"
    method = "ifgsm"


class FGSMSearch(EpsSearch):
    """Single-step FGSM (Goodfellow et al., ICLR 2015); ``iterations`` is ignored."""

    name = "fgsm-search"
    method = "fgsm"
