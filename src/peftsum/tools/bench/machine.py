"""The machine side of the bench: its measured matmul peak, and what it was."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import time
from pathlib import Path

import torch

from peftsum.runtime.machine import cpu_model
from peftsum.runtime.measure import device_name, peak_flops

PACKAGES = ("torch", "transformers", "peft", "accelerate", "datasets")


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def matmul_peak(dev: torch.device, dtype: torch.dtype, n: int, repeats: int = 5) -> dict:
    """FLOP/s of the best of `repeats` n x n @ n x n products: 2 n^3 FLOPs each. The device's
    practical peak for the training dtype, on the threads the variants use."""
    a, b = (torch.randn(n, n, device=dev).to(dtype) for _ in range(2))
    best = float("inf")
    for _ in range(repeats):  # the first also warms up: the best time is what counts
        _sync(dev)
        start = time.perf_counter()
        a @ b
        _sync(dev)
        best = min(best, time.perf_counter() - start)
    return {"flops": 2 * n**3 / best, "n": n, "dtype": str(dtype).replace("torch.", ""),
            "repeats": repeats, "best_s": best, "datasheet_flops": peak_flops(device_name(dev))}


def cpu_matrix_units() -> str:
    """What the CPU's bf16 matmuls run on: AMX, AVX-512 bf16, or none (fp32 then)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    if "amx_bf16" in flags:
        return "AMX"
    return "AVX-512 bf16, no AMX" if "avx512_bf16" in flags else "no AMX, no bf16 kernels"


def environment(dev: torch.device) -> dict:
    return {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "device": device_name(dev), "cpu": cpu_model(), "cores": os.cpu_count(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_matrix_units": cpu_matrix_units(),
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "load_average": os.getloadavg()[0],
            **{name: importlib.metadata.version(name) for name in PACKAGES}}
