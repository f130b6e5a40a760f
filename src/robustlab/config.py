"""Typed configuration: TOML files read with ``tomllib`` into dataclasses, every key checked.

A config is a tree of dataclasses (:class:`Config` and its sections). Loading walks the TOML
table and the dataclass fields together, so an unknown key, a value of the wrong type or an
out-of-range value is one :class:`~robustlab.errors.ConfigError` naming the file and the dotted
key. Command-line ``--set section.key=value`` overrides are parsed as TOML values and go through
the same checks. Range and choice rules live in each field's metadata, next to the default.

This module holds the sections and :func:`load_config`; the checking is in `config_rules.py`
and TOML reading, overrides and writing in `config_toml.py` (their names are importable from here
as before the split).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config_rules import build, opt, validate_names
from .config_toml import _toml_value, apply_overrides, parse_override, read_toml, to_toml
from .errors import ConfigError

__all__ = [
    "AttackSection", "Config", "ConfigError", "DataSection", "EvalSection", "ModelSection",
    "RunSection", "SpatialSection", "TrainSection", "_toml_value", "apply_overrides", "build",
    "config_to_toml", "load_config", "opt", "parse_override", "read_toml", "to_toml",
    "validate_names",
]


# ----------------------------------------------------------------------------- sections

@dataclass
class RunSection:
    name: str = opt("run", doc="a short name; the run folder is <name>-<timestamp>")
    seed: int = opt(0, lo=0, doc="one seed for all randomness of the run")
    device: str = opt("auto", doc="auto, cpu, cuda or cuda:N")
    runs_dir: str = opt("runs", doc="where run folders and the SQLite index live")
    threads: int = opt(0, lo=0, doc="CPU threads for torch (0: torch's default)")


@dataclass
class DataSection:
    name: str = opt("fashion-mnist", doc="a dataset from `robustlab data list`")
    data_dir: str = opt("", doc="where to look for (and download) files first")
    path: str = opt("", doc="npz: the file of training images (image uint8 NHWC, label)")
    test_path: str = opt("", doc="npz: the file of test images (default: path)")
    val_size: int = opt(5000, lo=0, doc="examples carved from the training set for validation")
    val_seed: int = opt(0, lo=0)
    train_size: int = opt(0, lo=0, doc="train on a random subset of this many of the remaining "
                          "training examples (0: all); smaller sizes are nested in larger ones")
    crop_padding: int = opt(0, lo=0, doc="random crop with this zero padding (0: off)")
    flip: bool = opt(False, doc="random horizontal flip")
    extra_npz: str = opt("", doc="an npz file of extra (e.g. generated) training images")
    extra_fraction: float = opt(0.0, lo=0.0, hi=1.0,
                                doc="share of each training batch drawn from extra_npz")


@dataclass
class ModelSection:
    arch: str = opt("cnn-small", doc="a name from `robustlab models list`")
    norm: str = opt("bn", choices=("bn", "mixbn", "gn", "none"))
    width: int = opt(0, lo=0, doc="base width override (0: the architecture's own)")
    hidden: int = opt(0, lo=0, doc="cnn-small: units of its two hidden fully connected layers "
                                   "(0: its own 200)")
    test_bn: str = opt("clean", choices=("clean", "adv"),
                       doc="with mixbn, which BN set evaluation uses")


@dataclass
class AttackSection:
    """The inner maximisation during training, or the attack of an evaluation."""

    norm: str = opt("linf", choices=("linf", "l2", "l1"))
    eps: float = opt(0.1, lo=0.0, doc="radius on the [0, 1] pixel scale")
    steps: int = opt(10, lo=1)
    step_size: float = opt(0.0, lo=0.0, doc="0: the objective's default rule")
    restarts: int = opt(1, lo=1)


@dataclass
class TrainSection:
    epochs: int = opt(10, lo=1)
    batch_size: int = opt(128, lo=1)
    objective: str = opt("ce", doc="ce, fgsm-rs, pgd-at, trades, ...")
    optimizer: str = opt("sgd", choices=("sgd", "adamw"))
    lr: float = opt(0.1, lo=0.0, lo_open=True)
    momentum: float = opt(0.9, lo=0.0, hi=1.0)
    nesterov: bool = opt(True)
    weight_decay: float = opt(5e-4, lo=0.0)
    wd_exclude_norm_bias: bool = opt(True, doc="no weight decay on norm layers and biases")
    schedule: str = opt("cosine", choices=("constant", "step", "cosine", "onecycle"))
    warmup_epochs: float = opt(0.0, lo=0.0)
    milestones: list = opt([], doc="epochs at which the step schedule multiplies lr by gamma")
    gamma: float = opt(0.1, lo=0.0)
    label_smoothing: float = opt(0.0, lo=0.0, hi=1.0)
    ema_decay: float = opt(0.0, lo=0.0, hi=1.0, doc="0: no EMA of weights")
    ema_warmup: float = opt(0.0, lo=0.0, hi=1.0, doc="share of the steps during which the EMA "
                            "copies the weights (Gowal et al. 2020)")
    ema_dynamic: bool = opt(False, doc="EMA decay min(ema_decay, (1 + t) / (10 + t))")
    ema_bn: str = opt("average", choices=("average", "copy"),
                      doc="EMA batch-norm statistics: averaged, or copied from the model")
    awp_gamma: float = opt(-1.0, lo=-1.0, doc="*-awp: weight perturbation size (-1: 0.01 for "
                           "pgd-at-awp, 0.005 for trades-awp, Wu et al. 2020)")
    awp_warmup: float = opt(-1.0, lo=-1.0, doc="*-awp: epochs before perturbing (-1: 0 for "
                            "pgd-at-awp, 10% of the epochs for trades-awp)")
    free_replays: int = opt(8, lo=1, doc="free: replays m of each batch; epochs are divided "
                            "by m (Shafahi et al. 2019)")
    grad_clip: float = opt(0.0, lo=0.0, doc="max gradient norm (0: off)")
    clean_fraction: float = opt(0.0, lo=0.0, hi=1.0,
                                doc="pgd-at: share of clean examples in each batch")
    beta: float = opt(6.0, lo=0.0, doc="trades / weat: weight of the KL term")
    precision: str = opt("fp32", choices=("fp32", "bf16"))
    channels_last: bool = opt(False)
    compile: bool = opt(False)
    checkpoint_every: int = opt(0, lo=0, doc="also checkpoint every N steps (0: per epoch)")
    val_every: int = opt(1, lo=1, doc="validate every N epochs")
    val_n: int = opt(1000, lo=0, doc="validation examples attacked each epoch (0: all)")
    val_attack_steps: int = opt(10, lo=1, doc="PGD steps of the per-epoch robust validation")
    metric_epochs: list = opt([], doc="epochs at which the scaling-law metrics are logged "
                              "(adversarial test loss, PGD-40 CW and clean accuracy)")
    metric_n: int = opt(1000, lo=1, doc="validation examples those metrics use (the first n)")
    attack: AttackSection = field(default_factory=AttackSection)


@dataclass
class EvalSection:
    split: str = opt("test", choices=("train", "val", "test"))
    n: int = opt(0, lo=0, doc="evaluate the first n examples (0: all)")
    batch_size: int = opt(0, lo=0, doc="points attacked at once (0: 128 on CPU, 500 on GPU)")
    attacks: list = opt(["pgd"], doc="attack names, run in turn on the points still robust; "
                        "autoattack-standard / -fast / -plus / -rand expand to those suites")
    attack: AttackSection = field(default_factory=lambda: AttackSection(steps=20))


@dataclass
class SpatialSection:
    """The rotation + translation threat of Engstrom et al. ("Exploring the Landscape of Spatial
    Robustness", ICML 2019), whose defaults (±30°, ±3 px, black border, worst-of-10) are the
    paper's MNIST / CIFAR-10 settings; used by worst-of-k training and `robustlab spatial`."""

    max_angle: float = opt(30.0, lo=0.0, hi=180.0, doc="largest rotation, degrees either way")
    max_trans: float = opt(3.0, lo=0.0, doc="largest translation, pixels in each of x and y")
    border: str = opt("zero", choices=("zero", "reflect", "canvas"),
                      doc="what fills pixels from outside the image")
    k: int = opt(10, lo=1, doc="worst-of-k training: random transforms tried per example")
    vote_k: int = opt(10, lo=1, doc="majority vote: random transforms voted over")
    linf_eps: float = opt(0.0, lo=0.0, hi=1.0,
                          doc="spatial+pgd: linf radius of PGD on top of the worst transform")


@dataclass
class Config:
    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
    spatial: SpatialSection = field(default_factory=SpatialSection)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- loading

def _field_type(path: list[str]) -> Any:
    """The annotation of the config key at ``path`` (None if there is no such key)."""
    cls: Any = Config
    for p in path:
        if not dataclasses.is_dataclass(cls):
            return None
        hints = typing.get_type_hints(cls)
        if p not in hints:
            return None
        cls = hints[p]
    return cls


def _as_list(path: list[str], value: Any) -> Any:
    """``--set eval.attacks=pgd`` or ``=pgd,fgsm`` for a list key: a bare name is a one-item
    list, commas separate items."""
    tp = _field_type(path)
    if isinstance(value, str) and (tp is list or typing.get_origin(tp) is list):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                check_names: bool = True) -> Config:
    table = read_toml(path) if path else {}
    source = str(path) if path else "defaults"
    build(Config, table, f"{source}:")  # the file alone: its errors name the file
    for text in overrides or []:
        # Each override is checked as it is applied, so an error names what was typed.
        try:
            key, value = parse_override(text)
            table = apply_overrides(table, [text])
            node = table
            for p in key[:-1]:
                node = node[p]
            node[key[-1]] = _as_list(key, value)
            cfg = build(Config, table, "")
            if check_names:
                validate_names(cfg, "")
        except ConfigError as e:
            msg = str(e)
            if msg.startswith("--set "):
                raise
            raise ConfigError(f"--set {text}: {msg.lstrip(': ')}") from None
    cfg = build(Config, table, f"{source}:")
    if check_names:
        validate_names(cfg, source)
    return cfg


def config_to_toml(cfg: Config) -> str:
    return to_toml(cfg.to_dict())
