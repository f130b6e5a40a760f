"""Per-example attack losses: higher means more adversarial.

Untargeted losses take ``(logits, y)``; targeted ones take ``(logits, y, target)`` and grow as the
prediction moves from ``y`` towards ``target``. Every function returns one value per example, so
an attack can keep per-example best points and step sizes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..errors import UserError

LossFn = Callable[..., torch.Tensor]


def _true_logit(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return logits.gather(1, y[:, None]).squeeze(1)


def _max_other(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """max_{j ≠ y} z_j."""
    masked = logits.scatter(1, y[:, None], float("-inf"))
    return masked.amax(dim=1)


def _need_classes(logits: torch.Tensor, k: int, name: str) -> None:
    if logits.shape[1] < k:
        raise UserError(f"the {name} loss needs at least {k} classes, the model has "
                        f"{logits.shape[1]}; use loss 'ce' or 'cw'")


def ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the true class (Madry et al., ICLR 2018)."""
    return F.cross_entropy(logits, y, reduction="none")


def ce_targeted(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Minus the cross-entropy of the target class: maximising it makes ``target`` likely."""
    return -F.cross_entropy(logits, target, reduction="none")


def cw(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Carlini-Wagner margin max_{j≠y} z_j − z_y (Carlini & Wagner, S&P 2017); > 0 iff
    misclassified."""
    return _max_other(logits, y) - _true_logit(logits, y)


def cw_targeted(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Targeted margin z_t − max_{j≠t} z_j; > 0 iff the prediction is ``target``."""
    return _true_logit(logits, target) - _max_other(logits, target)


def dlr(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference of logits ratio −(z_y − max_{j≠y} z_j) / (z_π1 − z_π3) (Croce & Hein, ICML
    2020, eq. 6): the CW margin made invariant to shifting and rescaling the logits."""
    _need_classes(logits, 3, "dlr")
    top, _ = logits.sort(dim=1, descending=True)
    margin = _true_logit(logits, y) - _max_other(logits, y)
    return -margin / (top[:, 0] - top[:, 2] + 1e-12)


def dlr_targeted(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Targeted DLR −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2) (Croce & Hein, ICML 2020, eq. 7)."""
    _need_classes(logits, 4, "targeted dlr")
    top, _ = logits.sort(dim=1, descending=True)
    margin = _true_logit(logits, y) - _true_logit(logits, target)
    return -margin / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


LOSSES: dict[str, LossFn] = {"ce": ce, "cw": cw, "dlr": dlr}
TARGETED_LOSSES: dict[str, LossFn] = {"ce": ce_targeted, "cw": cw_targeted, "dlr": dlr_targeted}


def get_loss(name: str, targeted: bool = False) -> LossFn:
    """The loss called ``name`` (``ce``, ``cw``, ``dlr``); its targeted form if ``targeted``,
    then called as ``loss(logits, y, target)``."""
    table = TARGETED_LOSSES if targeted else LOSSES
    if name not in table:
        raise UserError(f"unknown attack loss {name!r}; expected one of {', '.join(table)}")
    return table[name]
