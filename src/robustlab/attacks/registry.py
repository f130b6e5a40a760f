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

# Attacks in modules that may be absent from a partial checkout: (name, module, class).
_OPTIONAL = (("fab", "fab", "FAB"), ("fab-t", "fab", "FABTargeted"),
             ("square", "square", "SquareAttack"))


def register(name: str, cls: type) -> type:
    """Add (or replace) the attack class called ``name``; returns ``cls`` so it can decorate."""
    ATTACKS[name] = cls
    return cls


def _register_optional() -> None:
    for name, module, cls_name in _OPTIONAL:
        if name in ATTACKS:
            continue
        try:
            mod = importlib.import_module(f"{__package__}.{module}")
        except ModuleNotFoundError as e:
            if e.name != f"{__package__}.{module}":
                raise
            continue
        cls = getattr(mod, cls_name, None)
        if cls is not None:
            register(name, cls)


_register_optional()


def list_attacks() -> list[str]:
    return sorted(ATTACKS)


def get_attack_class(name: str) -> type:
    if name not in ATTACKS:
        raise UserError(f"unknown attack {name!r}; known attacks: {', '.join(list_attacks())}")
    return ATTACKS[name]


def make_attack(name: str, threat: LpThreat, **settings):
    """The attack ``name`` under ``threat`` with keyword ``settings`` (e.g. steps, restarts)."""
    cls = get_attack_class(name)
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [] if takes_any else [k for k in settings
                                    if k not in params or k in ("self", "threat")]
    if unknown:
        known = [p for p in params if p not in ("self", "threat")]
        raise UserError(f"attack {name!r} has no setting {', '.join(map(repr, unknown))}; "
                        f"its settings: {', '.join(known)}")
    return cls(threat, **settings)
