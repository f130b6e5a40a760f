"""Adversarial Weight Perturbation (Wu, Xia and Wang, "Adversarial weight perturbation helps
robust generalization", NeurIPS 2020), as a wrapper around ``pgd-at`` and ``trades``.

Each step, after the input attack: a proxy copy of the weights takes one gradient-ascent step on
the objective's loss at (x, x_adv); the step is rescaled per layer to the norm of that layer's
weight, ``v_l = γ · ‖w_l‖ · g_l / ‖g_l‖`` for every weight of two or more dimensions (conv and
linear; norms and biases untouched, as in the authors' ``diff_in_weights``), added to the model
before the loss and backward pass and subtracted after the optimiser step, so the update is
computed at w + v and applied to w. One SGD step of any learning rate on the proxy gives the same
direction after this rescaling, so the gradient itself is used.

The proxy runs in train mode (batch statistics, as the authors') with BN momentum 0, so no
running statistics move, and it never touches the model's gradients.

Defaults from the authors' code (github.com/csdongxian/AWP): γ = 0.01 for AT (AT_AWP) and
γ = 0.005 for TRADES (TRADES_AWP), which also waits ``awp_warmup`` epochs before perturbing
(10 in their script; here 10% of the epochs unless set).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-20  # the authors' guard against a zero gradient norm
GAMMA = {"at": 0.01, "trades": 0.005}
WARMUP_SHARE = {"at": 0.0, "trades": 0.1}


class AWP:
    def __init__(self, model: nn.Module, kind: str, gamma: float, beta: float = 6.0) -> None:
        self.kind, self.gamma, self.beta = kind, float(gamma), float(beta)
        self.proxy = copy.deepcopy(model)
        for m in self.proxy.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = 0.0
        self.names = [n for n, p in model.named_parameters()
                      if p.requires_grad and p.ndim > 1 and n.endswith("weight")]

    def _proxy_loss(self, x, x_adv, y):
        from .objectives import _kl, forward

        if self.kind == "at":
            return F.cross_entropy(forward(self.proxy, x_adv, "adv"), y)
        nat = forward(self.proxy, x, "clean")
        return F.cross_entropy(nat, y) + self.beta * _kl(nat, forward(self.proxy, x_adv,
                                                                       "adv")).mean()

    def compute(self, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor,
                y: torch.Tensor) -> dict[str, torch.Tensor]:
        """The weight perturbation v (name -> tensor) for this batch."""
        self.proxy.load_state_dict(model.state_dict())
        self.proxy.train()
        params = dict(self.proxy.named_parameters())
        loss = self._proxy_loss(x, x_adv, y)
        grads = torch.autograd.grad(loss, [params[n] for n in self.names])
        w = dict(model.named_parameters())
        out = {}
        for n, g in zip(self.names, grads):
            scale = w[n].detach().norm() / (g.norm() + EPS)
            out[n] = self.gamma * scale * g
        return out

    @torch.no_grad()
    def add(self, model: nn.Module, diff: dict[str, torch.Tensor], sign: float) -> None:
        w = dict(model.named_parameters())
        for n, v in diff.items():
            w[n].add_(v, alpha=sign)
