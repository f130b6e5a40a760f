"""The measurements of `robustlab zoo` (Su et al., ECCV 2018): per model, clean error, minimal
distortions (C&W ℓ2, EAD ℓ1, I-FGSM/FGSM ℓ∞ by ε search) and CLEVER ℓ2/ℓ∞; the transfer attack;
and over the zoo, Pareto fronts, the distortion-vs-ln(error) fits and the families."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..analysis.zoo import CLEVERS, DISTORTIONS
from ..attacks.base import model_mode
from .zoo_spec import ZooSection


def _predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size]).argmax(1)
                          for i in range(0, x.shape[0], batch_size)])


def measure_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, zoo: ZooSection,
                  quiet: bool | None = None, label: str = "") -> dict:
    """Clean error and every per-model robustness metric the zoo asks for."""
    from ..analysis.clever import clever_score
    from ..analysis.zoo import distortion_summary
    from ..progress import track

    pred = _predict(model, x, zoo.batch_size)
    correct = pred == y
    acc = float(correct.float().mean())
    out: dict = {"clean_accuracy": acc, "clean_error": 1.0 - acc, "n_examples": int(len(y))}
    xc, yc = x[correct][:zoo.attack_n], y[correct][:zoo.attack_n]
    out["n_attacked"] = int(len(yc))
    steps = [m for m in zoo.metrics if m in ("cw-l2", "ead", "ifgsm", "fgsm", "clever")]
    for metric in track(steps, f"zoo {label}", quiet=quiet):
        torch.manual_seed(zoo.seed)
        if len(yc) == 0:
            out[metric] = {"mean": math.nan, "median": math.nan, "success_rate": math.nan,
                           "n": 0}
            continue
        if metric != "clever":
            out[metric] = distortion_summary(minimal_distortion(model, xc, yc, metric, zoo))
            continue
        c = zoo.clever
        for key, norm, _ in CLEVERS:
            radius = c.radius_l2 if norm == "l2" else c.radius_linf
            scores = [clever_score(model, xc[i], None, norm, c.n_batches, c.batch_size,
                                   radius, c.top_k or None, seed=zoo.seed + i)
                      for i in range(min(c.n_images, len(yc)))]
            out[key] = {"mean": float(np.mean(scores)), "scores": scores,
                        "radius": radius, "n": len(scores)}
    return out


def minimal_distortion(model: nn.Module, x: torch.Tensor, y: torch.Tensor, metric: str,
                       zoo: ZooSection) -> torch.Tensor:
    """Per-example minimal distortion of ``metric`` (cw-l2, ead, ifgsm or fgsm); inf where the
    attack found none."""
    from ..attacks.cw import CarliniWagnerL2
    from ..attacks.ead import EAD
    from ..attacks.eps_search import minimal_linf

    if metric == "cw-l2":
        s = zoo.cw
        atk = CarliniWagnerL2(steps=s.steps, binary_search_steps=s.binary_search_steps,
                              initial_const=s.initial_const, lr=s.lr, seed=zoo.seed)
    elif metric == "ead":
        s = zoo.ead
        atk = EAD(beta=s.beta, steps=s.steps, binary_search_steps=s.binary_search_steps,
                  initial_const=s.initial_const, lr=s.lr, seed=zoo.seed)
    out = []
    for i in range(0, x.shape[0], zoo.batch_size):
        xb, yb = x[i:i + zoo.batch_size], y[i:i + zoo.batch_size]
        if metric in ("ifgsm", "fgsm"):
            s = getattr(zoo, metric)
            # minimal_linf is a function, not an Attack: run it in eval mode ourselves.
            with model_mode(model, False):
                d, _ = minimal_linf(model, xb, yb, metric, s.iterations, s.tol, s.eps0,
                                    s.eps_max)
        else:
            d = atk(model, xb, yb).extras["distortion"]
        out.append(d)
    return torch.cat(out)


def transfer_attack(zoo: ZooSection, targeted: bool):
    from ..attacks.cw import CarliniWagnerL2
    from ..attacks.fgsm import FGSM
    from ..attacks.pgd import PGD
    from ..threat import LpThreat

    t = zoo.transfer
    if targeted or t.attack == "cw-l2":
        return lambda m: CarliniWagnerL2(steps=t.cw_steps,
                                         binary_search_steps=t.cw_binary_search_steps,
                                         initial_const=zoo.cw.initial_const, lr=zoo.cw.lr,
                                         targeted=targeted, target_mode="least-likely",
                                         seed=zoo.seed)
    threat = LpThreat("linf", t.eps)
    if t.attack == "fgsm":
        return lambda m: FGSM(threat)
    # I-FGSM as Kurakin et al.: no random start, steps of ε/steps, every step taken (stopping at
    # the first success would leave examples at the boundary, which transfer worse).
    return lambda m: PGD(threat, steps=t.steps, step_size=t.eps / t.steps, random_start=False,
                         early_stop=False)


# ----------------------------------------------------------------------------- zoo analysis

def robustness_metrics(zoo: ZooSection) -> list[tuple[str, str]]:
    """(results key, label) of every robustness metric measured, for Pareto fronts."""
    keys = [(k, lab) for k, _, lab in DISTORTIONS if k in zoo.metrics]
    if "clever" in zoo.metrics:
        keys += [(k, lab) for k, _, lab in CLEVERS]
    return keys


def analyse(rows: list[dict], zoo: ZooSection) -> dict:
    """Pareto fronts, distortion-vs-ln(error) fits and families over the per-model rows."""
    from ..analysis.zoo import fit_distortion_vs_log_error, pareto_front

    pareto, fits = {}, {}
    for key, _ in robustness_metrics(zoo):
        pts = [(r["clean_accuracy"], r[key]["mean"]) for r in rows]
        usable = [i for i, (_, v) in enumerate(pts) if math.isfinite(v)]
        front = pareto_front([pts[i] for i in usable])
        pareto[key] = [rows[usable[i]]["name"] for i in front]
    for key, _, _ in DISTORTIONS:
        if key not in zoo.metrics:
            continue
        use = [r for r in rows if math.isfinite(r[key]["mean"])]
        if len(use) < 2:
            fits[key] = {"skipped": "fewer than 2 models with a finite distortion"}
            continue
        # A model with no errors on n images has ln(0) = -inf; half an error (0.5/n) is the
        # usual continuity correction and keeps such a model in the fit.
        errs = [max(r["clean_error"], 0.5 / r["n_examples"]) for r in use]
        if len({round(e, 12) for e in errs}) < 2:
            fits[key] = {"skipped": "every model has the same clean error: no fit possible"}
            continue
        fits[key] = fit_distortion_vs_log_error([r[key]["mean"] for r in use], errs)
        fits[key]["models"] = [r["name"] for r in use]
        fits[key]["errors"] = errs
    families: dict[str, list[str]] = {}
    for r in rows:
        families.setdefault(r["family"], []).append(r["name"])
    return {"pareto": pareto, "fit": fits, "families": families}
