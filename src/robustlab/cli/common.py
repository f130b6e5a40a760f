"""Options and printing shared by the command modules."""

from __future__ import annotations

import argparse
import sys


def add_runs_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs-dir", default=None,
                   help="root folder of run folders and the SQLite index (default: runs/, or "
                        "the config's run.runs_dir)")


def add_weights_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", default="model", choices=("model", "best", "ema"),
                   help="which weights of a run folder (default: model, the final weights)")


def add_model_io_options(p: argparse.ArgumentParser) -> None:
    """Where runs and data live, the device and quietness: the same for every command that
    loads a model and attacks it (spatial, energy, generate)."""
    add_runs_dir(p)
    p.add_argument("--data-dir", default="", help="look for datasets here first")
    p.add_argument("--data-path", default="", help="the file, for --dataset npz")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--quiet", action="store_true", help="no progress messages")


def add_config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.epochs=5 (repeatable)")
    add_runs_dir(p)
    p.add_argument("--data-dir", default=None, help="look for (and download) datasets here first")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_threads(p)


def add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for torch (default 0: torch's own, one per core; on a "
                        "machine shared with other jobs, 1 per process is often fastest)")


def apply_threads(args) -> None:
    from ..errors import UserError

    n = getattr(args, "threads", 0) or 0
    if n < 0:
        raise UserError(f"--threads must be >= 1 (0: torch's default), got {n}")
    if n:
        import torch

        torch.set_num_threads(n)


def console():
    from rich.console import Console

    # Piped output (a file, a test) gets wide lines: wrapped run ids cannot be copied.
    return Console(file=sys.stdout, soft_wrap=True,
                   width=None if sys.stdout.isatty() else 200)


def fmt(v, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 1e6:
            return f"{v:.3e}"
        return f"{v:.{digits}g}"
    return str(v)


def check_data_dir(path: str | None) -> None:
    """A --data-dir that does not exist is a typo, not a request to download elsewhere."""
    from pathlib import Path

    from ..errors import UserError

    if path and not Path(path).expanduser().is_dir():
        raise UserError(f"--data-dir {path}: no such folder")


def add_model_source(p: argparse.ArgumentParser) -> None:
    """Bring your own model: plain weights for a registry architecture, or a factory."""
    p.add_argument("--arch", default="",
                   help="the MODEL file is a plain state dict (.pt, read with weights_only, or "
                        ".safetensors) of this registry architecture (`robustlab models list`); "
                        "needs --dataset")
    p.add_argument("--model-factory", default="", metavar="MODULE:FUNCTION",
                   help="build the model by calling FUNCTION() from MODULE (importable, or a "
                        ".py file); it must return an nn.Module taking images in [0, 1]; MODEL, "
                        "if given, is a state dict loaded into it; needs --dataset")
    p.add_argument("--arch-norm", default="bn", choices=("bn", "gn", "none"),
                   help="with --arch: the network's normalisation layers (default bn)")
    p.add_argument("--num-classes", type=int, default=0,
                   help="with --arch: number of outputs (default: the dataset's classes)")
