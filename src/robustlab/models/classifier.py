"""The model every ``create`` returns: input normalisation, then a network, plus its config."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import UserError
from .norm import bn_route


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with mean and std as buffers so they travel with the
    weights. Models therefore take images in [0, 1] and attacks work on the pixel scale."""

    def __init__(self, channels: int, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None) -> None:
        super().__init__()
        mean = [0.0] * channels if mean is None else [float(v) for v in mean]
        std = [1.0] * channels if std is None else [float(v) for v in std]
        for what, v in (("mean", mean), ("std", std)):
            if len(v) != channels:
                raise UserError(f"model {what} has {len(v)} values for {channels} input "
                                f"channels")
        if any(s <= 0 for s in std):
            raise UserError(f"model std must be positive, got {std}")
        self.register_buffer("mean", torch.tensor(mean).view(1, channels, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"channels={self.mean.shape[1]}"


class Classifier(nn.Module):
    """``net(normalize(x))``. ``config`` is a plain dict from which ``create(**config)`` rebuilds
    the same architecture; it is stored in every checkpoint.

    ``forward(x, bn="adv")`` routes mixture batch norms for that one call (None keeps the routes
    already set, "clean" by default)."""

    def __init__(self, net: nn.Module, normalize: Normalize, config: dict[str, Any]) -> None:
        super().__init__()
        self.normalize = normalize
        self.net = net
        self.config = dict(config)

    def forward(self, x: Tensor, bn: str | None = None) -> Tensor:
        if bn is None:
            return self.net(self.normalize(x))
        with bn_route(self, bn):
            return self.net(self.normalize(x))

    def extra_repr(self) -> str:
        return f"name={self.config.get('name')!r}, norm={self.config.get('norm')!r}"
