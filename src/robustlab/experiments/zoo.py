"""`robustlab zoo`: benchmark a zoo of models as Su et al. ("Is robustness the cost of
accuracy? A comprehensive study on the robustness of 18 deep image classification models",
ECCV 2018) do.

For every model: clean error, minimal adversarial distortion (C&W ℓ2, EAD ℓ1, I-FGSM and FGSM
ℓ∞ by ε search) on the correctly classified images, attack success rates, CLEVER ℓ2 and ℓ∞;
over the zoo: transferability over every ordered pair of models, the accuracy-robustness Pareto
frontier, the fit of each distortion against ln(clean error), and the architecture families.

The zoo file is TOML::

    [zoo]
    dataset = "fashion-mnist"          # "" : what the first run folder trained on
    split = "test"
    n = 200                            # images scored for clean error
    attack_n = 100                     # of those, correctly classified images attacked
    metrics = ["clean", "cw-l2", "ead", "ifgsm", "fgsm", "clever", "transfer"]
    [zoo.cw]                           # papers: steps = 1000, binary_search_steps = 9
    steps = 100
    [[models]]
    name = "cnn-small-ce"
    run = "runs/zoo/zoo-cnn-small-ce"  # a run folder, or the name its timestamped folder has
    [[models]]
    name = "mine"
    checkpoint = "mine.safetensors"    # a robustlab checkpoint (config in its metadata)
    [[models]]
    name = "foreign"
    arch = "resnet-18"                 # plain safetensors weights for a registry architecture
    weights = "foreign.safetensors"
    family = "resnet"                  # optional; default from the architecture name

Relative paths are looked up from the working directory, then from the zoo file's folder.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..attacks.base import model_mode
from ..config import apply_overrides, build, opt, read_toml, to_toml
from ..errors import ConfigError, UserError
from ..runs import Run, resolve_run
from .common import resolve_device

METRICS = ("clean", "cw-l2", "ead", "ifgsm", "fgsm", "clever", "transfer", "transfer-targeted")
# The minimal-distortion metrics: (results key, norm, label for plots).
DISTORTIONS = (("cw-l2", "l2", "C&W ℓ2"), ("ead", "l1", "EAD ℓ1"), ("ifgsm", "linf", "I-FGSM ℓ∞"),
               ("fgsm", "linf", "FGSM ℓ∞"))
CLEVERS = (("clever-l2", "l2", "CLEVER ℓ2"), ("clever-linf", "linf", "CLEVER ℓ∞"))
TRANSFER_ATTACKS = ("ifgsm", "fgsm", "cw-l2")


# ----------------------------------------------------------------------------- the zoo file

@dataclass
class CWSettings:
    """C&W ℓ2 (Carlini and Wagner, S&P 2017). The paper and Su et al. use 1000 Adam steps with
    lr 0.001 and 9 binary-search steps; these defaults (100 steps, lr 0.01, 5 searches from
    c = 0.1) make a CPU zoo feasible at the price of slightly larger distortions."""

    steps: int = opt(100, lo=1, doc="Adam steps per binary-search step (paper: 1000)")
    binary_search_steps: int = opt(5, lo=1, doc="searches over the constant c (paper: 9)")
    initial_const: float = opt(0.1, lo=0.0, lo_open=True, doc="first c (paper: 0.01)")
    lr: float = opt(0.01, lo=0.0, lo_open=True, doc="Adam learning rate (paper: 0.001)")


@dataclass
class EADSettings:
    """EAD (Chen et al., AAAI 2018), ℓ1 decision rule. Paper: β = 1e-3, 1000 FISTA steps with
    lr 0.01, 9 binary-search steps; defaults here: 100 steps, 5 searches from c = 0.1."""

    steps: int = opt(100, lo=1, doc="FISTA steps per binary-search step (paper: 1000)")
    binary_search_steps: int = opt(5, lo=1, doc="searches over the constant c (paper: 9)")
    initial_const: float = opt(0.1, lo=0.0, lo_open=True, doc="first c (paper: 0.01)")
    lr: float = opt(0.01, lo=0.0, lo_open=True)
    beta: float = opt(1e-3, lo=0.0, doc="ℓ1 weight β (paper: 1e-3)")


@dataclass
class EpsSearchSettings:
    """Minimal ℓ∞ ε by search (Su et al.): I-FGSM takes ``iterations`` steps of ε/iterations
    (Kurakin et al., ICLR 2017, and Su et al.: 50); FGSM ignores ``iterations``."""

    iterations: int = opt(20, lo=1, doc="I-FGSM steps (Su et al.: 50)")
    tol: float = opt(2e-3, lo=0.0, lo_open=True, doc="bisection stops when ε is known this well")
    eps0: float = opt(0.01, lo=0.0, hi=1.0, lo_open=True)
    eps_max: float = opt(1.0, lo=0.0, hi=1.0, lo_open=True)


@dataclass
class CleverSettings:
    """CLEVER (Weng et al., ICLR 2018). Paper: 500 batches of 1024 samples, radius 5 (ℓ2);
    defaults here are far smaller so that a CPU can score a zoo (noisier estimates)."""

    n_images: int = opt(3, lo=1, doc="correctly classified images scored; the mean is reported")
    n_batches: int = opt(20, lo=1, doc="batches N_b (paper: 500)")
    batch_size: int = opt(64, lo=1, doc="samples per batch N_s (paper: 1024)")
    radius_l2: float = opt(5.0, lo=0.0, lo_open=True, doc="ℓ2 sampling radius (paper: 5)")
    radius_linf: float = opt(0.05, lo=0.0, lo_open=True, doc="ℓ∞ sampling radius")
    top_k: int = opt(0, lo=0, doc="score only the k most likely other classes (0: all)")


@dataclass
class TransferSettings:
    """Transferability (Su et al., Sec. 5): adversarial examples made on each source model and
    fed to every target. Untargeted with ``attack`` (I-FGSM or FGSM at ``eps``, or C&W ℓ2);
    "transfer-targeted" adds C&W targeted at the least likely class (top-1 and top-5)."""

    n: int = opt(100, lo=1, doc="images used (the first n of the zoo's images)")
    attack: str = opt("ifgsm", choices=TRANSFER_ATTACKS)
    eps: float = opt(0.1, lo=0.0, hi=1.0, lo_open=True, doc="ℓ∞ radius of ifgsm / fgsm")
    steps: int = opt(10, lo=1, doc="I-FGSM steps")
    cw_steps: int = opt(100, lo=1, doc="C&W steps for cw-l2 and the targeted transfer")
    cw_binary_search_steps: int = opt(3, lo=1)


@dataclass
class ZooSection:
    name: str = opt("zoo", doc="run folder name prefix")
    dataset: str = opt("", doc="dataset name ('': the one the first run folder trained on)")
    data_dir: str = opt("", doc="look for dataset files here first")
    path: str = opt("", doc="npz: the file of images")
    split: str = opt("test", choices=("train", "val", "test"))
    n: int = opt(200, lo=1, doc="images scored for clean error")
    attack_n: int = opt(100, lo=1, doc="correctly classified images attacked per model")
    batch_size: int = opt(100, lo=1, doc="images per attack call")
    metrics: list = opt(list(METRICS[:7]), doc=f"any of {', '.join(METRICS)}")
    seed: int = opt(0, lo=0)
    device: str = opt("auto")
    threads: int = opt(0, lo=0, doc="CPU threads for torch (0: torch's default)")
    runs_dir: str = opt("runs")
    cw: CWSettings = field(default_factory=CWSettings)
    ead: EADSettings = field(default_factory=EADSettings)
    ifgsm: EpsSearchSettings = field(default_factory=EpsSearchSettings)
    fgsm: EpsSearchSettings = field(default_factory=EpsSearchSettings)
    clever: CleverSettings = field(default_factory=CleverSettings)
    transfer: TransferSettings = field(default_factory=TransferSettings)


@dataclass
class ModelEntry:
    name: str = opt("", doc="how the model is called in tables and plots")
    run: str = opt("", doc="a run folder (or its name without the timestamp)")
    which: str = opt("model", choices=("model", "best", "ema"), doc="weights of a run folder")
    checkpoint: str = opt("", doc="a robustlab .safetensors checkpoint")
    arch: str = opt("", doc="a registry architecture, with weights")
    weights: str = opt("", doc="plain weights for arch (or factory): .safetensors, or a .pt "
                       "state dict read with weights_only")
    factory: str = opt("", doc="module:function returning an nn.Module on [0, 1] (bring your "
                       "own model; weights optional)")
    width: int = opt(0, lo=0, doc="arch: base width (0: the architecture's own)")
    norm: str = opt("bn", choices=("bn", "gn", "none"), doc="arch: normalisation layers")
    family: str = opt("", doc="architecture family (default: from the architecture name)")


@dataclass
class ZooSpec:
    zoo: ZooSection
    models: list[ModelEntry]
    source: Path
    table: dict


def _find_path(ref: str, base: Path) -> Path | None:
    p = Path(ref)
    for cand in ([p] if p.is_absolute() else [p, base / p]):
        if cand.exists():
            return cand
    return None


def _find_run(ref: str, base: Path) -> Path | None:
    """A run folder given as a path, or as ``root/<name>``, the name a run was created with:
    the newest ``<name>-<timestamp>`` folder wins, so names that prefix each other are fine."""
    p = _find_path(ref, base)
    if p is not None and p.is_dir():
        return p
    for root in ([Path(ref).parent] if Path(ref).is_absolute()
                 else [Path(ref).parent, base / Path(ref).parent]):
        if not root.is_dir():
            continue
        stamped = re.compile(re.escape(Path(ref).name) + r"-\d{8}-\d{6}(-\d+)?$")
        # Timestamps sort as text, so the last is the newest.
        hits = sorted(d for d in root.iterdir() if d.is_dir() and stamped.match(d.name))
        if hits:
            return hits[-1]
        try:
            return resolve_run(Path(ref).name, root)
        except UserError:
            continue
    return None


def load_zoo(path: str | Path, overrides: list[str] | None = None) -> ZooSpec:
    """Read and check a zoo file; every key, model source and file is checked before any work."""
    src = Path(path)
    table = read_toml(src)
    for text in overrides or []:
        if not text.split("=", 1)[0].strip().startswith("zoo."):
            raise ConfigError(f"--set {text}: only zoo.* keys can be overridden")
    table = apply_overrides(table, list(overrides or []))
    unknown = sorted(set(table) - {"zoo", "models"})
    if unknown:
        raise ConfigError(f"{src}: {unknown[0]}: unknown key (known: zoo, models)")
    zoo = build(ZooSection, table.get("zoo", {}), f"{src}: zoo")
    bad = [m for m in zoo.metrics if m not in METRICS]
    if bad:
        raise ConfigError(f"{src}: zoo.metrics: unknown metric {bad[0]!r}; expected any of "
                          f"{', '.join(METRICS)}")
    raw = table.get("models")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{src}: models: expected one or more [[models]] tables")
    base = src.parent
    entries = []
    for i, t in enumerate(raw):
        where = f"{src}: models[{i}]"
        e = build(ModelEntry, t, where)
        if not e.name:
            raise ConfigError(f"{where}.name: every model needs a name")
        where = f"{src}: models[{i}] ({e.name})"
        given = [k for k in ("run", "checkpoint", "arch", "factory") if getattr(e, k)]
        if len(given) != 1:
            raise ConfigError(f"{where}: give exactly one of run, checkpoint, arch + weights or "
                              f"factory (got {', '.join(given) or 'none'})")
        if not e.factory and bool(e.arch) != bool(e.weights):
            raise ConfigError(f"{where}: arch and weights go together")
        if e.run:
            found = _find_run(e.run, base)
            if found is None:
                raise ConfigError(f"{where}.run: run folder {e.run!r} not found")
            e.run = str(found)
        for key in ("checkpoint", "weights"):
            if getattr(e, key):
                found = _find_path(getattr(e, key), base)
                if found is None or not found.is_file():
                    raise ConfigError(f"{where}.{key}: file {getattr(e, key)!r} not found")
                setattr(e, key, str(found))
        if e.arch:
            from .. import models

            try:
                models.resolve(e.arch)
            except UserError as err:
                raise ConfigError(f"{where}.arch: {err}") from None
        entries.append(e)
    names = [e.name for e in entries]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{src}: models: the name {dup[0]!r} is used more than once")
    if {"transfer", "transfer-targeted"} & set(zoo.metrics) and len(entries) < 2:
        raise ConfigError(f"{src}: zoo.metrics: transfer needs at least 2 models")
    return ZooSpec(zoo, entries, src, table)


# ----------------------------------------------------------------------------- loading

def _data(zoo: ZooSection, entries: list[ModelEntry]):
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


# ----------------------------------------------------------------------------- measuring

def _predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size]).argmax(1)
                          for i in range(0, x.shape[0], batch_size)])


def measure_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, zoo: ZooSection,
                  quiet: bool | None = None, label: str = "") -> dict:
    """Clean error and every per-model robustness metric the zoo asks for."""
    from ..analysis.clever import clever_score
    from ..analysis.zoo import distortion_summary
    from ..progress import track

    pred = _predict(model, x, zoo.batch_size)
    correct = pred == y
    acc = float(correct.float().mean())
    out: dict = {"clean_accuracy": acc, "clean_error": 1.0 - acc, "n_examples": int(len(y))}
    xc, yc = x[correct][:zoo.attack_n], y[correct][:zoo.attack_n]
    out["n_attacked"] = int(len(yc))
    steps = [m for m in zoo.metrics if m in ("cw-l2", "ead", "ifgsm", "fgsm", "clever")]
    for metric in track(steps, f"zoo {label}", quiet=quiet):
        torch.manual_seed(zoo.seed)
        if len(yc) == 0:
            out[metric] = {"mean": math.nan, "median": math.nan, "success_rate": math.nan,
                           "n": 0}
            continue
        if metric != "clever":
            out[metric] = distortion_summary(minimal_distortion(model, xc, yc, metric, zoo))
            continue
        c = zoo.clever
        for key, norm, _ in CLEVERS:
            radius = c.radius_l2 if norm == "l2" else c.radius_linf
            scores = [clever_score(model, xc[i], None, norm, c.n_batches, c.batch_size,
                                   radius, c.top_k or None, seed=zoo.seed + i)
                      for i in range(min(c.n_images, len(yc)))]
            out[key] = {"mean": float(np.mean(scores)), "scores": scores,
                        "radius": radius, "n": len(scores)}
    return out


def minimal_distortion(model: nn.Module, x: torch.Tensor, y: torch.Tensor, metric: str,
                       zoo: ZooSection) -> torch.Tensor:
    """Per-example minimal distortion of ``metric`` (cw-l2, ead, ifgsm or fgsm); inf where the
    attack found none."""
    from ..attacks.cw import CarliniWagnerL2
    from ..attacks.ead import EAD
    from ..attacks.eps_search import minimal_linf

    if metric == "cw-l2":
        s = zoo.cw
        atk = CarliniWagnerL2(steps=s.steps, binary_search_steps=s.binary_search_steps,
                              initial_const=s.initial_const, lr=s.lr, seed=zoo.seed)
    elif metric == "ead":
        s = zoo.ead
        atk = EAD(beta=s.beta, steps=s.steps, binary_search_steps=s.binary_search_steps,
                  initial_const=s.initial_const, lr=s.lr, seed=zoo.seed)
    out = []
    for i in range(0, x.shape[0], zoo.batch_size):
        xb, yb = x[i:i + zoo.batch_size], y[i:i + zoo.batch_size]
        if metric in ("ifgsm", "fgsm"):
            s = getattr(zoo, metric)
            # minimal_linf is a function, not an Attack: run it in eval mode ourselves.
            with model_mode(model, False):
                d, _ = minimal_linf(model, xb, yb, metric, s.iterations, s.tol, s.eps0,
                                    s.eps_max)
        else:
            d = atk(model, xb, yb).extras["distortion"]
        out.append(d)
    return torch.cat(out)


def _transfer_attack(zoo: ZooSection, targeted: bool):
    from ..attacks.cw import CarliniWagnerL2
    from ..attacks.fgsm import FGSM
    from ..attacks.pgd import PGD
    from ..threat import LpThreat

    t = zoo.transfer
    if targeted or t.attack == "cw-l2":
        return lambda m: CarliniWagnerL2(steps=t.cw_steps,
                                         binary_search_steps=t.cw_binary_search_steps,
                                         initial_const=zoo.cw.initial_const, lr=zoo.cw.lr,
                                         targeted=targeted, target_mode="least-likely",
                                         seed=zoo.seed)
    threat = LpThreat("linf", t.eps)
    if t.attack == "fgsm":
        return lambda m: FGSM(threat)
    # I-FGSM as Kurakin et al.: no random start, steps of ε/steps, every step taken (stopping at
    # the first success would leave examples at the boundary, which transfer worse).
    return lambda m: PGD(threat, steps=t.steps, step_size=t.eps / t.steps, random_start=False,
                         early_stop=False)


# ----------------------------------------------------------------------------- zoo analysis

def robustness_metrics(zoo: ZooSection) -> list[tuple[str, str]]:
    """(results key, label) of every robustness metric measured, for Pareto fronts."""
    keys = [(k, lab) for k, _, lab in DISTORTIONS if k in zoo.metrics]
    if "clever" in zoo.metrics:
        keys += [(k, lab) for k, _, lab in CLEVERS]
    return keys


def analyse(rows: list[dict], zoo: ZooSection) -> dict:
    """Pareto fronts, distortion-vs-ln(error) fits and families over the per-model rows."""
    from ..analysis.zoo import fit_distortion_vs_log_error, pareto_front

    pareto, fits = {}, {}
    for key, _ in robustness_metrics(zoo):
        pts = [(r["clean_accuracy"], r[key]["mean"]) for r in rows]
        usable = [i for i, (_, v) in enumerate(pts) if math.isfinite(v)]
        front = pareto_front([pts[i] for i in usable])
        pareto[key] = [rows[usable[i]]["name"] for i in front]
    for key, _, _ in DISTORTIONS:
        if key not in zoo.metrics:
            continue
        use = [r for r in rows if math.isfinite(r[key]["mean"])]
        if len(use) < 2:
            fits[key] = {"skipped": "fewer than 2 models with a finite distortion"}
            continue
        # A model with no errors on n images has ln(0) = -inf; half an error (0.5/n) is the
        # usual continuity correction and keeps such a model in the fit.
        errs = [max(r["clean_error"], 0.5 / r["n_examples"]) for r in use]
        if len({round(e, 12) for e in errs}) < 2:
            fits[key] = {"skipped": "every model has the same clean error: no fit possible"}
            continue
        fits[key] = fit_distortion_vs_log_error([r[key]["mean"] for r in use], errs)
        fits[key]["models"] = [r["name"] for r in use]
        fits[key]["errors"] = errs
    families: dict[str, list[str]] = {}
    for r in rows:
        families.setdefault(r["family"], []).append(r["name"])
    return {"pareto": pareto, "fit": fits, "families": families}


# ----------------------------------------------------------------------------- the experiment

def zoo_experiment(zoo_toml_path: str | Path, *, runs_dir: str | None = None,
                   quiet: bool | None = None, overrides: list[str] | None = None,
                   device: str | None = None) -> Run:
    """Benchmark every model of the zoo file; returns the run folder holding results.json,
    report.html and one index row per (model, metric)."""
    spec = load_zoo(zoo_toml_path, overrides)
    zoo = spec.zoo
    if zoo.threads:
        torch.set_num_threads(zoo.threads)
    dev = resolve_device(device or zoo.device)
    dataset, x, y, dspec = _data(zoo, spec.models)
    x, y = x.to(dev), y.to(dev)
    loaded = {e.name: load_entry(e, dspec, dev) for e in spec.models}  # fail before any work
    from .common import check_fits

    for e in spec.models:  # a model that cannot take these images fails before a run folder
        check_fits(loaded[e.name], tuple(x.shape[1:]), dspec.num_classes,
                   f"zoo model {e.name}: dataset {dataset}")
    run = Run.create(runs_dir or zoo.runs_dir, zoo.name, "zoo", dataset=dataset)
    run.write_config(_zoo_toml_text(spec))
    with run.failing_marks_index():
        t0 = time.time()
        rows = []
        for e in spec.models:
            model = loaded[e.name]
            r = measure_model(model, x, y, zoo, quiet, e.name)
            cfg = getattr(model, "config", {})
            rows.append({"name": e.name, "family": family_for(e, model),
                         "arch": e.arch or cfg.get("name", ""),
                         "source": e.run or e.checkpoint or e.weights,
                         "params": int(sum(p.numel() for p in model.parameters())), **r})
            run.log({"model": e.name, "clean_accuracy": r["clean_accuracy"]})
        results: dict = {"dataset": dataset, "split": zoo.split, "n_examples": int(len(y)),
                         "metrics": list(zoo.metrics), "settings": dataclasses.asdict(zoo),
                         "models": rows}
        xt, yt = x[:zoo.transfer.n], y[:zoo.transfer.n]
        from ..analysis.transfer import transfer_matrix

        if "transfer" in zoo.metrics:
            torch.manual_seed(zoo.seed)
            results["transfer"] = transfer_matrix(loaded, xt, yt, _transfer_attack(zoo, False),
                                                  batch_size=zoo.batch_size)
            results["transfer"]["attack"] = zoo.transfer.attack
        if "transfer-targeted" in zoo.metrics:
            torch.manual_seed(zoo.seed)
            results["transfer_targeted"] = transfer_matrix(
                loaded, xt, yt, _transfer_attack(zoo, True), targeted=True,
                target_mode="least-likely", batch_size=zoo.batch_size)
            results["transfer_targeted"]["attack"] = "cw-l2-targeted"
        results.update(analyse(rows, zoo))
        results["wall_seconds"] = time.time() - t0
        run.write_results(results)
        _index(run, results, zoo)
        run.update_index(status="done", wall_seconds=results["wall_seconds"],
                         summary={"models": len(rows), "dataset": dataset})
        run.write_report(zoo_report(run.run_id, results))
    return run


def _zoo_toml_text(spec: ZooSpec) -> str:
    """The zoo file as resolved (overrides applied, run folders found), for config.toml."""
    zoo = to_toml({"zoo": dataclasses.asdict(spec.zoo)})
    models = []
    for e in spec.models:
        keep = {k: v for k, v in dataclasses.asdict(e).items() if v not in ("", 0)}
        models.append("[[models]]\n" + to_toml(keep))
    return zoo + "\n" + "\n".join(models)


def _index(run: Run, results: dict, zoo: ZooSection) -> None:
    common = dict(dataset=results["dataset"], split=results["split"])
    for r in results["models"]:
        base = dict(common, model=r["name"], clean_accuracy=r["clean_accuracy"],
                    family=r["family"], arch=r["arch"])
        run.add_result(**base, n_examples=r["n_examples"], attack="clean",
                       clean_error=r["clean_error"])
        for key, norm, _ in DISTORTIONS:
            if key in r:
                s = r[key]
                run.add_result(**base, n_examples=s["n"], norm=norm, attack=key,
                               robust_accuracy=None, mean_distortion=s["mean"],
                               median_distortion=s["median"], success_rate=s["success_rate"])
        for key, norm, _ in CLEVERS:
            if key in r:
                run.add_result(**base, n_examples=r[key]["n"], norm=norm, attack=key,
                               clever=r[key]["mean"], radius=r[key]["radius"])
    for key in ("transfer", "transfer_targeted"):
        t = results.get(key)
        if not t:
            continue
        for i, src in enumerate(t["names"]):
            for j, dst in enumerate(t["names"]):
                extra = {"source": src, "target": dst, "success_rate": t["untargeted"][i][j],
                         "transfer_attack": t["attack"]}
                if t.get("targeted"):
                    extra.update(top1=t["top1"][i][j], top5=t["top5"][i][j])
                run.add_result(**common, model=dst, n_examples=t["counts"][i][j],
                               attack=key.replace("_", "-"), **extra)


# ----------------------------------------------------------------------------- the report

_MARKERS = {"cnn": "o", "resnet": "s", "wrn": "^", "preact-resnet": "D"}


def _family_style(families: list[str]) -> dict[str, tuple[str, str]]:
    """One (colour, marker) per family, the same in every plot."""
    import matplotlib.pyplot as plt

    colours = plt.get_cmap("tab10").colors
    style = {}
    for i, f in enumerate(sorted(set(families))):
        style[f] = (colours[i % len(colours)], _MARKERS.get(f, "PXv*<>"[i % 6]))
    return style


def _legend(ax, style) -> None:
    from matplotlib.lines import Line2D

    ax.legend(handles=[Line2D([], [], color=c, marker=m, ls="", label=f)
                       for f, (c, m) in style.items()], fontsize=8, title="family")


def heatmap(t: dict, families: dict[str, str], key: str, title: str) -> bytes:
    """Transfer rates, sources as rows and targets as columns, numbers in each cell; tick
    labels coloured by family."""
    import matplotlib.pyplot as plt

    from ..report.figures import fig_to_png

    names = t["names"]
    m = np.array(t[key], dtype=float)
    k = len(names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * k, 0.8 + 0.65 * k))
    im = ax.imshow(m, vmin=0, vmax=1, cmap="viridis")
    for i in range(k):
        for j in range(k):
            v = m[i, j]
            ax.text(j, i, "-" if not np.isfinite(v) else f"{v:.2f}", ha="center", va="center",
                    color="white" if np.isfinite(v) and v < 0.6 else "black", fontsize=8)
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    style = _family_style(list(families.values()))
    for lab in [*ax.get_xticklabels(), *ax.get_yticklabels()]:
        lab.set_color(style[families[lab.get_text()]][0])
    ax.set_xlabel("target model")
    ax.set_ylabel("source model")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return fig_to_png(fig)


def pareto_plot(results: dict, metrics: list[tuple[str, str]]) -> bytes | None:
    import matplotlib.pyplot as plt

    from ..report.figures import fig_to_png

    if not metrics:
        return None
    rows = results["models"]
    style = _family_style([r["family"] for r in rows])
    cols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.6 * nrows), squeeze=False)
    for ax, (key, label) in zip(axes.flat, metrics):
        for r in rows:
            c, mk = style[r["family"]]
            ax.scatter(r["clean_accuracy"], r[key]["mean"], color=c, marker=mk, s=40)
            ax.annotate(r["name"], (r["clean_accuracy"], r[key]["mean"]), fontsize=6,
                        xytext=(3, 3), textcoords="offset points")
        front = [r for r in rows if r["name"] in results["pareto"].get(key, [])]
        front.sort(key=lambda r: r["clean_accuracy"])
        ax.plot([r["clean_accuracy"] for r in front], [r[key]["mean"] for r in front], "k--",
                lw=1, label="Pareto front")
        ax.set_xlabel("clean accuracy")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    _legend(axes.flat[0], style)
    fig.suptitle("accuracy versus robustness (dashed: Pareto frontier)")
    return fig_to_png(fig)


def fit_plot(results: dict) -> bytes | None:
    import matplotlib.pyplot as plt

    from ..report.figures import fig_to_png

    fits = [(k, lab) for k, _, lab in DISTORTIONS if "slope" in results["fit"].get(k, {})]
    if not fits:
        return None
    rows = {r["name"]: r for r in results["models"]}
    style = _family_style([r["family"] for r in rows.values()])
    cols = min(2, len(fits))
    nrows = math.ceil(len(fits) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 3.6 * nrows), squeeze=False)
    for ax, (key, label) in zip(axes.flat, fits):
        f = results["fit"][key]
        lx = np.log(np.array(f["errors"]))
        for name, le in zip(f["models"], lx):
            c, mk = style[rows[name]["family"]]
            ax.scatter(le, rows[name][key]["mean"], color=c, marker=mk, s=40)
        grid = np.linspace(lx.min(), lx.max(), 20) if np.ptp(lx) > 0 else lx
        ax.plot(grid, f["slope"] * grid + f["intercept"], "k-", lw=1)
        ax.set_title(f"{label}: {f['slope']:.3g}·ln(err) + {f['intercept']:.3g}, "
                     f"R²={f['r2']:.2f}", fontsize=9)
        ax.set_xlabel("ln(clean error)")
        ax.set_ylabel(f"mean minimal {label}")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(fits):]:
        ax.axis("off")
    _legend(axes.flat[0], style)
    return fig_to_png(fig)


def zoo_report(run_id: str, results: dict) -> str:
    from ..report.html import img, page, table

    rows = results["models"]
    metrics = robustness_metrics_from(results)
    header = ["model", "family", "params", "clean acc", "clean err"]
    for key, label in metrics:
        header.append(label)
        if key in dict((k, 0) for k, _, _ in DISTORTIONS):
            header.append(f"{label} success")
    body = []
    for r in rows:
        line = [r["name"], r["family"], r["params"], r["clean_accuracy"], r["clean_error"]]
        for key, _ in metrics:
            line.append(r[key]["mean"])
            if "success_rate" in r[key]:
                line.append(r[key]["success_rate"])
        body.append(line)
    sections = [("Metrics per model",
                 "<p>Minimal distortions are means over the successful attacks on the correctly "
                 "classified images attacked; success is the share attacked that was broken. "
                 "CLEVER is the mean score over a few images.</p>" + table(header, body))]
    fam = {r["name"]: r["family"] for r in rows}
    for key, title in (("transfer", "Transferability (untargeted)"),
                       ("transfer_targeted", "Transferability (targeted, least likely)")):
        t = results.get(key)
        if not t:
            continue
        figs = [img(heatmap(t, fam, "untargeted", f"untargeted success ({t['attack']})"),
                    "transferability heatmap")]
        if t.get("targeted"):
            figs += [img(heatmap(t, fam, "top1", "targeted top-1"), "targeted top-1 heatmap"),
                     img(heatmap(t, fam, "top5", "targeted top-5"), "targeted top-5 heatmap")]
        sections.append((title, "<p>Rows: source model; columns: target model; each cell the "
                         "share of the target's correctly classified images that the source's "
                         "adversarial examples break. The diagonal is white-box.</p>"
                         + "".join(figs)))
    if metrics:
        front = table(["metric", "models on the Pareto frontier"],
                      [(lab, ", ".join(results["pareto"].get(k, []))) for k, lab in metrics])
        sections.append(("Accuracy-robustness Pareto frontier",
                         img(pareto_plot(results, metrics), "Pareto plot") + front))
    fit_rows = []
    for key, _, label in DISTORTIONS:
        f = results["fit"].get(key)
        if f is None:
            continue
        if "slope" in f:
            fit_rows.append((label, f["slope"], f["intercept"], f["r2"], f["n"],
                             f.get("warning", "")))
        else:
            fit_rows.append((label, None, None, None, None, f["skipped"]))
    if fit_rows:
        sections.append(("Distortion versus ln(clean error)",
                         img(fit_plot(results), "distortion versus log error")
                         + table(["metric", "slope", "intercept", "R²", "models", "note"],
                                 fit_rows)))
    sections.append(("Families", table(["family", "models"],
                                       [(f, ", ".join(ns))
                                        for f, ns in results["families"].items()])))
    return page(f"Model zoo {run_id}", sections,
                subtitle=f"{results['dataset']} {results['split']}, {results['n_examples']} "
                         f"images, {len(rows)} models")


def robustness_metrics_from(results: dict) -> list[tuple[str, str]]:
    keys = [(k, lab) for k, _, lab in (*DISTORTIONS, *CLEVERS)]
    return [(k, lab) for k, lab in keys if results["models"] and k in results["models"][0]]
