"""What every attack shares: the result type, the model-mode discipline and the threat check.

An attack is a small object holding its settings; calling it on ``(model, x, y)`` returns an
:class:`AttackResult`. :meth:`Attack.__call__` wraps the attack's own :meth:`Attack.perturb` so
that no attack can forget the rules: the model runs in eval mode unless the caller asks for train
mode, batch-norm running statistics never move, the mode found is restored, and the output is
checked against the threat model (a violation is an error, never clipped away).
"""

from __future__ import annotations

import functools
import inspect
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..threat import LpThreat

_BN_TYPES = (nn.modules.batchnorm._BatchNorm,)


@contextmanager
def model_mode(model: nn.Module, train: bool = False):
    """Run ``model`` in train or eval mode without touching batch-norm running statistics.

    In train mode BN normalises with batch statistics (as Xie and Yuille's adversarial training
    attacks in), but a momentum of 0 keeps the running averages exactly as they were.
    """
    was_training = {m: m.training for m in model.modules()}
    saved_momentum = {}
    model.train(train)
    if train:
        for m in model.modules():
            if isinstance(m, _BN_TYPES) and m.track_running_stats:
                saved_momentum[m] = (m.momentum, m.num_batches_tracked.clone()
                                     if m.num_batches_tracked is not None else None)
                m.momentum = 0.0
    try:
        yield model
    finally:
        for m, (mom, nbt) in saved_momentum.items():
            m.momentum = mom
            if nbt is not None:
                m.num_batches_tracked.copy_(nbt)
        for m, t in was_training.items():
            m.training = t


@dataclass
class AttackResult:
    """``x_adv``: the adversarial batch; ``success``: per example, the attack's goal was met
    (prediction differs from the label, or equals the target for a targeted attack)."""

    x_adv: torch.Tensor
    success: torch.Tensor
    # Per-example extras an attack may fill: "distortion", "target", "transform", ...
    extras: dict | None = None


class Attack:
    """Base class. Subclasses set ``name`` and implement :meth:`perturb`."""

    name: ClassVar[str] = "attack"
    threat: LpThreat
    targeted: bool = False
    # Set by a caller (adversarial training) that wants BN in train mode while attacking.
    train_mode: bool = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        params = inspect.signature(init).parameters if init is not None else {}
        # Only ℓp attacks, and never one with settings of its own called eps or norm.
        if ("threat" in params and params["threat"].annotation in (LpThreat, "LpThreat")
                and "eps" not in params and "norm" not in params):
            cls.__init__ = _accept_eps_norm(init)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        raise NotImplementedError

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        with model_mode(model, self.train_mode):
            result = self.perturb(model, x.detach(), y.detach())
        result.x_adv = result.x_adv.detach()
        self.threat.check(result.x_adv, x, source=self.name)
        return result


def _accept_eps_norm(init):
    """Let an attack be built as ``APGD(eps=8/255, norm="linf", steps=100)`` as well as with a
    threat object, ``APGD(LpThreat("linf", 8/255))``; the signature seen by ``inspect`` (and so
    by the registry's setting check) stays the original's."""

    @functools.wraps(init)
    def wrapped(self, *args, eps=None, norm=None, **kwargs):
        if eps is not None or norm is not None:
            if args or "threat" in kwargs:
                raise TypeError(f"{type(self).__name__}: give a threat model or eps/norm, not both")
            if eps is None:
                raise TypeError(f"{type(self).__name__}: norm={norm!r} needs eps=")
            kwargs["threat"] = LpThreat(norm or "linf", eps)
        init(self, *args, **kwargs)

    return wrapped


class PassCounter(nn.Module):
    """Wraps a model and counts the examples that go through forward and backward passes, so an
    evaluation can report its cost in passes rather than guess it from settings."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.forward_examples = 0
        self.backward_examples = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        n = x.shape[0]
        self.forward_examples += n
        if out.requires_grad:
            def hook(grad, n=n):
                self.backward_examples += n
            out.register_hook(hook)
        return out

    def reset(self) -> None:
        self.forward_examples = 0
        self.backward_examples = 0
