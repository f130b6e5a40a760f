"""Model names -> architectures. Exact names (``cnn-small``, ``preact-resnet-18``) and patterns
(``resnet-N``, ``wrn-D-W``), in the spirit of timm's ``create_model``."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..errors import UserError
from . import dm_wideresnet as _dmwrn
from . import resnet as _resnet
from . import trades_wideresnet as _twrn
from . import wideresnet as _wrn
from .classifier import Classifier, Normalize
from .cnn import cnn_small
from .dm_preact import dm_preact_resnet18
from .norm import NORMS, check_norm
from .preact import preact_resnet18


@dataclass(frozen=True)
class Family:
    """One architecture family: its name pattern, how to build it and what to tell users."""

    family: str
    pattern: str  # a regular expression matched against the whole name
    form: str  # the name as users write it, e.g. "wrn-D-W"
    description: str
    build: Callable[..., nn.Module]  # build(*groups, num_classes, in_channels, norm, **kw)
    validate: Callable[..., None] = lambda *groups: None
    input_shape: tuple[int, int, int] = (3, 32, 32)  # what `models list` counts FLOPs at

    def match(self, name: str) -> tuple[int, ...] | None:
        m = re.fullmatch(self.pattern, name)
        return None if m is None else tuple(int(g) for g in m.groups())

    def extra_kwargs(self) -> set[str]:
        params = inspect.signature(self.build).parameters
        return {n for n, p in params.items() if p.kind == p.KEYWORD_ONLY} - {"image_size",
                                                                               "width"}


FAMILIES: tuple[Family, ...] = (
    Family("cnn", r"cnn-small", "cnn-small",
           "4-conv MNIST network of Carlini & Wagner 2017 (norm='none' is the paper's)",
           cnn_small, input_shape=(1, 28, 28)),
    Family("resnet", r"resnet-(\d+)", "resnet-N",
           "ResNet, basic blocks below depth 50, bottleneck from 50 (He et al. 2016)",
           _resnet.resnet, validate=lambda d: _resnet.stage_blocks(d)),
    Family("wrn", r"wrn-(\d+)-(\d+)", "wrn-D-W",
           "WideResNet, (D-4)/6 pre-activation blocks per group, width x W "
           "(Zagoruyko & Komodakis 2016)",
           _wrn.wide_resnet, validate=_wrn.check_depth),
    Family("preact-resnet", r"preact-resnet-18", "preact-resnet-18",
           "PreAct ResNet-18, CIFAR stem (He et al. 2016, identity mappings)", preact_resnet18),
    # Published architectures with their checkpoints' parameter names (models/robustbench.py).
    Family("dm-wrn", r"dm-wrn-(\d+)-(\d+)", "dm-wrn-D-W",
           "DeepMind WideResNet, ReLU, RobustBench key names (Gowal et al. 2020)",
           _dmwrn.dm_wide_resnet, validate=_dmwrn.check_depth),
    Family("dm-wrn-swish", r"dm-wrn-(\d+)-(\d+)-swish", "dm-wrn-D-W-swish",
           "DeepMind WideResNet, Swish/SiLU (Gowal et al. 2020; Rebuffi et al. 2021)",
           _dmwrn.dm_wide_resnet_swish, validate=_dmwrn.check_depth),
    Family("dm-preact-resnet", r"dm-preact-resnet-18", "dm-preact-resnet-18",
           "DeepMind PreAct ResNet-18, 3x3 shortcuts, RobustBench key names (Rebuffi et al. "
           "2021)", dm_preact_resnet18),
    Family("trades-wrn", r"trades-wrn-(\d+)-(\d+)", "trades-wrn-D-W",
           "TRADES / Carmon WideResNet, ReLU, no input normalisation (Zhang et al. 2019)",
           _twrn.trades_wide_resnet, validate=_twrn.check_depth),
)

# What `robustlab models list` shows by default.
REPRESENTATIVE = ("cnn-small", "resnet-18", "resnet-34", "resnet-50", "resnet-101", "resnet-152",
                  "wrn-28-10", "wrn-34-10", "wrn-70-16", "preact-resnet-18", "dm-wrn-28-10",
                  "dm-wrn-70-16-swish", "dm-preact-resnet-18", "trades-wrn-34-10")


def valid_forms() -> str:
    return ", ".join(f.form for f in FAMILIES)


def resolve(name: str) -> tuple[Family, tuple[int, ...]]:
    """The family of ``name`` and the numbers in it; UserError for unknown names or depths no
    such network can have (the message lists the valid forms)."""
    for fam in FAMILIES:
        groups = fam.match(str(name))
        if groups is not None:
            fam.validate(*groups)
            return fam, groups
    raise UserError(f"unknown model {name!r}; valid forms: {valid_forms()} "
                    f"({_resnet.DEPTH_RULE}; {_wrn.DEPTH_RULE})")


def create(name: str, num_classes: int = 10, in_channels: int = 3, norm: str = "bn", *,
           mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
           image_size: int = 32, width: int | None = None, **kw: Any) -> Classifier:
    """Build model ``name`` as a :class:`Classifier` taking images in [0, 1].

    ``mean``/``std`` are the per-channel dataset statistics the model normalises with (None:
    no normalisation). ``width`` overrides the family's base width (cnn-small 32, resnet and
    preact-resnet 64, wrn 16), e.g. to build tiny networks for tests and size sweeps.
    ``image_size`` sizes cnn-small's first linear layer and picks the ResNet stem. Extra ``kw``
    are family options (``dropout`` for wrn). ``create(**model.config)`` rebuilds ``model``.
    """
    fam, groups = resolve(name)
    check_norm(norm)
    unknown = set(kw) - fam.extra_kwargs()
    if unknown:
        allowed = ", ".join(sorted(fam.extra_kwargs())) or "none"
        raise UserError(f"model {name}: unknown option(s) {', '.join(sorted(unknown))}; "
                        f"options for this family: {allowed}")
    for what, v in (("num_classes", num_classes), ("in_channels", in_channels),
                    ("image_size", image_size)):
        if int(v) < 1:
            raise UserError(f"model {name}: {what} must be a positive integer, got {v}")
    if width is not None and int(width) < 1:
        raise UserError(f"model {name}: width must be a positive integer, got {width}")
    normalize = Normalize(in_channels, mean, std)
    net = fam.build(*groups, num_classes, in_channels, norm, image_size=image_size,
                    width=width, **kw)
    config = {"name": name, "num_classes": int(num_classes), "in_channels": int(in_channels),
              "norm": norm, "mean": None if mean is None else [float(v) for v in mean],
              "std": None if std is None else [float(v) for v in std],
              "image_size": int(image_size), "width": None if width is None else int(width),
              **kw}
    return Classifier(net, normalize, config)


__all__ = ["FAMILIES", "NORMS", "REPRESENTATIVE", "Family", "create", "resolve", "valid_forms"]
