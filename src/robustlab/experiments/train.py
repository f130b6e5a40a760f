"""Train a model from a config, and `run`: train, then evaluate on the test set and report.

Both write a run folder (see :mod:`robustlab.runs`), index it in the runs root's SQLite file, and
can be resumed after a kill from the last checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import Config, config_to_toml, load_config
from ..distributed import broadcast_object, destroy, init_from_env, local_device
from ..errors import UserError
from ..models.norm import is_mixbn
from ..runs import Run
from ..threat import LpThreat
from .common import build_model, load_splits, setup


def _index_fields(cfg: Config) -> dict:
    return {"dataset": cfg.data.name, "arch": cfg.model.arch, "objective": cfg.train.objective,
            "config": cfg.to_dict()}


def train_experiment(cfg: Config, *, kind: str = "train", evaluate_test: bool = False,
                     resume: str | Path | None = None, quiet: bool | None = None,
                     on_epoch=None, on_resume=None) -> Run:
    """``on_epoch(record)`` is called with each epoch's metrics record as it is logged (the CLI
    prints the validation numbers from it); ``on_resume(state)`` with the trainer state a
    resumed run continues from."""
    rank, world, own_pg = init_from_env()
    try:
        return _train(cfg, kind, evaluate_test, resume, quiet, rank, world, on_epoch, on_resume)
    finally:
        if own_pg:
            destroy()


def _train(cfg, kind, evaluate_test, resume, quiet, rank, world, on_epoch=None,
           on_resume=None) -> Run:
    from .. import models

    device = local_device(setup(cfg, rank))
    train, val, test, extra = load_splits(cfg)
    spec = train.spec
    model = build_model(cfg, spec).to(device)
    shape = (spec.in_channels, spec.image_size, spec.image_size)
    fwd_flops = models.count_flops(model, shape)
    writer = rank == 0  # only rank 0 writes; the others compute
    if resume:
        run = Run.open(resume, writer=writer)
        run.update_index(status="running")
    else:
        path = None
        if writer:
            run = Run.create(cfg.run.runs_dir, cfg.run.name, kind, **_index_fields(cfg))
            run.write_config(config_to_toml(cfg))
            path = str(run.path)
        run = Run.open(broadcast_object(path), writer=writer) if world > 1 else run
    try:
        if on_epoch is not None and writer:
            log = run.log

            def log_and_tell(record, log=log):
                log(record)
                if "epoch" in record:
                    on_epoch(record)

            run.log = log_and_tell
        return _fit_and_report(cfg, run, model, train, val, test, extra, device, fwd_flops,
                               evaluate_test, resume, quiet, world, writer, on_resume)
    except BaseException as e:
        run.mark_failed(e)  # never left "running" in the index
        raise


def _fit_and_report(cfg, run, model, train, val, test, extra, device, fwd_flops, evaluate_test,
                    resume, quiet, world, writer, on_resume=None) -> Run:
    from .. import models
    from ..training.trainer import Trainer

    trainer = Trainer(train_settings(cfg), run, model, train, val, device, extra_data=extra,
                      forward_flops=fwd_flops, quiet=quiet)
    if resume:
        trainer.resume()
        if on_resume is not None and writer:
            on_resume(trainer.state)
    state = trainer.fit()
    if not writer:
        return run
    results = {
        "processes": world,
        "run_id": run.run_id, "dataset": cfg.data.name, "arch": cfg.model.arch,
        "norm_layer": cfg.model.norm, "objective": cfg.train.objective,
        "epochs": cfg.train.epochs, "train_threat": LpThreat(cfg.train.attack.norm,
                                                             cfg.train.attack.eps).to_dict(),
        "params": models.count_params(model),
        "inference_flops_per_example": fwd_flops,
        "train_flops": state.passes.flops(fwd_flops),
        "train_forward_examples": state.passes.forward,
        "train_backward_examples": state.passes.backward,
        "train_wall_seconds": state.wall_seconds,
        "best_epoch": state.best_epoch, "best_val_robust_accuracy": state.best_robust,
    }
    last = run.metrics()[-1] if run.metrics() else {}
    for k in ("val_clean_accuracy", "val_robust_accuracy"):
        if k in last:
            results[k] = last[k]
    metrics = run.metrics()
    if any(m.get("catastrophic_overfitting") for m in metrics):
        results["catastrophic_overfitting"] = True
    preview = None
    if evaluate_test:
        split = {"train": train, "val": val, "test": test}[cfg.eval.split]
        if split is None:
            raise UserError("eval.split = 'val' needs data.val_size > 0")
        evaluation, preview = _evaluate_test(cfg, run, model, split, device, quiet)
        results.update(evaluation)
    # Training time is cumulative over resumes; evaluation time is this process's.
    results["wall_seconds"] = state.wall_seconds + results.get("eval_wall_seconds", 0.0)
    run.write_results(results)
    run.update_index(status="done", train_flops=results["train_flops"],
                     inference_flops=fwd_flops, wall_seconds=results["wall_seconds"],
                     summary={k: v for k, v in results.items() if not isinstance(v, dict)})
    _write_report(cfg, run, results, preview)
    return run


def eval_attacks(names: list[str], threat: LpThreat, sec, num_classes: int) -> list:
    """Attacks for the config's [eval] list; ``autoattack-<version>`` expands to that suite."""
    from ..attacks.autoattack import build_suite
    from ..attacks.registry import make_attack

    out = []
    for name in names:
        if name.startswith("autoattack-"):
            out += build_suite(name.split("-", 1)[1], threat, num_classes=num_classes)
        else:
            out.append(make_attack(name, threat, **_attack_settings(name, sec)))
    return out


def _evaluate_test(cfg: Config, run: Run, model, data, device, quiet) -> tuple[dict, dict]:
    """Clean and robust accuracy on the [eval] split; with mixture BN, for both BN sets
    (Xie and Yuille report both), the one named by model.test_bn first."""
    from ..evaluation import evaluate
    from ..training.routing import Routed

    ec = cfg.eval
    threat = LpThreat(ec.attack.norm, ec.attack.eps)
    n = len(data) if ec.n == 0 else min(ec.n, len(data))
    x = data.images[:n].to(device, torch.float32) / 255
    y = data.labels[:n].to(device)
    attack_desc = " -> ".join(_describe(name, ec.attack) for name in ec.attacks)
    mixbn = is_mixbn(model)
    routes = [cfg.model.test_bn, "adv" if cfg.model.test_bn == "clean" else "clean"] \
        if mixbn else [None]
    out: dict = {}
    for route in routes:
        target = model if route is None else Routed(model, route)
        attacks = eval_attacks(ec.attacks, threat, ec.attack, data.spec.num_classes)
        res = evaluate(target, x, y, threat, attacks, batch_size=ec.batch_size,
                       keep_adv=True, seed=cfg.run.seed, quiet=quiet)
        run.add_result(model=cfg.model.arch, dataset=cfg.data.name, split=ec.split,
                       n_examples=n, norm=threat.norm, eps=threat.eps, attack=attack_desc,
                       clean_accuracy=res.clean_accuracy, robust_accuracy=res.robust_accuracy,
                       stages=res.stages, bn=route)
        if route is not None:
            out.setdefault("mixbn_eval", {})[route] = {
                "clean_accuracy": res.clean_accuracy, "robust_accuracy": res.robust_accuracy}
        if "clean_accuracy" in out:
            continue
        out.update({"clean_accuracy": res.clean_accuracy,
                    "robust_accuracy": res.robust_accuracy, "n_examples": n,
                    "split": ec.split, "threat": res.threat, "attack": attack_desc,
                    "eval_stages": res.stages, "eval_wall_seconds": res.wall_seconds,
                    "eval_passes": res.passes})
        if route is not None:
            out["eval_bn"] = route
        # Examples for the report's grid: those the attack broke, which are the ones worth
        # looking at; the first images only when it broke none.
        broken = [i for i, b in enumerate(res.broken_by) if b not in (None, "clean")][:10]
        idx = torch.tensor(broken or list(range(min(10, n))), dtype=torch.long)
        with torch.no_grad():
            target.eval()
            xc, xa = x[idx.to(device)], res.x_adv[idx].to(device)
            preview = {"x": xc.cpu().numpy(), "x_adv": xa.cpu().numpy(),
                       "y": y[idx.to(device)].cpu().numpy(),
                       "pred": target(xc).argmax(1).cpu().numpy(),
                       "pred_adv": target(xa).argmax(1).cpu().numpy(), "broken": bool(broken)}
    return out, preview


def _attack_settings(name: str, sec) -> dict:
    if name in ("pgd", "apgd-ce", "apgd-dlr", "apgd-t"):
        kw = {"steps": sec.steps, "restarts": sec.restarts}
        if name == "pgd" and sec.step_size:
            kw["step_size"] = sec.step_size
        return kw
    return {}


def _describe(name: str, sec) -> str:
    if name == "pgd":
        return f"pgd-{sec.steps}" + (f"x{sec.restarts}" if sec.restarts > 1 else "")
    return name


def _write_report(cfg: Config, run: Run, results: dict, preview: dict | None) -> None:
    from .. import data
    from ..report import figures
    from ..report.html import human, img, kv_rows, page, table

    def pct(v):
        return "-" if v is None else f"{100 * v:.2f}%"

    sections = []
    shown = {"clean_accuracy": ("test clean accuracy", pct),
             "robust_accuracy": ("test robust accuracy", pct),
             "n_examples": ("test examples", str), "attack": ("attacks", str),
             "train_flops": ("training compute", lambda v: human(float(v), "FLOP")),
             "train_wall_seconds": ("training time", lambda v: f"{v:.1f} s"),
             "best_epoch": ("best epoch (validation robust accuracy)", str),
             "best_val_robust_accuracy": ("best validation robust accuracy", pct),
             "params": ("parameters", lambda v: human(float(v))),
             "inference_flops_per_example": ("inference compute per image",
                                             lambda v: human(float(v), "FLOP"))}
    headline = [(label, f(results[k])) for k, (label, f) in shown.items() if k in results]
    if "threat" in results:
        t = results["threat"]
        headline.insert(3, ("threat model", f"{t['norm']} eps={t['eps']:g}"))
    sections.append(("Summary", kv_rows(headline)))
    metrics = run.metrics()
    curves = figures.training_curves(metrics)
    if curves:
        sections.append(("Training curves", img(curves, "training curves")))
        rows = [(int(m["epoch"]), m.get("train_loss"), pct(m.get("train_accuracy")),
                 m.get("val_loss"), pct(m.get("val_clean_accuracy")),
                 pct(m.get("val_robust_accuracy")), m.get("val_delta_energy"), m.get("lr"),
                 m.get("throughput"))
                for m in metrics if "epoch" in m]
        sections.append(("Per epoch", table(["epoch", "train loss", "train acc", "val loss",
                                             "val clean", "val robust", "val ΔE", "lr",
                                             "img/s"], rows)
                         + "<p>E(x) = -logsumexp f(x), the energy the classifier assigns an "
                           "input (Mirza et al., ECCV 2024); ΔE is its mean on adversarial "
                           "minus natural validation images.</p>"))
    if results.get("eval_stages"):
        st = results["eval_stages"]
        sections.append(("Robust accuracy after each attack", table(
            ["attack", "robust accuracy", "broken", "seconds"],
            [(s["attack"], pct(s["robust_accuracy"]), s["broken"], f"{s['seconds']:.1f}")
             for s in st])))
    if preview is not None:
        classes = data.get_spec(cfg.data.name).classes
        png = figures.adversarial_grid(preview["x"], preview["x_adv"], preview["y"],
                                       preview["pred"], preview["pred_adv"], classes, n=10)
        what = ("test images the evaluation attack broke" if preview.get("broken") else
                "the first test images (the attack broke none)")
        sections.append(("Clean versus adversarial examples",
                         f"<p>{what}: the clean image with the model's prediction, the "
                         "adversarial example with its prediction (red: wrong), and the "
                         "perturbation, amplified by the factor above it so that it fills the "
                         "grey range (mid-grey: unchanged).</p>"
                         + img(png, "clean versus adversarial")))
    sections.append(("Config", f"<pre>{_escape(config_to_toml(cfg))}</pre>"))
    run.write_report(page(f"robustlab run {run.run_id}", sections,
                          subtitle=f"{cfg.model.arch} on {cfg.data.name}, objective "
                                   f"{cfg.train.objective}"))


def _escape(s: str) -> str:
    from html import escape

    return escape(s)


def resume_experiment(run_ref: str, runs_dir: str | None, *, evaluate_test: bool,
                      quiet: bool | None = None, on_epoch=None, on_resume=None) -> Run:
    from ..runs import resolve_run

    path = resolve_run(run_ref, runs_dir or "runs")
    cfg_path = path / "config.toml"
    if not cfg_path.is_file():
        raise UserError(f"{path}: no config.toml; not a robustlab training run")
    cfg = load_config(cfg_path)
    return train_experiment(cfg, evaluate_test=evaluate_test, resume=path, quiet=quiet,
                            on_epoch=on_epoch, on_resume=on_resume)


def train_settings(cfg):
    """The trainer's plain settings from a config (``training`` does not read the config)."""
    from ..training.settings import TrainSettings

    return TrainSettings(cfg.train, seed=cfg.run.seed, crop_padding=cfg.data.crop_padding,
                         flip=cfg.data.flip, extra_fraction=cfg.data.extra_fraction,
                         test_bn=cfg.model.test_bn, spatial=cfg.spatial)
