"""The WideResNet of TRADES (Zhang et al., ICML 2019) and of Carmon et al. (NeurIPS 2019), the
layout of RobustBench's ``wide_resnet.py`` checkpoints (``Zhang2019Theoretically``,
``Carmon2019Unlabeled``, ...): parameter names ``conv1``, ``block{1,2,3}.layer.B.{bn1, conv1,
bn2, conv2, convShortcut}``, ``bn1``, ``fc``.

ReLU, 3x3 convolutions with symmetric padding, a 1x1 ``convShortcut`` on the activated input
when the channel count changes; no input normalisation (the models were trained on [0, 1]
inputs; use no mean/std). ``sub_block1=True`` adds the unused ``sub_block1`` group that some
published checkpoints (Carmon et al.) carry, so they load strictly; it never runs.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..errors import UserError
from .dm_wideresnet import _check_norm

DEPTH_RULE = "trades-wrn-D-W: D - 4 divisible by 6 and D >= 10, W >= 1"


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.convShortcut = (nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)
                             if in_ch != out_ch else None)

    def forward(self, x: Tensor) -> Tensor:
        act = self.relu1(self.bn1(x))
        out = self.conv2(self.relu2(self.bn2(self.conv1(act))))
        return out + (x if self.convShortcut is None else self.convShortcut(act))


class NetworkBlock(nn.Module):
    def __init__(self, n: int, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.layer = nn.Sequential(*[BasicBlock(in_ch if i == 0 else out_ch, out_ch,
                                                stride if i == 0 else 1) for i in range(n)])

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)


class TradesWideResNet(nn.Module):
    def __init__(self, depth: int, widen: int, num_classes: int, in_channels: int,
                 width: int = 16, sub_block1: bool = False) -> None:
        super().__init__()
        n = (depth - 4) // 6
        c = [width, width * widen, 2 * width * widen, 4 * width * widen]
        self.conv1 = nn.Conv2d(in_channels, c[0], 3, padding=1, bias=False)
        self.block1 = NetworkBlock(n, c[0], c[1], 1)
        if sub_block1:
            self.sub_block1 = NetworkBlock(n, c[0], c[1], 1)
        self.block2 = NetworkBlock(n, c[1], c[2], 2)
        self.block3 = NetworkBlock(n, c[2], c[3], 2)
        self.bn1 = nn.BatchNorm2d(c[3])
        self.relu = nn.ReLU()
        self.fc = nn.Linear(c[3], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.fc(self.relu(self.bn1(out)).mean(dim=(2, 3)))


def check_depth(depth: int, widen: int) -> None:
    if (depth - 4) % 6 or depth < 10 or widen < 1:
        raise UserError(f"no TRADES WideResNet of depth {depth}, width {widen}; valid forms: "
                        f"{DEPTH_RULE}")


def trades_wide_resnet(depth: int, widen: int, num_classes: int, in_channels: int, norm: str, *,
                       image_size: int, width: int | None = None,
                       sub_block1: bool = False) -> nn.Module:
    check_depth(depth, widen)
    _check_norm(norm, "trades-wrn")
    return TradesWideResNet(depth, widen, num_classes, in_channels, width or 16,
                            bool(sub_block1))
