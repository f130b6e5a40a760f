"""Bring your own model: a network robustlab did not train, given as a plain state dict (a
``.pt`` read with ``torch.load(weights_only=True)``, or a ``.safetensors`` file) for a registry
architecture, or as a Python factory ``module:function`` returning an ``nn.Module`` that takes
images in [0, 1]. Nothing here unpickles arbitrary objects; a factory is code the user names.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file or a ``.pt`` state dict (``state_dict`` key and
    ``module.`` prefixes unwrapped, as RobustBench files have them)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"weights file {p} does not exist")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(p))
        except Exception as e:
            raise UserError(f"cannot read {p} as safetensors ({e})") from None
    from .robustbench import read_state_dict

    return read_state_dict(p)


def from_state_dict(path: str | os.PathLike, arch: str, *, num_classes: int, in_channels: int,
                    image_size: int, mean=None, std=None, norm: str = "bn",
                    dataset: str | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """Registry architecture ``arch`` with the weights in ``path``. The state dict may be the
    whole robustlab model's (``normalize.*``, ``net.*``) or the bare network's; published
    architectures (dm-wrn, trades-wrn, ...) normalise as their checkpoints expect."""
    from .registry import create, resolve
    from .robustbench import PUBLISHED_FAMILIES, build_published, load_published_state, load_strict

    fam, _ = resolve(arch)
    published = fam.family in PUBLISHED_FAMILIES
    if published:
        model = build_published(arch, dataset, num_classes)
    else:
        model = create(arch, num_classes=num_classes, in_channels=in_channels, norm=norm,
                       mean=mean, std=std, image_size=image_size)
    state = read_weights(path)
    if any(k.startswith("net.") for k in state):
        load_strict(model, state, str(path), arch)
    elif published:  # the checkpoint's bare network, perhaps with its mean/std as tensors
        load_published_state(model, state, str(path), arch)
    else:
        load_strict(model.net, state, str(path), arch)
    return model.to(device).eval()


def from_factory(ref: str, device: str | torch.device = "cpu") -> nn.Module:
    """``module:function`` (the module importable, or a ``.py`` file path) called with no
    arguments; it must return an ``nn.Module`` taking images in [0, 1]."""
    if ref.count(":") != 1 or not all(ref.split(":")):
        raise UserError(f"--model-factory {ref}: expected module:function, e.g. "
                        "mynets:build_model")
    mod_name, fn_name = ref.split(":")
    try:
        if mod_name.endswith(".py"):
            spec = importlib.util.spec_from_file_location(Path(mod_name).stem, mod_name)
            if spec is None or not Path(mod_name).is_file():
                raise ModuleNotFoundError(mod_name)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            if "" not in sys.path and os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())  # as `python -m` would find it
            module = importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        raise UserError(f"--model-factory {ref}: cannot import {mod_name} ({e})") from None
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise UserError(f"--model-factory {ref}: {mod_name} has no function {fn_name}")
    model = fn()
    if not isinstance(model, nn.Module):
        raise UserError(f"--model-factory {ref}: returned {type(model).__name__}, not an "
                        "nn.Module")
    return model.to(device).eval()
