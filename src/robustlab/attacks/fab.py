"""FAB: the fast adaptive boundary attack (Croce and Hein, "Minimally distorted adversarial
examples with a fast adaptive boundary attack", ICML 2020), for ℓ∞, ℓ2 and ℓ1.

FAB looks for the adversarial example of smallest norm. Each step linearises the classifier at
the current iterate, takes the decision hyperplane of the closest other class (untargeted) or of
the target class (FAB-T), computes the minimal-norm step from the iterate and from the original
point onto that hyperplane *within the [0, 1] box*, and moves to a biased convex combination of the
two (weight α ≤ α_max on the original point). After each success it steps back towards the
original point (factor β), so later steps look for a closer adversarial example.

As in AutoAttack (Croce and Hein, ICML 2020), an example counts as broken under the threat model
only if the smallest perturbation FAB found has norm ≤ ε; restarts and targets run only on the
points not yet broken. ``extras["distortion"]`` holds the smallest norm found per example
(0 for points misclassified to begin with, ``inf`` where none was found), for minimal-distortion
benchmarks; the returned ``x_adv`` is always inside the ε-ball.

Fidelity to the original AutoAttack (``pyautoattack`` 0.2.0, read, not copied): the same
linearisation (the closest class boundary by ``|f_k| / ||∇f_k||_*`` with the dual norm, ℓ1 for
ℓ∞, ℓ2 for ℓ2, ℓ∞ for ℓ1; FAB-T takes ``z_t − z_y`` for target t), the same minimal steps onto
the hyperplane within the box (exact: the original sorts the breakpoints, robustlab takes
Newton steps on the same piecewise-linear function, which land on the same root up to float
rounding; for ℓ1 the greedy fill of the coordinates of largest ``|w_i|``), the same biased
combination with ``α ≤ α_max``, overshoot ``η``, backward step ``β`` and random restarts at
ε/2, and the same acceptance: a point counts only if its own norm,
as computed in the input's dtype, is ≤ ε — no tolerance is added and nothing is projected.
Targets are the classes ranked 2nd, 3rd, ... by the clean logits, as the original's
``sort(...)[:, -k]``, and success is still misclassification. The one difference: the original
raises an index error with more targets than other classes; here the targets stop at the
number of classes minus one.

Early exit (``early_stop``, on in every AutoAttack suite of robustlab, off by default for FAB
on its own): the original runs every example for every step, because FAB minimises the norm; a
threat-bounded evaluation only asks whether some point within ε is adversarial, so an example
leaves the batch as soon as it has one. The broken set is the same (the best norm only shrinks
along a run, and the examples' iterates do not interact), the returned point is the first one
found within ε rather than the smallest, and ``extras["distortion"]`` of a broken example is
that point's norm, an upper bound of the full run's.

Passes: each step of the original linearises (one forward and, for FAB-T, one backward; for FAB
one backward per class) and then checks the new iterate with one more forward. FAB-T here lets
that check also linearise while at most a third of the iterates came out adversarial at the last
step (those must be linearised again after their backward step), so a point that stays robust
costs one forward and one backward per step instead of two forwards and one backward; the
iterates are the same.

``reuse_linearisation`` (off by default and in ``standard``; on in robustlab's ``fast`` suite
in ℓ2) goes one step further, away from the original: the check always linearises, and an
iterate that came out adversarial keeps that hyperplane, ``{z : f + g·(z − x₁) = 0}`` at the
adversarial x₁, for its next step from the backed-off point ``x₀ + β(x₁ − x₀)``, rather than
being linearised again there. Every step then costs one forward and one backward. The
backed-off point is 10% of the perturbation away, so the hyperplane is first-order close to
the one the original would compute. On the quickstart model in ℓ2 (ε = 1.5, 1000 test
images, after APGD-CE-50; ``bench/fast_variants.py``) it was both cheaper and a little
stronger than the exact FAB-T at the same 3 targets × 100 steps: 28.4% robust with its stage
at 31.5 s against 28.8% at 40.9 s.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from ..threat import LpThreat, lp_norm
from .base import Attack, AttackResult

_FAB_NORMS = ("linf", "l2", "l1")


def box_hyperplane_step(x: torch.Tensor, w: torch.Tensor, c: torch.Tensor,
                        norm: str) -> torch.Tensor:
    """The minimal-norm step ``d`` with ``w·d = c`` and ``0 ≤ x + d ≤ 1``, per row.

    ``x`` and ``w`` are ``(n, D)``, ``c`` is ``(n,)``. This is the projection onto the intersection
    of a hyperplane and the box of the FAB paper (Croce and Hein, ICML 2020, Sec. 3.1 and App.),
    solved exactly for ℓ2, ℓ∞ and ℓ1. After flipping the sign of ``w`` so that ``c ≥ 0``,
    the optimal step has the form ``d_i = u_i · min(λ, b_i)`` with ``u = w`` (ℓ2) or
    ``u = sign(w)`` (ℓ∞) and ``b_i`` the value of λ at which coordinate i hits the box; then
    ``w·d(λ) = Σ q_i min(λ, b_i)`` with ``q = w·u ≥ 0`` is piecewise linear and non-decreasing, and
    its breakpoints are the ``b_i``: λ is its root, found by Newton's method from λ = 0
    (:func:`_newton_multiplier`; exact once on the root's segment) or, for a row that has not
    settled after a few steps, from the sorted breakpoints. If the hyperplane misses the box, the
    step goes to the box corner that gets closest to it.

    For ℓ1 the cheapest way to gain ``w·d`` is one coordinate at a time, largest ``|w_i|`` first:
    the coordinates are filled to the box in that order until ``c`` is reached, the last one
    partly (the original's ``projection_l1`` solves the same problem by bisection).
    """
    # In the input's dtype, as the original: every sum below is of non-negative terms, so float32
    # loses nothing that matters, and it runs twice as fast as float64.
    dtype = torch.promote_types(x.dtype, w.dtype)
    x, w, c = x.to(dtype), w.to(dtype), c.to(dtype)
    sign = torch.where(c < 0, -1.0, 1.0).to(x.dtype)
    w = w * sign[:, None]
    c = c.abs()
    cap = torch.where(w > 0, 1.0 - x, x).clamp_min(0.0)  # room to move in the direction of w
    if norm == "l1":
        return _l1_box_step(w, c, cap)
    u = w if norm == "l2" else w.sign()
    q = w * u
    tiny = torch.finfo(dtype).tiny
    b = torch.where(q > 0, cap / u.abs().clamp_min(tiny), torch.zeros_like(cap))
    # A coordinate with no room (b = 0) adds nothing to w·d at any λ.
    q = torch.where(b > 0, q, torch.zeros_like(q))
    feasible = (q * b).sum(1) >= c
    lam, unsettled = _newton_multiplier(q, b, c, feasible)
    if bool(unsettled.any()):
        rows = unsettled.nonzero().flatten()
        lam[rows] = _sorted_multiplier(q[rows], b[rows], c[rows])
    # Beyond the box's reach: every coordinate to its bound, the corner closest to the plane.
    lam = torch.where(feasible, lam, b.amax(1))
    # w'·d = c' is the same constraint as w·d = c, so d needs no flip back.
    return u * torch.minimum(lam[:, None], b)


# Newton steps _newton_multiplier takes before the rows still moving are solved by sorting; on
# FAB-T's steps on the quickstart model it settles in 5-10 (2026-12-06).
_NEWTON_STEPS = 30


def _newton_multiplier(q: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
                       feasible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """λ with ``g(λ) = Σ q_i min(λ, b_i) = c`` per row, by Newton's method from λ = 0, and the rows
    that had not settled after :data:`_NEWTON_STEPS` steps. g is concave, piecewise linear and
    non-decreasing, so each tangent step (right slope ``Σ_{b_i > λ} q_i``) lands at or below the
    root and crosses at least one breakpoint until it reaches the root's segment, where it is
    exact: the root of a sort of all the breakpoints (:func:`_sorted_multiplier`) in a few
    passes over the row, about half the time."""
    tiny = torch.finfo(q.dtype).tiny
    lam = torch.zeros_like(c)
    moving = feasible & (c > 0)
    for _ in range(_NEWTON_STEPS):
        if not bool(moving.any()):
            break
        at = lam[:, None]
        g = (q * torch.minimum(b, at)).sum(1)
        slope = (q * (b > at)).sum(1)
        new = lam + (c - g).clamp_min(0) / slope.clamp_min(tiny)
        moving = moving & (slope > 0) & (new != lam)
        lam = torch.where(moving, new, lam)
    return lam, moving


def _sorted_multiplier(q: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The same λ from one sort of the breakpoints ``b`` (rows whose c the box can reach)."""
    tiny = torch.finfo(q.dtype).tiny
    s, order = b.sort(dim=1)
    qs = q.gather(1, order)
    qss = qs * s
    before = qss.cumsum(1) - qss                        # Σ_{j<k} q_j s_j
    after = qs.flip(1).cumsum(1).flip(1)                # Σ_{j≥k} q_j
    g = before + s * after                              # w·d at λ = s_k
    k = (g >= c[:, None]).to(torch.int8).argmax(1, keepdim=True)  # first breakpoint past c
    return (c - before.gather(1, k)[:, 0]) / after.gather(1, k)[:, 0].clamp_min(tiny)


# _l1_box_step first orders only this many of the largest |w_i| (a top-k instead of a sort of
# all d); the rows whose step needs more coordinates than that are sorted in full.
_L1_PREFIX = 64


def _l1_box_step(w: torch.Tensor, c: torch.Tensor, cap: torch.Tensor) -> torch.Tensor:
    """Minimal-ℓ1 ``d`` with ``w·d = c ≥ 0`` and ``|d_i| ≤ cap_i`` (moving along ``sign(w_i)``)."""
    size = w.abs()
    if w.shape[1] <= 2 * _L1_PREFIX:
        return _l1_box_fill(w, size, c, cap, size.argsort(dim=1, descending=True))
    # Most steps are completed by a few dozen coordinates: order the largest |w_i| only, and
    # the rest only for the rows they do not complete.
    top = size.topk(_L1_PREFIX, dim=1).indices
    short = (size.gather(1, top) * cap.gather(1, top)).sum(1) < c
    out = _l1_box_fill(w, size, c, cap, top)
    if bool(short.any()):
        rows = short.nonzero().flatten()
        out[rows] = _l1_box_fill(w[rows], size[rows], c[rows], cap[rows],
                                 size[rows].argsort(dim=1, descending=True))
    return out


def _l1_box_fill(w: torch.Tensor, size: torch.Tensor, c: torch.Tensor, cap: torch.Tensor,
                 order: torch.Tensor) -> torch.Tensor:
    """Fill the coordinates ``order`` (by decreasing ``size`` = |w_i|) to the box until ``w·d``
    reaches c, the last one partly; if all of them cannot reach it, each goes to its bound (the
    closest corner when ``order`` holds every coordinate)."""
    ws = size.gather(1, order)
    caps = cap.gather(1, order)
    gain = ws * caps                                    # most that coordinate can add to w·d
    done = gain.cumsum(1)
    before = done - gain
    reach = done >= c[:, None]
    feasible = reach.any(1)
    k = reach.to(torch.int8).argmax(1, keepdim=True)    # the coordinate that completes c
    pos = torch.arange(order.shape[1], device=w.device)[None, :]
    tiny = torch.finfo(w.dtype).tiny
    partial = (c[:, None] - before.gather(1, k)) / ws.gather(1, k).clamp_min(tiny)
    amount = torch.where(pos < k, caps, torch.where(pos == k, partial.clamp_min(0.0),
                                                    torch.zeros_like(caps)))
    # If the hyperplane misses the box, every coordinate goes to its bound (the closest corner).
    amount = torch.where(feasible[:, None], amount, caps)
    amount = torch.where(ws > 0, amount, torch.zeros_like(amount))
    d = torch.zeros_like(w).scatter(1, order, amount)
    return d * w.sign()


def _dual_norm(g: torch.Tensor, norm: str) -> torch.Tensor:
    if norm == "linf":
        return g.abs().sum(1)
    if norm == "l1":
        return g.abs().amax(1)
    return g.norm(dim=1)


class FAB(Attack):
    """Untargeted FAB, or FAB-T with ``targeted=True``.

    Defaults are those of AutoAttack's FAB (Croce and Hein, ICML 2020; the AutoAttack code
    release): ``steps=100``, ``restarts=1``, ``alpha_max=0.1``, ``eta=1.05``, ``beta=0.9``; the
    first restart starts at the clean point, later ones at a random point at half of ε. FAB-T
    takes, in turn, the ``n_target_classes`` (AutoAttack: 9) classes with the highest clean logits
    after the top one, each with ``restarts`` restarts (AutoAttack: 1), and — as in AutoAttack —
    its goal is still misclassification: the targets only choose which boundary to cross.
    ``early_stop`` stops attacking an example once it has an adversarial point within ε (module
    docstring); leave it off to get the smallest norms FAB finds. ``reuse_linearisation``
    (FAB-T only; robustlab's ``fast`` suite, not the original's algorithm) keeps the hyperplane
    linearised at an adversarial iterate for the step from the point its backward step moves
    to, instead of linearising there again (module docstring).
    """

    name = "fab"
    # Let FAB-T's check of each iterate also linearise there (see _single_run); off only to test
    # that it changes nothing but the passes.
    fuse_check = True

    def __init__(self, threat: LpThreat, steps: int = 100, restarts: int = 1,
                 alpha_max: float = 0.1, eta: float = 1.05, beta: float = 0.9,
                 targeted: bool = False, n_target_classes: int = 9, early_stop: bool = False,
                 reuse_linearisation: bool = False):
        if threat.norm not in _FAB_NORMS:
            raise UserError(f"FAB is implemented for {' and '.join(_FAB_NORMS)}, "
                            f"not {threat.norm}")
        for key, value in (("steps", steps), ("restarts", restarts),
                           ("n_target_classes", n_target_classes)):
            if int(value) != value or value < 1:
                raise UserError(f"FAB {key} must be a positive integer, got {value!r}")
        if not 0 <= alpha_max <= 1:
            raise UserError(f"FAB alpha_max must lie in [0, 1], got {alpha_max}")
        if not eta >= 1:
            raise UserError(f"FAB eta must be >= 1, got {eta}")
        if not 0 < beta <= 1:
            raise UserError(f"FAB beta must lie in (0, 1], got {beta}")
        self.threat = threat
        self.steps, self.restarts = int(steps), int(restarts)
        self.fab_targeted = bool(targeted)
        self.n_target_classes = int(n_target_classes)
        self.alpha_max, self.eta, self.beta = float(alpha_max), float(eta), float(beta)
        self.early_stop = bool(early_stop)
        if reuse_linearisation and not targeted:
            raise UserError("FAB reuse_linearisation is for FAB-T (targeted=True): untargeted "
                            "FAB picks its hyperplane anew at every step")
        self.reuse_linearisation = bool(reuse_linearisation)
        if self.fab_targeted:
            self.name = "fab-t"

    # -- linearisation -------------------------------------------------------------------------

    def _closest_hyperplane(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                            target: torch.Tensor | None
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(f, g, logits)``: value and input gradient of the logit difference ``z_k − z_y`` whose
        linearised boundary is closest (untargeted), or of ``z_t − z_y`` (targeted), and the
        logits at ``x``."""
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            logits = model(xg)
            z_y = logits.gather(1, y[:, None])[:, 0]
            if target is not None:
                diff = logits.gather(1, target[:, None])[:, 0] - z_y
                (grad,) = torch.autograd.grad(diff.sum(), xg)
                return diff.detach(), grad.flatten(1), logits.detach()
            # One backward per class; keep only the running closest boundary, so memory does not
            # grow with the number of classes.
            best_dist = torch.full_like(z_y, float("inf"))
            best_f = torch.zeros_like(z_y)
            best_g = torch.zeros_like(xg).flatten(1)
            n_classes = logits.shape[1]
            for k in range(n_classes):
                diff = logits[:, k] - z_y
                (grad,) = torch.autograd.grad(diff.sum(), xg, retain_graph=k < n_classes - 1)
                grad = grad.flatten(1)
                dist = diff.detach().abs() / (_dual_norm(grad, self.threat.norm) + 1e-12)
                dist = torch.where(y == k, torch.full_like(dist, float("inf")), dist)
                closer = dist < best_dist
                best_dist = torch.where(closer, dist, best_dist)
                best_f = torch.where(closer, diff.detach(), best_f)
                best_g = torch.where(closer[:, None], grad, best_g)
            return best_f, best_g, logits.detach()

    # -- one run -------------------------------------------------------------------------------

    def _random_start(self, x0: torch.Tensor) -> torch.Tensor:
        """A random point at half of ε from ``x0`` (AutoAttack's FAB restarts)."""
        flat = x0.flatten(1)
        if self.threat.norm == "linf":
            t = torch.rand_like(flat) * 2 - 1
        else:
            t = torch.randn_like(flat)
        t = t / lp_norm(t, self.threat.norm).clamp_min(1e-12)[:, None]
        return (flat + 0.5 * self.threat.eps * t).clamp(0.0, 1.0)

    def _single_run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    target: torch.Tensor | None, random_start: bool
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Smallest-norm adversarial point found per example (``x`` where none) and its norm.
        With ``early_stop`` an example leaves the batch once it has a point within ε."""
        norm, eps = self.threat.norm, self.threat.eps
        shape = x.shape
        x0 = x.flatten(1)
        x1 = self._random_start(x) if random_start else x0.clone()
        best_x = x0.clone()
        best_dist = torch.full((len(x),), float("inf"), device=x.device, dtype=x.dtype)
        ids = torch.arange(len(x), device=x.device)   # rows of the batch still attacked
        yy, tt = y, target
        known = None      # (f, g) at the current x1, when the last check already computed them
        adv_share = 0.0
        for it in range(self.steps):
            if self.early_stop:
                keep = best_dist[ids] > eps
                if not bool(keep.all()):
                    ids, x0, x1, yy = ids[keep], x0[keep], x1[keep], yy[keep]
                    tt = None if tt is None else tt[keep]
                    known = None if known is None else (known[0][keep], known[1][keep])
                    if ids.numel() == 0:
                        break
            rows = (len(ids), *shape[1:])
            if known is None:
                f, g, _ = self._closest_hyperplane(model, x1.view(rows), yy, tt)
            else:
                f, g = known
            # Hyperplane {z : f + g·(z − x1) = 0}; the same one seen from x1 and from x0.
            c1 = -f
            c0 = -f - (g * (x0 - x1)).sum(1)
            steps = box_hyperplane_step(torch.cat([x1, x0]), torch.cat([g, g]),
                                        torch.cat([c1, c0]), norm)
            d1, d0 = steps[: len(ids)], steps[len(ids):]
            a1 = lp_norm(d1, norm).clamp_min(1e-8)
            a0 = lp_norm(d0, norm).clamp_min(1e-8)
            alpha = (a1 / (a1 + a0)).clamp(0.0, self.alpha_max)[:, None]
            x1 = ((x1 + self.eta * d1) * (1 - alpha) + (x0 + self.eta * d0) * alpha).clamp(0, 1)
            # The check of x1 is a forward pass; for FAB-T its one backward costs about two more,
            # so while few points turn adversarial (those must be linearised again after their
            # backward step), the check also linearises and the next step reuses it: one forward
            # fewer per step, the same iterates. FAB's K backward passes never pay for it.
            fused = (self.fuse_check and tt is not None and it < self.steps - 1
                     and (adv_share <= 1 / 3 or self.reuse_linearisation))
            if fused:
                f_next, g_next, logits = self._closest_hyperplane(model, x1.view(rows), yy, tt)
            else:
                with torch.no_grad():
                    logits = model(x1.view(rows))
            is_adv = logits.argmax(1) != yy
            known = (f_next, g_next) if fused else None
            stays = torch.ones_like(is_adv)
            if bool(is_adv.any()):
                dist = lp_norm(x1 - x0, norm)
                better = is_adv & (dist < best_dist[ids])
                best_x[ids[better]] = x1[better]
                best_dist[ids[better]] = dist[better]
                if self.early_stop:
                    # Rows that now have a point within ε leave before the next step: they need
                    # no linearisation and do not count towards the next fusing choice.
                    stays = best_dist[ids] > eps
                # Backward step: look for a closer adversarial point from inside the boundary.
                x_adv_iterate = x1
                x1 = torch.where(is_adv[:, None], x0 + self.beta * (x1 - x0), x1)
                if fused and self.reuse_linearisation:
                    # The hyperplane linearised at the adversarial iterate, seen from the point
                    # the backward step moved to.
                    back = x1 - x_adv_iterate
                    f_next = f_next + torch.where(is_adv, (g_next * back).sum(1), 0.0)
                    known = (f_next, g_next)
                elif fused:
                    idx = (is_adv & stays).nonzero().flatten()
                    f_a, g_a, _ = self._closest_hyperplane(model, x1[idx].view(-1, *shape[1:]),
                                                           yy[idx], tt[idx])
                    f_next, g_next = f_next.clone(), g_next.clone()
                    f_next[idx], g_next[idx] = f_a, g_a
                    known = (f_next, g_next)
            adv_share = float((is_adv & stays).sum()) / max(int(stays.sum()), 1)
        return best_x.view(shape), best_dist

    # -- the attack ----------------------------------------------------------------------------

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        eps = self.threat.eps
        with torch.no_grad():
            logits = model(x)
        best_x = x.clone()
        best_dist = torch.full((len(x),), float("inf"), device=x.device, dtype=x.dtype)
        best_dist[logits.argmax(1) != y] = 0.0
        used_target = torch.full_like(y, -1)

        runs: list[tuple[int, torch.Tensor | None]] = []
        if self.fab_targeted:
            ranked = logits.argsort(dim=1, descending=True)
            n_targets = min(self.n_target_classes, logits.shape[1] - 1)
            runs = [(r, ranked[:, 1 + t]) for t in range(n_targets) for r in range(self.restarts)]
        else:
            runs = [(r, None) for r in range(self.restarts)]

        for restart, target in runs:
            todo = (best_dist > eps).nonzero().flatten()  # still robust in the threat model
            if len(todo) == 0:
                break
            t = target[todo] if target is not None else None
            adv, dist = self._single_run(model, x[todo], y[todo], t, random_start=restart > 0)
            better = dist < best_dist[todo]
            idx = todo[better]
            best_x[idx] = adv[better]
            best_dist[idx] = dist[better]
            if t is not None:
                used_target[idx] = t[better]

        # As in AutoAttack, a point counts only if FAB's own adversarial example lies within ε,
        # with the original's test (norm ≤ ε, no tolerance); projecting a farther one into the
        # ball would make x_adv disagree with the distortion reported.
        within = best_dist <= eps
        candidate = torch.where(_per_example(within, x), best_x, x)
        with torch.no_grad():
            fooled = model(candidate).argmax(1) != y
        # Where the candidate fails, x_adv is x, itself correctly classified (else best_dist = 0
        # and the candidate is x), so this forward pass decides success for every example.
        x_adv = torch.where(_per_example(fooled, x), candidate, x)
        extras = {"distortion": best_dist}
        if self.fab_targeted:
            extras["target"] = used_target
        return AttackResult(x_adv.detach(), fooled, extras)


def _per_example(flag: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return flag.view(-1, *([1] * (like.dim() - 1)))


class FABT(FAB):
    """FAB-T as in AutoAttack's standard version (Croce and Hein, ICML 2020): FAB with
    ``targeted=True`` over the ``n_target_classes=9`` most likely other classes, 100 steps and
    1 restart per target, each target run only on the points still robust."""

    name = "fab-t"

    def __init__(self, threat: LpThreat, steps: int = 100, restarts: int = 1,
                 alpha_max: float = 0.1, eta: float = 1.05, beta: float = 0.9,
                 n_target_classes: int = 9, early_stop: bool = False,
                 reuse_linearisation: bool = False):
        super().__init__(threat, steps=steps, restarts=restarts, alpha_max=alpha_max, eta=eta,
                         beta=beta, targeted=True, n_target_classes=n_target_classes,
                         early_stop=early_stop, reuse_linearisation=reuse_linearisation)


# The name the attack registry looks up.
FABTargeted = FABT
