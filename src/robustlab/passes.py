"""Counting the forward and backward passes a model actually makes.

FLOP accounting and attack cost reports need the number of examples that went through the model,
not an estimate from settings: attacks stop early, restarts skip broken points, training mixes
clean and adversarial batches. A forward hook on the top module counts each forward call's batch,
and a hook on its output counts the backward pass when a gradient flows back through it (for
``loss.backward()`` and ``torch.autograd.grad`` alike).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from torch import nn


@dataclass
class PassCount:
    forward: int = 0   # examples through a forward pass
    backward: int = 0  # examples through a backward pass

    def flops(self, forward_flops_per_example: int) -> int:
        """Total FLOPs with the usual convention that a backward pass costs twice a forward."""
        return int(forward_flops_per_example) * (self.forward + 2 * self.backward)

    def as_dict(self) -> dict:
        return {"forward_examples": self.forward, "backward_examples": self.backward}


@contextmanager
def count_passes(model: nn.Module, count: PassCount | None = None):
    """``with count_passes(model) as c: ...``; ``c.forward``/``c.backward`` hold the counts."""
    count = count if count is not None else PassCount()

    def on_forward(module, inputs, output):
        n = inputs[0].shape[0] if inputs else output.shape[0]
        count.forward += n
        if output.requires_grad:
            def on_backward(grad, n=n):
                count.backward += n
            output.register_hook(on_backward)

    handle = model.register_forward_hook(on_forward)
    try:
        yield count
    finally:
        handle.remove()
