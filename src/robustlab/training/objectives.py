"""Training objectives: an adversary (how to make x_adv, from the attacks layer) and a loss, a
plain function of (model, x, x_adv, y), chosen together by name in the config.

New objectives are one function and one registry entry. The adversary is built from the config's
``[train.attack]`` section; the loss returns the scalar to minimise and the logits whose accuracy
the progress bar shows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..threat import LpThreat


def forward(model: nn.Module, x: torch.Tensor, route: str | None = None) -> torch.Tensor:
    """Call a robustlab model with a mixture-BN route, or any other module plainly."""
    if route is not None and getattr(model, "config", {}).get("norm") == "mixbn":
        return model(x, bn=route)
    return model(x)


LossFn = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def ce_loss(model, x, x_adv, y, *, label_smoothing: float = 0.0, **_):
    """Standard training: cross-entropy on natural inputs."""
    logits = forward(model, x, "clean")
    return F.cross_entropy(logits, y, label_smoothing=label_smoothing), logits


def adversarial_ce_loss(model, x, x_adv, y, *, label_smoothing: float = 0.0,
                        clean_fraction: float = 0.0, **_):
    """Cross-entropy on adversarial inputs (Madry et al., 2018), with an optional share of clean
    examples in the batch. With mixture BN, clean and adversarial examples go through their own
    batch-norm statistics (Xie and Yuille, 2020)."""
    n_clean = int(round(clean_fraction * x.shape[0]))
    if n_clean == 0:
        logits = forward(model, x_adv, "adv")
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing), logits
    logits_clean = forward(model, x[:n_clean], "clean")
    logits_adv = forward(model, x_adv[n_clean:], "adv")
    logits = torch.cat([logits_clean, logits_adv])
    return F.cross_entropy(logits, y, label_smoothing=label_smoothing), logits


def _kl(logits_nat, logits_adv):
    from ..attacks.trades import kl_per_example

    return kl_per_example(logits_nat, logits_adv)


def trades_loss(model, x, x_adv, y, *, beta: float = 6.0, label_smoothing: float = 0.0, **_):
    """TRADES (Zhang et al., ICML 2019): CE(f(x), y) + β · KL(p(·|x) ‖ p(·|x_adv)), the KL
    averaged over the batch."""
    logits_nat = forward(model, x, "clean")
    logits_adv = forward(model, x_adv, "adv")
    loss = F.cross_entropy(logits_nat, y, label_smoothing=label_smoothing) \
        + beta * _kl(logits_nat, logits_adv).mean()
    return loss, logits_adv


def weat_weights(logits_nat: torch.Tensor) -> torch.Tensor:
    """WEAT's per-example weight w(x) = 1 / log(1 + exp(|E(x)|)), E(x) = −logsumexp f(x) on the
    natural input, detached and not normalised (Mirza et al., ECCV 2024)."""
    e = -torch.logsumexp(logits_nat.detach().float(), dim=1)
    return 1.0 / F.softplus(e.abs())


def weat_loss(model, x, x_adv, y, *, beta: float = 6.0, natural_ce: bool = False, **_):
    """Weighted Energy Adversarial Training (Mirza, Briglia, Beadini and Masi, ECCV 2024):
    mean of w·CE(f(x_adv), y) + β · mean of w·KL(p(·|x) ‖ p(·|x_adv)); ``weat-nat`` puts the CE
    on the natural logits instead."""
    logits_nat = forward(model, x, "clean")
    logits_adv = forward(model, x_adv, "adv")
    w = weat_weights(logits_nat)
    ce = F.cross_entropy(logits_nat if natural_ce else logits_adv, y, reduction="none")
    loss = (w * ce).mean() + beta * (w * _kl(logits_nat, logits_adv)).mean()
    return loss, logits_adv


def weat_nat_loss(model, x, x_adv, y, **kw):
    return weat_loss(model, x, x_adv, y, natural_ce=True, **kw)


@dataclass
class Objective:
    name: str
    loss: LossFn
    # Builds the adversary from (threat, attack settings section, train section); None: no attack.
    make_adversary: Callable | None = None
    doc: str = ""


def _fgsm_rs(threat: LpThreat, attack_cfg, train_cfg):
    from ..attacks.fgsm import FGSM

    if threat.norm != "linf":
        raise UserError("fgsm-rs: single-step training is defined for linf only")
    # Wong et al. (2020): uniform random start in the ball and a step of 1.25 eps.
    step = attack_cfg.step_size or 1.25 * threat.eps
    return FGSM(threat, random_start=True, step_size=step)


def _pgd(threat: LpThreat, attack_cfg, train_cfg):
    from ..attacks.pgd import PGD

    # Madry et al. (2018): step 2.5 eps / steps; random start; no early stop during training.
    step = attack_cfg.step_size or 2.5 * threat.eps / attack_cfg.steps
    return PGD(threat, steps=attack_cfg.steps, step_size=step, restarts=attack_cfg.restarts,
               random_start=True, early_stop=False)


def _trades_kl(threat: LpThreat, attack_cfg, train_cfg):
    from ..attacks.trades import TradesKL

    step = attack_cfg.step_size or threat.eps / 4
    return TradesKL(threat, steps=attack_cfg.steps, step_size=step)


class _NFGSM:
    """N-FGSM (de Jorge et al., NeurIPS 2022): noise from [−2ε, 2ε], a step of ε, no projection
    back to the ε-ball. Its examples leave the ball by design, so this is a training-time
    perturbation, not an :class:`~robustlab.attacks.base.Attack`, and is not threat-checked."""

    train_mode = True

    def __init__(self, threat: LpThreat, step: float | None):
        self.threat, self.step = threat, step

    def __call__(self, model, x, y):
        from types import SimpleNamespace

        from ..attacks.base import model_mode
        from ..attacks.fgsm import n_fgsm_perturbation

        eps = self.threat.eps
        with model_mode(model, self.train_mode):
            x_adv = n_fgsm_perturbation(model, x, y, eps, noise=2 * eps,
                                        step=self.step or eps)
        return SimpleNamespace(x_adv=x_adv.detach())


def _n_fgsm(threat: LpThreat, attack_cfg, train_cfg):
    if threat.norm != "linf":
        raise UserError("n-fgsm: single-step training is defined for linf only")
    return _NFGSM(threat, attack_cfg.step_size or None)


OBJECTIVES: dict[str, Objective] = {
    "ce": Objective("ce", ce_loss, None, "standard training on natural inputs"),
    "fgsm-rs": Objective("fgsm-rs", adversarial_ce_loss, _fgsm_rs,
                         "single-step FGSM with random start (Wong et al., 2020)"),
    "pgd-at": Objective("pgd-at", adversarial_ce_loss, _pgd,
                        "PGD adversarial training (Madry et al., 2018)"),
    "n-fgsm": Objective("n-fgsm", adversarial_ce_loss, _n_fgsm,
                        "single-step with 2-eps noise, no clipping (de Jorge et al., 2022)"),
    "trades": Objective("trades", trades_loss, _trades_kl,
                        "TRADES (Zhang et al., 2019)"),
    "weat": Objective("weat", weat_loss, _trades_kl,
                      "Weighted Energy Adversarial Training (Mirza et al., 2024)"),
    "weat-nat": Objective("weat-nat", weat_nat_loss, _trades_kl,
                          "WEAT with CE on natural logits"),
}


def get_objective(name: str) -> Objective:
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise UserError(f"unknown objective {name!r}; known: {', '.join(OBJECTIVES)}") from None
