"""ResNet of any depth (He et al., CVPR 2016), ImageNet layout with four stages.

Stages have ``width * (1, 2, 4, 8)`` channels (``width`` 64 by default), times 4 at the output of
bottleneck blocks. Depth ``N`` counts the stem convolution, every convolution on the main path
and the classifier: ``N = 2 + 2 * blocks`` with basic blocks (used below depth 50) and
``N = 2 + 3 * blocks`` with bottleneck blocks (depth 50 and above). Xie & Yuille (ICLR 2020)
trained such networks up to ResNet-638.

Block counts: the standard ones for 10, 18, 34, 50, 101, 152 and 200. For any other valid depth,
start from the largest standard layout of the same block type with no more blocks, and put the
remaining blocks in stage 3, which is where the standard deeper ResNets grow (e.g. resnet-26 is
(2, 2, 6, 2), resnet-638 is (3, 24, 182, 3)).

Stem: for images up to 64 pixels a 3x3 stride-1 convolution and no max-pool (CIFAR practice),
otherwise 7x7 stride 2 and a 3x3 stride-2 max-pool. The stride-2 of a bottleneck block is on its
3x3 convolution ("ResNet v1.5").
"""

from __future__ import annotations

from torch import Tensor, nn

from ..errors import UserError
from .layers import conv, init_weights
from .norm import make_norm

BASE_WIDTH = 64
BASIC = {4: (1, 1, 1, 1), 8: (2, 2, 2, 2), 16: (3, 4, 6, 3)}
BOTTLENECK = {16: (3, 4, 6, 3), 33: (3, 4, 23, 3), 50: (3, 8, 36, 3), 66: (3, 24, 36, 3)}
DEPTH_RULE = ("resnet-N: basic blocks for N < 50 (N even, N >= 10), bottleneck blocks for "
              "N >= 50 (N - 2 divisible by 3, e.g. 50, 101, 152, 200, 638)")


def stage_blocks(depth: int) -> tuple[str, tuple[int, int, int, int]]:
    """Block type and blocks per stage for ResNet-``depth``; UserError if no such network."""
    bottleneck = depth >= 50
    per_block, table = (3, BOTTLENECK) if bottleneck else (2, BASIC)
    blocks, rest = divmod(depth - 2, per_block)
    if rest or depth < 10:
        raise UserError(f"no ResNet of depth {depth}; valid forms: {DEPTH_RULE}")
    base = max(n for n in table if n <= blocks)
    layout = list(table[base])
    layout[2] += blocks - base
    return ("bottleneck" if bottleneck else "basic"), tuple(layout)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, ch: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv1 = conv(in_ch, ch, 3, stride, norm=norm)
        self.norm1 = make_norm(norm, ch)
        self.conv2 = conv(ch, ch, 3, norm=norm)
        self.norm2 = make_norm(norm, ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_ch, ch, stride, norm)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_ch: int, ch: int, stride: int, norm: str) -> None:
        super().__init__()
        out_ch = ch * self.expansion
        self.conv1 = conv(in_ch, ch, 1, norm=norm)
        self.norm1 = make_norm(norm, ch)
        self.conv2 = conv(ch, ch, 3, stride, norm=norm)
        self.norm2 = make_norm(norm, ch)
        self.conv3 = conv(ch, out_ch, 1, norm=norm)
        self.norm3 = make_norm(norm, out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_ch, out_ch, stride, norm)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.relu(self.norm2(self.conv2(out)))
        out = self.norm3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


def _shortcut(in_ch: int, out_ch: int, stride: int, norm: str) -> nn.Module:
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    return nn.Sequential(conv(in_ch, out_ch, 1, stride, norm=norm), make_norm(norm, out_ch))


class ResNet(nn.Module):
    def __init__(self, block: type[nn.Module], layout: tuple[int, ...], num_classes: int,
                 in_channels: int, norm: str, width: int, image_size: int) -> None:
        super().__init__()
        if image_size <= 64:
            stem: list[nn.Module] = [conv(in_channels, width, 3, norm=norm)]
            pool: list[nn.Module] = []
        else:
            stem = [conv(in_channels, width, 7, 2, norm=norm)]
            pool = [nn.MaxPool2d(3, stride=2, padding=1)]
        self.stem = nn.Sequential(*stem, make_norm(norm, width), nn.ReLU(inplace=True), *pool)
        stages, in_ch = [], width
        for i, n in enumerate(layout):
            ch = width * 2**i
            blocks = []
            for j in range(n):
                blocks.append(block(in_ch, ch, 2 if (i > 0 and j == 0) else 1, norm))
                in_ch = ch * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.stages(self.stem(x))).flatten(1))


def resnet(depth: int, num_classes: int, in_channels: int, norm: str, *, image_size: int,
           width: int | None = None) -> nn.Module:
    kind, layout = stage_blocks(depth)
    block = Bottleneck if kind == "bottleneck" else BasicBlock
    return ResNet(block, layout, num_classes, in_channels, norm, width or BASE_WIDTH, image_size)
