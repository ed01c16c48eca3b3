"""Device choice and mixed precision: the dtype, attention and weight placement."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import platform

import torch

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


def amp_dtype(dev: torch.device, cpu_bf16: bool) -> torch.dtype | None:
    """bf16 on GPUs that support it (fp16 on older ones) and, when asked, on CPUs that compute
    it natively; else fp32."""
    if dev.type == "cuda":
        # Without including_emulation=False a V100 or T4 says yes and runs bf16 emulated, slowly.
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return torch.bfloat16 if native else torch.float16
    if cpu_bf16 and not cpu_has_native_bf16():
        log.warning("cpu_bf16: this CPU (%s) has no bf16 matmul instructions (AVX512_BF16 or AMX), "
                    "where bf16 runs 3-40x slower than fp32: running in fp32 (run.json and the "
                    "report say float32)",
                    torch.backends.cpu.get_cpu_capability())
        return None
    return torch.bfloat16 if cpu_bf16 else None


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
