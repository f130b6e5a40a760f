"""`robustlab eval`: robust accuracy of a checkpoint under a threat model and an attack suite.

Writes a run folder with results.json (clean and robust accuracy, accuracy after each attack, the
attack that broke each example, wall time, forward and backward passes, masking flags), an
optional ``adversarial.npz``, and report.html. The state is saved after every (attack, batch)
unit, so ``--resume RUN`` continues an interrupted evaluation to the same result. Under
``torchrun`` each rank evaluates a contiguous shard and rank 0 merges them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..distributed import barrier, broadcast_object, destroy, init_from_env, local_device
from ..errors import UserError
from ..evaluation.evaluate import EvalState, evaluate, summarise
from ..io import atomic_write, atomic_write_json
from ..models.norm import is_mixbn
from ..runs import Run
from ..threat import LpThreat
from .common import check_fits, load_any_model, resolve_device


@dataclass
class EvalSpec:
    """Everything that defines an evaluation; saved as eval.json so --resume can rebuild it."""

    model: str
    weights: str = "model"
    dataset: str = ""
    data_dir: str = ""
    data_path: str = ""  # the file, for the npz dataset
    split: str = "test"
    n: int = 1000
    n_given: bool = False  # the user asked for exactly n: more than the split has is an error
    norm: str = "linf"
    eps: list = field(default_factory=lambda: [0.1])
    version: str = "standard"
    attacks: list = field(default_factory=list)
    batch_size: int = 0  # 0: evaluation.default_batch_size for the device
    seed: int = 0
    bn: str = "clean"
    save_adv: bool = False
    masking: bool = True
    n_probe: int = 200
    name: str = "eval"
    arch: str = ""           # bring your own model: a registry architecture for plain weights
    model_factory: str = ""  # ... or module:function returning an nn.Module on [0, 1]
    num_classes: int = 0     # with arch: outputs (0: the dataset's classes)
    arch_norm: str = "bn"    # with arch: its normalisation layers


def load_eval_model(spec: EvalSpec, device):
    """The model an evaluation spec names, in eval mode, as `robustlab eval` attacks it (mixture
    BN routed, randomness kept on for `rand`); shared with spatial, energy, generate, study."""
    from .. import data

    dspec = None
    if spec.arch:
        name, _, path = eval_dataset_of(spec)
        dspec = data.get_spec(name)
        if dspec.format == "npz":
            dspec = data.load("npz", "test", path=path or None).spec
    model = load_any_model(spec.model, which=spec.weights, device=device, arch=spec.arch,
                           factory=spec.model_factory, data_spec=dspec,
                           num_classes=spec.num_classes, norm=spec.arch_norm)
    if is_mixbn(model):
        from ..training.routing import Routed

        model = Routed(model, spec.bn)
    if spec.version == "rand":
        from ..attacks.autoattack import KeepStochastic

        # The original's rand version attacks the model with its randomness on; eval mode alone
        # would switch dropout off and evaluate a different, deterministic model.
        model = KeepStochastic(model)
    return model.eval()


def eval_dataset_of(spec: EvalSpec) -> tuple[str, str, str]:
    """(name, data_dir, npz path) to evaluate on: given, or what the run folder trained on."""
    if spec.dataset:
        return spec.dataset, spec.data_dir, spec.data_path
    if spec.arch or spec.model_factory:
        raise UserError("say which dataset your model is for with --dataset")
    cfg_path = Path(spec.model) / "config.toml"
    if cfg_path.is_file():
        from ..config import load_config

        cfg = load_config(cfg_path, check_names=False)
        path = spec.data_path or (cfg.data.test_path if spec.split == "test" else "") \
            or cfg.data.path
        return cfg.data.name, spec.data_dir or cfg.data.data_dir, path
    raise UserError(f"{spec.model}: not a run folder; say which dataset with --dataset")


def load_eval_data(spec: EvalSpec, model=None):
    """(dataset name, x, y, data spec) of the split and size an evaluation spec names."""
    from .. import data

    name, data_dir, path = eval_dataset_of(spec)
    if model is not None and data.get_spec(name).format != "npz":
        ds = data.get_spec(name)  # checked before any download
        check_fits(model, ds.shape, ds.num_classes, name)
    val_size = 5000 if spec.split in ("train", "val") and name != "npz" else 0
    d = data.load(name, spec.split, data_dir=data_dir or None, val_size=val_size,
                  path=path or None)
    if spec.n_given and spec.n > len(d):
        raise UserError(f"--n {spec.n}: the {name} {spec.split} split has {len(d)} examples; "
                        f"give at most {len(d)}, or --n 0 for all of them")
    n = len(d) if spec.n == 0 else min(spec.n, len(d))
    return name, d.images[:n].float().div_(255), d.labels[:n].clone(), d.spec


def build_attacks(spec: EvalSpec, threat: LpThreat, num_classes: int):
    from ..attacks.autoattack import build_suite

    return build_suite(spec.version, threat, num_classes=num_classes, attacks=spec.attacks,
                       seed=spec.seed)


def suite_label(spec: EvalSpec) -> str:
    if spec.version == "custom":
        return "custom[" + ",".join(spec.attacks) + "]"
    return f"autoattack-{spec.version}"


def eval_experiment(spec: EvalSpec, *, runs_dir: str = "runs", resume: str | None = None,
                    device: str = "auto", quiet: bool | None = None) -> Run | None:
    rank, world, own_pg = init_from_env()
    dev = local_device(resolve_device(device))
    try:
        return _eval(spec, runs_dir, resume, dev, quiet, rank, world)
    finally:
        if own_pg:
            destroy()


def _state_path(run_path: Path, i: int, rank: int) -> Path:
    return run_path / f"eval_state-eps{i}-rank{rank}.pt"


def _eval(spec, runs_dir, resume, dev, quiet, rank, world) -> Run | None:
    model = load_eval_model(spec, dev)
    dataset, x, y, dspec = load_eval_data(spec, model)
    # Everything a user can get wrong is checked before a run folder exists.
    check_fits(model, tuple(x.shape[1:]), dspec.num_classes, f"dataset {dataset}")
    threats = [LpThreat(spec.norm, e) for e in spec.eps]  # validates every ε first
    for t in threats:
        build_attacks(spec, t, dspec.num_classes)  # unknown attacks fail before any work
    if resume:
        run = Run.open(resume, writer=rank == 0)
        path = run.path
    else:
        path = None
        if rank == 0:
            run = Run.create(runs_dir, spec.name, "eval", dataset=dataset,
                             arch=getattr(model, "config", {}).get("name"))
            atomic_write_json(run.file("eval.json"), asdict(spec))
            path = str(run.path)
        path = Path(broadcast_object(path))
        run = Run.open(path, writer=rank == 0)
    try:
        return _eval_in_run(spec, run, path, model, dataset, x, y, dspec, threats, rank, world,
                            quiet)
    except BaseException as e:
        run.mark_failed(e)  # never left "running" in the index
        raise


def _eval_in_run(spec, run, path, model, dataset, x, y, dspec, threats, rank, world,
                 quiet) -> Run | None:
    n = len(x)
    lo, hi = rank * n // world, (rank + 1) * n // world
    xs, ys = x[lo:hi], y[lo:hi]
    per_eps = []
    for i, threat in enumerate(threats):
        attacks = build_attacks(spec, threat, dspec.num_classes)
        sp = _state_path(path, i, rank)
        state = None
        if sp.is_file():
            try:
                state = EvalState.from_dict(torch.load(sp, weights_only=True))
            except Exception as e:
                raise UserError(f"{sp}: saved evaluation state cannot be read: {e}") from None

        def save(st, sp=sp):
            atomic_write(sp, lambda tmp: torch.save(st.to_dict(), tmp))

        evaluate(model, xs, ys, threat, attacks, batch_size=spec.batch_size,
                 keep_adv=spec.save_adv, seed=spec.seed + 7919 * i + rank, state=state,
                 on_unit=save, quiet=quiet)
        barrier()
        if rank == 0:
            states = [EvalState.from_dict(torch.load(_state_path(path, i, r), weights_only=True))
                      for r in range(world)]
            merged = EvalState(
                broken_by=torch.cat([s.broken_by for s in states]), stage=len(attacks),
                stage_seconds=[max(s.stage_seconds[k] for s in states)
                               for k in range(len(attacks))],
                forward=sum(s.forward for s in states), backward=sum(s.backward for s in states),
                seconds=max(s.seconds for s in states),
                x_adv=torch.cat([s.x_adv for s in states]) if spec.save_adv else None,
                initialised=True)
            per_eps.append((threat, summarise(merged, attacks, threat)))
    if rank != 0:
        return None
    return _finish(spec, run, model, dataset, dspec, x, y, per_eps, world)


def _finish(spec, run, model, dataset, dspec, x, y, per_eps, world) -> Run:
    from ..evaluation.masking import masking_checks
    from ..evaluation.sanity import sanity_checks

    threat, main = per_eps[0]
    label = suite_label(spec)
    masking = None
    if spec.masking:
        curve = ({t.eps: r.robust_accuracy for t, r in per_eps} if len(per_eps) > 1 else None)
        masking = masking_checks(model, x.to(_device_of(model)), y.to(_device_of(model)),
                                 threat, main, n_probe=spec.n_probe, eps_curve=curve)
    results = {
        "model": spec.model, "weights": spec.weights, "dataset": dataset, "split": spec.split,
        "n_examples": main.n_examples, "clean_accuracy": main.clean_accuracy,
        "robust_accuracy": main.robust_accuracy, "threat": main.threat, "attack": label,
        "stages": main.stages, "wall_seconds": sum(r.wall_seconds for _, r in per_eps),
        "forward_examples": sum(r.passes["forward_examples"] for _, r in per_eps),
        "backward_examples": sum(r.passes["backward_examples"] for _, r in per_eps),
        "processes": world,
        "per_eps": [{"eps": t.eps, **r.to_dict(per_example=False)} for t, r in per_eps],
        "broken_by": main.broken_by,
    }
    attack_names = [a.name for a in build_attacks(spec, threat, dspec.num_classes)]
    results["warnings"] = sanity_checks(model, x.to(_device_of(model)), y.to(_device_of(model)),
                                        version=spec.version, attack_names=attack_names,
                                        n_targets=max(1, min(9, dspec.num_classes - 1)))
    published = _published(spec)
    if published:
        results["published"] = published
    if masking is not None:
        results["masking"] = masking
        results["masking_flags"] = [f["check"] for f in masking["flags"]]
    run.write_results(results)
    for t, r in per_eps:
        run.add_result(model=spec.model, dataset=dataset, split=spec.split,
                       n_examples=r.n_examples, norm=t.norm, eps=t.eps, attack=label,
                       clean_accuracy=r.clean_accuracy, robust_accuracy=r.robust_accuracy,
                       stages=r.stages, wall_seconds=r.wall_seconds,
                       masking_flags=results.get("masking_flags", []))
    if spec.save_adv:
        _save_adv(run, per_eps, y)
    run.update_index(status="done", wall_seconds=results["wall_seconds"],
                     summary={k: v for k, v in results.items()
                              if not isinstance(v, (dict, list))})
    from ..report.eval_report import eval_report

    run.write_report(eval_report(run.run_id, results, per_eps, x, y, model, dspec))
    for p in run.path.glob("eval_state-*.pt"):
        p.unlink()  # finished: the state served only to resume
    return run


def _published(spec: EvalSpec) -> dict | None:
    """RobustBench's model-info JSON beside the weights, if any: its published accuracies are
    printed beside robustlab's own (issue 15)."""
    from ..models.robustbench import read_model_info

    try:
        return read_model_info(spec.model) if spec.model else None
    except (OSError, ValueError, UserError):
        return None  # a broken info file must not cost the finished evaluation


def _device_of(model) -> torch.device:
    ps = list(model.parameters())
    return ps[0].device if ps else torch.device("cpu")


def _save_adv(run: Run, per_eps, y) -> None:
    arrays = {"label": y.numpy().astype(np.int64)}
    for i, (_, r) in enumerate(per_eps):
        key = "image" if i == 0 else f"image_eps{i}"
        arrays[key] = r.x_adv.numpy().astype(np.float32)
        arrays[f"robust{'' if i == 0 else f'_eps{i}'}"] = r.robust_mask.numpy()
    arrays["eps"] = np.array([t.eps for t, _ in per_eps], dtype=np.float64)

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    atomic_write(run.file("adversarial.npz"), write)


def resume_spec(run_ref: str, runs_dir: str | None) -> tuple[EvalSpec, Path]:
    from ..runs import resolve_run

    path = resolve_run(run_ref, runs_dir or "runs")
    p = path / "eval.json"
    if not p.is_file():
        raise UserError(f"{path}: no eval.json; not an evaluation run")
    return EvalSpec(**json.loads(p.read_text())), path
