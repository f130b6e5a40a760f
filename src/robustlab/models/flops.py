"""Parameter and forward-FLOP counts, the quantities of compute-scaling studies
(Bartoldson et al., ICML 2024).

FLOP convention: forward FLOPs per example = 2 x the multiply-accumulates of every ``nn.Conv2d``
and ``nn.Linear`` (one multiply and one add per MAC). Biases, normalisation, activations, pooling
and the input normalisation are *not* counted: they are a few percent at most of a network's
compute, and leaving them out is the convention of the scaling-law literature (Kaplan et al.
2020; Bartoldson et al. 2024 count training compute as 3x forward per pass, forward + backward).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call


def count_params(model: nn.Module) -> int:
    """Trainable parameters (``requires_grad``). With mixture batch norm both the clean and the
    adversarial weight and bias are counted, as both are trained; running statistics and the
    input-normalisation buffers are not parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _macs_hook(total: list[int]):
    def hook(module: nn.Module, inputs, output) -> None:
        batch = output.shape[0]
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total[0] += output.numel() // batch * k
        else:  # nn.Linear: one MAC per weight per row (rows beyond the batch for 3-D inputs)
            total[0] += output.numel() // batch * module.in_features
    return hook


def count_flops(model: nn.Module, input_shape: tuple[int, int, int] = (3, 32, 32)) -> int:
    """Forward FLOPs for one example of shape ``(C, H, W)``, under the convention of the module
    docstring (2 x conv and linear MACs).

    The forward pass runs on the ``meta`` device with stand-ins for the weights, so it allocates
    nothing and takes milliseconds even for wrn-70-16; the model's weights, statistics and mode
    are left as they were."""
    total = [0]
    hooks = [m.register_forward_hook(_macs_hook(total)) for m in model.modules()
             if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        stand_ins = {n: torch.empty_like(t, device="meta")
                     for n, t in [*model.named_parameters(), *model.named_buffers()]}
        x = torch.empty((1, *input_shape), device="meta")
        with torch.no_grad():
            functional_call(model, stand_ins, (x,), strict=False)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return 2 * total[0]
