"""Projected gradient descent (Madry et al., ICLR 2018) under ℓ∞, ℓ2 and ℓ1 threat models,
plus the pieces the other gradient attacks share: the steepest-ascent step per norm, the random
start per norm and the success test.

Targeted PGD: pass the targets as ``attack(model, x, y, target=t)``; without them a targeted
attack aims at the most likely wrong class of the clean input.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import UserError
from ..threat import LpThreat
from .base import Attack, AttackResult
from .losses import get_loss

# Tramèr & Boneh (NeurIPS 2019) step along the top few percent of |gradient| coordinates for ℓ1
# (their SLIDE attack uses a percentile q in [80, 99.5]); 5% is a middle setting.
L1_SPARSITY = 0.05


def _per_example(v: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor | float:
    if isinstance(v, torch.Tensor):
        return v.view(-1, *([1] * (like.dim() - 1)))
    return v


def steepest_step(grad: torch.Tensor, norm: str, step_size: float | torch.Tensor,
                  x_adv: torch.Tensor | None = None,
                  l1_sparsity: float = L1_SPARSITY) -> torch.Tensor:
    """The step of size ``step_size`` (a float or one per example) that increases a linear
    model of the loss most under ``norm``: the gradient's sign (ℓ∞), the normalised gradient
    (ℓ2), or for ℓ1 the sign on the top ``l1_sparsity`` fraction of coordinates by |gradient|,
    spread evenly (Tramèr & Boneh 2019). For ℓ1, coordinates that ``x_adv`` already has at the
    [0, 1] border and whose gradient points outward are skipped, since the box clip would undo
    that part of the step (Croce & Hein, ICCV 2021)."""
    step = _per_example(step_size, grad)
    if norm == "linf":
        return step * grad.sign()
    flat = grad.flatten(1)
    if norm == "l2":
        return step * grad / _per_example(flat.norm(dim=1).clamp_min(1e-12), grad)
    if x_adv is not None:
        blocked = ((x_adv <= 0) & (grad < 0)) | ((x_adv >= 1) & (grad > 0))
        flat = grad.masked_fill(blocked, 0).flatten(1)
    k = max(1, math.ceil(l1_sparsity * flat.shape[1]))
    thresh = flat.abs().topk(k, dim=1).values[:, -1:]
    direction = flat.sign() * (flat.abs() >= thresh).to(flat.dtype) * (flat != 0)
    direction = direction / direction.abs().sum(1, keepdim=True).clamp_min(1.0)
    return step * direction.view_as(grad)


def random_start(x: torch.Tensor, threat: LpThreat,
                 l1_sparsity: float = L1_SPARSITY) -> torch.Tensor:
    """A random point of the threat model around ``x``: uniform in the ℓ∞ ball (Madry et al.
    2018); a uniformly random direction times a radius uniform in [0, ε] (ℓ2); a random sparse
    point of ℓ1 norm uniform in [0, ε] (ℓ1). Then clipped to the box."""
    eps, n = threat.eps, x.shape[0]
    if threat.norm == "linf":
        delta = torch.empty_like(x).uniform_(-eps, eps)
    else:
        delta = torch.randn_like(x)
        if threat.norm == "l1":
            delta = delta * (torch.rand_like(x) < l1_sparsity)
        norm = delta.flatten(1).norm(p=2 if threat.norm == "l2" else 1, dim=1).clamp_min(1e-12)
        radius = torch.rand(n, device=x.device, dtype=x.dtype) * eps
        delta = delta * _per_example(radius / norm, x)
    return threat.project(x + delta, x)


def is_success(logits: torch.Tensor, y: torch.Tensor,
               target: torch.Tensor | None = None) -> torch.Tensor:
    """Per example: the prediction equals ``target`` if given, else differs from ``y``."""
    pred = logits.argmax(1)
    return pred == target if target is not None else pred != y


def input_gradient(model: nn.Module, x: torch.Tensor, loss_fn, *args):
    """Logits, per-example loss and the gradient of the summed loss w.r.t. ``x`` only (never
    the parameters, so an attack inside a training step leaves their .grad alone)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        loss = loss_fn(logits, *args)
        (grad,) = torch.autograd.grad(loss.sum(), x)
    return logits.detach(), loss.detach(), grad.detach()


class TargetMixin:
    """Lets a targeted attack take ``target=`` through :meth:`Attack.__call__`, keeping the
    base class's mode discipline and threat check."""

    _target: torch.Tensor | None = None

    def __call__(self, model, x, y, target: torch.Tensor | None = None) -> AttackResult:
        self._target = None if target is None else target.detach()
        try:
            return super().__call__(model, x, y)
        finally:
            self._target = None


def most_likely_other(model: nn.Module, x: torch.Tensor, y: torch.Tensor, rank: int = 1):
    """The ``rank``-th most likely class other than ``y`` on the clean input."""
    with torch.no_grad():
        logits = model(x).scatter(1, y[:, None], float("-inf"))
    return logits.topk(rank, dim=1).indices[:, rank - 1]


class PGD(TargetMixin, Attack):
    """Projected gradient ascent on a per-example loss with random restarts (Madry et al., ICLR
    2018).

    ``step_size`` None means 2.5·ε/steps, Madry et al.'s rule that lets ``steps`` steps cross
    the ball. With ``early_stop`` (AutoAttack-style, Croce & Hein 2020) an example stops moving
    once the attack's goal is met, and restarts run only on examples not yet broken; the best
    point per example is the first success, else the highest final loss. Without it (adversarial
    training) every example takes every step and a restart replaces the kept point if it succeeds
    where the kept one did not, or succeeds equally with a higher loss. ``success`` comes from a
    final forward pass on the returned points.
    """

    name = "pgd"

    def __init__(self, threat: LpThreat, steps: int = 10, step_size: float | None = None,
                 restarts: int = 1, random_start: bool = True, loss: str = "ce",
                 targeted: bool = False, early_stop: bool = True,
                 l1_sparsity: float = L1_SPARSITY):
        if steps < 1 or restarts < 1:
            raise UserError(f"pgd: steps and restarts must be >= 1, got {steps} and {restarts}")
        if not 0 < l1_sparsity <= 1:
            raise UserError(f"pgd: l1_sparsity must be in (0, 1], got {l1_sparsity}")
        self.threat = threat
        self.steps, self.restarts = int(steps), int(restarts)
        self.step_size = 2.5 * threat.eps / steps if step_size is None else float(step_size)
        self.random_start, self.early_stop = random_start, early_stop
        self.targeted, self.loss = targeted, loss
        self.l1_sparsity = l1_sparsity
        self._loss_fn = get_loss(loss, targeted)

    def _loss_args(self, y, target, idx):
        return (y[idx], target[idx]) if self.targeted else (y[idx],)

    def _run(self, model, x, y, target):
        """One restart on the whole batch: final points, their loss and success."""
        x_adv = random_start(x, self.threat, self.l1_sparsity) if self.random_start else x.clone()
        idx = torch.arange(len(x), device=x.device)
        every = idx
        for _ in range(self.steps):
            # Train-mode batch norm couples the examples (and fails on a batch of one), so there
            # the whole batch goes through every pass and only the moving examples step.
            rows = every if self.train_mode else idx
            logits, _, grad = input_gradient(model, x_adv[rows], self._loss_fn,
                                             *self._loss_args(y, target, rows))
            if self.train_mode:
                logits, grad = logits[idx], grad[idx]
            if self.early_stop:
                keep = ~is_success(logits, y[idx], target[idx] if self.targeted else None)
                idx, grad = idx[keep], grad[keep]
                if idx.numel() == 0:
                    break
            xa = x_adv[idx]
            step = steepest_step(grad, self.threat.norm, self.step_size, xa, self.l1_sparsity)
            x_adv[idx] = self.threat.project(xa + step, x[idx])
        with torch.no_grad():
            logits = model(x_adv)
            all_idx = torch.arange(len(x), device=x.device)
            loss = self._loss_fn(logits, *self._loss_args(y, target, all_idx))
            ok = is_success(logits, y, target if self.targeted else None)
        return x_adv, loss, ok

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        target = self._target
        if self.targeted and target is None:
            target = most_likely_other(model, x, y)
        goal = target if self.targeted else None
        with torch.no_grad():
            logits = model(x)
        best_x, success = x.clone(), is_success(logits, y, goal)
        if self.threat.eps == 0:
            return AttackResult(best_x, success, self._extras(target))
        best_loss = torch.full((len(x),), float("-inf"), device=x.device)
        for _ in range(self.restarts):
            if self.early_stop and bool(success.all()):
                break
            # Restarts run on the examples still robust (all of them in train mode, see _run).
            subset = self.early_stop and not self.train_mode
            todo = (~success).nonzero().flatten() if subset else \
                torch.arange(len(x), device=x.device)
            xa, loss, ok = self._run(model, x[todo], y[todo],
                                     target[todo] if self.targeted else None)
            if self.early_stop:
                better = ~success[todo] & (ok | (loss > best_loss[todo]))
            else:
                was = success[todo]
                better = (ok & ~was) | ((ok == was) & (loss > best_loss[todo]))
            sel = todo[better]
            best_x[sel], best_loss[sel] = xa[better], loss[better]
            success[sel] = ok[better]
        with torch.no_grad():
            success = is_success(model(best_x), y, goal)
        return AttackResult(best_x, success, self._extras(target))

    def _extras(self, target):
        return {"target": target} if self.targeted else None
