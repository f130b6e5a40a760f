"""The energy landscape of natural and adversarial inputs (Mirza, Briglia, Beadini and Masi,
"Shedding More Light on Robust Classifiers under the lens of Energy-based Models", ECCV 2024).

- :func:`attack_energy_summary`: means and spreads of E(x) and E(x, y) of natural and
  adversarial inputs, and the share of adversarial inputs whose E(x) is lower than their natural
  one (the paper: most, for untargeted attacks; few, for targeted ones).
- :func:`detect_phases`: the three phases of adversarial training from a run's
  ``metrics.jsonl``: ΔE = E(x) − E(x_adv) on training data fitted by a three-segment
  piecewise-linear least-squares model whose two breakpoints are searched exhaustively; the
  epoch robust overfitting starts is the epoch of the lowest robust validation error when the
  error later rises by at least ``overfit_tol``.
- :func:`trades_kl_decomposition`: TRADES' KL(p(·|x) ‖ p(·|x')) written in energies. With
  log p(y|x) = E(x) − E(x, y):
  KL = [E(x) − E(x')] + Σ_y p(y|x) [E(x', y) − E(x, y)],
  a marginal term and a p(·|x)-weighted joint term; checked against the KL computed directly.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F

from .energy import energy, joint_energy


def _stats(v: torch.Tensor) -> dict:
    v = v.float()
    return {"mean": float(v.mean()), "std": float(v.std()) if v.numel() > 1 else 0.0,
            "median": float(v.median())}


def attack_energy_summary(logits_nat: torch.Tensor, logits_adv: torch.Tensor,
                          y: torch.Tensor, success: torch.Tensor | None = None) -> dict:
    """Energies of natural and adversarial inputs of one attack, and how they compare.
    ``success`` (per example: the attack met its goal) adds the shares over successful
    examples only: an attack returns the natural image where it fails (FAB, C&W), and such
    examples have equal energies."""
    e_nat, e_adv = energy(logits_nat), energy(logits_adv)
    j_nat, j_adv = joint_energy(logits_nat, y), joint_energy(logits_adv, y)
    out = {
        "energy_nat": _stats(e_nat), "energy_adv": _stats(e_adv),
        "joint_energy_nat": _stats(j_nat), "joint_energy_adv": _stats(j_adv),
        "delta_energy_mean": float((e_nat - e_adv).mean()),
        "delta_joint_energy_mean": float((j_nat - j_adv).mean()),
        "share_lower_energy": float((e_adv < e_nat).float().mean()),
        "share_lower_joint_energy": float((j_adv < j_nat).float().mean()),
        "robust_accuracy": float((logits_adv.argmax(1) == y).float().mean()),
        "n": int(len(y)),
    }
    if success is not None:
        ok = success.bool().to(e_nat.device)
        out["n_success"] = int(ok.sum())
        out["share_lower_energy_success"] = float((e_adv[ok] < e_nat[ok]).float().mean()) \
            if ok.any() else None
        out["share_lower_joint_energy_success"] = float((j_adv[ok] < j_nat[ok]).float().mean()) \
            if ok.any() else None
    return out


# ----------------------------------------------------------------------------- phases

def _line_sse(t: np.ndarray, v: np.ndarray) -> tuple[float, np.ndarray]:
    if len(t) == 1:
        return 0.0, v.copy()
    a = np.vstack([t, np.ones_like(t)]).T
    coef, *_ = np.linalg.lstsq(a, v, rcond=None)
    fit = a @ coef
    return float(((v - fit) ** 2).sum()), fit


def piecewise_linear_fit(t, v, n_segments: int = 3, min_len: int = 2) -> dict:
    """Least-squares fit of ``n_segments`` independent lines to (t, v), breakpoints searched
    exhaustively (series of training epochs are short). Returns the start index of each segment
    after the first (``breaks``), the fitted values and the residual sum of squares."""
    t, v = np.asarray(t, dtype=np.float64), np.asarray(v, dtype=np.float64)
    n = len(t)
    if n < n_segments * min_len:
        raise ValueError(f"need at least {n_segments * min_len} points, got {n}")
    best = (np.inf, None, None)
    for cuts in itertools.combinations(range(min_len, n - min_len + 1), n_segments - 1):
        if any(b - a < min_len for a, b in zip((0, *cuts), cuts)):
            continue
        bounds = (0, *cuts, n)
        sse, fits = 0.0, []
        for lo, hi in zip(bounds, bounds[1:]):
            s, f = _line_sse(t[lo:hi], v[lo:hi])
            sse += s
            fits.append(f)
        if sse < best[0]:
            best = (sse, list(cuts), np.concatenate(fits))
    return {"breaks": best[1], "fit": best[2].tolist(), "sse": best[0]}


def detect_phases(metrics: list[dict], key: str = "train_delta_energy",
                  overfit_tol: float = 0.01) -> dict:
    """The three phases of adversarial training from ``metrics.jsonl`` records (per epoch,
    ``key`` and ``val_robust_accuracy``). ``available`` is False, with a reason, when the run
    logged too few epochs (six at least) or no energies."""
    def finite(v) -> bool:  # metrics.jsonl writes NaN (a diverged run) as null
        return isinstance(v, (int, float)) and bool(np.isfinite(v))

    rows = [m for m in metrics if "epoch" in m and finite(m.get(key))
            and finite(m.get("val_robust_accuracy"))]
    # A resumed run may log an epoch twice: keep the last record of each.
    by_epoch = {int(m["epoch"]): m for m in rows}
    epochs = sorted(by_epoch)
    out = {"key": key, "epochs": epochs,
           "delta_energy": [float(by_epoch[e][key]) for e in epochs],
           "robust_error": [1 - float(by_epoch[e]["val_robust_accuracy"]) for e in epochs]}
    if len(epochs) < 6:
        out.update(available=False, reason=f"{len(epochs)} epochs with finite {key} and "
                   "val_robust_accuracy logged; phase detection needs at least 6")
        return out
    fit = piecewise_linear_fit(epochs, out["delta_energy"], 3, 2)
    b1, b2 = fit["breaks"]
    err = np.asarray(out["robust_error"])
    best = int(np.argmin(err))
    overfit = epochs[best + 1] if best + 1 < len(epochs) and \
        err[best + 1:].max() >= err[best] + overfit_tol else None
    out.update(available=True, fit=fit["fit"], sse=fit["sse"],
               phase_starts=[epochs[0], epochs[b1], epochs[b2]],
               phases=[{"phase": i + 1, "first_epoch": epochs[lo], "last_epoch": epochs[hi - 1]}
                       for i, (lo, hi) in enumerate(zip((0, b1, b2), (b1, b2, len(epochs))))],
               best_robust_epoch=epochs[best], robust_overfitting_epoch=overfit)
    return out


# ----------------------------------------------------------------------------- TRADES

def trades_kl_decomposition(logits_nat: torch.Tensor, logits_adv: torch.Tensor) -> dict:
    """KL(p(·|x) ‖ p(·|x')) per example, directly and as its two energy terms; the largest
    absolute difference between the two says the identity holds numerically."""
    ln, la = logits_nat.double(), logits_adv.double()
    logp_nat, logp_adv = F.log_softmax(ln, 1), F.log_softmax(la, 1)
    kl = (logp_nat.exp() * (logp_nat - logp_adv)).sum(1)
    # E(x) − E(x'), in double precision (energy() works in float32).
    marginal = torch.logsumexp(la, 1) - torch.logsumexp(ln, 1)
    # E(x', k) − E(x, k) = f(x)_k − f(x')_k for every class k, weighted by p(k|x).
    joint = (logp_nat.exp() * (ln - la)).sum(1)
    recon = marginal + joint
    return {"kl": kl, "marginal_term": marginal, "joint_term": joint,
            "max_abs_error": float((recon - kl).abs().max()) if len(kl) else 0.0,
            "kl_mean": float(kl.mean()), "marginal_term_mean": float(marginal.mean()),
            "joint_term_mean": float(joint.mean())}
