"""`robustlab train CONFIG` and `robustlab train --resume RUN`."""

from __future__ import annotations

from ..errors import UserError
from .common import add_config_options


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
    if args.runs_dir:
        cfg.run.runs_dir = args.runs_dir
    if args.data_dir:
        cfg.data.data_dir = args.data_dir
    if args.device:
        cfg.run.device = args.device
    return cfg


def run_cmd(args, *, evaluate_test: bool) -> int:
    from ..config import load_config
    from ..experiments.train import resume_experiment, train_experiment

    quiet = True if args.quiet else None
    if args.resume:
        if args.config:
            raise UserError("give either a config or --resume RUN, not both")
        run = resume_experiment(args.resume, args.runs_dir, evaluate_test=evaluate_test,
                                quiet=quiet)
    else:
        if not args.config:
            raise UserError("a config file is required (or --resume RUN)")
        cfg = apply_cli(load_config(args.config, args.overrides), args)
        run = train_experiment(cfg, kind="run" if evaluate_test else "train",
                               evaluate_test=evaluate_test, quiet=quiet)
    _print_summary(run)
    return 0


def _print_summary(run) -> None:
    r = run.read_results()
    keys = ("clean_accuracy", "robust_accuracy", "val_clean_accuracy", "val_robust_accuracy",
            "train_flops", "wall_seconds")
    parts = [f"{k}={r[k]:.4g}" if isinstance(r.get(k), float) else f"{k}={r.get(k)}"
             for k in keys if k in r]
    print(f"run folder: {run.path}")
    print("  " + "  ".join(parts))
    if (run.path / "report.html").exists():
        print(f"  report: {run.path / 'report.html'}")
