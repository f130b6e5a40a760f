"""What the trainer is told: the ``[train]`` values and the few others it needs, as plain values.

``training`` sits below ``experiments`` and does not read the config module (the layering of
docs/design.md); the experiment that owns a :class:`robustlab.config.Config` builds these
(``experiments.train.train_settings``), and a script or test can build them from any object
with the train section's attributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrainSettings:
    """``train``: the train section's values by attribute (objective, epochs, batch_size, lr,
    attack, ...); ``seed`` the run's seed (the data order and every step's randomness);
    ``crop_padding``/``flip`` the augmentation; ``extra_fraction`` each batch's share of
    extra data; ``test_bn`` the mixture-BN route for validation; ``spatial`` the spatial
    threat's settings for the worst-of-k objectives. Defaults are those of the config."""

    train: Any
    seed: int = 0
    crop_padding: int = 0
    flip: bool = False
    extra_fraction: float = 0.0
    test_bn: str = "clean"
    spatial: Any = None
