"""Normalisation layers by name, and mixture batch norm (Xie & Yuille, ICLR 2020).

``norm`` is one of:

- ``bn``: ``nn.BatchNorm2d``.
- ``mixbn``: :class:`MixBatchNorm2d`, two complete batch norms (statistics *and* affine
  parameters), one for clean and one for adversarial inputs -- the "auxiliary BN" of Xie & Yuille,
  "Intriguing properties of adversarial training at scale" (ICLR 2020). Which one a forward pass
  uses is its ``route``, set for a whole model by :func:`bn_route` / :func:`set_bn_route` or per
  call by ``Classifier.forward(x, bn="adv")``. The default route is ``"clean"``.
- ``gn``: ``nn.GroupNorm`` with the largest of 32, 16, 8, 4, 2, 1 groups that divides the channels
  (32 groups is the default of Wu & He, ECCV 2018; fewer only where channels are too few).
- ``none``: ``nn.Identity`` (convolutions then carry a bias instead).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import Tensor, nn

from ..errors import UserError

NORMS = ("bn", "mixbn", "gn", "none")
ROUTES = ("clean", "adv")
GN_GROUPS = (32, 16, 8, 4, 2, 1)


def check_norm(kind: str) -> str:
    if kind not in NORMS:
        raise UserError(f"unknown norm {kind!r}; choose one of {', '.join(NORMS)}")
    return kind


def check_route(route: str) -> str:
    if route not in ROUTES:
        raise UserError(f"unknown batch-norm route {route!r}; choose 'clean' or 'adv'")
    return route


def gn_groups(channels: int) -> int:
    return next(g for g in GN_GROUPS if channels % g == 0)


class MixBatchNorm2d(nn.Module):
    """Two batch norms, ``clean`` and ``adv``; ``route`` picks the one a forward pass uses.

    Each keeps its own running statistics and its own weight and bias, so training on clean and
    adversarial batches never mixes their statistics (Xie & Yuille, ICLR 2020, Sec. 4).
    """

    def __init__(self, channels: int, **bn_kwargs) -> None:
        super().__init__()
        self.clean = nn.BatchNorm2d(channels, **bn_kwargs)
        self.adv = nn.BatchNorm2d(channels, **bn_kwargs)
        self.route = "clean"

    def forward(self, x: Tensor) -> Tensor:
        return self.adv(x) if self.route == "adv" else self.clean(x)

    def extra_repr(self) -> str:
        return f"route={self.route!r}"


def make_norm(kind: str, channels: int) -> nn.Module:
    """A normalisation layer over ``channels`` feature maps; ``kind`` as in the module docstring."""
    check_norm(kind)
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "mixbn":
        return MixBatchNorm2d(channels)
    if kind == "gn":
        return nn.GroupNorm(gn_groups(channels), channels)
    return nn.Identity()


def set_bn_route(model: nn.Module, route: str) -> None:
    """Route every :class:`MixBatchNorm2d` in ``model`` to ``route`` ("clean" or "adv")."""
    check_route(route)
    for m in model.modules():
        if isinstance(m, MixBatchNorm2d):
            m.route = route


@contextmanager
def bn_route(model: nn.Module, route: str) -> Iterator[nn.Module]:
    """Within the block every mixture batch norm of ``model`` uses ``route``; the routes found
    are restored on exit. A no-op for models without :class:`MixBatchNorm2d`."""
    check_route(route)
    mixes = [m for m in model.modules() if isinstance(m, MixBatchNorm2d)]
    before = [m.route for m in mixes]
    for m in mixes:
        m.route = route
    try:
        yield model
    finally:
        for m, r in zip(mixes, before):
            m.route = r


def is_mixbn(model) -> bool:
    """Whether ``model`` uses mixture BN, looking through the wrappers training puts around it
    (``torch.compile``'s ``_orig_mod``, then DDP's ``module``), which carry no ``config``."""
    for attr in ("_orig_mod", "module"):
        model = getattr(model, attr, model)
    return getattr(model, "config", {}).get("norm") == "mixbn"
