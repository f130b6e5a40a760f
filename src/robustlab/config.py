"""Typed configuration: TOML files read with ``tomllib`` into dataclasses, every key checked.

A config is a tree of dataclasses (:class:`Config` and its sections). Loading walks the TOML
table and the dataclass fields together, so an unknown key, a value of the wrong type or an
out-of-range value is one :class:`~robustlab.errors.ConfigError` naming the file and the dotted
key. Command-line ``--set section.key=value`` overrides are parsed as TOML values and go through
the same checks. Range and choice rules live in each field's metadata, next to the default.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .errors import ConfigError


def opt(default: Any, *, lo: float | None = None, hi: float | None = None,
        lo_open: bool = False, choices: tuple | None = None, doc: str = "") -> Any:
    """A dataclass field with validation rules; ``lo_open`` makes the lower bound strict."""
    meta = {"lo": lo, "hi": hi, "lo_open": lo_open, "choices": choices, "doc": doc}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


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


# ----------------------------------------------------------------------------- checking

def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted where floats are."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: expected {tp}, got {value!r}")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if tp is list or origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return list(value)
    raise ConfigError(f"{where}: unsupported type {_type_name(tp)}")  # pragma: no cover


def _check_range(value: Any, meta: dict, where: str) -> None:
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")
    lo, hi = meta.get("lo"), meta.get("hi")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if lo is not None and (value < lo or (meta.get("lo_open") and value == lo)):
            op = ">" if meta.get("lo_open") else ">="
            raise ConfigError(f"{where}: must be {op} {lo}, got {value}")
        if hi is not None and value > hi:
            raise ConfigError(f"{where}: must be <= {hi}, got {value}")


def build(cls: type, table: dict, where: str) -> Any:
    """Build dataclass ``cls`` from a TOML table, checking every key."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table, got {table!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        prefix = f"{where}." if where and not where.endswith(":") else where
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key (known keys: "
                          f"{', '.join(sorted(fields))})")
    kwargs = {}
    for name, value in table.items():
        key = f"{where}.{name}" if where and not where.endswith(":") else f"{where}{name}"
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = build(tp, value, key)
            continue
        value = _coerce(value, tp, key)
        _check_range(value, fields[name].metadata, key)
        kwargs[name] = value
    return cls(**kwargs)


def validate_names(cfg: Config, source: str) -> None:
    """Checks that need the registries: dataset, model and objective names, ε ranges."""
    from .errors import UserError

    checks = [
        ("data.name", lambda: _check_dataset(cfg.data.name)),
        ("model.arch", lambda: _check_arch(cfg.model.arch)),
        ("train.objective", lambda: _check_objective(cfg.train.objective)),
        ("eval.attacks", lambda: _check_attacks(cfg.eval.attacks)),
    ]
    for key, check in checks:
        try:
            check()
        except UserError as e:
            raise ConfigError(f"{source}: {key}: {e}") from None
    for key, sec in (("train.attack", cfg.train.attack), ("eval.attack", cfg.eval.attack)):
        if sec.norm == "linf" and sec.eps > 1:
            raise ConfigError(f"{source}: {key}.eps: an linf eps above 1 leaves the [0, 1] "
                              f"pixel range, got {sec.eps}")


def _check_dataset(name: str) -> None:
    from . import data

    data.get_spec(name)


def _check_arch(name: str) -> None:
    from . import models

    models.resolve(name)


def _check_objective(name: str) -> None:
    from .training import objectives

    objectives.get_objective(name)


def _check_attacks(names: list) -> None:
    from .attacks import registry
    from .attacks.autoattack import VERSIONS
    from .errors import UserError

    for n in names:
        n = str(n)
        if n.startswith("autoattack-"):
            if n.split("-", 1)[1] not in VERSIONS[:-1]:
                raise UserError(f"unknown suite {n!r}; known: "
                                + ", ".join(f"autoattack-{v}" for v in VERSIONS[:-1]))
            continue
        registry.get_attack_class(n)


# ----------------------------------------------------------------------------- loading

def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.lr=0.05`` -> (["train", "lr"], 0.05); the value is read as TOML, falling back to a
    bare string so that ``--set model.arch=wrn-28-10`` needs no quotes."""
    if "=" not in text:
        raise ConfigError(f"--set {text}: expected section.key=value")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"--set {text}: empty key")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return path, value


def apply_overrides(table: dict, overrides: list[str]) -> dict:
    for text in overrides:
        path, value = parse_override(text)
        node = table
        for p in path[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {text}: {p} is not a section")
        node[path[-1]] = value
    return table


def read_toml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a UTF-8 text file") from None


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


# ----------------------------------------------------------------------------- writing

def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if v != v else ("inf" if v > 0 else "-inf"))
    if isinstance(v, str):
        escaped = v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def to_toml(table: dict, prefix: str = "") -> str:
    """Write a nested dict as TOML (scalars first, then sub-tables), enough for configs."""
    lines: list[str] = []
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in table.items() if isinstance(v, dict)}
    if prefix and scalars:
        lines.append(f"[{prefix}]")
    for k, v in scalars.items():
        lines.append(f"{k} = {_toml_value(v)}")
    if scalars:
        lines.append("")
    for k, v in tables.items():
        lines.append(to_toml(v, f"{prefix}.{k}" if prefix else k))
    return "\n".join(lines)


def config_to_toml(cfg: Config) -> str:
    return to_toml(cfg.to_dict())
