"""The ``robustlab`` command. Each command group lives in its own module under ``cli/`` with
``register(subparsers)``, which adds its parser and sets ``func``; this file only dispatches and
turns :class:`~robustlab.errors.UserError` into one message and exit code 2."""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import UserError

# Order is the order of `robustlab --help`.
COMMAND_MODULES = [
    "run",
    "train",
    "eval",
    "spatial",
    "data",
    "models",
    "runs",
    "zoo",
    "sweep",
    "scaling",
    "energy",
    "generate",
    "study",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robustlab",
        description="Train image classifiers to resist adversarial inputs, attack them to "
        "measure how robust they are, and analyse the results.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"robustlab.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"robustlab.cli.{name}":
                continue  # a command group not written yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        from .common import apply_threads

        apply_threads(args)
        rc = args.func(args)
    except UserError as e:
        print(f"robustlab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head and the like: not an error of ours
        return 0
    except KeyboardInterrupt:
        print(f"robustlab {args.command}: interrupted; finished work is saved and the run "
              "can be resumed", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
