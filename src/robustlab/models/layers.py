"""Small building blocks shared by the architectures."""

from __future__ import annotations

from torch import nn


def conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, *, norm: str,
         padding: int | None = None) -> nn.Conv2d:
    """A convolution with "same" padding by default; it has a bias only when no norm follows
    (a norm's shift makes a conv bias redundant)."""
    pad = kernel // 2 if padding is None else padding
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=pad, bias=norm == "none")


def init_weights(net: nn.Module) -> None:
    """He (Kaiming) normal init, fan-out, for convolutions as in He et al. 2015/2016; norms start
    as the identity (weight 1, bias 0); linear layers keep PyTorch's default."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
