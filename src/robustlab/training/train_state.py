"""The trainer's state and its checkpoint: counters, the best robust epoch, forward/backward
examples, the optimiser, the global RNG states (CPU and CUDA), free AT's persistent δ and the EMA,
written with the weights through training/checkpoint.py so that a resumed run on CPU equals an
uninterrupted one bit for bit."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..distributed import all_gather_tensors, rank_world
from ..errors import UserError
from ..passes import PassCount
from .checkpoint import load_checkpoint, save_checkpoint


@dataclass
class TrainState:
    epoch: int = 0            # epochs finished
    batch: int = 0            # batches finished in the current epoch
    step: int = 0             # optimiser steps in all
    best_robust: float = -1.0
    best_epoch: int = -1
    passes: PassCount = field(default_factory=PassCount)
    wall_seconds: float = 0.0


def save_training(run, model: nn.Module, optimizer: torch.optim.Optimizer, s: TrainState,
                  free=None, ema=None) -> None:
    """Checkpoint into ``run``'s folder (only the writing rank writes; every rank calls it, as
    free AT's δ is gathered from all of them)."""
    # Under torchrun each rank perturbs its own shard of the batch, so each has its own δ; all
    # of them are saved, or a resumed run would restart ranks 1.. from rank 0's perturbation.
    deltas = all_gather_tensors(free.state()) if free is not None else [None]
    if not run.writer:
        return
    state = {
        "epoch": s.epoch, "batch": s.batch, "step": s.step,
        "best_robust": s.best_robust, "best_epoch": s.best_epoch,
        "forward_examples": s.passes.forward, "backward_examples": s.passes.backward,
        "wall_seconds": s.wall_seconds,
        "optimizer": optimizer.state_dict(),
        "rng_cpu": torch.get_rng_state(),
    }
    if deltas[0] is not None:
        if len(deltas) == 1:
            state["free_delta"] = deltas[0]
        else:
            state["free_delta_per_rank"] = deltas
    if torch.cuda.is_available():
        state["rng_cuda"] = torch.cuda.get_rng_state_all()
    save_checkpoint(run.path, model.state_dict(), state, ema.state_dict() if ema else None)


def load_training(run, device: torch.device, model: nn.Module,
                  optimizer: torch.optim.Optimizer, free=None, ema=None) -> TrainState:
    """Restore weights, EMA, optimiser, δ and the global RNG states from ``run``'s checkpoint;
    returns the trainer state it holds."""
    model_state, st, ema_state = load_checkpoint(run.path, device)
    model.load_state_dict(model_state)
    if ema is not None and ema_state is not None:
        ema.load_state_dict(ema_state)
    optimizer.load_state_dict(st["optimizer"])
    if free is not None:
        free.load(_rank_delta(st, run), device)
    torch.set_rng_state(st["rng_cpu"].cpu())
    if "rng_cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in st["rng_cuda"]])
    return TrainState(
        epoch=int(st["epoch"]), batch=int(st["batch"]), step=int(st["step"]),
        best_robust=float(st["best_robust"]), best_epoch=int(st["best_epoch"]),
        passes=PassCount(int(st["forward_examples"]), int(st["backward_examples"])),
        wall_seconds=float(st["wall_seconds"]))


def _rank_delta(st: dict, run) -> torch.Tensor | None:
    """This rank's free-AT δ from a checkpoint: its own row when several ranks saved one."""
    rank, world = rank_world()
    per_rank = st.get("free_delta_per_rank")
    if per_rank is None:
        if world > 1 and st.get("free_delta") is not None:
            raise UserError(f"{run.path}: the free-AT checkpoint was written by one process and "
                            f"cannot resume under {world}; resume it with one process")
        return st.get("free_delta")
    if len(per_rank) != world:
        raise UserError(f"{run.path}: the free-AT checkpoint holds the perturbations of "
                        f"{len(per_rank)} processes; resume it with --nproc-per-node "
                        f"{len(per_rank)}, not {world}")
    return per_rank[rank]
