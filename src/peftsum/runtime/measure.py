"""The resource figures every run reports: memory, time, GPU utilisation and FLOPs."""

from __future__ import annotations

import logging
import re
import resource
import threading
import time

import torch

log = logging.getLogger(__name__)


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
            log.warning("no GPU utilisation or energy figures: nvidia-ml-py is not installed "
                        "(pip install -e '.[gpu]')")
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


# Dense tensor-core peaks with FP32 accumulation (what autocast training runs), bf16 where the
# GPU has it (V100, T4, RTX 2080 Ti: fp16), from the vendors' data sheets and architecture
# whitepapers (half the "with sparsity" figure), by the words of the name that
# torch.cuda.get_device_name reports. GeForce cards accumulate in FP32 at half their FP16-
# accumulate rate: their whitepapers' "FP16 Tensor TFLOPS with FP32 Accumulate" is the figure.
PEAK_FLOPS = {
    ("H100",): 989e12, ("H100", "PCIe"): 756e12, ("H100", "NVL"): 835e12,  # H100 data sheet
    ("H200",): 989e12, ("H200", "NVL"): 835e12, ("GH200",): 989e12,  # H200, GH200 data sheets
    ("A100",): 312e12,  # A100 data sheet
    ("L40S",): 362e12, ("L40",): 181e12, ("L4",): 121e12, ("A10",): 125e12,  # data sheets
    ("A40",): 149.7e12,  # A40 data sheet: 299.4 with sparsity
    ("RTX", "A6000"): 154.8e12,  # RTX A6000 data sheet: 309.7 with sparsity
    ("RTX", "6000", "Ada"): 364.2e12,  # RTX 6000 Ada data sheet: 1,457 FP8 with sparsity / 4
    ("RTX", "4090"): 165e12,  # Ada Lovelace whitepaper (Appendix A): 165.2
    ("RTX", "3090"): 71e12, ("RTX", "3090", "Ti"): 80e12,  # Ampere GA102 whitepaper: 71, 80
    ("RTX", "2080", "Ti"): 53.8e12,  # Turing whitepaper: 53.8 fp16 (no bf16)
    ("V100",): 125e12, ("T4",): 65e12}  # V100, T4 data sheets (fp16)


def peak_flops(name: str) -> float | None:
    """The data-sheet peak of the GPU called name; the entry with the most words that all are
    words of the name wins ("NVIDIA L40" is not an L4, "NVIDIA H100 NVL" not an H100 SXM).
    None for a GPU not in the table (an A10G is not an A10) or the CPU."""
    words = set(re.split(r"[\s\-_]+", name.upper()))
    matches = [key for key in PEAK_FLOPS if {w.upper() for w in key} <= words]
    return PEAK_FLOPS[max(matches, key=len)] if matches else None


def flops_per_position(model: torch.nn.Module, blocks, norm: torch.nn.Module,
                       head: torch.nn.Module) -> dict:
    """Model FLOPs of one training step per position, attention scores left out, in two parts:
    "blocks" for each position the decoder blocks compute (the text's real tokens and a soft
    prompt's), "head" for each position whose logits are computed (the loss pass keeps only
    those from the one before the batch's first summary token on).

    forward: 2 x the blocks' matrix weights (biases, norms and IA3's vectors cost no products);
    activation gradients: 2 x those from the lowest trained layer up (prompt tuning and LoRA go
    all the way down, a trained head alone needs none; the lowest trained block's first
    products are charged one they may skip: LoRA's frozen layer-0 c_attn); weight gradients:
    2 x the trained matrix weights. What trains outside the blocks, the final norm
    and the head (a soft prompt, embeddings) lies below the blocks.
    """
    block_sizes = [sum(p.numel() for p in b.parameters() if p.dim() > 1) for b in blocks]
    head_size = head.weight.numel()
    trained_blocks = [i for i, b in enumerate(blocks) if any(p.requires_grad for p in b.parameters())]
    in_stack = {id(p) for m in [*blocks, norm, head] for p in m.parameters()}
    below_stack = any(p.requires_grad and id(p) not in in_stack for p in model.parameters())
    lowest = 0 if below_stack else (trained_blocks[0] if trained_blocks else len(blocks))
    return {
        "blocks": {"forward": 2 * sum(block_sizes),
                   "activation_backward": 2 * sum(block_sizes[lowest:]),
                   "weight_backward": 2 * sum(p.numel() for b in blocks for p in b.parameters()
                                              if p.requires_grad and p.dim() > 1)},
        "head": {"forward": 2 * head_size,
                 "activation_backward": 2 * head_size if lowest < len(blocks) else 0,
                 "weight_backward": 2 * head_size if head.weight.requires_grad else 0}}


def training_flops(per_position: dict, positions: int, logit_positions: int) -> dict:
    """Model FLOPs of training over `positions` block positions, `logit_positions` of them with
    logits (per_position: flops_per_position's), by pass and in total."""
    flops = {k: per_position["blocks"][k] * positions + per_position["head"][k] * logit_positions
             for k in ("forward", "activation_backward", "weight_backward")}
    return {**flops, "total": sum(flops.values())}
