"""Energies of a classifier seen as an energy-based model (Grathwohl et al., ICLR 2020; used for
robust classifiers by Mirza et al., ECCV 2024).

With logits f(x): the marginal energy E(x) = −logsumexp_k f(x)_k and the joint energy
E(x, y) = −f(x)_y. Robust training keeps natural and adversarial energies close; the gap
ΔE = E(x) − E(x_adv) plunging late in training marks robust overfitting.
"""

from __future__ import annotations

import torch


def energy(logits: torch.Tensor) -> torch.Tensor:
    """E(x) = −logsumexp f(x), per example."""
    return -torch.logsumexp(logits.float(), dim=1)


def joint_energy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """E(x, y) = −f(x)_y, per example."""
    return -logits.float().gather(1, y.view(-1, 1)).squeeze(1)


def energy_summary(logits_nat: torch.Tensor, logits_adv: torch.Tensor | None,
                   y: torch.Tensor, prefix: str = "") -> dict:
    """Mean and standard deviation of natural and adversarial energies and the gap ΔE."""
    out = {}
    e_nat, ej_nat = energy(logits_nat), joint_energy(logits_nat, y)
    out[f"{prefix}energy_nat_mean"] = float(e_nat.mean())
    out[f"{prefix}energy_nat_std"] = float(e_nat.std()) if e_nat.numel() > 1 else 0.0
    out[f"{prefix}joint_energy_nat_mean"] = float(ej_nat.mean())
    out[f"{prefix}joint_energy_nat_std"] = float(ej_nat.std()) if ej_nat.numel() > 1 else 0.0
    if logits_adv is not None:
        e_adv, ej_adv = energy(logits_adv), joint_energy(logits_adv, y)
        out[f"{prefix}energy_adv_mean"] = float(e_adv.mean())
        out[f"{prefix}energy_adv_std"] = float(e_adv.std()) if e_adv.numel() > 1 else 0.0
        out[f"{prefix}joint_energy_adv_mean"] = float(ej_adv.mean())
        out[f"{prefix}joint_energy_adv_std"] = float(ej_adv.std()) if ej_adv.numel() > 1 else 0.0
        out[f"{prefix}delta_energy"] = float((e_nat - e_adv).mean())
        out[f"{prefix}delta_joint_energy"] = float((ej_nat - ej_adv).mean())
    return out
