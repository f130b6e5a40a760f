"""Auto-PGD (Croce & Hein, ICML 2020): PGD with momentum and a step size that halves itself at
checkpoints when progress stalls, so it needs no step-size tuning. APGD-CE and APGD-DLR attack
the label; APGD-T runs the targeted DLR loss once per likely target class.

Both stop per example at the first misclassifying iterate and keep it; an example never broken
ends at the highest-loss point found. Restarts and targets run only on points still robust.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from ..threat import LpThreat
from .base import Attack, AttackResult
from .losses import get_loss
from .pgd import L1_SPARSITY, input_gradient, is_success, random_start, steepest_step


def apgd_checkpoints(steps: int) -> list[int]:
    """Iteration counts after which APGD checks its step size: p_0 = 0, p_1 = 0.22,
    p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06) (Croce & Hein 2020, Sec. 3.2), in the integer
    form of the authors' code (each gap at least one iteration)."""
    first = max(int(0.22 * steps), 1)
    decrease, minimum = max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    points, gap, at = [], first, first
    while at <= steps:
        points.append(at)
        gap = max(gap - decrease, minimum)
        at += gap
    return points


def autoattack_start(x: torch.Tensor, threat: LpThreat) -> torch.Tensor:
    """APGD's random start (Croce & Hein's code): a random point on the surface of the ℓ∞ or
    ℓ2 ball, clipped to the box; for ℓ1 a random sparse point inside the ball."""
    if threat.norm == "l1":
        return random_start(x, threat)
    t = torch.randn_like(x) if threat.norm == "l2" else 2 * torch.rand_like(x) - 1
    flat = t.flatten(1)
    size = flat.norm(dim=1) if threat.norm == "l2" else flat.abs().amax(dim=1)
    t = t / size.clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))
    return threat.project(x + threat.eps * t, x)


class APGD(Attack):
    """Untargeted APGD (Croce & Hein, ICML 2020, Algorithm 1).

    Defaults from the paper: ``steps`` = 100, initial step 2ε (ℓ∞ and ℓ2; ε for ℓ1, as in the
    authors' code), momentum ``alpha`` = 0.75, ``rho`` = 0.75. At each checkpoint the step of an
    example halves if the loss increased on at most a ``rho`` fraction of the steps since the
    last checkpoint (the authors' code uses ≤, the paper <), or if its step was not halved and
    its best loss did not improve since the last checkpoint; a halved example restarts from its
    best point. ``loss`` is ``ce`` (APGD-CE) or ``dlr`` (APGD-DLR); ``cw`` also works.

    ``random_start`` (default on, as in AutoAttack) starts each run from a random point on the
    surface of the ball; off, every run starts from the clean input, which is deterministic and on
    undefended models often a little stronger, but is not AutoAttack's setting.
    """

    name = "apgd-ce"

    def __init__(self, threat: LpThreat, steps: int = 100, restarts: int = 1, loss: str = "ce",
                 rho: float = 0.75, alpha: float = 0.75, l1_sparsity: float = L1_SPARSITY,
                 random_start: bool = True):
        if steps < 1 or restarts < 1:
            raise UserError(f"apgd: steps and restarts must be >= 1, got {steps} and {restarts}")
        if not 0 < l1_sparsity <= 1:
            raise UserError(f"apgd: l1_sparsity must be in (0, 1], got {l1_sparsity}")
        self.threat = threat
        self.random_start = random_start
        self.steps, self.restarts = int(steps), int(restarts)
        self.loss, self.rho, self.alpha = loss, rho, alpha
        self.l1_sparsity = l1_sparsity
        self.name = f"apgd-{loss}"
        self._loss_fn = get_loss(loss)

    def _initial_step(self) -> float:
        return (1.0 if self.threat.norm == "l1" else 2.0) * self.threat.eps

    def _single_run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn,
                    target: torch.Tensor | None = None):
        """One APGD run. Returns (points, best loss, success); a successful example's point is
        its first misclassifying iterate, another's its highest-loss iterate."""
        threat, n = self.threat, len(x)
        args = (y,) if target is None else (y, target)

        def sub(i):
            return tuple(a[i] for a in args)

        x_adv = autoattack_start(x, threat) if self.random_start else x.clone()
        logits, loss, grad = input_gradient(model, x_adv, loss_fn, *args)
        done = is_success(logits, y)
        out = x_adv.clone()
        x_best, loss_best, grad_best = x_adv.clone(), loss.clone(), grad.clone()
        x_prev, loss_prev = x_adv.clone(), loss.clone()
        step = torch.full((n,), self._initial_step(), device=x.device, dtype=x.dtype)
        increases = torch.zeros(n, device=x.device)
        loss_at_check = loss_best.clone()
        halved_at_check = torch.ones(n, dtype=torch.bool, device=x.device)
        checkpoints, last_check = set(apgd_checkpoints(self.steps)), 0

        for i in range(self.steps):
            idx = (~done).nonzero().flatten()
            if idx.numel() == 0:
                break
            xa, xo = x_adv[idx], x[idx]
            z = threat.project(xa + steepest_step(grad[idx], threat.norm, step[idx], xa,
                                                  self.l1_sparsity), xo)
            a = 1.0 if i == 0 else self.alpha
            x_new = threat.project(xa + a * (z - xa) + (1 - a) * (xa - x_prev[idx]), xo)
            x_prev[idx], x_adv[idx] = xa, x_new
            if self.train_mode:
                # Train-mode batch norm couples the examples and fails on a batch of one: the
                # whole batch goes through, finished examples standing still.
                x_all = x_adv.clone()
                logits, lo, g = (t[idx] for t in input_gradient(model, x_all, loss_fn, *args))
            else:
                logits, lo, g = input_gradient(model, x_new, loss_fn, *sub(idx))
            grad[idx] = g
            ok = is_success(logits, y[idx])
            out[idx[ok]], done[idx[ok]] = x_new[ok], True
            increases[idx] += (lo > loss_prev[idx]).float()
            loss_prev[idx] = lo
            up = lo > loss_best[idx]
            x_best[idx[up]], loss_best[idx[up]], grad_best[idx[up]] = x_new[up], lo[up], g[up]

            if i + 1 in checkpoints:
                k = i + 1 - last_check
                last_check = i + 1
                stalled = increases[idx] <= self.rho * k
                no_gain = ~halved_at_check[idx] & (loss_at_check[idx] >= loss_best[idx])
                halve = stalled | no_gain
                halved_at_check[idx], loss_at_check[idx] = halve, loss_best[idx]
                increases.zero_()
                h = idx[halve]
                step[h] /= 2
                x_adv[h], grad[h], loss_prev[h] = x_best[h], grad_best[h], loss_best[h]

        out[~done] = x_best[~done]
        return out, loss_best, done

    def _restarts(self, model, x, y, success, best_x, best_loss, loss_fn, target=None):
        """Run ``restarts`` APGD runs on the still-robust examples, updating in place."""
        for _ in range(self.restarts):
            if bool(success.all()):
                return
            todo = (torch.arange(len(x), device=x.device) if self.train_mode
                    else (~success).nonzero().flatten())
            xa, loss, ok = self._single_run(model, x[todo], y[todo], loss_fn,
                                            None if target is None else target[todo])
            better = ~success[todo] & (ok | (loss > best_loss[todo]))
            sel = todo[better]
            best_x[sel], best_loss[sel], success[sel] = xa[better], loss[better], ok[better]

    def _start(self, model, x, y):
        with torch.no_grad():
            logits = model(x)
        best_loss = torch.full((len(x),), float("-inf"), device=x.device)
        return logits, x.clone(), is_success(logits, y), best_loss

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        _, best_x, success, best_loss = self._start(model, x, y)
        if self.threat.eps > 0:
            self._restarts(model, x, y, success, best_x, best_loss, self._loss_fn)
        return AttackResult(best_x, self._final_success(model, best_x, y))

    @staticmethod
    def _final_success(model, x_adv, y):
        with torch.no_grad():
            return is_success(model(x_adv), y)


class APGDT(APGD):
    """APGD-T (Croce & Hein, ICML 2020): APGD on the targeted DLR loss, once for each of the
    ``n_target_classes`` most likely other classes of the clean input (9 in AutoAttack's
    standard version), each run only on the points still robust. Its goal is misclassification:
    ``success`` means pred ≠ y, and ``extras["target"]`` holds the target class that broke each
    example (−1 where none did)."""

    name = "apgd-t"

    def __init__(self, threat: LpThreat, steps: int = 100, n_target_classes: int = 9,
                 restarts: int = 1, loss: str = "dlr", rho: float = 0.75, alpha: float = 0.75,
                 l1_sparsity: float = L1_SPARSITY, random_start: bool = True):
        super().__init__(threat, steps=steps, restarts=restarts, loss=loss, rho=rho,
                         alpha=alpha, l1_sparsity=l1_sparsity, random_start=random_start)
        if n_target_classes < 1:
            raise UserError(f"apgd-t: n_target_classes must be >= 1, got {n_target_classes}")
        self.n_target_classes = int(n_target_classes)
        self.name = "apgd-t"
        self._loss_fn = get_loss(loss, targeted=True)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        logits, best_x, success, best_loss = self._start(model, x, y)
        used = torch.full_like(y, -1)
        if self.threat.eps > 0:
            ranked = logits.scatter(1, y[:, None], float("-inf")).argsort(1, descending=True)
            for r in range(min(self.n_target_classes, logits.shape[1] - 1)):
                target = ranked[:, r]
                before = success.clone()
                # Every target starts afresh: the best loss of another target is not comparable.
                best_loss[~success] = float("-inf")
                self._restarts(model, x, y, success, best_x, best_loss, self._loss_fn, target)
                used[success & ~before] = target[success & ~before]
        return AttackResult(best_x, self._final_success(model, best_x, y), {"target": used})


class APGDDLR(APGD):
    """APGD on the DLR loss (APGD-DLR in AutoAttack, Croce & Hein 2020)."""

    name = "apgd-dlr"

    def __init__(self, threat: LpThreat, steps: int = 100, restarts: int = 1, loss: str = "dlr",
                 rho: float = 0.75, alpha: float = 0.75, l1_sparsity: float = L1_SPARSITY,
                 random_start: bool = True):
        super().__init__(threat, steps=steps, restarts=restarts, loss=loss, rho=rho,
                         alpha=alpha, l1_sparsity=l1_sparsity, random_start=random_start)
