"""Attacks as small objects: settings in the constructor, one call ``attack(model, x, y)``
returning an :class:`AttackResult`. Each is built from a threat model or from ``eps``/``norm``:
``robustlab.attacks.APGD(eps=8/255, norm="linf")(model, x, y).x_adv``. By name:
:func:`make_attack`.

Names are resolved on first use, so importing a submodule (``robustlab.attacks.base``, as the
spatial attacks do) does not import the registry and every attack with it.
"""

import importlib

_EXPORTS = {
    "APGD": "apgd", "APGDT": "apgd", "APGDDLR": "apgd", "PGD": "pgd", "FGSM": "fgsm",
    "FAB": "fab", "FABTargeted": "fab", "Square": "square", "Attack": "base",
    "AttackResult": "base", "make_attack": "registry", "list_attacks": "registry",
    "get_attack_class": "registry", "register": "registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
