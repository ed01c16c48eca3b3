"""Dropout on the CPU from fewer random draws: LoRA's dropout on the adapter input.

torch's dropout draws one Bernoulli number per element (aten::bernoulli_), and on the CPU that
draw costs more than the products it guards: in the demo's bf16 LoRA step it was, after the
matrix products, the largest operator (docs/performance.md). Here one
64-bit draw of torch's generator gives four elements 15 random bits each, and an element is
kept when its bits are at least p x 2^15: the keep probability is 1 - p rounded to 1/32,768,
and the kept elements are scaled by 1 / (1 - p) as torch does. Seeded like every other draw.
Elsewhere than on the CPU torch's fused dropout runs unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

BITS = 15  # of each 16-bit quarter of a draw: torch's int64 random_() leaves the top bit 0


def keep_mask(shape: torch.Size, p: float, device: torch.device | None = None) -> torch.Tensor:
    """A bool mask of `shape` on device, each element True with probability 1 - p (to 1/32,768)."""
    n = shape.numel()
    draws = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_()
    bits = draws.view(torch.int16)[:n].view(shape) & (2**BITS - 1)
    return bits >= round(p * 2**BITS)


class CpuDropout(nn.Dropout):
    """nn.Dropout whose mask on the CPU comes from keep_mask."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return super().forward(x)
        return x * keep_mask(x.shape, self.p, x.device).to(x.dtype).div_(1 - self.p)


def use_in_lora_layers(model) -> int:
    """Replaces the nn.Dropout of every LoRA layer of a PEFT model (lora_dropout) by a
    CpuDropout of the same p; returns how many."""
    replaced = 0
    for module in model.modules():
        for name, dropout in getattr(module, "lora_dropout", {}).items():
            if type(dropout) is nn.Dropout:
                module.lora_dropout[name] = CpuDropout(dropout.p)
                replaced += 1
    return replaced
