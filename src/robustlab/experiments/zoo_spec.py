"""The zoo file of `robustlab zoo` (Su et al., ECCV 2018): its tables as checked dataclasses,
and :func:`load_zoo`, which checks every key, model source and file before any work.

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
    [[models]]
    name = "gowal2020"                 # a RobustBench checkpoint: a .pt state dict, its keys
    arch = "dm-wrn-28-10"              # those of the published code (also trades-wrn-34-10,
    weights = "Gowal2020Uncovering.pt" # dm-wrn-70-16-swish, dm-preact-resnet-18)
    dataset = "cifar10"                # its training set: classes and DeepMind's mean/std
    info = "Gowal2020Uncovering.json"  # RobustBench model info; default: one beside weights

A published architecture's ``dataset`` defaults to the model info's, else the zoo's. The model
info's published numbers (``clean_acc``, ``autoattack_acc``, ...) are kept in results.json beside
robustlab's and shown in the report.

Relative paths are looked up from the working directory, then from the zoo file's folder.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..config import apply_overrides, build, opt, read_toml, to_toml
from ..errors import ConfigError, UserError
from ..runs import resolve_run

METRICS = ("clean", "cw-l2", "ead", "ifgsm", "fgsm", "clever", "transfer", "transfer-targeted")
TRANSFER_ATTACKS = ("ifgsm", "fgsm", "cw-l2")


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
    dataset: str = opt("", doc="published arch: the checkpoint's training set, which sets its "
                       "classes and DeepMind's mean/std (default: the model info's, else the "
                       "zoo's)")
    info: str = opt("", doc="a RobustBench model-info JSON (default: X.json or model_info.json "
                    "beside the weights)")


@dataclass
class ZooSpec:
    zoo: ZooSection
    models: list[ModelEntry]
    source: Path
    table: dict
    # RobustBench model info per model name, for the models that have one.
    published: dict[str, dict] = field(default_factory=dict)



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
    entries, published = [], {}
    for i, t in enumerate(raw):
        where = f"{src}: models[{i}]"
        e = build(ModelEntry, t, where)
        if not e.name:
            raise ConfigError(f"{where}.name: every model needs a name")
        info = _check_entry(e, f"{src}: models[{i}] ({e.name})", base)
        if info is not None:
            published[e.name] = info
        entries.append(e)
    names = [e.name for e in entries]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{src}: models: the name {dup[0]!r} is used more than once")
    if {"transfer", "transfer-targeted"} & set(zoo.metrics) and len(entries) < 2:
        raise ConfigError(f"{src}: zoo.metrics: transfer needs at least 2 models")
    return ZooSpec(zoo, entries, src, table, published)


def _check_entry(e: ModelEntry, where: str, base: Path) -> dict | None:
    """Check that an entry's keys go together and resolve its paths (in place); returns its
    RobustBench model info, or None."""
    from ..models import resolve
    from ..models.checkpoint import PT_SUFFIXES
    from ..models.robustbench import NUM_CLASSES, PUBLISHED_FAMILIES

    given = [k for k in ("run", "checkpoint", "arch", "factory") if getattr(e, k)]
    if len(given) != 1:
        raise ConfigError(f"{where}: give exactly one of run, checkpoint, arch + weights or "
                          f"factory (got {', '.join(given) or 'none'})")
    if not e.factory and bool(e.arch) != bool(e.weights):
        raise ConfigError(f"{where}: arch and weights go together")
    if Path(e.checkpoint).suffix.lower() in PT_SUFFIXES:
        raise ConfigError(f"{where}.checkpoint: {e.checkpoint!r} is a plain state dict, which "
                          "does not say its architecture; give arch (e.g. \"dm-wrn-28-10\") "
                          "and weights instead")
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
    published = False
    if e.arch:
        try:
            fam, _ = resolve(e.arch)
        except UserError as err:
            raise ConfigError(f"{where}.arch: {err}") from None
        published = fam.family in PUBLISHED_FAMILIES
        if published and e.width:
            raise ConfigError(f"{where}.width: {e.arch} is a published architecture; its "
                              "width is in its name")
    if e.dataset and not published:
        raise ConfigError(f"{where}.dataset: only for a published architecture (dm-wrn-D-W"
                          "[-swish], dm-preact-resnet-18, trades-wrn-D-W), whose checkpoint's "
                          "classes and normalisation come from its training set")
    if e.dataset and e.dataset not in NUM_CLASSES:
        raise ConfigError(f"{where}.dataset: unknown training set {e.dataset!r} for a published "
                          f"checkpoint; known: {', '.join(NUM_CLASSES)}")
    return _model_info(e, where, base)


# Keys of RobustBench's model-info files; a JSON beside the weights with none of them is not one.
_INFO_KEYS = ("name", "architecture", "clean_acc", "autoattack_acc")


def _model_info(e: ModelEntry, where: str, base: Path) -> dict | None:
    """The entry's ``info`` file (an error if unreadable), else a model-info JSON found beside
    its weights (ignored if unreadable or foreign, as `robustlab eval` does: a stray file must
    not stop the zoo). Sets ``e.info`` to the file read, for config.toml."""
    from ..models.robustbench import model_info_path, read_info_file

    if e.info:
        found = _find_path(e.info, base)
        if found is None or not found.is_file():
            raise ConfigError(f"{where}.info: file {e.info!r} not found")
        e.info = str(found)
        try:
            return read_info_file(found)
        except UserError as err:
            raise ConfigError(f"{where}.info: {err}") from None
    weights = e.weights or e.checkpoint
    found = model_info_path(weights) if weights else None
    if found is None:
        return None
    try:
        info = read_info_file(found)
    except UserError:
        return None
    if not any(k in info for k in _INFO_KEYS):
        return None
    e.info = str(found)
    return info


def zoo_toml_text(spec: ZooSpec) -> str:
    """The zoo file as resolved (overrides applied, run folders found), for config.toml."""
    zoo = to_toml({"zoo": dataclasses.asdict(spec.zoo)})
    models = []
    for e in spec.models:
        keep = {k: v for k, v in dataclasses.asdict(e).items() if v not in ("", 0)}
        models.append("[[models]]\n" + to_toml(keep))
    return zoo + "\n" + "\n".join(models)
