"""DeepMind's PreAct ResNet-18 (Rebuffi et al., "Fixing data augmentation to improve adversarial
robustness", 2021; RobustBench's ``Rebuffi2021Fixing_R18_*`` and ``Gowal2021Improving_R18_*``),
with their checkpoints' parameter names (``conv_2d``, ``layer_S.B.{batchnorm_0, conv_2d_1,
batchnorm_1, conv_2d_2, shortcut}``, ``batchnorm``, ``logits``).

Unlike :mod:`.preact`, the shortcut is a 3x3 convolution (not 1x1) on the activated input, and
the stride-1-or-2 convolutions pad TensorFlow-"SAME"-style (:func:`.dm_wideresnet.same_pad`).
Widths 64, 128, 256, 512 (``width`` overrides 64); activation ReLU or SiLU (``swish``).
"""

from __future__ import annotations

from torch import Tensor, nn

from .dm_wideresnet import _check_norm, activation, same_pad


class _PreActBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, swish: bool) -> None:
        super().__init__()
        self.stride = stride
        self.batchnorm_0 = nn.BatchNorm2d(in_ch)
        self.relu_0 = activation(swish)
        self.conv_2d_1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=0, bias=False)
        self.batchnorm_1 = nn.BatchNorm2d(out_ch)
        self.relu_1 = activation(swish)
        self.conv_2d_2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        # A shortcut when the shape changes in either way (stride or channels), 3x3 as DeepMind's.
        self.shortcut = (nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=0, bias=False)
                         if stride != 1 or in_ch != out_ch else None)

    def forward(self, x: Tensor) -> Tensor:
        act = self.relu_0(self.batchnorm_0(x))
        skip = x if self.shortcut is None else self.shortcut(same_pad(act, self.stride))
        out = self.conv_2d_1(same_pad(act, self.stride))
        return self.conv_2d_2(self.relu_1(self.batchnorm_1(out))) + skip


class DMPreActResNet18(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, swish: bool, width: int = 64) -> None:
        super().__init__()
        w = width
        self.conv_2d = nn.Conv2d(in_channels, w, 3, padding=1, bias=False)
        plan = [(w, w, 1), (w, 2 * w, 2), (2 * w, 4 * w, 2), (4 * w, 8 * w, 2)]
        for i, (cin, cout, stride) in enumerate(plan):
            self.add_module(f"layer_{i}", nn.Sequential(_PreActBlock(cin, cout, stride, swish),
                                                        _PreActBlock(cout, cout, 1, swish)))
        self.batchnorm = nn.BatchNorm2d(8 * w)
        self.relu = activation(swish)
        self.logits = nn.Linear(8 * w, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv_2d(x)
        for i in range(4):
            out = getattr(self, f"layer_{i}")(out)
        return self.logits(self.relu(self.batchnorm(out)).mean(dim=(2, 3)))


def dm_preact_resnet18(num_classes: int, in_channels: int, norm: str, *, image_size: int,
                       width: int | None = None, swish: bool = False) -> nn.Module:
    _check_norm(norm, "dm-preact-resnet-18")
    return DMPreActResNet18(num_classes, in_channels, bool(swish), width or 64)
