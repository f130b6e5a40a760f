"""Threat models: the set of inputs an adversary may choose, as data.

Every ε is on the [0, 1] pixel scale. An attack keeps its iterates inside the threat model with
:meth:`LpThreat.project`; every adversarial example that leaves an attack goes through
:meth:`LpThreat.check`, which raises :class:`~robustlab.errors.ThreatViolation` rather than
silently clipping, because a clip would hide an attack bug behind a plausible number.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from .errors import ThreatViolation, UserError

NORMS = ("linf", "l2", "l1")
_ALIASES = {"inf": "linf", "Linf": "linf", "L2": "l2", "L1": "l1", "linfty": "linf"}

# float32 rounding in x + δ, clamping and projection leaves norms a few ulps above ε.
RTOL = 1e-5
ATOL = 1e-6


def lp_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-example norm of a batch of perturbations."""
    flat = delta.flatten(1)
    if norm == "linf":
        return flat.abs().amax(dim=1)
    if norm == "l2":
        return flat.norm(p=2, dim=1)
    if norm == "l1":
        return flat.abs().sum(dim=1)
    raise UserError(f"unknown norm {norm!r}; expected one of {', '.join(NORMS)}")


def project_l1_ball(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """Euclidean projection of each example onto the ℓ1 ball (Duchi et al., ICML 2008)."""
    flat = delta.flatten(1)
    n = flat.shape[1]
    absd = flat.abs()
    inside = absd.sum(1) <= eps
    if bool(inside.all()):
        return delta
    mu, _ = absd.sort(dim=1, descending=True)
    cums = mu.cumsum(1)
    ks = torch.arange(1, n + 1, device=delta.device, dtype=delta.dtype)
    cond = mu - (cums - eps) / ks > 0
    rho = (cond * ks).argmax(1, keepdim=True)  # last index where cond holds
    theta = ((cums.gather(1, rho) - eps) / (rho + 1).to(delta.dtype)).clamp_min(0)
    proj = flat.sign() * (absd - theta).clamp_min(0)
    proj = torch.where(inside[:, None], flat, proj)
    return proj.view_as(delta)



def project_l1_box(delta: torch.Tensor, x: torch.Tensor, eps: float | torch.Tensor
                   ) -> torch.Tensor:
    """Exact Euclidean projection of each perturbation onto {δ : ‖δ‖₁ ≤ ε, 0 ≤ x + δ ≤ 1}, the
    set l1-APGD steps in (Croce & Hein, "Mind the box", ICML 2021, Sec. 3; their code solves the
    same problem by a bisection over the sorted breakpoints).

    Minimising ‖δ − v‖² under both constraints separates per coordinate once the multiplier λ ≥ 0
    of the ℓ1 constraint is known: δᵢ = sign(vᵢ)·clip(|vᵢ| − λ, 0, bᵢ), where bᵢ is the room the
    box leaves in the direction of vᵢ (1 − xᵢ or xᵢ). g(λ) = Σ clip(|vᵢ| − λ, 0, bᵢ) is continuous,
    piecewise linear and non-increasing with breakpoints |vᵢ| and |vᵢ| − bᵢ; λ = 0 if g(0) ≤ ε,
    else the root of g(λ) = ε, found exactly from one sort of the 2d breakpoints and a cumulative
    sum (no iteration). Clipping after a ball projection, by contrast, can end strictly inside
    the ball and so waste budget. ``eps`` is one radius or one per example."""
    shape = delta.shape
    v = delta.flatten(1)
    xf = x.expand_as(delta).flatten(1).to(v.dtype)
    a = v.abs()
    room = torch.where(v > 0, 1 - xf, xf).clamp_min(0)
    a_box = torch.minimum(a, room)  # λ = 0: the box clip alone
    radius = torch.as_tensor(eps, dtype=v.dtype, device=v.device).expand(len(v))
    need = a_box.sum(1) > radius
    if not bool(need.any()):
        return (v.sign() * a_box).view(shape)
    idx = need.nonzero().flatten()
    rad = radius[idx, None]
    av, bv = a[idx], room[idx]
    lam = _l1_box_multiplier(*_nonzero_columns(av, bv), rad)
    out = v.sign() * a_box
    mag = (av - lam).clamp_min(0).minimum(bv)
    # One rounding can leave the sum a few ulps above ε; shrinking towards 0 stays in the box.
    total = mag.sum(1, keepdim=True)
    mag = mag * torch.where(total > rad, rad / total.clamp_min(1e-30), 1.0)
    out[idx] = v[idx].sign() * mag
    return out.view(shape)


def _nonzero_columns(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``a`` and ``b`` restricted to the columns where ``a > 0``, packed to the left of
    ``(n, m)`` arrays (m the most any row has, zeros after a row's own), when m is at most half
    of the width; else unchanged. A coordinate with ``a = 0`` adds nothing to g(λ) for λ ≥ 0,
    and l1-APGD's points and sparse steps leave most of the coordinates at 0, so the sort in
    :func:`_l1_box_multiplier` (most of a projection's cost) then runs on a fraction of 2d."""
    nz = a > 0
    m = int(nz.sum(1).max())
    if m == 0 or 2 * m > a.shape[1]:
        return a, b
    # Each non-zero goes to its rank among its row's non-zeros; the zeros to a spare column m.
    slot = torch.where(nz, nz.cumsum(1) - 1, m)
    packed = [t.new_zeros(len(t), m + 1).scatter_(1, slot, t)[:, :m] for t in (a, b)]
    return packed[0], packed[1]


def _l1_box_multiplier(av: torch.Tensor, bv: torch.Tensor, rad: torch.Tensor) -> torch.Tensor:
    """The multiplier λ ≥ 0 with Σ clip(aᵢ − λ, 0, bᵢ) = ``rad`` per row (the sum at λ = 0
    exceeds it), from one sort of the 2d breakpoints (:func:`project_l1_box`)."""
    n, d = av.shape
    # Breakpoints in decreasing order; passing |vᵢ| downwards activates coordinate i (slope −1
    # more), passing |vᵢ| − bᵢ saturates it at the box (slope +1).
    points = torch.cat([av, av - bv], 1)
    events = torch.cat([torch.ones_like(av), -torch.ones_like(av)], 1)
    q, order = points.sort(1, descending=True)
    active = events.gather(1, order).cumsum(1)            # slope magnitude on (q[k+1], q[k])
    gaps = q[:, :-1] - q[:, 1:]
    g = torch.cat([torch.zeros_like(q[:, :1]), (active[:, :-1] * gaps).cumsum(1)], 1)  # g(q[k])
    # The segment holding the root: the last breakpoint with g(q[k]) < ε (g(q[0]) = 0 < ε).
    k = ((g < rad).sum(1, keepdim=True) - 1).clamp(0, 2 * d - 2)
    slope = active.gather(1, k).clamp_min(1)
    return (q.gather(1, k) - (rad - g.gather(1, k)) / slope).clamp_min(0)


@dataclass(frozen=True)
class LpThreat:
    """An ℓp ball of radius ``eps`` around each clean image, intersected with the [0, 1] box."""

    norm: str
    eps: float

    def __post_init__(self) -> None:
        norm = _ALIASES.get(self.norm, self.norm)
        object.__setattr__(self, "norm", norm)
        if norm not in NORMS:
            raise UserError(f"unknown norm {self.norm!r}; expected one of {', '.join(NORMS)}")
        eps = float(self.eps)
        object.__setattr__(self, "eps", eps)
        if not eps >= 0:
            raise UserError(f"eps must be >= 0, got {self.eps}")
        if norm == "linf" and eps > 1:
            raise UserError(f"an linf eps above 1 leaves the [0, 1] pixel range, got {eps}")

    def norms(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return lp_norm(x_adv - x, self.norm)

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """A point of the threat model near ``x_adv``: for ℓ∞ the exact projection; for ℓ2 the
        ball's projection then the box clip (as AutoAttack does); for ℓ1 the exact projection
        onto the intersection of ball and box (:func:`project_l1_box`)."""
        delta = x_adv - x
        if self.norm == "linf":
            delta = delta.clamp(-self.eps, self.eps)
        elif self.norm == "l2":
            n = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
            factor = (self.eps / n).clamp(max=1.0)
            delta = delta * factor.view(-1, *([1] * (delta.dim() - 1)))
        else:
            budget = self.l1_inner_radius(delta[0].numel(), delta.dtype)
            return (x + project_l1_box(delta, x, budget)).clamp(0.0, 1.0)
        return (x + delta).clamp(0.0, 1.0)

    def l1_inner_radius(self, numel: int, dtype: torch.dtype) -> float:
        """The ℓ1 radius :meth:`project` aims at, a hair inside ε: storing x + δ rounds every
        coordinate, which would otherwise leave ‖x_adv − x‖₁ up to ~√d ulps above ε (measured:
        2e-6 at d = 784, ε = 12 in float32). The slack costs a few millionths of the budget."""
        slack = 8 * torch.finfo(dtype).eps * (self.eps + numel ** 0.5)
        return max(self.eps - slack, 0.0)

    def contains(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-example flag: inside the ball (to float tolerance), inside [0, 1], finite."""
        n = self.norms(x_adv, x)
        ok = n <= self.eps * (1 + RTOL) + ATOL
        flat = x_adv.flatten(1)
        ok &= (flat >= 0).all(1) & (flat <= 1).all(1) & torch.isfinite(flat).all(1)
        return ok

    def check(self, x_adv: torch.Tensor, x: torch.Tensor, source: str = "attack") -> None:
        """Raise :class:`ThreatViolation` if any example leaves the threat model."""
        check_batch(self, x_adv, x, source, lambda i: (
            f"{self.norm} norm {float(self.norms(x_adv[i:i + 1], x[i:i + 1])[0]):.6g} and "
            f"{pixel_range(x_adv[i])}"))

    def describe(self) -> str:
        return f"{self.norm} eps={self.eps:g}"

    def to_dict(self) -> dict:
        return {"kind": "lp", **asdict(self)}


def pixel_range(image: torch.Tensor) -> str:
    return f"pixel range [{float(image.min()):.4g}, {float(image.max()):.4g}]"


def check_batch(threat, x_adv: torch.Tensor, x: torch.Tensor, source: str,
                explain: Callable[[int], str]) -> None:
    """The one check every threat model makes of an attack's output: the batch's shape, then
    ``threat.contains`` per example; a violation raises :class:`ThreatViolation` naming the
    source, how many examples failed, and ``explain(i)`` of the first one."""
    if x_adv.shape != x.shape:
        raise ThreatViolation(f"{source}: adversarial batch has shape {tuple(x_adv.shape)}, "
                              f"clean batch {tuple(x.shape)}")
    with torch.no_grad():
        ok = threat.contains(x_adv.detach(), x.detach())
        if not bool(ok.all()):
            bad = (~ok).nonzero().flatten()
            i = int(bad[0])
            raise ThreatViolation(f"{source}: {bad.numel()} example(s) leave the "
                                  f"{threat.describe()} threat model; example {i} has "
                                  f"{explain(i)}")


def make_threat(norm: str, eps: float) -> LpThreat:
    return LpThreat(norm=norm, eps=eps)
