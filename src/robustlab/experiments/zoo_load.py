"""The images and models of `robustlab zoo`: the dataset the zoo file names (or its first run
folder trained on), and each [[models]] entry as a model in eval mode."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError, UserError
from .zoo_spec import ModelEntry, ZooSection


def zoo_data(zoo: ZooSection, entries: list[ModelEntry]):
    """(dataset name, images in [0, 1], labels, spec)."""
    from .. import data

    name, data_dir, path = zoo.dataset, zoo.data_dir, zoo.path
    if not name:
        first = next((e for e in entries if e.run), None)
        if first is None or not (Path(first.run) / "config.toml").is_file():
            raise ConfigError("zoo.dataset: not given and no run folder to take it from")
        from ..config import load_config

        cfg = load_config(Path(first.run) / "config.toml", check_names=False)
        name, data_dir = cfg.data.name, data_dir or cfg.data.data_dir
        path = path or (cfg.data.test_path if zoo.split == "test" else "") or cfg.data.path
    val_size = 5000 if zoo.split in ("train", "val") and name != "npz" else 0
    d = data.load(name, zoo.split, data_dir=data_dir or None, val_size=val_size,
                  path=path or None)
    n = min(zoo.n, len(d))
    return name, d.images[:n].float().div_(255), d.labels[:n].clone(), d.spec


def load_entry(e: ModelEntry, spec, device: torch.device) -> nn.Module:
    """The zoo member's model in eval mode, in the faster convolution layout where that helps
    (the minimal-distortion attacks and CLEVER make thousands of passes)."""
    from ..models.layout import adopt_channels_last

    return adopt_channels_last(_load_entry(e, spec, device), device)


def _load_entry(e: ModelEntry, spec, device: torch.device) -> nn.Module:
    from .. import models

    if e.run or e.checkpoint:
        model = models.load_model(e.run or e.checkpoint, which=e.which, device=str(device))
        if getattr(model, "config", {}).get("norm") == "mixbn":
            from ..training.trainer import _Routed

            model = _Routed(model, "clean")
        return model.eval()
    from ..models.external import read_weights
    from ..models.robustbench import load_strict

    if e.factory:
        from .common import load_any_model

        return load_any_model(e.weights, factory=e.factory, device=device)
    model = models.create(e.arch, num_classes=spec.num_classes, in_channels=spec.in_channels,
                          norm=e.norm, mean=spec.mean, std=spec.std,
                          image_size=spec.image_size, width=e.width or None)
    state = read_weights(e.weights)
    # The whole robustlab model's state dict, or the bare network's.
    target = model if any(k.startswith("net.") for k in state) else model.net
    load_strict(target, state, e.weights, e.arch)
    return model.to(device).eval()


def family_for(e: ModelEntry, model: nn.Module) -> str:
    from ..analysis.zoo import family_of

    if e.family:
        return e.family
    arch = e.arch or getattr(model, "config", {}).get("name", "") or e.name
    try:
        return family_of(arch)
    except UserError:
        return "other"
