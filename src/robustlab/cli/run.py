"""`robustlab run CONFIG`: the main job — train, evaluate on the test set, write the report."""

from __future__ import annotations

from .common import add_config_options
from .train import run_cmd


def register(sub) -> None:
    p = sub.add_parser(
        "run", help="train, evaluate on the test set and write a report (the main job)",
        description="Train a model from a TOML config, evaluate clean and robust accuracy on the "
                    "test set with the config's [eval] attacks, and write a run folder with "
                    "results.json and a self-contained report.html.")
    p.add_argument("config", nargs="?", help="a TOML config, e.g. examples/quickstart.toml")
    p.add_argument("--resume", metavar="RUN", help="resume this run folder (or run id)")
    add_config_options(p)
    p.set_defaults(func=lambda a: run_cmd(a, evaluate_test=True))
