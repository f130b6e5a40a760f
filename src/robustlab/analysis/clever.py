"""CLEVER: an attack-independent robustness score from extreme value theory (Weng, Zhang, Chen,
Yi, Su, Gao, Hsieh and Daniel, "Evaluating the robustness of neural networks: an extreme value
theory approach", ICLR 2018), as reported per model by Su et al. (ECCV 2018).

For the predicted class c and each other class j, g_j = f_c − f_j. CLEVER samples points
uniformly in the ℓp ball of radius R around x0, takes the dual norm (q with 1/p + 1/q = 1:
ℓ2 → ℓ2, ℓ∞ → ℓ1) of ∇g_j at each, keeps the maximum of each batch, and fits a reverse Weibull
distribution to the batch maxima; its location parameter estimates the local Lipschitz constant
L_j. The score is min_j g_j(x0) / L_j, capped at R: an estimated lower bound on the minimal
ℓp distortion.

Paper settings: N_b = 500 batches of N_s = 1024 samples, sampling radius R = 5 (stated for
images in [-0.5, 0.5]). The defaults here are the paper's N_b and N_s; on a CPU pass smaller
values. The default radius is 5 for ℓ2 (paper) and 0.05 for ℓ∞ (chosen here, not from the paper:
an ℓ∞ radius of 5 would cover the whole box).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.stats import kstest, weibull_max
from torch import nn

from ..attacks.base import model_mode
from ..errors import UserError

DUAL = {"l2": 2.0, "linf": 1.0, "l1": math.inf}
DEFAULT_RADIUS = {"l2": 5.0, "linf": 0.05, "l1": 5.0}
# Batch maxima closer together than this (relative) are one value: the fit is degenerate.
DEGENERATE_SPREAD = 1e-6
# Initial shapes of the reverse-Weibull fit (the CLEVER authors' code tries the same range).
WEIBULL_SHAPE_STARTS = (0.1, 1.0, 5.0, 10.0, 20.0, 50.0, 100.0)
# A fitted end point more than this many times the range of the maxima above the largest one is
# a divergent fit, not an estimate.
MAX_EXTRAPOLATION = 10.0


@dataclass
class CleverResult:
    score: float
    radius: float
    norm: str
    label: int
    # Per other class j: margin g_j(x0), Lipschitz estimate L_j, and g_j(x0)/L_j.
    margins: dict[int, float] = field(default_factory=dict)
    lipschitz: dict[int, float] = field(default_factory=dict)
    bounds: dict[int, float] = field(default_factory=dict)


def sample_ball(x0: torch.Tensor, n: int, norm: str, radius: float,
                generator: torch.Generator) -> torch.Tensor:
    """``n`` points uniform in the ℓp ball of ``radius`` around one image ``x0`` (C, H, W)."""
    d = x0.numel()
    if norm == "linf":
        u = torch.rand((n, d), generator=generator) * 2 - 1
        delta = u * radius
    elif norm == "l2":
        g = torch.randn((n, d), generator=generator)
        g = g / g.norm(dim=1, keepdim=True)
        r = torch.rand((n, 1), generator=generator) ** (1.0 / d)
        delta = g * r * radius
    else:
        # Uniform in the ℓ1 ball: random signs on a uniform point of the simplex, radius r^(1/d).
        e = -torch.log(torch.rand((n, d + 1), generator=generator))
        simplex = (e / e.sum(1, keepdim=True))[:, :d]
        signs = torch.randint(0, 2, (n, d), generator=generator) * 2 - 1
        delta = simplex * signs * radius
    return x0.unsqueeze(0) + delta.view(n, *x0.shape).to(x0.device, x0.dtype)


def reverse_weibull_location(maxima: np.ndarray) -> float:
    """The location (right end point) of a reverse Weibull fitted to batch maxima.

    As the CLEVER authors' code does, the fit starts from several shapes and keeps the one the
    Kolmogorov-Smirnov test likes best. A fit whose end point runs off far beyond the data is
    rejected: when the maxima look unbounded, the likelihood keeps improving as the end point
    goes to infinity (the Gumbel limit), which would make the score vanish (seen with 20 batches:
    end points of 1e7 for maxima near 5). Where no fit is kept, or the maxima have negligible
    spread (a constant gradient, e.g. a linear model), the largest maximum itself is returned.
    """
    maxima = np.asarray(maxima, dtype=np.float64)
    top = float(maxima.max())
    spread_seen = float(maxima.max() - maxima.min())
    if top <= 0 or spread_seen <= DEGENERATE_SPREAD * top:
        return top
    spread = float(maxima.std()) or top * 1e-3
    best_loc, best_p = top, -1.0
    for shape in WEIBULL_SHAPE_STARTS:
        try:
            c, loc, scale = weibull_max.fit(maxima, shape, loc=top + spread, scale=spread)
        except (RuntimeError, ValueError, FloatingPointError):
            continue
        if not np.isfinite(loc) or loc < top or loc > top + MAX_EXTRAPOLATION * spread_seen:
            continue
        p_value = float(kstest(maxima, weibull_max(c, loc, scale).cdf).pvalue)
        if p_value > best_p:
            best_loc, best_p = float(loc), p_value
    return best_loc


def clever(model: nn.Module, x: torch.Tensor, label: int | None = None, norm: str = "l2",
           n_batches: int = 500, batch_size: int = 1024, radius: float | None = None,
           top_k: int | None = None, chunk_size: int = 256, clip: bool = True,
           seed: int = 0) -> CleverResult:
    """CLEVER for one image ``x`` ((C, H, W) or (1, C, H, W)). ``label`` is the class c whose
    robustness is scored (default: the predicted one); ``top_k`` limits the other classes j to
    the k most likely (None: all). ``clip`` keeps samples inside the [0, 1] image box. The score
    is negative when ``label`` is given and the model already predicts another class."""
    if norm not in DUAL:
        raise UserError(f"unknown CLEVER norm {norm!r}; expected one of {', '.join(DUAL)}")
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise UserError(f"CLEVER scores one image at a time, got a batch of {x.shape[0]}")
        x = x[0]
    if int(n_batches) < 1 or int(batch_size) < 1:
        raise UserError(f"CLEVER needs n_batches and batch_size >= 1, got {n_batches}, "
                        f"{batch_size}")
    radius = DEFAULT_RADIUS[norm] if radius is None else float(radius)
    if not radius > 0:
        raise UserError(f"CLEVER radius must be > 0, got {radius}")
    q = DUAL[norm]
    gen = torch.Generator().manual_seed(seed)
    x = x.detach()
    with model_mode(model, False):
        with torch.no_grad():
            logits0 = model(x.unsqueeze(0))[0]
        c = int(logits0.argmax()) if label is None else int(label)
        if not 0 <= c < logits0.numel():
            raise UserError(f"CLEVER label {c} is out of range for {logits0.numel()} classes")
        others = [int(j) for j in logits0.argsort(descending=True) if int(j) != c]
        if top_k is not None:
            others = others[: int(top_k)]
        maxima = {j: np.empty(int(n_batches)) for j in others}
        for b in range(int(n_batches)):
            pts = sample_ball(x, int(batch_size), norm, radius, gen)
            if clip:
                pts = pts.clamp(0.0, 1.0)
            best = {j: 0.0 for j in others}
            for start in range(0, pts.shape[0], chunk_size):
                p = pts[start:start + chunk_size].requires_grad_(True)
                out = model(p)
                for i, j in enumerate(others):
                    g = (out[:, c] - out[:, j]).sum()
                    (grad,) = torch.autograd.grad(g, p, retain_graph=i < len(others) - 1)
                    gn = grad.flatten(1).norm(p=q, dim=1).max().item()
                    best[j] = max(best[j], gn)
            for j in others:
                maxima[j][b] = best[j]
    result = CleverResult(score=radius, radius=radius, norm=norm, label=c)
    for j in others:
        margin = float(logits0[c] - logits0[j])
        lip = reverse_weibull_location(maxima[j])
        bound = margin / lip if lip > 0 else math.inf
        result.margins[j] = margin
        result.lipschitz[j] = lip
        result.bounds[j] = bound
        result.score = min(result.score, bound)
    return result


def clever_score(model: nn.Module, x: torch.Tensor, label: int | None = None, norm: str = "l2",
                 n_batches: int = 500, batch_size: int = 1024, radius: float | None = None,
                 top_k: int | None = None, seed: int = 0) -> float:
    """The CLEVER score of one image (see :func:`clever` for the details and per-class values)."""
    return clever(model, x, label, norm, n_batches, batch_size, radius, top_k,
                  seed=seed).score
