"""Square Attack (Andriushchenko, Croce, Flammarion and Hein, "Square Attack: a query-efficient
black-box adversarial attack via random search", ECCV 2020), for ℓ∞ and ℓ2.

A score-based random search: it sees only the model's outputs (every forward pass runs under
``torch.no_grad``; no gradient is ever taken), so it cannot be fooled by masked or obfuscated
gradients — which is why AutoAttack runs it last. Each query changes the perturbation inside one
random square window and keeps the change if the margin loss ``z_y − max_{j≠y} z_j`` decreases;
the window's area is a fraction ``p`` of the image that halves on a fixed schedule.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import UserError
from ..threat import LpThreat, lp_norm
from .base import Attack, AttackResult

_SQUARE_NORMS = ("linf", "l2")
# Iterations (for a 10 000-query budget) after which p halves (Andriushchenko et al., 2020, Sec. 4
# and their code; AutoAttack uses the same schedule).
_P_SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
_LOSSES = ("margin", "ce")


def _margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``z_y − max_{j≠y} z_j``: negative exactly when the example is misclassified."""
    z_y = logits.gather(1, y[:, None])[:, 0]
    others = logits.scatter(1, y[:, None], float("-inf"))
    return z_y - others.amax(1)


def _random_sign(shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    return torch.randint(0, 2, shape, device=like.device).to(like.dtype) * 2 - 1


def _bump(a: int, b: int, device, dtype) -> torch.Tensor:
    """The paper's pseudo-Gaussian ``a × b`` bump: concentric rectangles around the centre, ring
    k weighted 1/(k+1)² and summed inwards, normalised to unit ℓ2 norm."""
    if a == 0 or b == 0:
        return torch.zeros(a, b, device=device, dtype=dtype)
    rings = max(a // 2 + 1, b // 2 + 1)
    weights = 1.0 / torch.arange(1, rings + 1, device=device, dtype=dtype) ** 2
    tail = weights.flip(0).cumsum(0).flip(0)  # tail[r] = Σ_{k≥r} 1/(k+1)²
    ri = (torch.arange(a, device=device) - a // 2).abs()
    rj = (torch.arange(b, device=device) - b // 2).abs()
    ring = torch.maximum(ri[:, None], rj[None, :])
    out = tail[ring]
    return out / out.norm()


def _double_bump(s: int, device, dtype) -> torch.Tensor:
    """Two bumps of opposite sign in the two halves of an ``s × s`` square, randomly
    transposed, unit ℓ2 norm: the ℓ2 update of the paper (Andriushchenko et al., 2020, Alg. 3)."""
    top = _bump(s // 2, s, device, dtype)
    bottom = -_bump(s - s // 2, s, device, dtype)
    out = torch.cat([top, bottom], 0)
    out = out / out.norm()
    if bool(torch.rand(()) > 0.5):
        out = out.t()
    return out


class Square(Attack):
    """Untargeted Square Attack, by default with the margin loss.

    Defaults are AutoAttack's standard settings (Croce and Hein, ICML 2020): ``n_queries=5000``,
    ``p_init=0.8`` for both ℓ∞ and ℓ2, ``restarts=1``; the schedule of ``p`` halves after
    iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000, rescaled from 10 000 queries to
    the budget (Andriushchenko et al., ECCV 2020). The initialisation is vertical stripes of ±ε
    (ℓ∞) or a grid of pseudo-Gaussian squares (ℓ2), as in the paper.

    ``n_queries`` bounds the model evaluations per example and restart, the initial point
    included; the clean prediction that selects the points to attack is not counted. An example
    stops being queried as soon as it is misclassified. ``extras["queries"]`` holds the queries
    spent per example (summed over restarts), ``extras["mean_queries"]`` their mean over the
    successful examples that needed at least one query (NaN if none).

    ``loss`` decides which proposal is kept: ``"margin"`` (the paper's and AutoAttack's choice)
    or ``"ce"`` (minus the cross-entropy, the paper's alternative); either way an example stops
    when its margin turns negative. ``steps``, accepted so every attack takes the same keywords,
    is an alias of ``n_queries`` and wins over it when given.
    """

    name = "square"

    def __init__(self, threat: LpThreat, n_queries: int = 5000, p_init: float = 0.8,
                 restarts: int = 1, loss: str = "margin", rescale_schedule: bool = True,
                 steps: int | None = None):
        if steps is not None:
            n_queries = steps
        if loss not in _LOSSES:
            raise UserError(f"Square Attack loss must be one of {', '.join(_LOSSES)}, "
                            f"got {loss!r}")
        self.loss = loss
        if threat.norm not in _SQUARE_NORMS:
            raise UserError(f"Square Attack is implemented for {' and '.join(_SQUARE_NORMS)}, "
                            f"not {threat.norm}")
        for key, value in (("n_queries", n_queries), ("restarts", restarts)):
            if int(value) != value or value < 1:
                raise UserError(f"Square Attack {key} must be a positive integer, got {value!r}")
        if not 0 < p_init <= 1:
            raise UserError(f"Square Attack p_init must lie in (0, 1], got {p_init}")
        self.threat = threat
        self.n_queries, self.restarts = int(n_queries), int(restarts)
        self.p_init = float(p_init)
        self.rescale_schedule = bool(rescale_schedule)

    def p_at(self, iteration: int) -> float:
        """The fraction of pixels changed at ``iteration`` (piecewise-constant schedule)."""
        it = int(iteration / self.n_queries * 10000) if self.rescale_schedule else iteration
        halvings = sum(it > t for t in _P_SCHEDULE)
        return self.p_init / 2**halvings

    # -- ℓ∞ ------------------------------------------------------------------------------------

    def _init_linf(self, x: torch.Tensor) -> torch.Tensor:
        n, c, _, w = x.shape
        return self.threat.project(x + self.threat.eps * _random_sign((n, c, 1, w), x), x)

    def _propose_linf(self, x: torch.Tensor, x_best: torch.Tensor, p: float) -> torch.Tensor:
        n, c, h, w = x.shape
        s = max(int(round(math.sqrt(p * c * h * w / c))), 1)
        s = min(s, min(h, w) - 1) if min(h, w) > 1 else 1
        vh = int(torch.randint(0, h - s + 1, ()))
        vw = int(torch.randint(0, w - s + 1, ()))
        win = (slice(None), slice(None), slice(vh, vh + s), slice(vw, vw + s))
        eps = self.threat.eps
        new = eps * _random_sign((n, c, 1, 1), x)
        # Redraw the signs where the window would not change at all (wasted query).
        for _ in range(10):
            cand = (x[win] + new).clamp(0, 1)
            same = ((cand - x_best[win]).abs() < 1e-7).flatten(1).all(1)
            if not bool(same.any()):
                break
            new = torch.where(same[:, None, None, None], eps * _random_sign((n, c, 1, 1), x), new)
        delta = x_best - x
        delta[win] = new
        return self.threat.project(x + delta, x)

    # -- ℓ2 ------------------------------------------------------------------------------------

    def _init_l2(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        s = max(min(h, w) // 5, 1)
        delta = torch.zeros_like(x)
        start_h, start_w = (h - 5 * s) // 2, (w - 5 * s) // 2
        bump = _double_bump(s, x.device, x.dtype)
        for i in range(max(start_h, 0), h - s + 1, s):
            for j in range(max(start_w, 0), w - s + 1, s):
                delta[:, :, i:i + s, j:j + s] += bump * _random_sign((n, c, 1, 1), x)
        delta = delta / lp_norm(delta, "l2").clamp_min(1e-12).view(-1, 1, 1, 1)
        return self.threat.project(x + self.threat.eps * delta, x)

    def _propose_l2(self, x: torch.Tensor, x_best: torch.Tensor, p: float) -> torch.Tensor:
        n, c, h, w = x.shape
        eps = self.threat.eps
        s = max(int(round(math.sqrt(p * h * w))), 3)
        if s % 2 == 0:
            s += 1
        s = min(s, h, w)
        vh, vw = (int(torch.randint(0, h - s + 1, ())), int(torch.randint(0, w - s + 1, ())))
        vh2, vw2 = (int(torch.randint(0, h - s + 1, ())), int(torch.randint(0, w - s + 1, ())))
        win = (slice(None), slice(None), slice(vh, vh + s), slice(vw, vw + s))
        win2 = (slice(None), slice(None), slice(vh2, vh2 + s), slice(vw2, vw2 + s))
        delta = x_best - x
        # Mass of both windows, per channel, is what the new window may redistribute.
        both = torch.zeros_like(x)
        both[win] = 1.0
        both[win2] = 1.0
        norm_both = (delta * both).pow(2).sum((2, 3), keepdim=True).sqrt()
        norm_win = delta[win].pow(2).sum((2, 3), keepdim=True).sqrt()
        norm_img = lp_norm(delta, "l2").view(-1, 1, 1, 1)
        new = _double_bump(s, x.device, x.dtype) * _random_sign((n, c, 1, 1), x)
        new = new + delta[win] / (norm_win + 1e-12)
        budget = ((eps**2 - norm_img**2).clamp_min(0) / c + norm_both**2).sqrt()
        new = new / new.pow(2).sum((2, 3), keepdim=True).sqrt().clamp_min(1e-12) * budget
        delta[win2] = 0.0
        delta[win] = new
        delta = eps * delta / lp_norm(delta, "l2").clamp_min(1e-12).view(-1, 1, 1, 1)
        return self.threat.project(x + delta, x)

    # -- the attack ----------------------------------------------------------------------------

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The quantity the random search lowers, per example."""
        if self.loss == "margin":
            return _margin(logits, y)
        return -nn.functional.cross_entropy(logits, y, reduction="none")

    def _single_run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Random search on ``x``: the best point per example, its margin, queries spent."""
        linf = self.threat.norm == "linf"
        x_best = self._init_linf(x) if linf else self._init_l2(x)
        logits = model(x_best)
        margin, loss = _margin(logits, y), self._loss(logits, y)
        queries = torch.ones(len(x), dtype=torch.long, device=x.device)
        for i in range(1, self.n_queries):
            active = (margin >= 0).nonzero().flatten()
            if len(active) == 0:
                break
            xa, xb, ya = x[active], x_best[active], y[active]
            propose = self._propose_linf if linf else self._propose_l2
            x_new = propose(xa, xb, self.p_at(i))
            logits = model(x_new)
            queries[active] += 1
            l_new = self._loss(logits, ya)
            better = l_new < loss[active]
            idx = active[better]
            x_best[idx] = x_new[better]
            loss[idx] = l_new[better]
            margin[idx] = _margin(logits, ya)[better]
        return x_best, margin, queries

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        if x.dim() != 4:
            raise UserError(f"Square Attack needs NCHW images, got a batch of shape "
                            f"{tuple(x.shape)}")
        with torch.no_grad():
            x_adv = x.clone()
            fooled = model(x).argmax(1) != y
            queries = torch.zeros(len(x), dtype=torch.long, device=x.device)
            for _ in range(self.restarts):
                todo = (~fooled).nonzero().flatten()
                if len(todo) == 0:
                    break
                xb, margin, q = self._single_run(model, x[todo], y[todo])
                queries[todo] += q
                won = margin < 0
                x_adv[todo[won]] = xb[won]
                fooled[todo[won]] = True
            # Success is decided by a fresh forward pass on exactly the points returned.
            success = model(x_adv).argmax(1) != y
        spent = success & (queries > 0)
        mean_q = float(queries[spent].double().mean()) if bool(spent.any()) else float("nan")
        return AttackResult(x_adv, success, {"queries": queries, "mean_queries": mean_q})


# The name the attack registry looks up.
SquareAttack = Square
