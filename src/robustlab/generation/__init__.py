"""Sampling images from a classifier: seeds (``seeds.py``) and samplers by name."""

from __future__ import annotations

import inspect

from ..errors import UserError
from .seeds import SEED_KINDS, ClassSeeds, fit_seeds
from .sgld import SGLD
from .targeted_pgd import TargetedPGD

SAMPLERS: dict[str, type] = {"sgld": SGLD, "pgd": TargetedPGD}

__all__ = ["SAMPLERS", "SEED_KINDS", "SGLD", "ClassSeeds", "TargetedPGD", "fit_seeds",
           "make_sampler"]


def make_sampler(name: str, **settings):
    """The sampler ``name`` with keyword ``settings``; None values mean the default."""
    if name not in SAMPLERS:
        raise UserError(f"unknown sampler {name!r}; choose from {', '.join(sorted(SAMPLERS))}")
    cls = SAMPLERS[name]
    params = inspect.signature(cls.__init__).parameters
    settings = {k: v for k, v in settings.items() if v is not None}
    unknown = [k for k in settings if k not in params or k == "self"]
    if unknown:
        known = [p for p in params if p != "self"]
        raise UserError(f"sampler {name!r} has no setting {', '.join(unknown)}; its settings: "
                        f"{', '.join(known)}")
    return cls(**settings)
