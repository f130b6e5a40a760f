"""Transferability of adversarial examples over every ordered pair of models, as in Su et al.
("Is robustness the cost of accuracy?", ECCV 2018, Sec. 5).

Adversarial examples are made on a source model and fed to a target model. Images the target
already gets wrong are skipped, so a transfer rate is the share of the target's correct images
that the source's examples break. The diagonal (source = target) is the white-box success rate.
Where models take inputs of different sizes the images are resized bilinearly and the channels
adapted (grey → RGB by repetition, RGB → grey by the channel mean).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks.base import Attack, model_mode
from ..errors import UserError


def adapt_input(x: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """``x`` (N, C, H, W) made into images of ``shape`` (C', H', W'); unchanged when equal."""
    c, h, w = shape
    if x.shape[1] != c:
        if x.shape[1] == 1:
            x = x.repeat(1, c, 1, 1)
        elif c == 1:
            x = x.mean(1, keepdim=True)
        else:
            raise UserError(f"cannot adapt {x.shape[1]}-channel images to {c} channels")
    if tuple(x.shape[2:]) != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)
    return x


def _predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    with model_mode(model, False), torch.no_grad():
        return torch.cat([model(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])


def transfer_matrix(models: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor,
                    make_attack: Callable[[nn.Module], Attack], targeted: bool = False,
                    target_mode: str = "least-likely",
                    input_shapes: dict[str, tuple[int, int, int]] | None = None,
                    batch_size: int = 256) -> dict:
    """Success of each source model's adversarial examples on each target model.

    ``make_attack(source_model)`` builds the attack for a source; a targeted attack must return
    its targets in ``extras["target"]`` (chosen by ``target_mode``, which is recorded). Each
    model takes images of ``input_shapes[name]`` (default: the shape of ``x``).

    Returns ``{"names", "untargeted": [[rate]], "counts": [[n]]}`` with rows the sources and
    columns the targets; with ``targeted`` also ``"top1"`` and ``"top5"`` (the target class is
    the target model's prediction, or among its 5 most likely classes).
    """
    if not models:
        raise UserError("transfer_matrix needs at least one model")
    if x.shape[0] != y.shape[0]:
        raise UserError(f"transfer_matrix: {x.shape[0]} images but {y.shape[0]} labels")
    names = list(models)
    shapes = {name: tuple((input_shapes or {}).get(name, tuple(x.shape[1:]))) for name in names}
    correct = {}
    for name in names:
        logits = _predict(models[name], adapt_input(x, shapes[name]), batch_size)
        correct[name] = logits.argmax(1) == y
    k = len(names)
    untargeted = [[0.0] * k for _ in range(k)]
    top1 = [[0.0] * k for _ in range(k)]
    top5 = [[0.0] * k for _ in range(k)]
    counts = [[0] * k for _ in range(k)]
    for i, src in enumerate(names):
        attack = make_attack(models[src])
        result = attack(models[src], adapt_input(x, shapes[src]), y)
        target = (result.extras or {}).get("target")
        if targeted and target is None:
            raise UserError(f"transfer_matrix: the attack on {src!r} is not targeted "
                            "(it returns no extras['target'])")
        for j, dst in enumerate(names):
            keep = correct[dst]
            n = int(keep.sum())
            counts[i][j] = n
            if n == 0:
                untargeted[i][j] = top1[i][j] = top5[i][j] = float("nan")
                continue
            logits = _predict(models[dst], adapt_input(result.x_adv, shapes[dst]), batch_size)
            untargeted[i][j] = float((logits.argmax(1) != y)[keep].float().mean())
            if targeted:
                t = target[keep]
                lk = logits[keep]
                top1[i][j] = float((lk.argmax(1) == t).float().mean())
                kk = min(5, lk.shape[1])
                top5[i][j] = float((lk.topk(kk, dim=1).indices == t[:, None]).any(1)
                                   .float().mean())
    out = {"names": names, "untargeted": untargeted, "counts": counts, "targeted": targeted}
    if targeted:
        out.update(top1=top1, top5=top5, target_mode=target_mode)
    return out
