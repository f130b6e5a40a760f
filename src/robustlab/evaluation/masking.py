"""Checks for gradient masking, the signs a sceptical reviewer looks for (Athalye, Carlini and
Wagner, ICML 2018, "Obfuscated gradients give a false sense of security"; Carlini et al., 2019,
"On evaluating adversarial robustness", section 5):

1. a black-box attack (Square) breaks points that every white-box attack failed on;
2. accuracy does not fall as ε grows;
3. an unbounded attack (ε covering the whole [0, 1] box) does not reach ~0% accuracy;
4. input gradients are zero, not finite, or absent (no autograd path from input to output).

Each check returns numbers; a flag is raised where a number crosses its threshold. Flags do not
change the robust accuracy reported: they tell the reader not to trust it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks.base import model_mode
from ..threat import LpThreat
from .evaluate import EvalResult, predict

BLACK_BOX = ("square",)

# Thresholds, as fractions of the probed examples.
BLACK_BOX_GAIN = 0.005      # Square adding more than 0.5 points after white-box attacks
UNBOUNDED_ACC = 0.02        # an unbounded attack must leave at most 2% accuracy
ZERO_GRAD_FRACTION = 0.01   # more than 1% of examples with an all-zero input gradient
EPS_SLACK = 0.01            # accuracy may not rise by more than 1 point as ε grows


def _flag(flags: list, check: str, message: str, value) -> None:
    flags.append({"check": check, "message": message, "value": value})


def black_box_gain(result: EvalResult) -> dict:
    """Points broken by a black-box attack after every white-box attack before it failed.

    ``result.broken_by`` holds, per example, the *name* of the attack that broke it (None, or
    "clean" for a clean error), so the black-box stages are matched by name; only black-box
    stages that come after at least one white-box stage count (a Square run first says nothing
    about gradients)."""
    names = [s["attack"] for s in result.stages]
    is_bb = [any(nm.startswith(b) for b in BLACK_BOX) for nm in names]
    after_white = {nm for k, nm in enumerate(names) if is_bb[k] and not all(is_bb[:k])}
    if not after_white:
        return {"ran": False}
    broken = sum(1 for b in result.broken_by if b in after_white)
    return {"ran": True, "broken_by_black_box": broken,
            "fraction": broken / max(1, result.n_examples)}


def unbounded_eps(threat: LpThreat, x: torch.Tensor) -> float:
    """A radius that contains the whole [0, 1] box around any image."""
    d = x[0].numel()
    return {"linf": 1.0, "l2": math.sqrt(d), "l1": float(d)}[threat.norm]


def pgd_accuracy(model, x, y, threat: LpThreat, steps: int = 20, batch_size: int = 250) -> float:
    """PGD with the margin loss: unlike cross-entropy, its gradient does not vanish when the
    softmax saturates, so a failure here is about the model, not float32 underflow."""
    from ..attacks.pgd import PGD

    attack = PGD(threat, steps=steps, step_size=2.5 * threat.eps / steps, restarts=1,
                 random_start=True, loss="cw")
    correct = 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        x_adv = attack(model, xb, yb).x_adv
        with torch.no_grad(), model_mode(model, False):
            correct += int((model(x_adv).argmax(1) == yb).sum())
    return correct / max(1, len(x))


def gradient_stats(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Input gradients of the logit margin max_{j≠y} z_j − z_y. Cross-entropy's gradient is
    exactly zero in float32 for very confident predictions, which would flag honest models.

    A model whose output does not depend on its input through autograd (an input transform
    run under ``no_grad`` or on a detached copy) has no gradient at all; that is reported as
    ``no_gradient_path`` with every gradient counted as zero, instead of an autograd error."""
    with model_mode(model, False):
        xg = x.clone().requires_grad_(True)
        with torch.enable_grad():
            z = model(xg)
            other = z.masked_fill(F.one_hot(y, z.shape[1]).bool(), float("-inf")).amax(1)
            margin = other - z.gather(1, y[:, None]).squeeze(1)
            g = (torch.autograd.grad(margin.sum(), xg, allow_unused=True)[0]
                 if margin.requires_grad else None)
    if g is None:
        return {"zero_fraction": 1.0, "non_finite_fraction": 0.0, "median_norm": 0.0,
                "no_gradient_path": True}
    norms = g.flatten(1).norm(dim=1)
    finite = torch.isfinite(g.flatten(1)).all(1)
    return {"zero_fraction": float((norms[finite] == 0).float().mean()) if finite.any() else 1.0,
            "non_finite_fraction": float((~finite).float().mean()),
            "median_norm": float(norms[finite].median()) if finite.any() else float("nan"),
            "no_gradient_path": False}


def masking_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: LpThreat,
                   result: EvalResult, *, n_probe: int = 200,
                   eps_curve: dict[float, float] | None = None) -> dict:
    """Run the four checks on up to ``n_probe`` of the evaluated examples.

    ``eps_curve`` maps ε to robust accuracy when the evaluation itself covered several radii;
    otherwise PGD-20 at ε, 2ε and 4ε on the probe points gives the curve.
    """
    flags: list[dict] = []
    checks: dict = {}

    bb = black_box_gain(result)
    checks["black_box"] = bb
    if bb.get("ran") and bb["fraction"] > BLACK_BOX_GAIN:
        _flag(flags, "black_box", f"a black-box attack broke {bb['broken_by_black_box']} points "
              "that the white-box attacks could not: gradients are likely masked", bb["fraction"])

    correct = (predict(model, x, 500) == y.to(x.device))
    idx = correct.nonzero().flatten()[:n_probe]
    xp, yp = x[idx], y.to(x.device)[idx]
    checks["n_probe"] = len(idx)
    if len(idx) == 0:
        return {"flags": flags, "checks": checks}

    g = gradient_stats(model, xp, yp)
    checks["gradients"] = g
    if g["no_gradient_path"]:
        _flag(flags, "gradients", "the model's output has no gradient path to its input (a "
              "transform under no_grad or on a detached copy): every gradient attack sees "
              "nothing, so its robust accuracy means nothing", 1.0)
        # PGD cannot run on such a model; the other checks need it.
        return {"flags": flags, "checks": checks}
    if g["non_finite_fraction"] > 0:
        _flag(flags, "gradients", "input gradients are not finite for "
              f"{g['non_finite_fraction']:.1%} of examples", g["non_finite_fraction"])
    if g["zero_fraction"] > ZERO_GRAD_FRACTION:
        _flag(flags, "gradients", f"input gradients are exactly zero for "
              f"{g['zero_fraction']:.1%} of examples", g["zero_fraction"])

    if eps_curve is None and threat.eps > 0:
        scales = [1, 2, 4]
        eps_curve = {}
        for s in scales:
            e = threat.eps * s
            if threat.norm == "linf":
                e = min(e, 1.0)
            eps_curve[e] = pgd_accuracy(model, xp, yp, LpThreat(threat.norm, e))
    if eps_curve:
        curve = sorted(eps_curve.items())
        checks["accuracy_vs_eps"] = [{"eps": e, "accuracy": a} for e, a in curve]
        rises = [(e1, a1, e2, a2) for (e1, a1), (e2, a2) in zip(curve, curve[1:])
                 if a2 > a1 + EPS_SLACK]
        flat = len(curve) > 1 and curve[0][1] > 0.1 and curve[-1][1] >= curve[0][1] - EPS_SLACK
        if rises or flat:
            _flag(flags, "accuracy_vs_eps", "robust accuracy does not fall as eps grows",
                  checks["accuracy_vs_eps"])

    big = unbounded_eps(threat, xp)
    acc = pgd_accuracy(model, xp, yp, LpThreat(threat.norm, big), steps=50)
    checks["unbounded"] = {"eps": big, "accuracy": acc}
    if acc > UNBOUNDED_ACC:
        _flag(flags, "unbounded", f"an unbounded attack (eps={big:g}) leaves {acc:.1%} accuracy; "
              "it should reach ~0%", acc)

    return {"flags": flags, "checks": checks}
