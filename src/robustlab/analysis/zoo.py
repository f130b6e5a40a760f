"""Model-zoo metrics of Su et al. ("Is robustness the cost of accuracy?", ECCV 2018): summaries
of minimal distortion, the accuracy-robustness Pareto front, the linear law of distortion
against the log of the classification error, and model families."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
from scipy import stats

from ..errors import UserError

FAMILIES = ("cnn", "resnet", "wrn", "preact-resnet")
# The minimal-distortion metrics of a zoo (Su et al., Sec. 4): (results key, norm, label).
DISTORTIONS = (("cw-l2", "l2", "C&W ℓ2"), ("ead", "l1", "EAD ℓ1"), ("ifgsm", "linf", "I-FGSM ℓ∞"),
               ("fgsm", "linf", "FGSM ℓ∞"))
# CLEVER scores (Weng et al., ICLR 2018) in the same form.
CLEVERS = (("clever-l2", "l2", "CLEVER ℓ2"), ("clever-linf", "linf", "CLEVER ℓ∞"))


def distortion_summary(distortion) -> dict[str, float]:
    """Mean and median distortion over the successful examples (finite distortion) only, and the
    success rate over all examples (NaN statistics when nothing succeeded)."""
    d = np.asarray(distortion.detach().cpu() if hasattr(distortion, "detach") else distortion,
                   dtype=np.float64).ravel()
    if d.size == 0:
        raise UserError("distortion_summary: no examples")
    ok = np.isfinite(d)
    succ = d[ok]
    return {"mean": float(succ.mean()) if succ.size else math.nan,
            "median": float(np.median(succ)) if succ.size else math.nan,
            "success_rate": float(ok.mean()), "n": int(d.size)}


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices (in input order) of the points no other point dominates, maximising both
    accuracy and robustness. A point is dominated if another is ≥ in both and > in one; exact
    duplicates are all kept."""
    pts = [(float(a), float(r)) for a, r in points]
    front = []
    for i, (a, r) in enumerate(pts):
        dominated = any(a2 >= a and r2 >= r and (a2 > a or r2 > r) for a2, r2 in pts)
        if not dominated:
            front.append(i)
    return front


def fit_distortion_vs_log_error(distortions: Sequence[float],
                                errors: Sequence[float]) -> dict[str, float]:
    """Least-squares fit of ``distortion = a·ln(error) + b`` over models (Su et al. find it linear:
    models with lower error are less robust). Returns slope a, intercept b, r2 and n."""
    d = np.asarray(distortions, dtype=np.float64)
    e = np.asarray(errors, dtype=np.float64)
    if d.shape != e.shape or d.size < 2:
        raise UserError(f"the distortion/log-error fit needs two equal-length lists of >= 2 "
                        f"values, got {d.size} and {e.size}")
    if not (e > 0).all():
        raise UserError("the distortion/log-error fit needs errors > 0 (ln of 0 is undefined)")
    fit = stats.linregress(np.log(e), d)
    return {"slope": float(fit.slope), "intercept": float(fit.intercept),
            "r2": float(fit.rvalue ** 2), "n": int(d.size)}


_FAMILY_PATTERNS = (
    ("preact-resnet", re.compile(r"pre[-_]?act")),
    # The published WideResNets (dm-wrn-D-W, trades-wrn-D-W) are WideResNets too.
    ("wrn", re.compile(r"^((dm|trades)-)?(wrn|wide[-_]?resnet)")),
    ("resnet", re.compile(r"^resnet")),
    ("cnn", re.compile(r"cnn")),
)


def family_of(name: str) -> str:
    """The architecture family of a model name: cnn, resnet, wrn or preact-resnet."""
    key = name.strip().lower()
    for family, pattern in _FAMILY_PATTERNS:
        if pattern.search(key):
            return family
    raise UserError(f"unknown model family for {name!r}; expected a name of one of "
                    f"{', '.join(FAMILIES)}")
