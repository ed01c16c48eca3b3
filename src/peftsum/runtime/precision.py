"""Device choice and mixed precision: the dtype, attention and weight placement."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import json
import logging
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from peftsum.runtime.machine import cpu_model

log = logging.getLogger(__name__)


def cpu_has_native_bf16() -> bool:
    """Whether the CPU has bf16 instructions for matmuls. On x86 that is AVX512_BF16 or AMX:
    oneDNN says bf16 is supported on any AVX-512 CPU, but without them it converts to fp32 on
    the fly and bf16 training runs several times slower than fp32, and on an AVX2-only CPU
    torch's reference path is slower still (docs/performance.md). Elsewhere (ARM) oneDNN's
    answer stands."""
    if not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
        return False
    if platform.machine().lower() in ("x86_64", "amd64"):
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return True


# bf16 costs accuracy, so on a CPU it must buy at least this much speed to be chosen.
BF16_MIN_SPEEDUP = 1.1
CACHE_DIR = Path("resources") / "precision"
# The probe's shapes: one decoder block of the demo model (SmolLM2-135M: width 576, MLP 1536,
# 9 heads). Training: forward and backward over 128 tokens through frozen weights, as LoRA
# trains. Generation: forward of one new token for each of 16 rows (a generation batch), where
# the matmuls are matrix-vector-like and bf16 can lose although it wins for training (seen on
# an AMD EPYC with AVX512_BF16: training 1.2x faster in bf16, decoding 1.6x slower).
PROBE_WIDTH, PROBE_MLP, PROBE_HEADS, PROBE_TOKENS, PROBE_ROWS = 576, 1536, 9, 128, 16
PROBE_REPEATS, DECODE_STEPS = 3, 8
WORKLOADS = ("train", "generate")


def amp_dtype(dev: torch.device, cpu_bf16: bool | str,
              workload: str = "train") -> torch.dtype | None:
    """bf16 on GPUs that support it (fp16 on older ones); on a CPU what cpu_choice() says for
    the workload, train or generate (None: fp32)."""
    if dev.type == "cuda":
        # Without including_emulation=False a V100 or T4 says yes and runs bf16 emulated, slowly.
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return torch.bfloat16 if native else torch.float16
    return torch.bfloat16 if cpu_choice(cpu_bf16, workload)["dtype"] == "bfloat16" else None


def cpu_choice(cpu_bf16: bool | str, workload: str = "train") -> dict:
    """The CPU's precision for the setting cpu_bf16 (true, false or auto) and why: auto takes
    bf16 where the probe (cpu_speeds) ran the workload BF16_MIN_SPEEDUP times as fast as fp32.
    bf16 is never chosen where the CPU would emulate it, even when forced."""
    if cpu_bf16 is False:
        return {"setting": False, "dtype": "float32", "reason": "set in the config"}
    if not cpu_has_native_bf16():
        if cpu_bf16 is True:
            log.warning("cpu_bf16: this CPU (%s) has no bf16 matmul instructions (AVX512_BF16 "
                        "or AMX), where bf16 runs 3-40x slower than fp32: running in fp32",
                        torch.backends.cpu.get_cpu_capability())
        return {"setting": cpu_bf16, "dtype": "float32", "reason": "no native bf16 on this CPU"}
    if cpu_bf16 is True:
        return {"setting": True, "dtype": "bfloat16", "reason": "set in the config"}
    speeds = cpu_speeds()
    speedup = speeds[workload]["fp32_s"] / speeds[workload]["bf16_s"]
    fast = speedup >= BF16_MIN_SPEEDUP
    return {"setting": "auto", "dtype": "bfloat16" if fast else "float32",
            "reason": f"measured: bf16 {speedup:.2f}x fp32's speed to {workload} (bf16 needs "
                      f"{BF16_MIN_SPEEDUP}x)", "workload": workload, **speeds}


def cpu_speeds() -> dict:
    """Seconds of each workload's probe in bf16 and fp32 on this machine, measured once per CPU
    model, torch version and thread count, and kept under CACHE_DIR for the next jobs."""
    key = {"cpu_model": cpu_model(), "torch": torch.__version__,
           "threads": torch.get_num_threads()}
    return _cached_speeds(tuple(sorted(key.items())))


@functools.cache
def _cached_speeds(key: tuple) -> dict:
    from peftsum.files import write_json

    name = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]
    path = CACHE_DIR / f"{name}.json"
    try:
        cached = json.loads(path.read_text())
        if all(w in cached for w in WORKLOADS):  # else written by an older probe: measure again
            return cached
    except (OSError, json.JSONDecodeError):
        pass
    speeds = {**probe_seconds(), "cache": str(path), **dict(key)}
    log.info("CPU precision probe (seconds, bf16 and fp32): %s (%s)",
             {w: speeds[w] for w in WORKLOADS}, path)
    write_json(path, speeds)
    return speeds


def probe_seconds() -> dict:
    """{workload: {"bf16_s", "fp32_s"}}: the fastest of PROBE_REPEATS interleaved runs of each
    workload's probe in bf16 and in fp32."""
    generator = torch.Generator().manual_seed(0)
    weights = [torch.randn(shape, generator=generator) * 0.02 for shape in
               [(3 * PROBE_WIDTH, PROBE_WIDTH), (PROBE_WIDTH, PROBE_WIDTH),
                (PROBE_MLP, PROBE_WIDTH), (PROBE_WIDTH, PROBE_MLP)]]
    low = [w.to(torch.bfloat16) for w in weights]  # frozen weights stored as place() stores them
    inputs = {"train": torch.randn(1, PROBE_TOKENS, PROBE_WIDTH, generator=generator),
              "generate": torch.randn(PROBE_ROWS, 1, PROBE_WIDTH, generator=generator)}
    best = {(w, d): float("inf") for w in WORKLOADS for d in ("bf16_s", "fp32_s")}
    for _ in range(PROBE_REPEATS + 1):  # the first round warms the kernels up
        for workload in WORKLOADS:
            for name, dtype, ws in (("bf16_s", torch.bfloat16, low),
                                    ("fp32_s", None, weights)):
                start = time.perf_counter()
                _probe(workload, inputs[workload], ws, dtype)
                best[workload, name] = min(best[workload, name], time.perf_counter() - start)
    return {w: {d: best[w, d] for d in ("bf16_s", "fp32_s")} for w in WORKLOADS}


def _probe(workload: str, x: torch.Tensor, weights: list[torch.Tensor],
           dtype: torch.dtype | None) -> None:
    if workload == "train":
        x = x.detach().requires_grad_(True)
        with autocast(x.device, dtype):
            y = _block(x, weights)
        y.float().sum().backward()
        return
    with torch.no_grad(), autocast(x.device, dtype):
        for _ in range(DECODE_STEPS):
            _block(x, weights)


def _block(x: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
    """A decoder block (B, T, C) -> (B, T, C): causal attention, then the MLP."""
    qkv, out, up, down = weights
    b, t, _ = x.shape
    heads = F.linear(x, qkv).view(b, t, 3, PROBE_HEADS, -1).permute(2, 0, 3, 1, 4)
    attended = F.scaled_dot_product_attention(*heads, is_causal=True)
    h = x + F.linear(attended.transpose(1, 2).reshape(b, t, -1), out)
    return h + F.linear(F.silu(F.linear(h, up)), down)


def training_attention(choice: str, dev: torch.device, dtype: torch.dtype | None) -> str:
    """training.attention resolved: auto is eager under bf16 on a CPU (faster there for the
    demo's short sequences) and sdpa elsewhere (faster in fp32 on a CPU; on GPUs its fused
    kernels): docs/performance.md."""
    if choice != "auto":
        return choice
    return "eager" if dev.type == "cpu" and dtype == torch.bfloat16 else "sdpa"


def autocast(dev: torch.device, dtype: torch.dtype | None):
    """Autocast to dtype (None: full precision); trainable weights stay fp32 either way."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(dev.type, dtype=dtype)


def cast_frozen_weights(model: torch.nn.Module, dtype: torch.dtype | None) -> int:
    """Store the frozen matmul weights in the autocast dtype once; return how many were cast.

    Autocast caches a cast only for weights that require grad: a frozen fp32 base is cast to
    bf16 again in every forward and at every decoding step. Casting the frozen Linear (and
    GPT-2's Conv1D) weights once gives the same products, since autocast rounds the same way,
    without the copies, and halves their memory. Embeddings and norms keep their dtype (autocast
    does not cast them); a frozen head tied to the embeddings gets its own low-precision copy.
    """
    if dtype is None:
        return 0
    from transformers.pytorch_utils import Conv1D

    cast = 0
    for module in model.modules():
        if not isinstance(module, (torch.nn.Linear, Conv1D)):
            continue
        params = list(module.parameters(recurse=False))
        if any(p.requires_grad for p in params) or all(p.dtype == dtype for p in params):
            continue
        for name, param in module.named_parameters(recurse=False):
            # A new Parameter, not .data: a weight tied to the embeddings must stay fp32 there.
            setattr(module, name, torch.nn.Parameter(param.detach().to(dtype), requires_grad=False))
        cast += 1
    return cast


M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt() parameters (malloc.h)


@functools.cache
def hold_freed_cpu_memory() -> bool:
    """glibc malloc from here on serves every block from its heap and never gives it back.

    By default it maps each block over its threshold (raised as blocks are freed, to at most 32
    MiB: a large model's largest gradients, the logits) fresh from the kernel and unmaps it when
    freed, so each step faults those pages in again. Held, a freed block is reused where the
    next one fits in it (not always: a 64 MiB block freed and asked for again still faulted in
    most tries). Methods with large gradients (full fine-tuning, last layers) then train faster
    in bf16 on the CPU, the others alike, at a somewhat higher peak RSS (docs/performance.md).
    False where the C library is not glibc.
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    held = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, -1))  # -1: never trim
    if held:
        log.info("CPU memory: freed blocks stay in the process for reuse (glibc mallopt)")
    return held


def place(model: torch.nn.Module, dev: torch.device, dtype: torch.dtype | None) -> torch.nn.Module:
    """The model on dev, its frozen matmul weights stored in the autocast dtype; on the CPU the
    memory its steps free is kept for the next ones (hold_freed_cpu_memory)."""
    if dev.type == "cpu":
        hold_freed_cpu_memory()
    model.to(dev)
    cast = cast_frozen_weights(model, dtype)
    if cast:
        log.info("frozen matmul weights stored in %s: %d modules", dtype, cast)
    return model


def place_for_inference(model: torch.nn.Module, dev: torch.device,
                        dtype: torch.dtype | None) -> torch.nn.Module:
    """place(), with every weight frozen first: nothing trains in evaluation."""
    return place(model.requires_grad_(False), dev, dtype)
