"""Data-parallel helpers for runs launched with ``torchrun`` (NCCL on GPUs, Gloo on CPU).

Outside torchrun everything here is a no-op, so single-process code paths stay plain.
"""

from __future__ import annotations

import os

import torch


def init_from_env() -> tuple[int, int, bool]:
    """(rank, world size, whether this call created the process group)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    import torch.distributed as dist

    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size(), True


def rank_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def broadcast_object(obj, src: int = 0):
    rank, world = rank_world()
    if world == 1:
        return obj
    import torch.distributed as dist

    box = [obj if rank == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    if rank_world()[1] > 1:
        import torch.distributed as dist

        dist.barrier()


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sum a few numbers over ranks (float64 on the CPU works for Gloo and NCCL alike)."""
    if rank_world()[1] == 1:
        return values
    import torch.distributed as dist

    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.cpu().tolist()


def all_gather_tensors(t: torch.Tensor | None) -> list:
    """Every rank's ``t`` (CPU copies, in rank order; shapes may differ between ranks). Runs on
    every rank; outside torchrun the list of ``t`` alone."""
    if rank_world()[1] == 1:
        return [t]
    import torch.distributed as dist

    out: list = [None] * rank_world()[1]
    dist.all_gather_object(out, None if t is None else t.detach().cpu())
    return out


def destroy() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_device(device: torch.device) -> torch.device:
    if device.type == "cuda" and rank_world()[1] > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device
