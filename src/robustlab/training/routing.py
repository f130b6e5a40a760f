"""Mixture batch norm (Xie and Yuille, ICLR 2020; models/norm.py) takes a BN route with every
call; attacks call a model with the input alone, so they get it pinned to one route."""

from __future__ import annotations

from torch import nn


class Routed(nn.Module):
    """A mixture-BN model pinned to one BN route, so attacks can call it with x alone."""

    def __init__(self, model: nn.Module, route: str):
        super().__init__()
        self.model, self.route = model, route

    def forward(self, x):
        return self.model(x, bn=self.route)
