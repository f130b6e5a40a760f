"""`robustlab train CONFIG` and `robustlab train --resume RUN`."""

from __future__ import annotations

from ..errors import UserError
from .common import add_config_options, check_data_dir


def register(sub) -> None:
    p = sub.add_parser(
        "train", help="train a model from a TOML config",
        description="Train a model from a TOML config into a new run folder, or resume a killed "
                    "run from its last checkpoint (the resumed run ends with the same weights "
                    "as an uninterrupted one on CPU).")
    p.add_argument("config", nargs="?", help="a TOML config (see examples/)")
    p.add_argument("--resume", metavar="RUN", help="resume this run folder (or run id)")
    add_config_options(p)
    p.set_defaults(func=lambda a: run_cmd(a, evaluate_test=False))


def apply_cli(cfg, args):
    check_data_dir(args.data_dir)
    if args.runs_dir:
        cfg.run.runs_dir = args.runs_dir
    if args.data_dir:
        cfg.data.data_dir = args.data_dir
    if args.device:
        cfg.run.device = args.device
    if args.threads:
        cfg.run.threads = args.threads
    return cfg


def run_cmd(args, *, evaluate_test: bool) -> int:
    from ..config import load_config
    from ..experiments.train import resume_experiment, train_experiment

    quiet = True if args.quiet else None
    if args.resume:
        if args.config:
            raise UserError("give either a config or --resume RUN, not both")
        run = resume_experiment(args.resume, args.runs_dir, evaluate_test=evaluate_test,
                                quiet=quiet, on_epoch=print_epoch, on_resume=print_resume)
    else:
        if not args.config:
            raise UserError("a config file is required (or --resume RUN)")
        cfg = apply_cli(load_config(args.config, args.overrides), args)
        run = train_experiment(cfg, kind="run" if evaluate_test else "train",
                               evaluate_test=evaluate_test, quiet=quiet, on_epoch=print_epoch)
    _print_summary(run)
    return 0


def print_resume(state) -> None:
    where = f"epoch {state.epoch + 1}" + (f", batch {state.batch}" if state.batch else "")
    print(f"resuming at {where} (step {state.step}, {state.wall_seconds:.0f} s trained so far)",
          flush=True)


def print_epoch(m: dict) -> None:
    """One line per epoch with the validation numbers, as they come."""
    parts = [f"epoch {int(m['epoch'])}"]
    if "train_loss" in m:
        parts.append(f"train loss {m['train_loss']:.3f}")
    if "train_accuracy" in m:
        parts.append(f"acc {m['train_accuracy']:.1%}")
    for key, label in (("val_loss", "val loss"),):
        if key in m:
            parts.append(f"{label} {m[key]:.3f}")
    for key, label in (("val_clean_accuracy", "val clean"), ("val_robust_accuracy",
                                                              f"val {m.get('val_attack', 'pgd')}")):
        if key in m:
            parts.append(f"{label} {m[key]:.1%}")
    if m.get("catastrophic_overfitting"):
        parts.append("CATASTROPHIC OVERFITTING?")
    print("  ".join(parts), flush=True)


def _print_summary(run) -> None:
    from ..report.html import human

    r = run.read_results()
    parts = []
    for k, label in (("clean_accuracy", "test clean"), ("robust_accuracy", "test robust"),
                     ("val_clean_accuracy", "val clean"), ("val_robust_accuracy", "val robust")):
        if isinstance(r.get(k), (int, float)):
            parts.append(f"{label} {r[k]:.2%}")
    if isinstance(r.get("train_flops"), (int, float)):
        parts.append(f"training {human(float(r['train_flops']), 'FLOP')}")
    if isinstance(r.get("wall_seconds"), (int, float)):
        parts.append(f"{r['wall_seconds']:.1f} s")
    print(f"run folder: {run.path}")
    print("  " + ", ".join(parts))
    if (run.path / "report.html").exists():
        print(f"  report: {run.path / 'report.html'}")
