"""Validation after a training epoch: clean, FGSM and PGD accuracy and the validation losses on
the validation split, natural and adversarial energies (analysis/energy.py) on it and on a
training subset of the same size, and the catastrophic-overfitting flag of single-step training
(Wong et al., ICLR 2020)."""

from __future__ import annotations

import torch
from torch import nn

from ..analysis.energy import energy_summary
from ..attacks.base import model_mode
from ..data import ImageData
from ..data.loader import iterate_batches
from ..threat import LpThreat
from .objectives import forward
from .routing import Routed


@torch.no_grad()
def _logits(model, x, route):
    return forward(model, x, route)


def attack_subset(model: nn.Module, d: ImageData, n: int, threat: LpThreat, steps: int,
                  device: torch.device, route: str | None, with_fgsm: bool):
    """Natural, PGD-``steps`` (step 2.5ε/steps, Madry et al.'s rule) and (optionally) FGSM
    logits on the first ``n`` examples of ``d``, with the labels."""
    from ..attacks.fgsm import FGSM
    from ..attacks.pgd import PGD

    pgd = PGD(threat, steps=steps, step_size=2.5 * threat.eps / steps, restarts=1,
              random_start=True, early_stop=False)
    fgsm = FGSM(threat) if with_fgsm and threat.norm == "linf" else None
    target = model if route is None else Routed(model, route)
    nat, adv, fg, ys = [], [], [], []
    with model_mode(model, False):
        for idx in iterate_batches(n, 500, shuffle=False):
            x = d.images[idx.to(d.images.device)].to(device, torch.float32) / 255
            y = d.labels[idx.to(d.labels.device)].to(device)
            nat.append(_logits(model, x, route))
            adv.append(_logits(model, pgd(target, x, y).x_adv, route))
            if fgsm is not None:
                fg.append(_logits(model, fgsm(target, x, y).x_adv, route))
            ys.append(y)
    return (torch.cat(nat), torch.cat(adv), torch.cat(fg) if fg else None, torch.cat(ys))


def validate(model: nn.Module, val_data: ImageData | None, train_data: ImageData,
             threat: LpThreat, tc, device: torch.device, route: str | None,
             energies_on_train: bool = True) -> dict:
    """Clean, FGSM and PGD accuracy on the first ``tc.val_n`` validation examples (0: all);
    natural and adversarial energies on them and on as many training examples."""
    d = val_data
    if d is None or len(d) == 0:
        return {}
    n = len(d) if tc.val_n == 0 else min(tc.val_n, len(d))
    steps = tc.val_attack_steps
    nat, adv, fg, ys = attack_subset(model, d, n, threat, steps, device, route, with_fgsm=True)
    out = {"val_clean_accuracy": float((nat.argmax(1) == ys).float().mean()),
           "val_robust_accuracy": float((adv.argmax(1) == ys).float().mean()),
           "val_n": n, "val_attack": f"pgd-{steps}",
           # Cross-entropy of the validation logits: the curve robust overfitting shows in.
           "val_loss": float(torch.nn.functional.cross_entropy(nat.float(), ys)),
           "val_robust_loss": float(torch.nn.functional.cross_entropy(adv.float(), ys))}
    if fg is not None:
        out["val_fgsm_accuracy"] = float((fg.argmax(1) == ys).float().mean())
    out.update(energy_summary(nat, adv, ys, prefix="val_"))
    if energies_on_train:
        nt = min(n, len(train_data))
        tn, ta, _, ty = attack_subset(model, train_data, nt, threat, steps, device, route,
                                      False)
        out["train_subset_robust_accuracy"] = float((ta.argmax(1) == ty).float().mean())
        out.update(energy_summary(tn, ta, ty, prefix="train_"))
    return out


def catastrophic_overfitting(objective: str, prev: dict, record: dict) -> bool:
    """Catastrophic overfitting (Wong et al., 2020) of single-step training: PGD accuracy
    collapses (by more than 20 points since the last validation) while accuracy against the
    single-step attack it trains on rises."""
    return bool(objective in ("fgsm-rs", "n-fgsm") and prev and "val_fgsm_accuracy" in record
                and record["val_robust_accuracy"] < prev["val_robust_accuracy"] - 0.2
                and record["val_fgsm_accuracy"] > prev["val_fgsm_accuracy"])
