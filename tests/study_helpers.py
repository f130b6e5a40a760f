"""A real (tiny) evaluation run with --save-adv, shared by the study tests."""

from __future__ import annotations

from pathlib import Path

from helpers import tiny_config


def tiny_eval_run(tmp: Path) -> Path:
    from robustlab.cli.main import main
    from robustlab.config import load_config
    from robustlab.experiments.train import train_experiment

    cfg = load_config(tiny_config(tmp, train={"epochs": 2, "objective": "ce"}))
    run = train_experiment(cfg)
    runs = tmp / "runs"
    assert main(["eval", str(run.path), "--runs-dir", str(runs), "--n", "128", "--eps", "0.2",
                 "--version", "custom", "--attacks", "pgd", "--quiet", "--save-adv",
                 "--no-masking-checks"]) == 0
    return sorted(runs.glob("eval-*"))[-1]


def make_study(tmp: Path, n: int = 24) -> Path:
    from robustlab.cli.main import main

    ev = tiny_eval_run(tmp)
    assert main(["study", "create", str(ev), "--n", str(n), "--checks", "3", "--size", "56"]) == 0
    return sorted((tmp / "runs").glob("study-*"))[-1]
