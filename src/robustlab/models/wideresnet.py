"""WideResNet-D-W (Zagoruyko & Komodakis, BMVC 2016), the CIFAR network of most robustness work.

Three groups of ``(D - 4) / 6`` pre-activation basic blocks with ``width * (1, 2, 4) * W``
channels (``width`` 16 by default) at strides 1, 2, 2, after a 3x3 stem convolution; then norm,
ReLU, global average pooling and a linear layer. wrn-28-10 has 36.5M parameters, wrn-70-16
(Gowal et al. 2020) 267M. ``dropout`` (default 0) is applied between the two convolutions of each
block, as in the paper.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..errors import UserError
from .layers import conv, init_weights
from .norm import make_norm

BASE_WIDTH = 16
DEPTH_RULE = "wrn-D-W: D - 4 divisible by 6 and D >= 10 (e.g. 16, 28, 34, 70), W >= 1"


def check_depth(depth: int, widen: int) -> None:
    if (depth - 4) % 6 or depth < 10 or widen < 1:
        raise UserError(f"no WideResNet wrn-{depth}-{widen}; valid forms: {DEPTH_RULE}")


class WideBlock(nn.Module):
    """Pre-activation block. When the shape changes, the 1x1 shortcut sees the pre-activated
    input, as in the authors' code."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, norm: str, dropout: float) -> None:
        super().__init__()
        self.norm1 = make_norm(norm, in_ch)
        self.conv1 = conv(in_ch, out_ch, 3, stride, norm=norm)
        self.norm2 = make_norm(norm, out_ch)
        self.conv2 = conv(out_ch, out_ch, 3, norm=norm)
        self.relu = nn.ReLU(inplace=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.same = in_ch == out_ch and stride == 1
        self.shortcut = nn.Identity() if self.same else conv(in_ch, out_ch, 1, stride, norm=norm)

    def forward(self, x: Tensor) -> Tensor:
        act = self.relu(self.norm1(x))
        out = self.conv1(act)
        out = self.conv2(self.dropout(self.relu(self.norm2(out))))
        return out + (x if self.same else self.shortcut(act))


class WideResNet(nn.Module):
    def __init__(self, depth: int, widen: int, num_classes: int, in_channels: int, norm: str,
                 width: int, dropout: float) -> None:
        super().__init__()
        n = (depth - 4) // 6
        chans = [width, width * widen, 2 * width * widen, 4 * width * widen]
        self.stem = conv(in_channels, chans[0], 3, norm=norm)
        groups, in_ch = [], chans[0]
        for i in range(3):
            blocks = []
            for j in range(n):
                blocks.append(WideBlock(in_ch, chans[i + 1], 2 if (i > 0 and j == 0) else 1,
                                        norm, dropout))
                in_ch = chans[i + 1]
            groups.append(nn.Sequential(*blocks))
        self.groups = nn.Sequential(*groups)
        self.head = nn.Sequential(make_norm(norm, in_ch), nn.ReLU(inplace=True),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(in_ch, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.head(self.groups(self.stem(x))))


def wide_resnet(depth: int, widen: int, num_classes: int, in_channels: int, norm: str, *,
                image_size: int, width: int | None = None, dropout: float = 0.0) -> nn.Module:
    check_depth(depth, widen)
    if not 0 <= dropout < 1:
        raise UserError(f"wrn dropout must be in [0, 1), got {dropout}")
    return WideResNet(depth, widen, num_classes, in_channels, norm, width or BASE_WIDTH,
                      float(dropout))
