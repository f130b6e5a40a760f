"""The parametric scaling law of adversarial training and its fit.

Bartoldson et al. ("Adversarial Robustness Limits via Scaling-Law and Human-Alignment Studies",
ICML 2024, Approach 2) model the adversarial test loss of a run as

    L(N, D, q) = A / N^α + (B + c_B·q) / D^β + E + c_E·q,   q = ln(1 + FID) − ln(1 + FID_ref)

with N parameters, D images processed and FID the quality of the (generated) training data;
without FID the law is Chinchilla's (Hoffmann et al., 2022). The fit follows Hoffmann et al. as
replicated by Besiroglu et al. ("Chinchilla Scaling: A replication attempt", 2024): A, B, E in
log space, Huber loss with δ = 10⁻³ on log L with *sum* reduction (Besiroglu et al. show the mean
reduction of the original stops L-BFGS early), exact (analytic) gradients, L-BFGS from a grid of
starting points, and the best converged optimum kept.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

HUBER_DELTA = 1e-3  # Hoffmann et al. (2022), kept by Besiroglu et al. (2024)
BASE_NAMES = ("A", "B", "E", "alpha", "beta")
FID_NAMES = ("c_B", "c_E")

# Starting grid in the spirit of Hoffmann et al.'s (α, β ∈ 0..2, e ∈ −1..1, a, b ∈ 0..25),
# coarser because every start is polished by L-BFGS and only the best few are run.
GRID = {"a": (0.0, 5.0, 10.0, 15.0, 20.0), "b": (0.0, 5.0, 10.0, 15.0, 20.0),
        "e": (-2.0, -1.0, 0.0, 1.0), "alpha": (0.1, 0.3, 0.6, 1.0),
        "beta": (0.1, 0.3, 0.6, 1.0), "c_B": (0.0,), "c_E": (0.0,)}


def huber(r: np.ndarray, delta: float = HUBER_DELTA) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def huber_grad(r: np.ndarray, delta: float = HUBER_DELTA) -> np.ndarray:
    return np.clip(r, -delta, delta)


@dataclass
class LawData:
    """The points a law is fitted to: log N, log D, log L and the quality shift q (or None)."""

    log_n: np.ndarray
    log_d: np.ndarray
    log_l: np.ndarray
    q: np.ndarray | None = None

    @classmethod
    def make(cls, n, d, loss, fid=None, fid_ref: float = 0.0) -> LawData:
        q = None if fid is None else np.log1p(np.asarray(fid, float)) - math.log1p(fid_ref)
        return cls(np.log(np.asarray(n, float)), np.log(np.asarray(d, float)),
                   np.log(np.asarray(loss, float)), q)

    def take(self, idx: np.ndarray) -> LawData:
        return LawData(self.log_n[idx], self.log_d[idx], self.log_l[idx],
                       None if self.q is None else self.q[idx])

    def __len__(self) -> int:
        return len(self.log_l)


def n_params(with_fid: bool) -> int:
    return 7 if with_fid else 5


def predict_raw(theta: np.ndarray, log_n, log_d, q=None) -> np.ndarray:
    """L for θ = (a, b, e, α, β[, c_B, c_E]) with A = eᵃ, B = eᵇ, E = eᵉ."""
    a, b, e, al, be = theta[:5]
    out = np.exp(a - al * log_n) + np.exp(b - be * log_d) + math.exp(e)
    if q is not None and len(theta) > 5:
        out = out + theta[5] * q * np.exp(-be * log_d) + theta[6] * q
    return out


def objective(theta: np.ndarray, data: LawData, delta: float = HUBER_DELTA):
    """Sum of Huber(log L̂ − log L) and its exact gradient."""
    a, b, e, al, be = theta[:5]
    t1 = np.exp(a - al * data.log_n)
    dpow = np.exp(-be * data.log_d)
    t2 = math.exp(b) * dpow
    pred = t1 + t2 + math.exp(e)
    fid = data.q is not None and len(theta) > 5
    if fid:
        t2q = theta[5] * data.q * dpow
        pred = pred + t2q + theta[6] * data.q
    bad = pred <= 1e-300
    # A shift can push the law below zero; the log is then undefined, so the point is charged
    # as if it were predicted at a tiny positive loss (a large, smooth penalty).
    safe = np.where(bad, 1e-300, pred)
    r = np.log(safe) - data.log_l
    value = float(huber(r, delta).sum())
    w = np.where(bad, 0.0, huber_grad(r, delta) / safe)
    grad = [np.sum(w * t1), np.sum(w * t2), np.sum(w) * math.exp(e),
            np.sum(w * -data.log_n * t1),
            np.sum(w * -data.log_d * (t2 + (t2q if fid else 0.0)))]
    if fid:
        grad += [np.sum(w * data.q * dpow), np.sum(w * data.q)]
    return value, np.asarray(grad, float)


@dataclass
class LawFit:
    theta: np.ndarray
    loss: float
    converged: bool
    starts: int
    converged_starts: int
    messages: list = field(default_factory=list)

    @property
    def with_fid(self) -> bool:
        return len(self.theta) > 5

    def params(self) -> dict:
        a, b, e, al, be = self.theta[:5]
        out = {"A": math.exp(a), "B": math.exp(b), "E": math.exp(e), "alpha": float(al),
               "beta": float(be)}
        if self.with_fid:
            out.update(c_B=float(self.theta[5]), c_E=float(self.theta[6]))
        return out


def _polish(theta0: np.ndarray, data: LawData, maxiter: int = 2000):
    # Bounds keep exponents positive (the law is decreasing in N and D) and finite.
    bounds = [(-30, 60), (-30, 60), (-20, 10), (1e-4, 5.0), (1e-4, 5.0)]
    bounds += [(None, None)] * (len(theta0) - 5)
    return minimize(objective, theta0, args=(data,), jac=True, method="L-BFGS-B",
                    bounds=bounds, options={"maxiter": maxiter, "ftol": 1e-16, "gtol": 1e-11,
                                            "maxcor": 30})


def _converged(res) -> bool:
    # L-BFGS-B stops on a projected gradient or relative-reduction test; anything else (iteration
    # cap, line-search failure far from a flat point) does not count as converged.
    return bool(res.success) and np.all(np.isfinite(res.x))


def fit_law(data: LawData, with_fid: bool | None = None, n_starts: int = 24,
            grid: dict | None = None) -> LawFit:
    """Fit the law from a grid of starting points: every grid point is scored in one vectorised
    pass, and L-BFGS polishes the ``n_starts`` best; the lowest converged optimum wins."""
    starts = best_starts(data, n_starts, grid, with_fid)
    best, n_conv, msgs = None, 0, []
    for start in starts:
        res = _polish(start, data)
        ok = _converged(res)
        n_conv += ok
        if not ok:
            msgs.append(str(res.message))
        if best is None or (ok, -res.fun) > (best[1], -best[0].fun):
            best = (res, ok)
    res, ok = best
    return LawFit(theta=np.asarray(res.x, float), loss=float(res.fun), converged=bool(ok),
                  starts=len(starts), converged_starts=int(n_conv), messages=msgs[:3])


def best_starts(data: LawData, k: int = 4, grid: dict | None = None,
                with_fid: bool | None = None) -> np.ndarray:
    """The ``k`` grid points with the lowest objective on ``data``, scored in one pass."""
    with_fid = data.q is not None if with_fid is None else with_fid
    grid = grid or GRID
    names = ["a", "b", "e", "alpha", "beta"] + (["c_B", "c_E"] if with_fid else [])
    starts = np.array(list(itertools.product(*(grid[n] for n in names))), float)
    scores = np.array([objective(t, data)[0] for t in starts])
    return starts[np.argsort(scores)[:k]]


def refit(theta0: np.ndarray, data: LawData,
          extra_starts: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """The bootstrap's inner fit: L-BFGS warm-started from the full fit and from each of
    ``extra_starts`` (the full data's best grid points), the lowest converged optimum kept. A
    warm start alone can sit where a term of the law is dead (its gradient ~0) and so give an
    interval of zero width that says nothing about the parameter."""
    best = None
    for t0 in [theta0, *([] if extra_starts is None else list(extra_starts))]:
        res = _polish(np.asarray(t0, float), data)
        ok = _converged(res)
        if best is None or (ok, -res.fun) > (best[1], -best[0].fun):
            best = (res, ok)
    return np.asarray(best[0].x, float), bool(best[1])


def term_shares(theta: np.ndarray, data: LawData) -> dict:
    """The largest share of the predicted loss each term of the law takes over the points: a
    term that is a tiny share everywhere is not identified by these points."""
    a, b, e, al, be = theta[:5]
    t_n = np.exp(a - al * data.log_n)
    t_d = np.exp(b - be * data.log_d)
    if data.q is not None and len(theta) > 5:
        t_d = t_d + theta[5] * data.q * np.exp(-be * data.log_d)
    t_e = math.exp(e) + (theta[6] * data.q if data.q is not None and len(theta) > 5 else 0.0)
    pred = t_n + t_d + t_e
    return {"N": float(np.max(t_n / pred)), "D": float(np.max(np.abs(t_d) / pred)),
            "E": float(np.max(np.abs(t_e) / pred))}


def to_theta(p: dict) -> np.ndarray:
    t = [math.log(p["A"]), math.log(p["B"]), math.log(p["E"]), p["alpha"], p["beta"]]
    if "c_B" in p:
        t += [p["c_B"], p["c_E"]]
    return np.asarray(t, float)


def predict(params: dict, n, d, fid=None, fid_ref: float = 0.0) -> np.ndarray:
    q = None if fid is None else np.log1p(np.asarray(fid, float)) - math.log1p(fid_ref)
    return predict_raw(to_theta(params), np.log(np.asarray(n, float)),
                       np.log(np.asarray(d, float)), q)
