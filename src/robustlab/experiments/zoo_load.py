"""The images and models of `robustlab zoo`: the dataset the zoo file names (or its first run
folder trained on), and each [[models]] entry as a model in eval mode."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError, UserError
from ..models.norm import is_mixbn
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


def load_entry(e: ModelEntry, spec, device: torch.device, info: dict | None = None) -> nn.Module:
    """The zoo member's model in eval mode, in the faster convolution layout where that helps
    (the minimal-distortion attacks and CLEVER make thousands of passes). ``info``: its
    RobustBench model info, whose ``dataset`` a published checkpoint may take."""
    from ..models.layout import adopt_channels_last

    try:
        model = _load_entry(e, spec, device, info)
    except UserError as err:
        # Same class as the cause (ConfigError, DataError...), so callers can still tell them apart.
        raise type(err)(f"zoo model {e.name}: {err}") from None
    return adopt_channels_last(model, device)


def _load_entry(e: ModelEntry, spec, device: torch.device, info: dict | None) -> nn.Module:
    from .. import models

    if e.run or e.checkpoint:
        model = models.load_model(e.run or e.checkpoint, which=e.which, device=str(device))
        if is_mixbn(model):
            from ..training.routing import Routed

            model = Routed(model, "clean")
        return model.eval()
    from ..models.external import read_weights
    from ..models.robustbench import PUBLISHED_FAMILIES, load_strict

    if e.factory:
        from .common import load_any_model

        return load_any_model(e.weights, factory=e.factory, device=device)
    fam, _ = models.resolve(e.arch)
    if fam.family in PUBLISHED_FAMILIES:
        return _load_published(e, spec, device, info)
    model = models.create(e.arch, num_classes=spec.num_classes, in_channels=spec.in_channels,
                          norm=e.norm, mean=spec.mean, std=spec.std,
                          image_size=spec.image_size, width=e.width or None)
    state = read_weights(e.weights)
    # The whole robustlab model's state dict, or the bare network's.
    target = model if any(k.startswith("net.") for k in state) else model.net
    load_strict(target, state, e.weights, e.arch)
    return model.to(device).eval()


def _load_published(e: ModelEntry, spec, device: torch.device, info: dict | None) -> nn.Module:
    """A checkpoint of a published architecture (RobustBench layout): its classes, and for
    DeepMind's models the mean/std, are those of the set it was trained on (the entry's
    ``dataset``, else the model info's, else the zoo's), not the zoo's images'."""
    from ..models.external import from_state_dict
    from ..models.registry import resolve
    from ..models.robustbench import DM_STATS, NORMALISED_FAMILIES, NUM_CLASSES

    trained_on = e.dataset or str((info or {}).get("dataset", "")).lower() or spec.name
    known = trained_on in NUM_CLASSES
    if resolve(e.arch)[0].family in NORMALISED_FAMILIES and trained_on not in DM_STATS:
        raise UserError(f"{e.arch} normalises with its training set's mean/std, known for "
                        f"{', '.join(DM_STATS)}; set dataset = \"cifar10\" (say) in its "
                        f"[[models]] entry (the zoo's images are {spec.name})")
    n = NUM_CLASSES[trained_on] if known else spec.num_classes
    return from_state_dict(e.weights, e.arch, num_classes=n, in_channels=spec.in_channels,
                           image_size=spec.image_size, dataset=trained_on if known else None,
                           device=device)


def family_for(e: ModelEntry, model: nn.Module) -> str:
    from ..analysis.zoo import family_of

    if e.family:
        return e.family
    arch = e.arch or getattr(model, "config", {}).get("name", "") or e.name
    try:
        return family_of(arch)
    except UserError:
        return "other"
