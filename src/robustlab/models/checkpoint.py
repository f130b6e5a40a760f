"""Self-describing model checkpoints: one ``.safetensors`` file holding the weights, with the
model's ``config`` as JSON in the safetensors metadata (key ``robustlab_config``), so
``load_model(file)`` rebuilds the architecture without any other file and without unpickling.

A run folder holds ``model.safetensors`` (last), ``best.safetensors`` (best validation robust
accuracy) and ``model_ema.safetensors`` (EMA of the weights); ``which`` picks one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError
from ..io import atomic_write, to_json
from .classifier import Classifier

# The only metadata key: safetensors writes its metadata from a hash map, so with two keys their
# order (and so the file's bytes and hash) changed from one save to the next. Files from before
# also carry "robustlab_format", which nothing reads.
CONFIG_KEY = "robustlab_config"
WEIGHT_FILES = {"model": "model.safetensors", "best": "best.safetensors",
                "ema": "model_ema.safetensors"}


def unwrap(model: nn.Module) -> nn.Module:
    """The robustlab model inside DDP (``.module``) or ``torch.compile`` (``._orig_mod``)."""
    while not hasattr(model, "config"):
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            break
        model = inner
    return model


def save_model(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model``'s weights and config to ``path`` (a .safetensors file), atomically."""
    from safetensors.torch import save_file

    model = unwrap(model)
    config = getattr(model, "config", None)
    if not isinstance(config, dict):
        raise UserError(f"cannot save {type(model).__name__} to {path}: only models made by "
                        "robustlab.models.create (which carry a .config) can be saved")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {CONFIG_KEY: to_json(config, indent=None)}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def weights_file(path: str | os.PathLike, which: str = "model") -> Path:
    """The checkpoint file ``path`` names: the file itself, or ``which``'s file in a folder."""
    p = Path(path)
    if p.is_dir():
        if which not in WEIGHT_FILES:
            raise UserError(f"unknown weights {which!r}; choose one of "
                            f"{', '.join(WEIGHT_FILES)}")
        f = p / WEIGHT_FILES[which]
        if not f.is_file():
            have = sorted(x.name for x in p.glob("*.safetensors"))
            raise UserError(f"no {WEIGHT_FILES[which]} in {p} (weights {which!r}); found: "
                            f"{', '.join(have) or 'no .safetensors files'}")
        return f
    if not p.exists():
        raise UserError(f"model checkpoint {p} does not exist")
    return p


def read_config(path: str | os.PathLike) -> dict:
    """The config stored in a checkpoint file."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises several types for truncated or foreign files
        raise UserError(f"cannot read model checkpoint {path}: not a valid safetensors file "
                        f"({e})") from None
    if CONFIG_KEY not in meta:
        raise UserError(f"{path} is a safetensors file without a robustlab model config "
                        f"(metadata key {CONFIG_KEY!r}); save it with robustlab.models.save_model")
    try:
        return json.loads(meta[CONFIG_KEY])
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: corrupt model config in metadata ({e})") from None


PT_SUFFIXES = (".pt", ".pth", ".ckpt")


def load_model(path: str | os.PathLike, which: str = "model",
               device: str | torch.device = "cpu", *, arch: str | None = None,
               dataset: str | None = "cifar10", num_classes: int | None = None,
               **kw) -> Classifier:
    """The model saved at ``path`` (a .safetensors file or a run folder), on ``device``, in eval
    mode. ``which`` is "model", "best" or "ema" for a folder. UserError for a missing or corrupt
    checkpoint, naming the path.

    A ``.pt`` state dict in RobustBench's layout needs ``arch`` (``dm-wrn-70-16-swish``,
    ``trades-wrn-34-10``, ...) and ``dataset`` (which sets the classes and, for DeepMind models,
    the mean/std): ``load_model("Gowal2020.pt", arch="dm-wrn-70-16", dataset="cifar10")``;
    see :mod:`robustlab.models.robustbench`."""
    from safetensors.torch import load_file

    from .registry import create

    suffix = Path(path).suffix.lower()
    if suffix in PT_SUFFIXES or (arch is not None and suffix != ".safetensors"
                                 and not Path(path).is_dir()):
        from .robustbench import load_published

        return load_published(path, arch, dataset, num_classes, device, **kw)
    f = weights_file(path, which)
    config = dict(read_config(f))
    try:
        state = load_file(str(f), device=str(device))
    except Exception as e:
        raise UserError(f"cannot read weights from {f} ({e})") from None
    name = config.pop("name", None)
    if name is None:
        raise UserError(f"{f}: model config has no 'name'")
    with torch.device("meta"):  # no memory for weights that load_state_dict replaces anyway
        model = create(name, **config)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        raise UserError(f"{f}: weights do not match the {name} its config describes "
                        f"({str(e).splitlines()[0]})") from None
    return model.to(device).eval()
