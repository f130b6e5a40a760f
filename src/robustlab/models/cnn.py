"""``cnn-small``: the 4-conv MNIST network of Carlini & Wagner (IEEE S&P 2017), Table 1.

conv32-conv32-maxpool-conv64-conv64-maxpool-fc200-fc200-fc, 3x3 valid convolutions, ReLU.
With ``norm="none"`` it is exactly the paper's network (312,202 parameters for 1x28x28 input and
10 classes); other norms insert a normalisation layer after every convolution.
``width`` replaces the 32 channels of the first convolutions (the others are twice that);
``hidden`` replaces the 200 units of the two hidden fully connected layers (default 200 at any
width). Scaling both together (width w, hidden 200·w/32) scales every layer, which is what a
model-size sweep wants: width alone moves the parameter count only 3.2x from width 8 to 32,
since the fully connected layers hold most of it.
"""

from __future__ import annotations

from torch import nn

from ..errors import UserError
from .layers import conv, init_weights
from .norm import make_norm

BASE_WIDTH = 32
HIDDEN = 200


def feature_size(image_size: int) -> int:
    """Side of the last feature map: two (valid 3x3, valid 3x3, 2x2 max-pool) stages."""
    s = image_size
    for _ in range(2):
        s = (s - 4) // 2
    return s


def cnn_small(num_classes: int, in_channels: int, norm: str, *, image_size: int,
              width: int | None = None, hidden: int | None = None) -> nn.Module:
    w = width or BASE_WIDTH
    h = HIDDEN if hidden is None else int(hidden)
    if h < 1:
        raise UserError(f"cnn-small: hidden must be a positive integer, got {hidden}")
    side = feature_size(image_size)
    if side < 1:
        raise UserError(f"cnn-small needs images of at least 16x16 pixels, got image_size="
                        f"{image_size}")
    layers: list[nn.Module] = []
    chans = [in_channels, w, w, 2 * w, 2 * w]
    for i in range(4):
        layers += [conv(chans[i], chans[i + 1], 3, norm=norm, padding=0),
                   make_norm(norm, chans[i + 1]), nn.ReLU(inplace=True)]
        if i % 2 == 1:
            layers.append(nn.MaxPool2d(2))
    layers += [nn.Flatten(), nn.Linear(2 * w * side * side, h), nn.ReLU(inplace=True),
               nn.Linear(h, h), nn.ReLU(inplace=True), nn.Linear(h, num_classes)]
    net = nn.Sequential(*layers)
    init_weights(net)
    return net
