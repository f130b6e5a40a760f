"""Crash-safe checkpoints for exact resume.

A checkpoint is a folder ``checkpoint/`` in the run folder holding ``model.safetensors``,
``model_ema.safetensors`` (when EMA is on) and ``trainer_state.pt`` (optimiser state, RNG states,
position in the data order, counters; plain tensors and numbers, loadable with
``weights_only=True``). It is written to a temporary folder and swapped in with two renames, so
the weights and the state always belong together: if a kill lands between the renames,
``checkpoint.old/`` is still complete and is used.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import UserError

DIR = "checkpoint"


def _contiguous(state: dict) -> dict:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def save_checkpoint(run_dir: Path, model_state: dict, trainer_state: dict,
                    ema_state: dict | None = None) -> Path:
    run_dir = Path(run_dir)
    tmp = Path(tempfile.mkdtemp(prefix=".checkpoint-", dir=run_dir))
    try:
        save_file(_contiguous(model_state), str(tmp / "model.safetensors"))
        if ema_state is not None:
            save_file(_contiguous(ema_state), str(tmp / "model_ema.safetensors"))
        torch.save(trainer_state, tmp / "trainer_state.pt")
        final, old = run_dir / DIR, run_dir / (DIR + ".old")
        if old.exists():
            shutil.rmtree(old)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def find_checkpoint(run_dir: Path) -> Path | None:
    for name in (DIR, DIR + ".old"):
        d = Path(run_dir) / name
        if (d / "trainer_state.pt").is_file() and (d / "model.safetensors").is_file():
            return d
    return None


def load_checkpoint(run_dir: Path, device: str | torch.device = "cpu"):
    """Returns (model_state, trainer_state, ema_state or None)."""
    d = find_checkpoint(run_dir)
    if d is None:
        raise UserError(f"{run_dir}: no checkpoint to resume from")
    try:
        model_state = load_file(str(d / "model.safetensors"), device=str(device))
        state = torch.load(d / "trainer_state.pt", map_location=device, weights_only=True)
        ema = d / "model_ema.safetensors"
        ema_state = load_file(str(ema), device=str(device)) if ema.is_file() else None
    except Exception as e:  # a corrupt file: say which, never a traceback
        raise UserError(f"{d}: checkpoint cannot be read: {e}") from None
    return model_state, state, ema_state
