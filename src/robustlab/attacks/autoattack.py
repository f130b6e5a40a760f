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
- ``rand``: for randomised defences, the original's ``rand`` version: APGD-CE and APGD-DLR
  (100 iterations, 1 restart) with expectation over transformation: each gradient is the mean
  of the loss gradients of 20 random forward passes, success is judged on a sampled prediction,
  and dropout stays on while attacking (:class:`EOT`, :class:`KeepStochastic`).
- ``fast``: robustlab's cheaper suite, aiming at ``standard``'s robust accuracy at a tenth of the
  original's time or less; examples stop being attacked the moment they are broken. Per norm,
  each choice from what ``standard`` breaks that it would otherwise miss (the quickstart
  Fashion-MNIST model, ``bench/autoattack_vs_original.py``, docs/benchmarks.md):

  - ℓ∞: APGD-CE with 50 iterations drops the easy points, then APGD-T over the 3 most likely
    other classes with 50 iterations each (71.2% against the original ``standard``'s 71.0% at
    0.013× its time; FAB-T and Square broke nothing more there).
  - ℓ2: the same APGD-CE, then FAB-T over the 3 most likely other classes with 100 steps
    each, reusing the linearisation of an adversarial iterate after its backward step
    (``fab-t3-100r``; :class:`~robustlab.attacks.fab.FAB`'s ``reuse_linearisation``: one
    forward+backward per step instead of two forwards and one backward), then APGD-T over 3
    targets. In ℓ2 FAB-T breaks points no APGD variant does, and it needs its steps: on the
    1000-image bench (quickstart model of 2026-12-05, the original ``standard`` at 28.2%;
    ``bench/fast_variants.py``, docs/benchmarks.md) APGD-CE-50 and FAB-T over 3 targets left
    30.4% with 50 steps, 28.8% with 100 (46 s in all), 28.4% with 100 steps reusing the
    linearisation (37 s); 2 targets × 100 steps 33.9%, 4 × 75 28.9%, 3 × 50 with 2 restarts
    29.5%. APGD-T3-50 after it: 28.0%. Targets ordered by the nearest linearised boundary and
    a box-aware ℓ2 APGD (exact projection onto ball ∩ box) did no better (tried, not kept). An
    earlier model: of 29 points robust to APGD-CE and 9-target APGD-T, full FAB-T broke 3
    (minimal norms 1.43-1.50 at ε = 1.5), while APGD-T with the CE or CW targeted loss, 3
    restarts, no random start, or APGD-CE/-DLR with 5 restarts broke none.
  - ℓ1: APGD-CE with 50 iterations and 3 restarts, then APGD-T over 3 targets. l1-APGD's
    outcome depends strongly on its random sparse start (the original's ``standard`` spends 5
    restarts on it; on 200 images one 50-iteration run left 15.5% robust, five 100-iteration
    restarts 10.0%), while FAB-T broke at most one point in ℓ1.

  Its agreement with ``standard`` is measured in ``bench/autoattack_vs_original.py``, not
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


# Layers whose randomness a randomised defence relies on; they stay in train mode under
# :class:`KeepStochastic` and :class:`EOT`. A custom module opts in with ``stochastic = True``.
STOCHASTIC_LAYERS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                     nn.FeatureAlphaDropout)


def _keep_random_layers_on(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, STOCHASTIC_LAYERS) or getattr(m, "stochastic", False):
            m.training = True


class KeepStochastic(nn.Module):
    """A randomised model whose random layers survive eval mode.

    Attacks and :func:`robustlab.evaluation.evaluate` run models in eval mode (so batch norm uses
    its running statistics), which also switches dropout off and would evaluate a different,
    deterministic model. Under this wrapper ``eval()`` / ``train(False)`` leave dropout layers
    (and modules with ``stochastic = True``) in train mode; batch norm and everything else
    follow the mode asked for. The original AutoAttack never changes the model's mode, so a
    user gets the same effect there by handing it a model in train mode.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def train(self, mode: bool = True):
        super().train(mode)
        _keep_random_layers_on(self.model)
        return self


class EOT(KeepStochastic):
    """Expectation over transformation for randomised models (Athalye et al., ICML 2018), the
    way the original AutoAttack's ``rand`` version does it (``eot_iter=20``): the gradient an
    attack sees is the mean of the loss gradients of ``samples`` independent forward passes,
    while its loss value and prediction are those of one sampled pass, so success is judged on a
    random prediction, as in the original and in the final check.

    The forward pass itself returns one sample; :class:`EOTLoss` (installed by :class:`WithEOT`
    in place of the attack's loss) draws the other ``samples - 1`` passes and adds their
    gradients. They run one at a time, so memory stays that of one pass. Random layers stay on
    in eval mode (:class:`KeepStochastic`).
    """

    def __init__(self, model: nn.Module, samples: int = 20):
        super().__init__(model)
        self.samples = int(samples)
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.model(x)
        # Remembered so the loss can resample the same input; only while gradients are taken.
        self._last = (x, z) if torch.is_grad_enabled() and x.requires_grad else None
        return z


class EOTLoss:
    """An attack loss whose gradient is averaged over :class:`EOT` samples: its value is the
    loss of the sampled logits it is given, its gradient w.r.t. the input the mean over
    ``eot.samples`` forward passes (Athalye et al., 2018; the original's ``eot_iter``)."""

    def __init__(self, loss_fn, eot: EOT):
        self.loss_fn, self.eot = loss_fn, eot

    def __call__(self, logits: torch.Tensor, *args) -> torch.Tensor:
        loss = self.loss_fn(logits, *args)
        last = self.eot._last
        if last is None or last[1] is not logits or self.eot.samples <= 1:
            return loss
        x = last[0]
        extra = torch.zeros_like(x)
        for _ in range(self.eot.samples - 1):
            (g,) = torch.autograd.grad(self.loss_fn(self.eot.model(x), *args).sum(), x)
            extra += g
        k = self.eot.samples
        # Per example: the linear term's gradient is the other samples' summed gradient; the
        # detached corrections keep the value that of the sampled loss.
        surrogate = (loss + (x * extra).flatten(1).sum(1)) / k
        return loss.detach() + surrogate - surrogate.detach()


class WithEOT:
    """An attack of the APGD family run with gradients averaged over ``samples`` random forward
    passes (:class:`EOT`), the attacks of the original ``rand`` version. The final check in
    :func:`robustlab.evaluate` runs the model once, so a point counts as broken when one random
    prediction is wrong, as in the original; wrap the model in :class:`KeepStochastic` (the
    one-line :func:`robustlab.evaluate` does for ``version="rand"``) for that check to keep
    dropout on too.

    One difference from the original stays: APGD stops attacking an example at its first
    misclassified iterate, which for a random model is the first iterate one random pass
    misclassifies; the original keeps iterating and keeps its last such iterate, which is
    likelier to fool the final pass too."""

    def __init__(self, attack, samples: int = 20):
        if not hasattr(attack, "_loss_fn"):
            raise TypeError(f"EOT needs an attack with a differentiable loss, not {attack!r}")
        self.attack, self.samples = attack, int(samples)
        self.threat = attack.threat
        self.label = f"{attack.name}-eot{samples}"
        self.name = self.label

    @property
    def chunk_size(self) -> int:
        """The wrapped attack's (see :class:`~robustlab.attacks.apgd.APGD`)."""
        return self.attack.chunk_size

    @chunk_size.setter
    def chunk_size(self, value: int) -> None:
        self.attack.chunk_size = value

    def __call__(self, model, x, y):
        eot = EOT(model, self.samples)
        loss_fn = self.attack._loss_fn
        self.attack._loss_fn = EOTLoss(loss_fn, eot)
        try:
            return self.attack(eot, x, y)
        finally:
            self.attack._loss_fn = loss_fn


def _labelled(attack, label: str):
    attack.label = label
    return attack


def fast_suite(threat: LpThreat, n_targets: int = 9) -> list:
    """The ``fast`` suite for ``threat`` (module docstring: what each norm gets and why)."""
    l1, l2 = threat.norm == "l1", threat.norm == "l2"
    restarts = 3 if l1 else 1
    ce = make_attack("apgd-ce", threat, steps=50, restarts=restarts)
    suite = [_labelled(ce, "apgd-ce-50" if restarts == 1 else f"apgd-ce-50x{restarts}")]
    k = min(3, n_targets)
    if l2:
        # FAB-T first: on the points APGD-CE leaves, it breaks most of what APGD-T would, and more;
        # with the linearisation reused after a backward step, a step is one forward+backward.
        suite.append(_labelled(make_attack("fab-t", threat, steps=100, restarts=1,
                                           n_target_classes=k, early_stop=True,
                                           reuse_linearisation=True),
                               f"fab-t{k}-100r"))
    suite.append(_labelled(make_attack("apgd-t", threat, steps=50, n_target_classes=k),
                           f"apgd-t{k}-50"))
    return suite


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
                make_attack("fab-t", threat, steps=100, restarts=1, n_target_classes=n_targets,
                            early_stop=True),
                make_attack("square", threat, n_queries=5000, p_init=0.8, restarts=1,
                            rescale_schedule=False)]
    if version == "fast":
        return fast_suite(threat, n_targets)
    if version == "plus":
        return [_labelled(make_attack("apgd-ce", threat, steps=100, restarts=5), "apgd-ce-x5"),
                _labelled(make_attack("apgd-dlr", threat, steps=100, restarts=5),
                          "apgd-dlr-x5"),
                _labelled(make_attack("fab", threat, steps=100, restarts=5, early_stop=True),
                          "fab-x5"),
                make_attack("square", threat, n_queries=5000, p_init=0.8, restarts=1,
                            rescale_schedule=False),
                make_attack("apgd-t", threat, steps=100, n_target_classes=n_targets),
                make_attack("fab-t", threat, steps=100, restarts=1, n_target_classes=n_targets,
                            early_stop=True)]
    # rand
    return [WithEOT(make_attack("apgd-ce", threat, steps=100, restarts=1)),
            WithEOT(make_attack("apgd-dlr", threat, steps=100, restarts=1))]
