"""PreAct ResNet-18 (He et al., ECCV 2016, "Identity mappings in deep residual networks"), with
the CIFAR stem (one 3x3 stride-1 convolution, no norm, no max-pool) and a final norm and ReLU
before pooling, as used by Rice et al. (ICML 2020) and Wong et al. (ICLR 2020).
Stages have ``width * (1, 2, 4, 8)`` channels, ``width`` 64 by default."""

from __future__ import annotations

from torch import Tensor, nn

from .layers import conv, init_weights
from .norm import make_norm

BASE_WIDTH = 64
LAYOUT = (2, 2, 2, 2)


class PreActBlock(nn.Module):
    def __init__(self, in_ch: int, ch: int, stride: int, norm: str) -> None:
        super().__init__()
        self.norm1 = make_norm(norm, in_ch)
        self.conv1 = conv(in_ch, ch, 3, stride, norm=norm)
        self.norm2 = make_norm(norm, ch)
        self.conv2 = conv(ch, ch, 3, norm=norm)
        self.relu = nn.ReLU(inplace=False)
        self.shortcut = None if (stride == 1 and in_ch == ch) else conv(in_ch, ch, 1, stride,
                                                                         norm=norm)

    def forward(self, x: Tensor) -> Tensor:
        act = self.relu(self.norm1(x))
        skip = x if self.shortcut is None else self.shortcut(act)
        out = self.conv2(self.relu(self.norm2(self.conv1(act))))
        return out + skip


class PreActResNet(nn.Module):
    def __init__(self, layout: tuple[int, ...], num_classes: int, in_channels: int, norm: str,
                 width: int) -> None:
        super().__init__()
        self.stem = conv(in_channels, width, 3, norm=norm)
        stages, in_ch = [], width
        for i, n in enumerate(layout):
            ch = width * 2**i
            blocks = []
            for j in range(n):
                blocks.append(PreActBlock(in_ch, ch, 2 if (i > 0 and j == 0) else 1, norm))
                in_ch = ch
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(make_norm(norm, in_ch), nn.ReLU(inplace=True),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(in_ch, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.head(self.stages(self.stem(x))))


def preact_resnet18(num_classes: int, in_channels: int, norm: str, *, image_size: int,
                    width: int | None = None) -> nn.Module:
    return PreActResNet(LAYOUT, num_classes, in_channels, norm, width or BASE_WIDTH)
