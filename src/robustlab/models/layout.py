"""Memory layout of convolution weights during evaluation.

On CPU, oneDNN runs convolutions in channels-last (NHWC) layout 1.5-3x as fast as in the
default NCHW layout for the forward pass, and 1.7-2.3x for forward plus backward (cnn-small at
batch 128, bench/eval_throughput.py; docs/benchmarks.md). Attacks make thousands of passes,
so the evaluation switches the model's 4-D weights to channels-last for its duration and puts
them back afterwards. The arithmetic is the same convolution; only the order of the
floating-point sums can differ.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def wants_channels_last(model: nn.Module, device: torch.device) -> bool:
    """The automatic choice: channels-last for convolutional models on CPU. (On GPU, NHWC pays
    off mainly with mixed precision, which the evaluation does not use.)"""
    return device.type == "cpu" and has_conv(model)


@contextmanager
def channels_last(model: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """Run the block with ``model``'s 4-D parameters in channels-last layout; restore the
    contiguous layout afterwards unless they were all channels-last already."""
    four_d = [p for p in model.parameters() if p.dim() == 4]
    convert = enabled and any(
        not p.is_contiguous(memory_format=torch.channels_last) for p in four_d)
    if convert:
        model.to(memory_format=torch.channels_last)
    try:
        yield model
    finally:
        if convert:
            model.to(memory_format=torch.contiguous_format)


def adopt_channels_last(model: nn.Module, device: torch.device) -> nn.Module:
    """For a model an experiment loaded for itself: switch it to channels-last for good when
    :func:`wants_channels_last` says so."""
    if wants_channels_last(model, torch.device(device)):
        model.to(memory_format=torch.channels_last)
    return model
