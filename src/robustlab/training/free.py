"""Free adversarial training (Shafahi et al., "Adversarial training for free!", NeurIPS 2019).

One perturbation δ persists across minibatches. Each minibatch is replayed m times (``replays``,
8 by default as in the authors' CIFAR-10 runs); each replay is one forward and one backward pass
at clip(x + δ, 0, 1) whose gradients update both the weights (an optimiser step) and δ
(δ ← clamp(δ + s · sign(∇_δ), −ε, ε), s = ε as the authors' ``fgsm_step`` = ``clip_eps``). The
epoch budget is divided by m (rounded up), so a run costs about as much as standard training of
the configured epochs. δ sits in the trainer checkpoint, so a resumed run is exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import UserError


class FreePerturbation:
    """The persistent δ, sized to the largest batch seen (a smaller last batch uses its head, as
    the authors slice their global noise)."""

    def __init__(self, threat, replays: int, step_size: float | None = None) -> None:
        if threat.norm != "linf":
            raise UserError("free: free adversarial training is defined for linf only")
        if replays < 1:
            raise UserError(f"free: train.free_replays must be >= 1, got {replays}")
        self.eps, self.replays = float(threat.eps), int(replays)
        self.step_size = float(step_size) if step_size else self.eps
        self.delta: torch.Tensor | None = None

    def _ensure(self, x: torch.Tensor) -> None:
        if self.delta is None or self.delta.shape[1:] != x.shape[1:] \
                or len(self.delta) < len(x):
            grown = torch.zeros_like(x)
            if self.delta is not None and self.delta.shape[1:] == x.shape[1:]:
                grown[:len(self.delta)] = self.delta
            self.delta = grown

    def loss(self, model, x, y, label_smoothing: float = 0.0):
        """(loss, logits, δ leaf) of one replay; call :meth:`step` after ``loss.backward()``."""
        from .objectives import forward

        self._ensure(x)
        d = self.delta[:len(x)].clone().requires_grad_(True)
        logits = forward(model, (x + d).clamp(0.0, 1.0), "adv")
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing), logits, d

    @torch.no_grad()
    def step(self, d: torch.Tensor) -> None:
        g = d.grad if d.grad is not None else torch.zeros_like(d)
        self.delta[:len(d)] = (d.detach() + self.step_size * g.sign()).clamp(-self.eps,
                                                                              self.eps)

    def state(self) -> torch.Tensor | None:
        return None if self.delta is None else self.delta.detach().cpu().clone()

    def load(self, delta: torch.Tensor | None, device) -> None:
        self.delta = None if delta is None else delta.to(device)
