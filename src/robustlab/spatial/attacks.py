"""Attacks on the spatial threat model of Engstrom et al. ("Exploring the Landscape of Spatial
Robustness", ICML 2019).

Each returns an :class:`~robustlab.attacks.base.AttackResult` whose ``extras["transform"]`` is
the (N, 3) tensor of ``(angle, tx, ty)`` chosen per example (and ``extras["delta"]`` the ℓ∞
perturbation of the untransformed input for :class:`GridLinf`), so that
``threat.apply(x, transform, delta)`` reproduces ``x_adv``.

The transform chosen for an example is the misclassifying one of highest loss among those tried
or, when none misclassifies, the one of highest loss.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks.base import Attack, AttackResult
from ..errors import UserError
from .threat import SpatialThreat
from .transform import affine_many, apply_params

DEFAULT_FORWARD_SIZE = 2048  # images per forward pass when many transforms are batched


def _losses(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor,
                                                                         torch.Tensor]:
    logits = model(x)
    return F.cross_entropy(logits, y, reduction="none"), logits.argmax(1) != y


def _pick(loss: torch.Tensor, wrong: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                           torch.Tensor]:
    """Over dim 0 of (k, n): the misclassifying candidate of highest loss, else the highest
    loss. Returns index (n,), its loss and whether it misclassifies."""
    masked = torch.where(wrong, loss, torch.full_like(loss, float("-inf")))
    fooled = wrong.any(0)
    idx = torch.where(fooled, masked.argmax(0), loss.argmax(0))
    return idx, loss.gather(0, idx[None])[0], fooled


class _Best:
    """The best candidate found so far for each example, by the rule of :func:`_pick`."""

    def __init__(self, x: torch.Tensor, keep_delta: bool = False):
        n = x.shape[0]
        self.params = torch.zeros(n, 3, device=x.device, dtype=x.dtype)
        self.loss = torch.full((n,), float("-inf"), device=x.device, dtype=x.dtype)
        self.fooled = torch.zeros(n, dtype=torch.bool, device=x.device)
        self.delta = torch.zeros_like(x) if keep_delta else None

    def update(self, rows: torch.Tensor, params: torch.Tensor, loss: torch.Tensor,
               fooled: torch.Tensor, delta: torch.Tensor | None = None) -> None:
        old_loss, old_fooled = self.loss[rows], self.fooled[rows]
        better = (fooled & ~old_fooled) | ((fooled == old_fooled) & (loss > old_loss))
        r = rows[better]
        self.params[r] = params[better].to(self.params)
        self.loss[r] = loss[better].detach()
        self.fooled[r] = fooled[better]
        if self.delta is not None and delta is not None:
            self.delta[r] = delta[better].detach()


class _SpatialAttack(Attack):
    threat: SpatialThreat
    forward_size: int = DEFAULT_FORWARD_SIZE

    def _result(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                best: _Best) -> AttackResult:
        with torch.no_grad():
            x_adv = self.threat.apply(x, best.params, best.delta)
            success = model(x_adv).argmax(1) != y
        extras = {"transform": best.params.detach().clone()}
        if best.delta is not None:
            extras["delta"] = best.delta
        return AttackResult(x_adv=x_adv, success=success, extras=extras)


class GridAttack(_SpatialAttack):
    """Exhaustive grid search over rotations and translations, the strongest spatial attack of
    Engstrom et al. (2019): by default 5 × 5 translations × 31 rotations = 775 transforms.

    Many transforms of many images go through the model in one forward pass (about
    ``forward_size`` images); between such chunks, examples already misclassified are dropped,
    so an example stops costing forward passes as soon as one transform fools it (its transform
    is then the highest-loss misclassifying one of that chunk)."""

    name: ClassVar[str] = "spatial-grid"

    def __init__(self, threat: SpatialThreat, n_trans: int = 5, n_rot: int = 31,
                 forward_size: int = DEFAULT_FORWARD_SIZE, early_stop: bool = True):
        self.threat, self.n_trans, self.n_rot = threat, n_trans, n_rot
        self.forward_size, self.early_stop = max(1, int(forward_size)), early_stop
        self.grid = threat.grid(n_trans, n_rot)

    @torch.no_grad()
    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        self.threat.validate_images(x)
        best = _Best(x)
        grid = self.grid.to(device=x.device, dtype=x.dtype)
        pad = self.threat.canvas_pad(x)
        for lo in range(0, len(x), self.forward_size):
            rows_all = torch.arange(lo, min(lo + self.forward_size, len(x)), device=x.device)
            t = 0
            while t < len(grid):
                rows = rows_all[~best.fooled[rows_all]] if self.early_stop else rows_all
                if len(rows) == 0:
                    break
                k = max(1, self.forward_size // len(rows))
                chunk = grid[t:t + k]
                xs = affine_many(x[rows], chunk, self.threat.border, pad).clamp_(0.0, 1.0)
                loss, wrong = _losses(model, xs, y[rows].repeat(len(chunk)))
                idx, bl, bf = _pick(loss.view(len(chunk), -1), wrong.view(len(chunk), -1))
                best.update(rows, chunk[idx], bl, bf)
                t += len(chunk)
        return self._result(model, x, y, best)


class RandomSpatial(_SpatialAttack):
    """Worst of ``k`` transforms drawn uniformly from the continuous ranges (Engstrom et al.,
    2019): ``k=1`` is their "random" attack, ``k=10`` their "worst-of-10" (also the attack of
    their worst-of-k adversarial training)."""

    name: ClassVar[str] = "spatial-random"

    def __init__(self, threat: SpatialThreat, k: int = 1,
                 forward_size: int = DEFAULT_FORWARD_SIZE):
        if k < 1:
            raise UserError(f"RandomSpatial needs k >= 1, got {k}")
        self.threat, self.k, self.forward_size = threat, int(k), max(1, int(forward_size))
        self.name = "spatial-random" if k == 1 else f"spatial-worst-of-{k}"

    @torch.no_grad()
    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        self.threat.validate_images(x)
        n = len(x)
        best = _Best(x)
        params = self.threat.sample(self.k * n, device=x.device, dtype=x.dtype).view(self.k, n, 3)
        pad = self.threat.canvas_pad(x)
        rows = torch.arange(n, device=x.device)
        for lo in range(0, n, self.forward_size):
            r = rows[lo:lo + self.forward_size]
            per = max(1, self.forward_size // len(r))
            for j in range(0, self.k, per):
                p = params[j:j + per, r]                         # (kk, nr, 3)
                kk = p.shape[0]
                xs = apply_params(x[r].repeat(kk, 1, 1, 1), p.reshape(-1, 3),
                                  self.threat.border, pad).clamp_(0.0, 1.0)
                loss, wrong = _losses(model, xs, y[r].repeat(kk))
                idx, bl, bf = _pick(loss.view(kk, -1), wrong.view(kk, -1))
                best.update(r, p[idx, torch.arange(len(r), device=x.device)], bl, bf)
        return self._result(model, x, y, best)


class FirstOrderSpatial(_SpatialAttack):
    """Projected gradient ascent on the transform parameters ``(angle, tx, ty)``, with random
    restarts. Steps follow the sign of the gradient in units of each parameter's range, so
    ``step_size`` (default 2.5 / steps, after Madry et al.'s rule) is a fraction of it.

    Engstrom et al. (2019) found this attack clearly weaker than the exhaustive grid: the loss is
    highly non-concave in the transform parameters, so gradient ascent stalls in local maxima.
    Use it for study, not to certify robustness; :class:`GridAttack` is the reference."""

    name: ClassVar[str] = "spatial-first-order"

    def __init__(self, threat: SpatialThreat, steps: int = 200, step_size: float | None = None,
                 restarts: int = 10):
        if steps < 1 or restarts < 1:
            raise UserError(f"FirstOrderSpatial needs steps >= 1 and restarts >= 1, got "
                            f"steps={steps}, restarts={restarts}")
        self.threat, self.steps, self.restarts = threat, int(steps), int(restarts)
        self.step_size = 2.5 / steps if step_size is None else float(step_size)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        self.threat.validate_images(x)
        best = _Best(x)
        lim = self.threat.limits(x.device, x.dtype)
        pad = self.threat.canvas_pad(x)
        for _ in range(self.restarts):
            rows = (~best.fooled).nonzero().flatten()
            if len(rows) == 0:
                break
            xr, yr = x[rows], y[rows]
            u = torch.rand(len(rows), 3, device=x.device, dtype=x.dtype) * 2 - 1
            for step in range(self.steps + 1):
                u.requires_grad_(True)
                params = u * lim
                xs = apply_params(xr, params, self.threat.border, pad).clamp(0.0, 1.0)
                loss, wrong = _losses(model, xs, yr)
                best.update(rows, params.detach(), loss.detach(), wrong)
                if step == self.steps:
                    break
                (g,) = torch.autograd.grad(loss.sum(), u)
                u = (u.detach() + self.step_size * g.sign()).clamp(-1.0, 1.0)
        return self._result(model, x, y, best)


class GridLinf(_SpatialAttack):
    """The combined spatial + ℓ∞ attack of Engstrom et al. (2019): for every transform of a grid
    (coarser than :class:`GridAttack`'s by default, 3 × 3 × 5 = 45), ℓ∞ PGD of ``steps`` steps
    on the *untransformed* input, differentiating through the transform:
    ``x_adv = T(clip(x + δ)), ‖δ‖∞ ≤ threat.linf_eps``. Examples fooled by one chunk of
    transforms are not attacked further."""

    name: ClassVar[str] = "spatial-grid-linf"

    def __init__(self, threat: SpatialThreat, steps: int = 10, step_size: float | None = None,
                 n_trans: int = 3, n_rot: int = 5, forward_size: int = 512,
                 random_start: bool = True):
        if not threat.combined:
            raise UserError("GridLinf needs a combined threat: SpatialThreat(linf_eps > 0)")
        if steps < 0:
            raise UserError(f"GridLinf needs steps >= 0, got {steps}")
        self.threat, self.steps = threat, int(steps)
        self.step_size = 2.5 * threat.linf_eps / max(steps, 1) if step_size is None \
            else float(step_size)
        self.grid = threat.grid(n_trans, n_rot)
        self.forward_size, self.random_start = max(1, int(forward_size)), random_start

    def _pgd(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: torch.Tensor,
             pad: int | None) -> torch.Tensor:
        eps = self.threat.linf_eps
        delta = torch.zeros_like(x)
        if self.random_start:
            delta.uniform_(-eps, eps)
        delta = (x + delta).clamp(0.0, 1.0) - x
        for _ in range(self.steps):
            delta.requires_grad_(True)
            xs = apply_params(x + delta, params, self.threat.border, pad)
            loss, _ = _losses(model, xs, y)
            (g,) = torch.autograd.grad(loss.sum(), delta)
            delta = (delta.detach() + self.step_size * g.sign()).clamp(-eps, eps)
            delta = (x + delta).clamp(0.0, 1.0) - x
        return delta

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        self.threat.validate_images(x)
        best = _Best(x, keep_delta=True)
        grid = self.grid.to(device=x.device, dtype=x.dtype)
        pad = self.threat.canvas_pad(x)
        t = 0
        while t < len(grid):
            rows = (~best.fooled).nonzero().flatten()
            if len(rows) == 0:
                break
            k = max(1, self.forward_size // len(rows))
            chunk = grid[t:t + k]
            kk = len(chunk)
            for lo in range(0, len(rows), self.forward_size):
                r = rows[lo:lo + self.forward_size]
                xr = x[r].repeat(kk, 1, 1, 1)
                yr = y[r].repeat(kk)
                p = chunk.repeat_interleave(len(r), dim=0)
                delta = self._pgd(model, xr, yr, p, pad)
                with torch.no_grad():
                    xs = self.threat.apply(xr, p, delta)
                    loss, wrong = _losses(model, xs, yr)
                idx, bl, bf = _pick(loss.view(kk, -1), wrong.view(kk, -1))
                flat = idx * len(r) + torch.arange(len(r), device=x.device)
                best.update(r, chunk[idx], bl, bf, delta[flat])
            t += kk
        return self._result(model, x, y, best)
