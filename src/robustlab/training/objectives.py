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
from ..models.norm import is_mixbn
from ..threat import LpThreat


def forward(model: nn.Module, x: torch.Tensor, route: str | None = None) -> torch.Tensor:
    """Call a robustlab model with a mixture-BN route, or any other module plainly."""
    if route is not None and is_mixbn(model):
        return model(x, bn=route)
    return model(x)


LossFn = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def ce_loss(model, x, x_adv, y, *, label_smoothing: float = 0.0, **_):
    """Standard training: cross-entropy on natural inputs."""
    logits = forward(model, x, "clean")
    return F.cross_entropy(logits, y, label_smoothing=label_smoothing), logits


def clean_count(clean_fraction: float, batch: int) -> int:
    """How many of a batch's examples stay clean (the first ones) at ``clean_fraction``."""
    return int(round(clean_fraction * batch))


def adversarial_ce_loss(model, x, x_adv, y, *, label_smoothing: float = 0.0,
                        clean_fraction: float = 0.0, **_):
    """Cross-entropy on adversarial inputs (Madry et al., 2018), with an optional share of clean
    examples in the batch (the first ``clean_count`` rows of ``x``).

    With one batch norm the clean and adversarial examples go through it as one batch, so its
    statistics are those of the mixture: the setting whose two-domain statistics Xie and Yuille
    (ICLR 2020) show hurt robustness. With mixture BN each part goes through its own set."""
    n_clean = clean_count(clean_fraction, x.shape[0])
    if n_clean == 0:
        logits = forward(model, x_adv, "adv")
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing), logits
    if is_mixbn(model):
        logits = torch.cat([forward(model, x[:n_clean], "clean"),
                            forward(model, x_adv[n_clean:], "adv")])
    else:
        logits = model(torch.cat([x[:n_clean], x_adv[n_clean:]]))
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
    # The adversary also takes ``spatial=`` (the config's [spatial] section; defaults if None).
    uses_spatial: bool = False
    # Adversarial weight perturbation around this loss ("at" or "trades"; training/awp.py).
    awp: str | None = None
    # Free adversarial training: the trainer replays each batch (training/free.py); the loss
    # function is then CE on clip(x + delta), computed there.
    free: bool = False


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


class SpatialAdversary:
    """Worst-of-k spatial adversary of Engstrom et al. ("Exploring the Landscape of Spatial
    Robustness", ICML 2019): the highest-loss of ``k`` random rotations + translations, chosen
    with BN in eval mode (the model learns in train mode). With ``linf_steps > 0`` (the
    ``spatial+pgd`` objective), ℓ∞ PGD then runs on the untransformed input through the chosen
    transform, ``x_adv = T(clip(x + δ))``, as in the paper's combined spatial + ℓ∞ threat.

    The attack's BN mode is fixed to eval by design: ``train_mode`` ignores assignment, so a
    trainer that sets it on every adversary does not change the paper's setting."""

    def __init__(self, threat, k: int = 10, linf_steps: int = 0,
                 linf_step_size: float | None = None):
        from ..spatial import RandomSpatial

        self.threat, self.k, self.linf_steps = threat, int(k), int(linf_steps)
        self.search = RandomSpatial(threat, k=k)
        self.search.train_mode = False
        eps = threat.linf_eps
        self.linf_step_size = linf_step_size or 2.5 * eps / max(1, self.linf_steps)

    @property
    def train_mode(self) -> bool:
        return False

    @train_mode.setter
    def train_mode(self, value: bool) -> None:
        pass  # eval-mode attack by design, see the class docstring

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        from types import SimpleNamespace

        from ..attacks.base import model_mode

        res = self.search(model, x, y)
        if self.linf_steps == 0 or not self.threat.combined:
            return res
        params = res.extras["transform"]
        with model_mode(model, False):
            delta = self._pgd(model, x.detach(), y, params)
        x_adv = self.threat.apply(x, params, delta).detach()
        self.threat.check(x_adv, x, source="spatial+pgd")
        return SimpleNamespace(x_adv=x_adv, extras={"transform": params, "delta": delta})

    def _pgd(self, model, x, y, params):
        eps = self.threat.linf_eps
        delta = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0.0, 1.0) - x
        for _ in range(self.linf_steps):
            delta.requires_grad_(True)
            loss = F.cross_entropy(model(self.threat.apply(x, params, delta)), y)
            (g,) = torch.autograd.grad(loss, delta)
            delta = (delta.detach() + self.linf_step_size * g.sign()).clamp(-eps, eps)
            delta = (x + delta).clamp(0.0, 1.0) - x
        return delta.detach()


def _spatial_threat(spatial, linf_eps: float = 0.0):
    from ..spatial import SpatialThreat

    if spatial is None:
        return SpatialThreat(linf_eps=linf_eps)
    return SpatialThreat(max_angle=spatial.max_angle, max_trans=spatial.max_trans,
                         border=spatial.border, linf_eps=linf_eps)


def _worst_of_k(threat: LpThreat, attack_cfg, train_cfg, spatial=None):
    # Engstrom et al. (2019) train against the worst of 10 random transforms.
    k = spatial.k if spatial is not None else 10
    return SpatialAdversary(_spatial_threat(spatial), k=k)


def _spatial_pgd(threat: LpThreat, attack_cfg, train_cfg, spatial=None):
    # ε from [spatial] linf_eps when set, else from [train.attack] (which must then be linf).
    eps = spatial.linf_eps if spatial is not None and spatial.linf_eps > 0 else 0.0
    if eps == 0.0:
        if threat.norm != "linf":
            raise UserError("spatial+pgd: the l-inf part needs spatial.linf_eps > 0 or "
                            "train.attack.norm = \"linf\"")
        eps = threat.eps
    if eps <= 0:
        raise UserError("spatial+pgd: the l-inf radius must be > 0 (spatial.linf_eps or "
                        "train.attack.eps)")
    k = spatial.k if spatial is not None else 10
    return SpatialAdversary(_spatial_threat(spatial, eps), k=k, linf_steps=attack_cfg.steps,
                            linf_step_size=attack_cfg.step_size or None)


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
    "worst-of-k": Objective("worst-of-k", adversarial_ce_loss, _worst_of_k,
                            "CE on the worst of k random rotations + translations "
                            "(Engstrom et al., 2019)", uses_spatial=True),
    "spatial+pgd": Objective("spatial+pgd", adversarial_ce_loss, _spatial_pgd,
                             "worst-of-k transform, then linf PGD on top (Engstrom et al., "
                             "2019)", uses_spatial=True),
}


def _mart_adversary(threat: LpThreat, attack_cfg, train_cfg):
    from .mart import make_adversary

    return make_adversary(threat, attack_cfg, train_cfg)


def _mart_loss(model, x, x_adv, y, **kw):
    from .mart import mart_loss

    return mart_loss(model, x, x_adv, y, **kw)


def _awp_pgd(threat: LpThreat, attack_cfg, train_cfg):
    from ..attacks.pgd import PGD

    # Wu et al.'s AT_AWP: PGD-10, step 2/255 at eps 8/255 (eps / 4), random start.
    step = attack_cfg.step_size or threat.eps / 4
    return PGD(threat, steps=attack_cfg.steps, step_size=step, restarts=attack_cfg.restarts,
               random_start=True, early_stop=False)


OBJECTIVES.update({
    "mart": Objective("mart", _mart_loss, _mart_adversary,
                      "misclassification-aware AT, boosted CE + weighted KL (Wang et al., 2020)"),
    "free": Objective("free", adversarial_ce_loss, None,
                      "free AT: each batch replayed m times, one backward for weights and "
                      "perturbation (Shafahi et al., 2019)", free=True),
    "pgd-at-awp": Objective("pgd-at-awp", adversarial_ce_loss, _awp_pgd,
                            "PGD-AT with adversarial weight perturbation (Wu et al., 2020)",
                            awp="at"),
    "trades-awp": Objective("trades-awp", trades_loss, _trades_kl,
                            "TRADES with adversarial weight perturbation (Wu et al., 2020)",
                            awp="trades"),
})


def get_objective(name: str) -> Objective:
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise UserError(f"unknown objective {name!r}; known: {', '.join(OBJECTIVES)}") from None
