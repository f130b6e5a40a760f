"""Scaling laws of adversarial training, after Bartoldson et al. (ICML 2024), from a table of runs.

- Approach 1: the envelope (Pareto front) of loss against training FLOPs over all runs' metric
  epochs, and power laws N*(C), D*(C), L*(C) fitted to the runs on it.
- Approach 2: the parametric law of :mod:`.scaling_fit` (with FID shifts when the table has FID),
  a bootstrap over runs for 95% intervals of every parameter and derived quantity. By default
  the law is fitted to each run's *final* point, as Hoffmann et al. (2022) fit final losses:
  a point taken mid-run sits before the end of its learning-rate schedule, so its loss is higher
  than a run of that length would reach (their §3.1), which biases the D exponent. ``points =
  "all"`` fits every metric epoch instead. The fit also reports which terms the points identify
  (the largest share of the predicted loss each term takes) and warns when one is a tiny share
  everywhere or E sits at its bound.
- Loss → robust accuracy: a logistic regression of accuracy on log loss over the runs (the target
  is named in the results), which turns predicted losses into accuracies and gives the plateau,
  the accuracy as C → ∞ (loss → E + c_E·q).
- The compute-optimal split: with C = k·N·D (k, FLOPs per parameter per image-step, the median
  over the measured runs), minimising L over N at fixed C gives N* = G·(C/k)^a and D* =
  (C/k)^b / G with a = β/(α+β), b = α/(α+β), G = (αA / (βB'))^(1/(α+β)), B' = B + c_B·q.
- Out of sample: the runs with the most compute are held out, the law is fitted on the rest and
  their loss (and accuracy) predicted.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import UserError
from ..progress import progress_bar
from .scaling_fit import LawData, best_starts, fit_law, n_params, predict_raw, refit, term_shares
from .scaling_table import RunTable

DEFAULT_RESAMPLES = 1000  # ≥ 1000 bootstrap resamples (Besiroglu et al. use 4000)
IDENTIFIED_SHARE = 0.02   # a term below 2% of every predicted loss is not identified
POINTS = ("final", "all")
BUDGETS = [10.0 ** k for k in range(15, 25)]


# ----------------------------------------------------------------------------- approach 1

def envelope(c: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both compute and loss, by compute."""
    order = np.lexsort((loss, c))
    keep, best = [], math.inf
    for i in order:
        if loss[i] < best:
            keep.append(i)
            best = loss[i]
    return np.array(keep, int)


def power_law(x: np.ndarray, y: np.ndarray) -> dict | None:
    """y = k·x^e by least squares in log-log space."""
    if len(x) < 2 or np.ptp(np.log(x)) == 0:
        return None
    e, logk = np.polyfit(np.log(x), np.log(y), 1)
    return {"coefficient": float(math.exp(logk)), "exponent": float(e)}


def approach1(t: RunTable) -> dict:
    idx = envelope(t.train_flops, t.loss)
    c = t.train_flops[idx]
    return {"envelope": [{"train_flops": float(t.train_flops[i]), "params": float(t.params[i]),
                          "data": float(t.data[i]), "loss": float(t.loss[i]),
                          "run": str(t.run[i])} for i in idx],
            "n_opt": power_law(c, t.params[idx]), "d_opt": power_law(c, t.data[idx]),
            "loss_opt": power_law(c, t.loss[idx])}


# ----------------------------------------------------------------------------- accuracy

def fit_accuracy(loss: np.ndarray, acc: np.ndarray) -> dict | None:
    """logit(accuracy) = u + v·ln(loss), least squares; accuracy clipped away from 0 and 1."""
    if acc is None or len(acc) < 2 or np.ptp(np.log(loss)) == 0:
        return None
    a = np.clip(acc, 1e-4, 1 - 1e-4)
    v, u = np.polyfit(np.log(loss), np.log(a / (1 - a)), 1)
    pred = accuracy_of({"u": u, "v": v}, loss)
    return {"u": float(u), "v": float(v), "rmse": float(np.sqrt(np.mean((pred - acc) ** 2)))}


def accuracy_of(reg: dict, loss) -> np.ndarray:
    z = reg["u"] + reg["v"] * np.log(np.asarray(loss, float))
    return 1.0 / (1.0 + np.exp(-z))


# ----------------------------------------------------------------------------- compute-optimal

def flops_per_param_image(t: RunTable) -> float:
    """k in C = k·N·D, the training FLOPs per parameter per image-step. It depends on the attack
    steps and the architecture (FLOPs per parameter), so it is measured: the median over runs."""
    return float(np.median(t.train_flops / (t.params * t.data)))


def derived(theta: np.ndarray, k: float, q: float, budgets, reg: dict | None) -> dict:
    """Everything that follows from one parameter vector (so the bootstrap gives it intervals)."""
    a, b, e, al, be = theta[:5]
    A, B, E = math.exp(a), math.exp(b), math.exp(e)
    if len(theta) > 5:
        B, E = B + theta[5] * q, E + theta[6] * q
    s = al + be
    out = {"n_exponent": float(be / s), "d_exponent": float(al / s), "E_at_fid": float(E)}
    budgets = np.asarray(budgets, float)
    if B > 0:
        g = float((al * A / (be * B)) ** (1.0 / s))
        n = g * (budgets / k) ** (be / s)
        d = budgets / (k * n)
        loss = A / n ** al + B / d ** be + E
        out.update(G=g, n_opt=n, d_opt=d, loss_opt=loss)
        if reg is not None:
            out["accuracy_opt"] = accuracy_of(reg, loss)
    if reg is not None and E > 0:
        out["plateau_accuracy"] = float(accuracy_of(reg, E))
    return out


# ----------------------------------------------------------------------------- bootstrap

def bootstrap(t: RunTable, data: LawData, theta: np.ndarray, k: float, q: float, budgets,
              reg: dict | None, resamples: int, seed: int = 0, quiet=None) -> dict:
    """Resample runs with replacement, refit warm-started from the full fit, and take the
    2.5th and 97.5th percentiles of every parameter and derived quantity."""
    rng = np.random.default_rng(seed)
    runs = t.runs()
    rows = {r: t.rows_of([r]) for r in runs}
    samples: list[dict] = []
    failed = 0
    extra = best_starts(data, 4)
    with progress_bar("bootstrap", total=resamples, unit="fit", quiet=quiet) as bar:
        for _ in range(resamples):
            pick = rng.integers(0, len(runs), len(runs))
            idx = np.concatenate([rows[runs[j]] for j in pick])
            th, ok = refit(theta, data.take(idx), extra)
            failed += not ok
            sub = t.take(idx)
            sreg = fit_accuracy(sub.loss, sub.accuracy) if reg is not None else None
            d = derived(th, k, q, budgets, sreg)
            d.update(_named(th))
            samples.append(d)
            bar.advance(1)
    ci: dict = {}
    for key in samples[0]:
        vals = [s[key] for s in samples if key in s]
        arr = np.asarray(vals, float)
        lo, hi = np.nanpercentile(arr, [2.5, 97.5], axis=0)
        ci[key] = [lo.tolist(), hi.tolist()] if np.ndim(lo) else [float(lo), float(hi)]
    return {"ci": ci, "resamples": resamples, "unconverged": failed}


def _named(theta: np.ndarray) -> dict:
    out = {"A": math.exp(theta[0]), "B": math.exp(theta[1]), "E": math.exp(theta[2]),
           "alpha": float(theta[3]), "beta": float(theta[4])}
    if len(theta) > 5:
        out.update(c_B=float(theta[5]), c_E=float(theta[6]))
    return out


# ----------------------------------------------------------------------------- everything

def analyse(t: RunTable, *, resamples: int = DEFAULT_RESAMPLES, fid_ref: float | None = None,
            fid: float | None = None, holdout: float = 0.2, budgets=None, seed: int = 0,
            accuracy_target: str = "accuracy", points: str = "final", quiet=None) -> dict:
    """All fits of one table; the dict that becomes ``results.json``. ``points``: the law is
    fitted to each run's final point ("final") or to every point ("all")."""
    if points not in POINTS:
        raise UserError(f"points: {points!r} is not one of {', '.join(POINTS)}")
    if budgets is None:  # 10^15..10^24, reaching down to the runs' own compute when below
        low = min(15, int(math.floor(math.log10(float(np.min(t.train_flops))))))
        budgets = [10.0 ** k for k in range(low, 25)]
    budgets = list(budgets)
    curves = t  # approach 1, the accuracy regression and the plots use every point
    in_fit = (t.final if points == "final" and t.final is not None
              else np.ones(len(t), bool))
    t = curves.take(np.flatnonzero(in_fit))
    with_fid = t.fid is not None and np.ptp(t.fid) > 0
    p = n_params(with_fid)
    n_runs = len(t.runs())
    if n_runs < p or len(t) < p:
        raise UserError(f"{n_runs} runs cannot fit a law with {p} parameters; "
                        f"give at least {p} runs")
    fid_ref = float(np.min(t.fid)) if with_fid and fid_ref is None else (fid_ref or 0.0)
    data = LawData.make(t.params, t.data, t.loss, t.fid if with_fid else None, fid_ref)
    fit = fit_law(data)
    params = fit.params()
    k = flops_per_param_image(t)
    fid_at = fid_ref if fid is None else fid
    q = math.log1p(fid_at) - math.log1p(fid_ref) if with_fid else 0.0
    reg = fit_accuracy(curves.loss, curves.accuracy) if curves.accuracy is not None else None
    d = derived(fit.theta, k, q, budgets, reg)
    boot = bootstrap(t, data, fit.theta, k, q, budgets, reg, resamples, seed, quiet)
    ci = boot["ci"]
    cdata = LawData.make(curves.params, curves.data, curves.loss,
                         curves.fid if with_fid else None, fid_ref)
    cpred = predict_raw(fit.theta, cdata.log_n, cdata.log_d, cdata.q)
    pred = cpred[in_fit]
    shares = term_shares(fit.theta, data)
    out = {
        "n_runs": n_runs, "n_points": len(t), "points_fitted": points, "with_fid": with_fid,
        "parametric": params,
        "parametric_ci": {k2: ci[k2] for k2 in params},
        "fit": {"huber_delta": 1e-3, "reduction": "sum", "objective": fit.loss,
                "converged": fit.converged, "starts": fit.starts,
                "converged_starts": fit.converged_starts, "messages": fit.messages,
                "fid_ref": fid_ref if with_fid else None,
                "rel_error_in_sample": float(np.mean(np.abs(pred / t.loss - 1)))},
        "bootstrap": {"resamples": resamples, "unconverged": boot["unconverged"]},
        "term_shares": shares,
        "warnings": identification_warnings(shares, params, ci, t),
        "approach1": approach1(curves),
        "accuracy_regression": None if reg is None else {**reg, "target": accuracy_target,
                                                         "form": "logit(acc) = u + v ln L"},
        "compute_optimal": {
            "flops_per_param_image": k, "fid": fid_at if with_fid else None,
            "n_exponent": d["n_exponent"], "d_exponent": d["d_exponent"],
            "n_exponent_ci": ci["n_exponent"], "d_exponent_ci": ci["d_exponent"],
            "G": d.get("G"), "G_ci": ci.get("G"),
            "budgets": [
                {"train_flops": c, "params": _f(d, "n_opt", i), "data": _f(d, "d_opt", i),
                 "loss": _f(d, "loss_opt", i), "accuracy": _f(d, "accuracy_opt", i),
                 "params_ci": _ci(ci, "n_opt", i), "data_ci": _ci(ci, "d_opt", i),
                 "loss_ci": _ci(ci, "loss_opt", i), "accuracy_ci": _ci(ci, "accuracy_opt", i)}
                for i, c in enumerate(budgets)],
            "plateau_loss": d["E_at_fid"], "plateau_loss_ci": ci["E_at_fid"],
            "plateau_accuracy": d.get("plateau_accuracy"),
            "plateau_accuracy_ci": ci.get("plateau_accuracy")},
        "out_of_sample": out_of_sample(t, holdout, fid_ref, with_fid),
        "points": [{"run": str(curves.run[i]), "params": float(curves.params[i]),
                    "data": float(curves.data[i]), "train_flops": float(curves.train_flops[i]),
                    "loss": float(curves.loss[i]), "predicted_loss": float(cpred[i]),
                    "in_fit": bool(in_fit[i]),
                    **({"fid": float(curves.fid[i])} if curves.fid is not None else {}),
                    **({"accuracy": float(curves.accuracy[i])}
                       if curves.accuracy is not None else {})}
                   for i in range(len(curves))],
    }
    return out


def identification_warnings(shares: dict, params: dict, ci: dict, t: RunTable) -> list[str]:
    """What the fitted points do not pin down, in words a reader of results.json can act on."""
    out = []
    if shares["N"] < IDENTIFIED_SHARE:
        out.append(f"A and alpha are not identified: the model-size term is at most "
                   f"{100 * shares['N']:.2g}% of the predicted loss at every point (parameters "
                   f"{t.params.min():.3g}-{t.params.max():.3g}); sweep a wider range of N")
    for term, exp in (("A/N^alpha", "alpha"), ("B/D^beta", "beta")):
        if params[exp] < 0.05:
            out.append(f"{exp} = {params[exp]:.3g}: {term} is nearly constant over the runs "
                       "and trades off against E, so neither is pinned down")
    if shares["D"] < IDENTIFIED_SHARE:
        out.append(f"B and beta are not identified: the data term is at most "
                   f"{100 * shares['D']:.2g}% of the predicted loss at every point")
    if params["E"] < 1e-3 * float(np.min(t.loss)):
        out.append(f"E = {params['E']:.3g} sits at its lower bound: the runs show no floor, so "
                   "the plateau is an extrapolation to zero loss, not a measurement")
    flat = [k for k, (lo, hi) in ci.items() if k in params and hi - lo <= 1e-9 * abs(params[k])]
    if flat:
        out.append(f"bootstrap intervals of zero width for {', '.join(flat)}: the resampled "
                   "fits do not move them, which says they are not constrained")
    return out


def _f(d, key, i):
    return float(d[key][i]) if key in d else None


def _ci(ci, key, i):
    return [float(ci[key][0][i]), float(ci[key][1][i])] if key in ci else None


def out_of_sample(t: RunTable, holdout: float, fid_ref: float, with_fid: bool) -> dict | None:
    """Fit without the runs of the largest final compute and predict them: the extrapolation
    a compute-optimal prediction relies on."""
    runs = t.runs()
    n_out = max(1, int(round(holdout * len(runs))))
    if len(runs) - n_out < n_params(with_fid) or holdout <= 0:
        return None
    final_c = {r: float(t.train_flops[t.rows_of([r])].max()) for r in runs}
    held = sorted(runs, key=lambda r: final_c[r])[-n_out:]
    train = t.take(t.rows_of([r for r in runs if r not in held]))
    test = t.take(t.rows_of(held))
    mk = lambda s: LawData.make(s.params, s.data, s.loss,  # noqa: E731
                                s.fid if with_fid else None, fid_ref)
    fit = fit_law(mk(train))
    dt = mk(test)
    pred = predict_raw(fit.theta, dt.log_n, dt.log_d, dt.q)
    out = {"held_out_runs": held, "n_points": len(test),
           "loss_mean_abs_rel_error": float(np.mean(np.abs(pred / test.loss - 1))),
           "points": [{"run": str(test.run[i]), "loss": float(test.loss[i]),
                       "predicted_loss": float(pred[i])} for i in range(len(test))]}
    if t.accuracy is not None:
        reg = fit_accuracy(train.loss, train.accuracy)
        if reg is not None:
            acc = accuracy_of(reg, pred)
            out["accuracy_mean_abs_error"] = float(np.mean(np.abs(acc - test.accuracy)))
    return out
