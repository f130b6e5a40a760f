"""AutoAttack-style suites (Croce and Hein, ICML 2020): lists of attacks that
:func:`robustlab.evaluate` runs in turn, each only on the points still robust.

Versions:

- ``standard`` (the original's ``standard``, as RobustBench runs it; settings from
  ``pyautoattack`` 0.2.0's ``_set_version``):
  ℓ∞ and ℓ2: APGD-CE (100 iterations, 1 restart), APGD-T (targeted DLR, 9 target classes, 100
  iterations, 1 restart each), FAB-T (9 targets, 100 iterations, 1 restart each), Square (5000
  iterations after the initial query, p_init 0.8, 1 restart, p schedule not rescaled).
  ℓ1: APGD-CE with 5 restarts, APGD-T with 5 target classes, then the same FAB-T (9 targets)
  and Square. The original also switches its ℓ1 APGD to its large-ε schedule
  (``use_largereps``); that schedule is APGD's own business (``apgd.py``).
- ``plus``: the original's ``plus``, for every norm (the original only warns outside ℓ∞ and
  ℓ2): APGD-CE and APGD-DLR with 5 restarts, FAB with 5 restarts, Square (5000 iterations, 1
  restart — the original's code sets no Square restarts for ``plus``), APGD-T and FAB-T over 9
  targets with 1 restart each.
- ``rand``: for randomised defences: APGD-CE and APGD-DLR with expectation over transformation
  (EOT; 20 samples per gradient, as in the original ``rand`` version).
- ``fast``: robustlab's cheaper suite, aiming at ``standard``'s robust accuracy: APGD-CE with 50
  iterations drops the easy points, then APGD-T over the 3 most likely other classes with 50
  iterations each. Examples stop being attacked the moment they are broken. Its agreement with
  ``standard`` is measured in ``bench/autoattack_vs_torchattacks.py`` (docs/benchmarks.md), not
  assumed.
- ``custom``: any list of registered attack names.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from ..threat import LpThreat
from .registry import make_attack

VERSIONS = ("standard", "fast", "plus", "rand", "custom")


class EOT(nn.Module):
    """Expectation over transformation for randomised models: the mean of ``samples`` stochastic
    forward passes, so a gradient through it is the average gradient over the randomness
    (Athalye et al., ICML 2018)."""

    def __init__(self, model: nn.Module, samples: int = 20):
        super().__init__()
        self.model, self.samples = model, samples

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.model(x) for _ in range(self.samples)]).mean(0)


class WithEOT:
    """An attack run against the EOT-averaged model; the final check in
    :func:`robustlab.evaluate` still uses the plain (random) model."""

    def __init__(self, attack, samples: int = 20):
        self.attack, self.samples = attack, samples
        self.threat = attack.threat
        self.label = f"{attack.name}-eot{samples}"
        self.name = self.label

    def __call__(self, model, x, y):
        return self.attack(EOT(model, self.samples), x, y)


def _labelled(attack, label: str):
    attack.label = label
    return attack


def build_suite(version: str, threat: LpThreat, *, num_classes: int = 10,
                attacks: list[str] | None = None, seed: int = 0) -> list:
    """The list of attacks for an AutoAttack version under ``threat``."""
    if version not in VERSIONS:
        raise UserError(f"unknown attack suite {version!r}; expected one of {', '.join(VERSIONS)}")
    n_targets = max(1, min(9, num_classes - 1))
    l1 = threat.norm == "l1"
    if version == "custom":
        if not attacks:
            raise UserError("the custom suite needs a list of attacks")
        return [make_attack(name, threat) for name in attacks]
    if attacks:
        raise UserError(f"a list of attacks is for the custom suite, not {version!r}")
    if version == "standard":
        # The original's _set_version: for ℓ1 APGD-CE gets 5 restarts and APGD-T 5 targets;
        # FAB-T keeps 9 targets in every norm.
        apgd_t_targets = min(5, n_targets) if l1 else n_targets
        return [make_attack("apgd-ce", threat, steps=100, restarts=5 if l1 else 1),
                make_attack("apgd-t", threat, steps=100, n_target_classes=apgd_t_targets),
                make_attack("fab-t", threat, steps=100, restarts=1, n_target_classes=n_targets),
                make_attack("square", threat, n_queries=5000, p_init=0.8, restarts=1,
                            rescale_schedule=False)]
    if version == "fast":
        return [_labelled(make_attack("apgd-ce", threat, steps=50, restarts=1), "apgd-ce-50"),
                _labelled(make_attack("apgd-t", threat, steps=50,
                                      n_target_classes=min(3, n_targets)), "apgd-t3-50")]
    if version == "plus":
        return [_labelled(make_attack("apgd-ce", threat, steps=100, restarts=5), "apgd-ce-x5"),
                _labelled(make_attack("apgd-dlr", threat, steps=100, restarts=5),
                          "apgd-dlr-x5"),
                _labelled(make_attack("fab", threat, steps=100, restarts=5), "fab-x5"),
                make_attack("square", threat, n_queries=5000, p_init=0.8, restarts=1,
                            rescale_schedule=False),
                make_attack("apgd-t", threat, steps=100, n_target_classes=n_targets),
                make_attack("fab-t", threat, steps=100, restarts=1, n_target_classes=n_targets)]
    # rand
    return [WithEOT(make_attack("apgd-ce", threat, steps=100, restarts=1)),
            WithEOT(make_attack("apgd-dlr", threat, steps=100, restarts=1))]
