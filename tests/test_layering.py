"""Layers import downwards only (docs/design.md): cli → experiments → training / evaluation /
analysis → attacks → threat models → models, data, with the shared utilities at the bottom.
Read from the source with ``ast``, so an upward import anywhere in a package (even inside a
function) fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import robustlab

PACKAGE = Path(robustlab.__file__).parent

# Higher imports lower; equal ranks are siblings and may import each other.
RANK = {
    "cli": 7,
    "study": 6,
    "experiments": 5,
    "config": 4, "config_rules": 4, "sweeps": 4,  # the config validates against registries
    "report": 3.5,                                 # draws what analysis computes
    "training": 3, "evaluation": 3, "analysis": 3, "generation": 3,
    "attacks": 2, "spatial": 2,
    "threat": 1,
    "models": 0, "data": 0,
    "errors": -1, "io": -1, "progress": -1, "passes": -1, "runs": -1, "distributed": -1,
    "config_toml": -1,
}
FACADES = {"__init__", "__main__"}  # the package's API and entry point re-export from any layer


def imported_tops(source: str, parts: list[str]) -> set[str]:
    """Top-level robustlab packages imported by ``source``, a module in package ``parts``."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = parts[: len(parts) - (node.level - 1)]
            mod = base + (node.module.split(".") if node.module else [])
            out |= {mod[0]} if mod else {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("robustlab."):
            out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("robustlab.")}
    return out


def test_every_package_is_ranked():
    tops = {p.name.removesuffix(".py") for p in PACKAGE.iterdir()
            if (p.suffix == ".py" or (p / "__init__.py").exists())}
    assert tops - FACADES - set(RANK) == set(), "rank the new package in this test"


def test_layers_import_downwards_only():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        top = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if top in FACADES:
            continue
        parts = list(path.relative_to(PACKAGE).parts[:-1])
        for other in imported_tops(path.read_text(encoding="utf-8"), parts) - {top}:
            if RANK[other] > RANK[top]:
                upward.append(f"{path.relative_to(PACKAGE)} imports {other}")
    assert upward == []


def test_the_check_sees_every_form_of_import():
    """The trainer once imported the config module (``from ..config import Config``)."""
    source = ("from ..config import Config\n"
              "from . import objectives\n"
              "def f():\n    import robustlab.cli.main\n    from robustlab.report import html\n")
    assert imported_tops(source, ["training"]) == {"config", "training", "cli", "report"}
    assert imported_tops("from ... import threat\n", ["attacks", "sub"]) == {"threat"}
