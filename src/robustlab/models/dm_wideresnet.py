"""DeepMind's WideResNet (Gowal et al., "Uncovering the limits of adversarial training", 2020;
Rebuffi et al., 2021), the architecture of most of RobustBench's CIFAR ℓ∞ leaders, with the
parameter names of their published PyTorch checkpoints (``init_conv``, ``layer.G.block.B.
{batchnorm_0, conv_0, batchnorm_1, conv_1, shortcut}``, ``batchnorm``, ``logits``), so those state
dicts load strictly into ``model.net``.

It differs from :mod:`.wideresnet` where a checkpoint would notice: the first 3x3 convolution of a
block has no padding of its own and the input is padded TensorFlow-"SAME"-style instead
(1 on every side at stride 1, only right and bottom at stride 2); the identity path of a block
without shortcut is the raw input while a block with a shortcut feeds the activated input to
both paths; convolutions have no bias; the classifier is ``logits``. Activation ReLU or
Swish/SiLU (the ``-swish`` variants). The dataset's mean and std are applied by the
:class:`~robustlab.models.classifier.Classifier` around it (RobustBench keeps them as
non-persistent buffers, so they are not in the state dicts).

Parameter counts: dm-wrn-28-10 36,479,194; dm-wrn-70-16 266,796,506 (tests/test_robustbench_models).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UserError

DEPTH_RULE = "dm-wrn-D-W[-swish]: D - 4 divisible by 6 and D >= 10, W >= 1"


def activation(swish: bool) -> nn.Module:
    return nn.SiLU() if swish else nn.ReLU()


def same_pad(x: Tensor, stride: int) -> Tensor:
    """TensorFlow "SAME" padding for a 3x3 kernel: symmetric at stride 1, right/bottom only at
    stride 2 (where TF puts the odd extra row), as DeepMind's JAX/TF models were trained."""
    return F.pad(x, (1, 1, 1, 1) if stride == 1 else (0, 1, 0, 1))


class _Block(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, swish: bool) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise UserError(f"dm-wrn block stride must be 1 or 2, got {stride}")
        self.stride = stride
        self.batchnorm_0 = nn.BatchNorm2d(in_ch)
        self.relu_0 = activation(swish)
        self.conv_0 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=0, bias=False)
        self.batchnorm_1 = nn.BatchNorm2d(out_ch)
        self.relu_1 = activation(swish)
        self.conv_1 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        # DeepMind's rule: a shortcut convolution exactly when the channel count changes.
        self.shortcut = (nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)
                         if in_ch != out_ch else None)

    def forward(self, x: Tensor) -> Tensor:
        act = self.relu_0(self.batchnorm_0(x))
        out = self.conv_0(same_pad(act, self.stride))
        out = self.conv_1(self.relu_1(self.batchnorm_1(out)))
        return out + (x if self.shortcut is None else self.shortcut(act))


class _BlockGroup(nn.Module):
    def __init__(self, n: int, in_ch: int, out_ch: int, stride: int, swish: bool) -> None:
        super().__init__()
        self.block = nn.Sequential(*[_Block(in_ch if i == 0 else out_ch, out_ch,
                                            stride if i == 0 else 1, swish) for i in range(n)])

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class DMWideResNet(nn.Module):
    def __init__(self, depth: int, widen: int, num_classes: int, in_channels: int,
                 swish: bool, width: int = 16) -> None:
        super().__init__()
        n = (depth - 4) // 6
        chans = [width, width * widen, 2 * width * widen, 4 * width * widen]
        self.init_conv = nn.Conv2d(in_channels, chans[0], 3, padding=1, bias=False)
        self.layer = nn.Sequential(*[_BlockGroup(n, chans[g], chans[g + 1], 1 if g == 0 else 2,
                                                 swish) for g in range(3)])
        self.batchnorm = nn.BatchNorm2d(chans[3])
        self.relu = activation(swish)
        self.logits = nn.Linear(chans[3], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.batchnorm(self.layer(self.init_conv(x))))
        # Global average pooling (DeepMind's avg_pool2d(8) on 32x32 inputs is the same thing).
        return self.logits(out.mean(dim=(2, 3)))


def check_depth(depth: int, widen: int) -> None:
    if (depth - 4) % 6 or depth < 10 or widen < 1:
        raise UserError(f"no DeepMind WideResNet of depth {depth}, width {widen}; valid forms: "
                        f"{DEPTH_RULE}")


def _check_norm(norm: str, name: str) -> None:
    if norm != "bn":
        raise UserError(f"{name} is a published architecture with batch norm only; got "
                        f"norm={norm!r} (use norm = \"bn\")")


def _build(depth, widen, num_classes, in_channels, norm, width, swish) -> nn.Module:
    check_depth(depth, widen)
    _check_norm(norm, "dm-wrn")
    return DMWideResNet(depth, widen, num_classes, in_channels, swish, width or 16)


def dm_wide_resnet(depth: int, widen: int, num_classes: int, in_channels: int, norm: str, *,
                   image_size: int, width: int | None = None) -> nn.Module:
    return _build(depth, widen, num_classes, in_channels, norm, width, swish=False)


def dm_wide_resnet_swish(depth: int, widen: int, num_classes: int, in_channels: int, norm: str,
                         *, image_size: int, width: int | None = None) -> nn.Module:
    return _build(depth, widen, num_classes, in_channels, norm, width, swish=True)
