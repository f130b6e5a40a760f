"""Attacks by name, so configs and the AutoAttack-style suite can say ``"apgd-ce"``.

``make_attack("apgd-ce", threat, steps=100, restarts=1)`` builds an attack; every iterative
attack accepts ``steps`` and ``restarts``.
"""

from __future__ import annotations

import importlib
import inspect

from ..errors import UserError
from ..threat import LpThreat
from .apgd import APGD, APGDDLR, APGDT
from .fgsm import FGSM
from .pgd import PGD

ATTACKS: dict[str, type] = {
    "fgsm": FGSM,
    "pgd": PGD,
    "apgd-ce": APGD,
    "apgd-dlr": APGDDLR,
    "apgd-t": APGDT,
}

# Attacks in other modules, imported on first use of the registry: (name, module, class).
# Modules outside this package are given with their full path.
_OPTIONAL = (("fab", "fab", "FAB"), ("fab-t", "fab", "FABTargeted"),
             ("square", "square", "SquareAttack"),
             ("trades-kl", "trades", "TradesKL"),
             # Minimal-distortion attacks (unbounded; they set their own threat model).
             ("cw-l2", "cw", "CarliniWagnerL2"), ("ead", "ead", "EAD"),
             ("ifgsm-search", "eps_search", "IFGSMSearch"),
             ("fgsm-search", "eps_search", "FGSMSearch"),
             # Spatial attacks take a robustlab.spatial.SpatialThreat.
             ("spatial-grid", "robustlab.spatial.attacks", "GridAttack"),
             ("spatial-random", "robustlab.spatial.attacks", "RandomSpatial"),
             ("spatial-first-order", "robustlab.spatial.attacks", "FirstOrderSpatial"),
             ("spatial-grid-linf", "robustlab.spatial.attacks", "GridLinf"))


def register(name: str, cls: type) -> type:
    """Add (or replace) the attack class called ``name``; returns ``cls`` so it can decorate."""
    ATTACKS[name] = cls
    return cls


def _register_optional() -> None:
    for name, module, cls_name in _OPTIONAL:
        if name in ATTACKS:
            continue
        path = module if "." in module else f"{__package__}.{module}"
        try:
            mod = importlib.import_module(path)
        except ModuleNotFoundError as e:
            if e.name != path:
                raise
            continue
        cls = getattr(mod, cls_name, None)
        if cls is not None:
            register(name, cls)


_register_optional()
if "spatial-random" in ATTACKS:
    ATTACKS["spatial-worst-of-10"] = ATTACKS["spatial-random"]


def list_attacks() -> list[str]:
    return sorted(ATTACKS)


def get_attack_class(name: str) -> type:
    if name not in ATTACKS:
        raise UserError(f"unknown attack {name!r}; known attacks: {', '.join(list_attacks())}")
    return ATTACKS[name]


def make_attack(name: str, threat: LpThreat, **settings):
    """The attack ``name`` under ``threat`` with keyword ``settings`` (e.g. steps, restarts)."""
    cls = get_attack_class(name)
    if name == "spatial-worst-of-10":
        settings = {"k": 10, **settings}
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [] if takes_any else [k for k in settings
                                    if k not in params or k in ("self", "threat")]
    if unknown:
        known = [p for p in params if p not in ("self", "threat")]
        raise UserError(f"attack {name!r} has no setting {', '.join(map(repr, unknown))}; "
                        f"its settings: {', '.join(known)}")
    if "threat" not in params:  # unbounded attacks choose their own threat model
        return cls(**settings)
    return cls(threat, **settings)
