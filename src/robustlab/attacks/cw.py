"""Carlini-Wagner ℓ2 (Carlini and Wagner, "Towards evaluating the robustness of neural networks",
IEEE S&P 2017): the minimal-distortion attack Su et al. (ECCV 2018) use for their ℓ2 column.

The attack is unbounded: it returns the smallest successful perturbation it found and its ℓ2
norm per example in ``extras["distortion"]`` (``inf`` where it found none, 0 where the clean
image is already misclassified). Its threat model is an ℓ2 ball that covers the whole [0, 1] box,
so :meth:`Attack.__call__` still checks the box and finiteness.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import UserError
from ..threat import LpThreat, lp_norm
from .base import Attack, AttackResult

TARGET_MODES = ("least-likely", "second", "random")


def box_covering_threat(norm: str, x: torch.Tensor) -> LpThreat:
    """The ℓp ball that contains the whole [0, 1] box around any image of ``x``'s shape."""
    d = x[0].numel()
    eps = {"l2": math.sqrt(d), "l1": float(d), "linf": 1.0}[norm]
    return LpThreat(norm, eps)


def choose_targets(logits: torch.Tensor, y: torch.Tensor, mode: str,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Target labels for a targeted attack: the least likely class, the most likely class other
    than ``y`` ("second"), or a uniformly random class other than ``y``."""
    if mode not in TARGET_MODES:
        raise UserError(f"unknown target_mode {mode!r}; expected one of {', '.join(TARGET_MODES)}")
    k = logits.shape[1]
    if k < 2:
        raise UserError("a targeted attack needs at least 2 classes")
    if mode == "least-likely":
        return logits.argmin(1)
    if mode == "second":
        return logits.scatter(1, y[:, None], -math.inf).argmax(1)
    offset = torch.randint(1, k, y.shape, generator=generator, device="cpu").to(y.device)
    return (y + offset) % k


def margin_loss(logits: torch.Tensor, label: torch.Tensor, targeted: bool) -> torch.Tensor:
    """How far each example is from success: ``max_{i≠t} Z_i − Z_t`` (targeted, t the target) or
    ``Z_y − max_{i≠y} Z_i`` (untargeted); negative means success (C&W's f6)."""
    own = logits.gather(1, label[:, None])[:, 0]
    other = logits.scatter(1, label[:, None], -math.inf).amax(1)
    return other - own if targeted else own - other


def succeeded(logits: torch.Tensor, label: torch.Tensor, targeted: bool,
              kappa: float = 0.0) -> torch.Tensor:
    """The attack's goal holds (strictly, by the predicted class) with confidence ``kappa``."""
    pred = logits.argmax(1)
    hit = pred == label if targeted else pred != label
    return hit & (margin_loss(logits, label, targeted) <= -kappa)


class ConstSearch:
    """Per-example binary search over the trade-off constant c of C&W and EAD: multiply by 10
    until the first success, then bisect between the largest failing and smallest successful c."""

    def __init__(self, n: int, initial_const: float, device: torch.device):
        self.const = torch.full((n,), float(initial_const), device=device)
        self.lower = torch.zeros(n, device=device)
        self.upper = torch.full((n,), 1e10, device=device)

    def update(self, success: torch.Tensor) -> None:
        self.upper = torch.where(success, torch.minimum(self.upper, self.const), self.upper)
        self.lower = torch.where(success, self.lower, torch.maximum(self.lower, self.const))
        found = self.upper < 1e9
        bisect = (self.lower + self.upper) / 2
        self.const = torch.where(found, bisect, self.const * 10)


class MinimalDistortionAttack(Attack):
    """What C&W and EAD share: an unbounded attack whose threat model is the ℓp ball covering
    the whole [0, 1] box (so only the box and finiteness are checked), a binary search over c,
    and optionally a target per example chosen from the clean logits."""

    norm = "l2"

    def __init__(self, *, steps: int, binary_search_steps: int, initial_const: float,
                 lr: float, kappa: float, targeted: bool, target_mode: str, abort_early: bool,
                 seed: int):
        for what, v in (("steps", steps), ("binary_search_steps", binary_search_steps)):
            if int(v) < 1:
                raise UserError(f"{self.name}: {what} must be >= 1, got {v}")
        if not initial_const > 0 or not lr > 0 or not kappa >= 0:
            raise UserError(f"{self.name}: initial_const and lr must be > 0 and kappa >= 0, got "
                            f"{initial_const}, {lr}, {kappa}")
        if target_mode not in TARGET_MODES:
            raise UserError(f"{self.name}: unknown target_mode {target_mode!r}; "
                            f"expected one of {', '.join(TARGET_MODES)}")
        self.steps = int(steps)
        self.binary_search_steps = int(binary_search_steps)
        self.initial_const = float(initial_const)
        self.lr = float(lr)
        self.kappa = float(kappa)
        self.targeted = bool(targeted)
        self.target_mode = target_mode
        self.abort_early = abort_early
        self.seed = seed
        self.threat = LpThreat(self.norm, math.inf)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        self.threat = box_covering_threat(self.norm, x)
        return super().__call__(model, x, y)

    def _labels(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        """(clean logits, the label the margin is taken against: y, or the chosen target)."""
        with torch.no_grad():
            clean_logits = model(x)
        if not self.targeted:
            return clean_logits, y
        gen = torch.Generator().manual_seed(self.seed)
        return clean_logits, choose_targets(clean_logits, y, self.target_mode, gen)


class CarliniWagnerL2(MinimalDistortionAttack):
    """C&W ℓ2 with the paper's settings as defaults: 1000 Adam steps (lr 0.001), 9 binary-search
    steps over c starting at 0.01, confidence κ = 0. Targeted with ``targeted=True``; the target
    is chosen by ``target_mode`` (Su et al. use the least likely class) and returned in
    ``extras["target"]``."""

    name = "cw-l2"

    def __init__(self, steps: int = 1000, binary_search_steps: int = 9,
                 initial_const: float = 0.01, lr: float = 0.001, kappa: float = 0.0,
                 targeted: bool = False, target_mode: str = "least-likely",
                 abort_early: bool = True, seed: int = 0):
        super().__init__(steps=steps, binary_search_steps=binary_search_steps,
                         initial_const=initial_const, lr=lr, kappa=kappa, targeted=targeted,
                         target_mode=target_mode, abort_early=abort_early, seed=seed)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        n = x.shape[0]
        clean_logits, label = self._labels(model, x, y)
        # atanh(±1) is infinite: shrink slightly so pixels at 0 or 1 stay representable.
        w0 = torch.atanh((2 * x - 1).clamp(-1, 1) * (1 - 1e-6))
        search = ConstSearch(n, self.initial_const, x.device)
        best_l2 = torch.full((n,), math.inf, device=x.device)
        best_adv = x.clone()
        if not self.targeted:
            # Already misclassified: the clean image is the minimal adversarial example.
            done = clean_logits.argmax(1) != y
            best_l2[done] = 0.0
        for _ in range(self.binary_search_steps):
            w = w0.clone().requires_grad_(True)
            opt = torch.optim.Adam([w], lr=self.lr)
            success_now = torch.zeros(n, dtype=torch.bool, device=x.device)
            prev = math.inf
            check_every = max(1, self.steps // 10)
            for step in range(self.steps):
                x_new = (torch.tanh(w) + 1) / 2
                logits = model(x_new)
                l2sq = (x_new - x).flatten(1).pow(2).sum(1)
                f = margin_loss(logits, label, self.targeted).clamp_min(-self.kappa)
                loss = (l2sq + search.const * f).sum()
                # Only w's gradient: loss.backward() would also fill the model's .grad.
                w.grad, = torch.autograd.grad(loss, w)
                opt.step()
                with torch.no_grad():
                    ok = succeeded(logits, label, self.targeted, self.kappa)
                    l2 = l2sq.sqrt()
                    better = ok & (l2 < best_l2)
                    best_l2 = torch.where(better, l2, best_l2)
                    best_adv[better] = x_new[better].detach()
                    success_now |= ok
                if self.abort_early and (step + 1) % check_every == 0:
                    # Stop when the loss has stalled: the last tenth of the steps gained < 0.01%.
                    if loss.item() > prev * 0.9999:
                        break
                    prev = loss.item()
            search.update(success_now)
        success = torch.isfinite(best_l2)
        # Report the distortion actually returned (float rounding of tanh, not the iterate's own).
        with torch.no_grad():
            dist = torch.where(success, lp_norm(best_adv - x, "l2"), best_l2)
        extras = {"distortion": dist}
        if self.targeted:
            extras["target"] = label
        return AttackResult(best_adv, success, extras)
