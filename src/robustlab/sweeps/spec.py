"""The sweep file: ``[sweep]`` settings, a base config, and the points.

::

    [sweep]
    name = "scaling-fmnist"      # the sweep folder is <runs_dir>/<name> unless --out is given
    base = "base.toml"           # a config file, relative to the sweep file (optional)
    executor = "local"           # local or slurm
    workers = 1                  # local: runs at once
    evaluate = true              # also evaluate on the test split (robustlab run) after training

    [base]                       # config keys merged over the base file (optional)
    train.epochs = 2

    [grid]                       # the cartesian product of these dotted keys ...
    "model.width" = [8, 16, 32]

    [[points]]                   # ... times each of these (a list of dotted-key tables); a key
    "data.train_size" = 1000     # "fid" here is data about the point, not a config key
    fid = 3.5

    [slurm]                      # resources of every job of the array (see sweeps/slurm.py)
    partition = "gpu"

A point's name is its index and a hash of its overrides, so reordering nothing and restarting the
same file finds the same run folders.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config, ConfigError, apply_overrides, build, read_toml, validate_names

META_KEYS = ("fid", "source")  # per-point data, not config keys
SWEEP_KEYS = ("name", "base", "executor", "workers", "evaluate", "runs_dir")
SLURM_KEYS = ("partition", "gpus_per_node", "cpus_per_task", "mem_gb", "timeout_min",
              "array_parallelism", "nproc_per_node", "account", "qos", "constraint",
              "max_requeue", "cluster")


@dataclass
class Point:
    index: int
    overrides: dict            # dotted key -> value
    meta: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        h = hashlib.sha1(json.dumps(self.overrides, sort_keys=True).encode()).hexdigest()[:6]
        return f"p{self.index:03d}-{h}"

    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.overrides.items()) or "(base)"


@dataclass
class SweepSpec:
    path: Path
    name: str
    base: dict                  # the base config table
    points: list
    executor: str = "local"
    workers: int = 1
    evaluate: bool = True
    runs_dir: str = "runs"
    slurm: dict = field(default_factory=dict)

    def config_table(self, point: Point) -> dict:
        table = copy.deepcopy(self.base)
        return apply_overrides(table, [f"{k}={_toml_literal(v)}"
                                       for k, v in point.overrides.items()])


def _toml_literal(v) -> str:
    from ..config import _toml_value

    return _toml_value(v)


def _flatten(table: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in table.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_sweep(path: str | Path) -> SweepSpec:
    p = Path(path)
    raw = read_toml(p)
    src = str(p)
    unknown = sorted(set(raw) - {"sweep", "base", "grid", "points", "slurm"})
    if unknown:
        raise ConfigError(f"{src}: {unknown[0]}: unknown table (known: sweep, base, grid, "
                          "points, slurm)")
    sw = raw.get("sweep", {})
    bad = sorted(set(sw) - set(SWEEP_KEYS))
    if bad:
        raise ConfigError(f"{src}: sweep.{bad[0]}: unknown key (known: {', '.join(SWEEP_KEYS)})")
    base: dict = {}
    if sw.get("base"):
        base = read_toml((p.parent / sw["base"]) if not Path(sw["base"]).is_absolute()
                         else sw["base"])
    base = apply_overrides(base, [f"{k}={_toml_literal(v)}"
                                  for k, v in _flatten(raw.get("base", {})).items()])
    grid = _flatten(raw.get("grid", {}))
    for k, v in grid.items():
        if not isinstance(v, list) or not v:
            raise ConfigError(f"{src}: grid.{k}: expected a non-empty list of values")
    listed = raw.get("points", [{}]) or [{}]
    if not isinstance(listed, list) or not all(isinstance(x, dict) for x in listed):
        raise ConfigError(f"{src}: points: expected an array of tables ([[points]])")
    points = []
    for item in listed:
        flat = _flatten(item)
        meta = {k: flat.pop(k) for k in META_KEYS if k in flat}
        for combo in itertools.product(*grid.values()):
            ov = {**flat, **dict(zip(grid, combo))}
            points.append(Point(len(points), ov, meta))
    slurm = raw.get("slurm", {})
    bad = sorted(set(slurm) - set(SLURM_KEYS))
    if bad:
        raise ConfigError(f"{src}: slurm.{bad[0]}: unknown key (known: {', '.join(SLURM_KEYS)})")
    nproc = slurm.get("nproc_per_node", 1)
    if not isinstance(nproc, int) or isinstance(nproc, bool) or nproc < 1:
        raise ConfigError(f"{src}: slurm.nproc_per_node: must be an integer >= 1, got {nproc!r}")
    gpus = slurm.get("gpus_per_node")
    if isinstance(gpus, int) and gpus > 0 and nproc > gpus:
        raise ConfigError(f"{src}: slurm.nproc_per_node = {nproc} is more than gpus_per_node = "
                          f"{gpus}: torchrun starts one process per GPU")
    executor = sw.get("executor", "local")
    if executor not in ("local", "slurm"):
        raise ConfigError(f"{src}: sweep.executor: {executor!r} is not one of local, slurm")
    workers = sw.get("workers", 1)
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"{src}: sweep.workers: must be an integer >= 1, got {workers!r}")
    spec = SweepSpec(path=p, name=str(sw.get("name", p.stem)), base=base, points=points,
                     executor=executor, workers=workers, evaluate=bool(sw.get("evaluate", True)),
                     runs_dir=str(sw.get("runs_dir", base.get("run", {}).get("runs_dir",
                                                                             "runs"))),
                     slurm=slurm)
    for pt in points:  # every point's config is checked before anything runs
        try:
            cfg = build(Config, spec.config_table(pt), f"{src} point {pt.index}:")
            validate_names(cfg, f"{src} point {pt.index} ({pt.label()})")
        except ConfigError as e:
            raise ConfigError(str(e)) from None
    return spec
