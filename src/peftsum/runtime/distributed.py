"""Data parallelism the plain way: torchrun sets RANK / WORLD_SIZE; only rank 0 logs and writes."""

from __future__ import annotations

import os
import time

import torch
import torch.distributed as dist

from peftsum.runtime import gpu


def world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) without it."""
    return (int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
            int(os.environ.get("LOCAL_RANK", "0")))


def setup() -> torch.device:
    """Start the process group when launched by torchrun; the device of this rank."""
    _, size, local = world()
    if torch.cuda.is_available():
        gpu.hold_rank_lock(local)  # the GPU stays taken while this rank runs, launcher or not
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    if size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return dev


def is_main() -> bool:
    return world()[0] == 0


def all_sum(*values: float, dev: torch.device) -> list[float]:
    """Sum numbers over ranks (identity on one process)."""
    if world()[1] == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=dev)
    dist.all_reduce(t)
    return t.tolist()


def all_gather(obj) -> list:
    """Every rank's obj (any picklable value), in rank order ([obj] on one process)."""
    if world()[1] == 1:
        return [obj]
    gathered = [None] * world()[1]
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def teardown() -> None:
    if dist.is_initialized():
        # Gloo's worker threads free each finished collective's tensors, which takes the GIL,
        # while destroy_process_group holds the GIL and waits for those threads: a free still
        # pending then deadlocks both (pytorch/pytorch#190489; a CI run hung on it, 2026-12-03).
        # Sleeping releases the GIL, so that they finish first.
        time.sleep(0.1)
        dist.destroy_process_group()
