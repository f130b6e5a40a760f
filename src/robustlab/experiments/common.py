"""What every experiment does first: pick the device, seed, load the data and build the model
from a config."""

from __future__ import annotations

import torch

from ..config import Config
from ..errors import UserError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for, but no CUDA GPU is available")
    return dev


def setup(cfg: Config, rank: int = 0) -> torch.device:
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    # Model init uses the run's seed (DDP broadcasts rank 0's weights anyway); each rank then
    # draws its own attack noise.
    torch.manual_seed(cfg.run.seed)
    return resolve_device(cfg.run.device)


def train_subset(n: int, size: int, seed: int) -> torch.Tensor:
    """Indices of ``size`` of ``n`` training examples. One fixed permutation per seed, of which
    every size takes a prefix: the subsets of a data-size sweep are nested, so a larger run only
    adds examples."""
    if size > n:
        raise UserError(f"data.train_size = {size} exceeds the {n} training examples left after "
                        f"the validation carve")
    g = torch.Generator().manual_seed(10_007 + seed)
    return torch.randperm(n, generator=g)[:size].sort().values


def load_splits(cfg: Config):
    """(train, val, test) ImageData; val is None when val_size is 0."""
    from .. import data

    kw = dict(data_dir=cfg.data.data_dir or None, val_size=cfg.data.val_size,
              val_seed=cfg.data.val_seed)
    if cfg.data.name == "npz":
        if not cfg.data.path:
            raise UserError("data.path: the npz dataset needs the path of its file")
        kw["path"] = cfg.data.path
    train = data.load(cfg.data.name, "train", **kw)
    if cfg.data.train_size:
        train = train.subset(train_subset(len(train), cfg.data.train_size, cfg.data.val_seed))
    val = data.load(cfg.data.name, "val", **kw) if cfg.data.val_size > 0 else None
    if cfg.data.name == "npz" and cfg.data.test_path:
        kw.update(path=cfg.data.test_path, val_size=0)
    test = data.load(cfg.data.name, "test", **kw)
    extra = None
    if cfg.data.extra_npz:
        extra = data.load("npz", "train", path=cfg.data.extra_npz)
        if extra.images.shape[1:] != train.images.shape[1:]:
            raise UserError(f"data.extra_npz: images of shape {tuple(extra.images.shape[1:])} "
                            f"do not match {cfg.data.name}'s {tuple(train.images.shape[1:])}")
    return train, val, test, extra


def build_model(cfg: Config, spec) -> torch.nn.Module:
    from .. import models

    kw = {}
    if cfg.model.width:
        kw["width"] = cfg.model.width
    if cfg.model.hidden:
        kw["hidden"] = cfg.model.hidden  # models.create names the families that take it
    return models.create(cfg.model.arch, num_classes=spec.num_classes,
                         in_channels=spec.in_channels, norm=cfg.model.norm, mean=spec.mean,
                         std=spec.std, image_size=spec.image_size, **kw)


def check_fits(model: torch.nn.Module, shape: tuple, num_classes: int, what: str) -> None:
    """UserError unless ``model`` takes images of ``shape`` (C, H, W) and has ``num_classes``
    outputs. Read from a robustlab model's config when it has one, so that a mismatch is caught
    before any download; otherwise found by one forward pass on a blank image."""
    cfg = getattr(model, "config", None) or {}
    c, h, w = shape
    if cfg.get("in_channels") and int(cfg["in_channels"]) != c:
        raise UserError(f"the model takes {cfg['in_channels']}-channel images but {what} has "
                        f"{c} channels")
    if cfg.get("image_size") and int(cfg["image_size"]) != h and cfg.get("name") == "cnn-small":
        # cnn-small's linear head fixes the image size; the others pool globally.
        raise UserError(f"the model takes {cfg['image_size']}x{cfg['image_size']} images but "
                        f"{what} has {h}x{w}")
    # An npz's class count is its largest label + 1, so a subset of the classes is fine.
    if cfg.get("num_classes") and int(cfg["num_classes"]) < num_classes:
        raise UserError(f"the model has {cfg['num_classes']} classes but {what} has "
                        f"{num_classes}")
    if cfg:
        return
    params = list(model.parameters())
    device = params[0].device if params else torch.device("cpu")
    try:
        was = model.training
        model.eval()
        with torch.no_grad():
            out = model(torch.zeros(1, c, h, w, device=device))
        model.train(was)
    except Exception as e:  # any failure here means the model cannot take these images
        raise UserError(f"the model cannot take {what}'s {c}x{h}x{w} images: "
                        f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") \
            from None
    if out.ndim != 2 or out.shape[1] < num_classes:
        raise UserError(f"the model outputs shape {tuple(out.shape)} for one image, but {what} "
                        f"has {num_classes} classes: expected (1, {num_classes}) logits")


def load_any_model(ref: str, *, which: str = "model", device="cpu", arch: str = "",
                   factory: str = "", data_spec=None, num_classes: int = 0,
                   norm: str = "bn") -> torch.nn.Module:
    """The model to evaluate: a robustlab checkpoint or run folder; with ``arch``, a plain state
    dict (.pt or .safetensors) for that registry architecture, shaped for ``data_spec``; with
    ``factory`` (``module:function``), whatever nn.Module it returns, ``ref`` then optional
    weights loaded into it."""
    from .. import models
    from ..models import external

    if arch and factory:
        raise UserError("give --arch or --model-factory, not both")
    if factory:
        model = external.from_factory(factory, device=device)
        if ref:
            from ..models.robustbench import load_strict

            load_strict(model, {k: v.to(device) for k, v in external.read_weights(ref).items()},
                        ref, factory)
        return model.eval()
    if arch:
        if not ref:
            raise UserError(f"--arch {arch}: give the weights file too")
        s = data_spec
        return external.from_state_dict(
            ref, arch, num_classes=num_classes or s.num_classes, in_channels=s.in_channels,
            image_size=s.image_size, mean=s.mean, std=s.std, norm=norm, dataset=s.name,
            device=device)
    if not ref:
        raise UserError("a checkpoint or run folder is required")
    if str(ref).endswith(".pt"):
        raise UserError(f"{ref}: a plain state dict does not say its architecture; add --arch "
                        "NAME (see `robustlab models list`) or --model-factory module:function")
    return models.load_model(ref, which=which, device=str(device))
