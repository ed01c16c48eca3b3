"""Device choice, mixed precision and the resource figures every run reports."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import platform
import re
import resource
import threading
import time

import torch

log = logging.getLogger(__name__)


def cpu_has_native_bf16() -> bool:
    """Whether the CPU has bf16 instructions for matmuls. On x86 that is AVX512_BF16 or AMX:
    oneDNN says bf16 is supported on any AVX-512 CPU, but without them it converts to fp32 on
    the fly, and on an Intel Xeon with AVX-512 and neither (2026-12-03) a bf16 training
    micro-batch took 3.3x fp32's time (4.6x fp32's with sdpa); on an AVX2-only CPU (an AMD
    EPYC of the Zen 3 family) torch's reference path ran at 1.2 GFLOP/s against fp32's 51 on
    one thread. Elsewhere (ARM) oneDNN's answer stands."""
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
    """training.attention resolved: auto is eager under bf16 on a CPU (1.21x the tokens/s of
    sdpa for prompt tuning on the AVX-512 EPYC) and sdpa elsewhere (in fp32 on the AVX2 EPYC
    sdpa was 1.19x eager's speed; on GPUs its fused kernels): docs/benchmarks.md."""
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
    most tries). On the AMX Xeon the demo's bf16 training ran 1.11x (full fine-tuning) and 1.13x
    (last layers) as fast with the memory held, LoRA and prompt tuning alike (0.98x, within the
    noise); peak RSS up to 14 % higher (last layers; docs/benchmarks.md). False where the C
    library is not glibc.
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


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def peak_gpu_mb() -> dict:
    """Peak GPU memory allocated by tensors and reserved by the caching allocator."""
    if not torch.cuda.is_available():
        return {"peak_gpu_mb": None, "peak_gpu_reserved_mb": None}
    return {"peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20,
            "peak_gpu_reserved_mb": torch.cuda.max_memory_reserved() / 2**20}


def device_name(dev: torch.device) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"


class GpuMonitor:
    """Mean GPU utilisation and energy over a block, through NVML (nvidia-ml-py) when installed.

    Figures only: any NVML error (no driver, energy not supported on a MIG slice, ...) leaves
    the figure blank and the training running.
    """

    def __init__(self, dev: torch.device, every: float = 1.0):
        self.dev, self.every, self.samples, self.energy_j = dev, every, [], None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._energy_start = None
        self._nvml = self._handle() if dev.type == "cuda" else None

    def _handle(self):
        """(pynvml, the handle of this device) by its UUID, which names the same GPU to CUDA and
        NVML whatever CUDA_VISIBLE_DEVICES holds (indices, UUIDs or MIG ids); None on failure."""
        try:
            import pynvml
        except ImportError:
            return None
        try:
            pynvml.nvmlInit()
            return pynvml, pynvml.nvmlDeviceGetHandleByUUID(device_uuid(self.dev))
        except Exception as err:  # noqa: BLE001 (an NVML failure must not stop the run)
            log.warning("NVML unavailable for %s (%s): no energy or utilisation figures",
                        self.dev, err)
            return None

    def _read(self, what: str):
        """One NVML reading (utilisation or energy counter), None when NVML fails."""
        nvml, handle = self._nvml
        try:
            if what == "energy_mj":
                return nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            return nvml.nvmlDeviceGetUtilizationRates(handle).gpu
        except Exception as err:  # noqa: BLE001
            log.debug("NVML %s failed: %s", what, err)
            return None

    def _sample(self):
        while not self._stop.wait(self.every):
            if (util := self._read("util_pct")) is not None:
                self.samples.append(util)

    def __enter__(self):
        if self._nvml:
            self._energy_start = self._read("energy_mj")
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        end = self._read("energy_mj") if self._nvml else None
        if end is not None and self._energy_start is not None:
            self.energy_j = (end - self._energy_start) / 1e3

    def summary(self) -> dict:
        util = sum(self.samples) / len(self.samples) if self.samples else None
        return {"gpu_util_pct": util, "gpu_energy_j": self.energy_j}


def device_uuid(dev: torch.device) -> str:
    """NVML's name of a CUDA device: GPU-<uuid> (MIG slices keep the MIG- torch reports)."""
    uuid = str(torch.cuda.get_device_properties(dev).uuid)
    return uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"


class Stopwatch:
    """Wall time of a block, in seconds."""

    def __enter__(self):
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


# Dense bf16 (V100, T4: fp16) tensor-core peaks from the vendors' data sheets (half the
# "with sparsity" figure), by the words of the name torch.cuda.get_device_name reports.
PEAK_FLOPS = {("H100",): 989e12, ("H100", "PCIe"): 756e12, ("H100", "NVL"): 835e12,
              ("H200",): 989e12, ("H200", "NVL"): 835e12, ("GH200",): 989e12,
              ("A100",): 312e12, ("L40S",): 362e12, ("L40",): 181e12, ("L4",): 121e12,
              ("A10",): 125e12, ("RTX", "4090"): 165e12, ("V100",): 125e12, ("T4",): 65e12}


def peak_flops(name: str) -> float | None:
    """The data-sheet peak of the GPU called name; the entry with the most words that all are
    words of the name wins ("NVIDIA L40" is not an L4, "NVIDIA H100 NVL" not an H100 SXM).
    None for a GPU not in the table (an A10G is not an A10) or the CPU."""
    words = set(re.split(r"[\s\-_]+", name.upper()))
    matches = [key for key in PEAK_FLOPS if {w.upper() for w in key} <= words]
    return PEAK_FLOPS[max(matches, key=len)] if matches else None


def training_flops_per_token(base: torch.nn.Module, blocks, head: torch.nn.Module) -> dict:
    """Model FLOPs per real token of one training step, attention scores left out.

    forward: 2 x (block + head parameters); activation gradients: 2 x the parameters from the
    lowest trained layer up (prompt tuning and LoRA go all the way down, a trained head alone
    needs none); weight gradients: 2 x the trained parameters of those layers.
    """
    block_sizes = [sum(p.numel() for p in b.parameters()) for b in blocks]
    head_size = head.weight.numel()
    trained_blocks = [i for i, b in enumerate(blocks) if any(p.requires_grad for p in b.parameters())]
    in_stack = {id(p) for m in [*blocks, head] for p in m.parameters()}
    below_stack = any(p.requires_grad and id(p) not in in_stack for p in base.parameters())
    lowest = 0 if below_stack else (trained_blocks[0] if trained_blocks else len(blocks))
    activation = 2 * sum(block_sizes[lowest:]) + (2 * head_size if lowest < len(blocks) else 0)
    weights = 2 * sum(p.numel() for m in [*blocks, head] for p in m.parameters() if p.requires_grad)
    forward = 2 * (sum(block_sizes) + head_size)
    return {"forward": forward, "activation_backward": activation, "weight_backward": weights,
            "total": forward + activation + weights}
