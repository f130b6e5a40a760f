"""Published checkpoints in RobustBench's layout (Croce et al., NeurIPS 2021 datasets track):
a PyTorch state dict in a ``.pt`` file, its parameter names those of the architecture's code
(``dm-wrn-D-W[-swish]``, ``dm-preact-resnet-18``, ``trades-wrn-D-W`` here), optionally under a
``state_dict`` key and with DataParallel's ``module.`` prefixes; and, beside it, a model-info JSON
(``<name>.json``: ``name``, ``architecture``, ``clean_acc``, ``autoattack_acc``, ...).

Files are read with ``torch.load(weights_only=True)``: a file that needs arbitrary unpickling is
refused with a message saying how to convert it (a trusted machine re-saves the bare state dict).
The state dict must match the architecture exactly; a mismatch is one error naming the first
missing and unexpected keys.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError
from .classifier import Classifier

# Mean and std DeepMind's models normalise with (RobustBench dm_wide_resnet.py constants); they
# are not in the state dicts, so the dataset is part of the architecture.
DM_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "svhn": 10, "mnist": 10, "fashion-mnist": 10}
NORMALISED_FAMILIES = ("dm-wrn", "dm-wrn-swish", "dm-preact-resnet")
PUBLISHED_FAMILIES = (*NORMALISED_FAMILIES, "trades-wrn")
CONVERT_HINT = ("convert it on a machine where you trust the file: "
                "torch.save(torch.load(IN, weights_only=False)['state_dict'] (or the model's "
                "state_dict()), OUT), then `robustlab models convert OUT OUT.safetensors --arch "
                "ARCH`")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a ``.pt`` state dict, unwrapped from ``state_dict`` and with ``module.``
    stripped where it starts a key (never inside one)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"model checkpoint {p} does not exist")
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[-1][:200] if str(e).strip() else type(e).__name__
        raise UserError(f"{p} needs unpickling of arbitrary objects, which robustlab refuses "
                        f"({first}); {CONVERT_HINT}") from None
    except Exception as e:  # truncated or foreign files raise several types
        raise UserError(f"cannot read {p} as a PyTorch state dict ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{p} holds no state dict (a dict of tensors, possibly under "
                        f"'state_dict'); {CONVERT_HINT}")
    prefix = "module."
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in obj.items()}


def load_strict(net: nn.Module, state: dict[str, torch.Tensor], source: str, arch: str) -> None:
    """``net.load_state_dict(state, strict=True)`` with one UserError for a mismatch, naming the
    first missing and unexpected keys and the first shape mismatch."""
    want = net.state_dict()
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in want.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        def first(keys):
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {first(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {first(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} of another shape: {first(shapes)}")
        raise UserError(f"{source}: the state dict does not match {arch} ({'; '.join(parts)})")
    net.load_state_dict(state, strict=True)


def build_published(arch: str, dataset: str | None = "cifar10", num_classes: int | None = None,
                    **kw) -> Classifier:
    """An untrained ``arch`` as its published checkpoints expect it: DeepMind families normalise
    with the dataset's mean/std; the TRADES WideResNet takes raw [0, 1] inputs."""
    from .registry import create, resolve

    fam, _ = resolve(arch)
    if dataset is not None and dataset not in NUM_CLASSES:
        raise UserError(f"unknown dataset {dataset!r} for a published checkpoint; known: "
                        f"{', '.join(NUM_CLASSES)}")
    n = num_classes or NUM_CLASSES.get(dataset or "cifar10", 10)
    mean = std = None
    if fam.family in NORMALISED_FAMILIES:
        if dataset not in DM_STATS:
            raise UserError(f"{arch}: DeepMind models normalise with their training set's "
                            f"mean/std, known for {', '.join(DM_STATS)}; got dataset={dataset!r}")
        mean, std = DM_STATS[dataset]
    return create(arch, num_classes=n, mean=mean, std=std, **kw)


def load_published(path: str | os.PathLike, arch: str, dataset: str | None = "cifar10",
                   num_classes: int | None = None, device: str | torch.device = "cpu",
                   **kw) -> Classifier:
    """A RobustBench-layout ``.pt`` state dict as a robustlab model (in eval mode)."""
    if not arch:
        raise UserError(f"{path}: a .pt state dict does not say its architecture; pass arch= "
                        "(e.g. arch=\"dm-wrn-70-16-swish\", dataset=\"cifar10\")")
    model = build_published(arch, dataset, num_classes, **kw)
    load_published_state(model, read_state_dict(path), str(path), arch)
    return model.to(device).eval()


def load_published_state(model: Classifier, state: dict[str, torch.Tensor], source: str,
                         arch: str) -> None:
    """Load a published checkpoint's bare-network ``state`` into ``model.net`` strictly (the
    ``mean``/``std`` tensors some files carry become the model's normalisation)."""
    state = dict(state)
    # Some older files of normalising architectures carry the mean and std as tensors (before
    # RobustBench made those buffers non-persistent): then they are the model's normalisation.
    stats = {k: state.pop(k) for k in ("mean", "std") if k in state}
    if stats and model.config.get("mean") is not None:
        c = model.normalize.mean.shape[1]
        for k, v in stats.items():
            if v.numel() != c:
                raise UserError(f"{source}: {k} has {v.numel()} values for {c} channels")
            getattr(model.normalize, k).copy_(v.reshape(1, c, 1, 1))
            model.config[k] = [float(t) for t in v.flatten()]
    elif stats:
        state.update(stats)  # reported as unexpected keys below
    load_strict(model.net, state, source, arch)


def read_model_info(path: str | os.PathLike) -> dict | None:
    """The RobustBench model-info JSON beside a weights file (``X.json`` for ``X.pt`` or
    ``X.safetensors``, or ``model_info.json`` in its folder), or None when there is none. Keys
    as RobustBench writes them (``name``, ``architecture``, ``clean_acc``, ``autoattack_acc``,
    ...; accuracies in percent, as strings or numbers). UserError for a file that is not a JSON
    object."""
    found = model_info_path(path)
    return None if found is None else read_info_file(found)


def model_info_path(path: str | os.PathLike) -> Path | None:
    """Where :func:`read_model_info` finds the model info of ``path``, or None."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    candidates = [folder / "model_info.json"] if p.is_dir() else \
        [p.with_suffix(".json"), folder / "model_info.json"]
    return next((c for c in candidates if c.is_file()), None)


def read_info_file(path: str | os.PathLike) -> dict:
    """A model-info JSON file as a dict; UserError for a file that is not a JSON object. (In
    RobustBench's own tree the info lies apart from the weights, in ``model_info/<dataset>/
    <threat>/<name>.json``, so callers may name it.)"""
    c = Path(path)
    try:
        info = json.loads(c.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"model info {c} is not valid JSON ({e})") from None
    if not isinstance(info, dict):
        raise UserError(f"model info {c} is not a JSON object")
    return info
