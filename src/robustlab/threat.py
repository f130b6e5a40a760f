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
        """A point of the threat model near ``x_adv`` (the exact projection for ℓ∞ and ℓ2; for
        ℓ1 the projection onto the ball followed by the box clip, which can only shrink δ)."""
        delta = x_adv - x
        if self.norm == "linf":
            delta = delta.clamp(-self.eps, self.eps)
        elif self.norm == "l2":
            n = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
            factor = (self.eps / n).clamp(max=1.0)
            delta = delta * factor.view(-1, *([1] * (delta.dim() - 1)))
        else:
            delta = project_l1_ball(delta, self.eps)
        return (x + delta).clamp(0.0, 1.0)

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
