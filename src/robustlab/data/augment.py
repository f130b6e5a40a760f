"""Train-time augmentation on whole float batches N×C×H×W, on whatever device they live.

Random crop after zero padding and random horizontal flip are the standard CIFAR augmentation
(He et al., 2016) used by adversarial training since Madry et al. (2018). Each example gets its
own offsets and coin flip, drawn in one call on the CPU (from ``generator`` or the global torch
RNG), so a run is reproducible whether it trains on CPU or GPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _draw_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def random_crop(x: torch.Tensor, padding: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad each side by ``padding`` and cut a random H×W window per example."""
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if padding == 0:
        return x
    n, c, h, w = x.shape
    dev = _draw_device(generator)
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=dev)
    dy, dx = offsets.to(x.device)
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # N,1,H,1
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # N,1,1,W
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each example left-right with probability 1/2."""
    flip = torch.rand(len(x), generator=generator, device=_draw_device(generator)) < 0.5
    return torch.where(flip.to(x.device)[:, None, None, None], x.flip(3), x)


class Augment:
    """``Augment(crop_padding=4, flip=True)(x)``: crop then flip; identity when both are off."""

    def __init__(self, crop_padding: int = 0, flip: bool = False):
        if crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0, got {crop_padding}")
        self.crop_padding = int(crop_padding)
        self.flip = bool(flip)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
        if self.crop_padding:
            x = random_crop(x, self.crop_padding, generator)
        if self.flip:
            x = random_flip(x, generator)
        return x

    def __repr__(self) -> str:
        return f"Augment(crop_padding={self.crop_padding}, flip={self.flip})"
