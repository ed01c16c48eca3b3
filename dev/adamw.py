"""AdamW's step over a model's parameters (full fine-tuning): for-loop, foreach and fused, and
how far fused ends from the for-loop (why the Trainer builds it fused).

    python dev/adamw.py MODEL_DIR [THREADS]
"""

from __future__ import annotations

import sys
import time

import torch
from transformers import AutoModelForCausalLM

KINDS = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def stepped(params: list[torch.Tensor], options: dict) -> tuple[list[torch.Tensor], float]:
    """Copies of params with their gradients after 6 AdamW steps, and the best of the last 5."""
    copies = [p.detach().clone().requires_grad_() for p in params]
    for copy, param in zip(copies, params):
        copy.grad = param.grad.clone()
    optimizer = torch.optim.AdamW(copies, lr=1e-4, weight_decay=0.01, **options)
    optimizer.step()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return copies, min(times)


def main(model_dir: str, threads: str = "2") -> None:
    torch.set_num_threads(int(threads))
    params = list(AutoModelForCausalLM.from_pretrained(model_dir).parameters())
    for param in params:
        param.grad = torch.randn_like(param) * 1e-3
    results = {}
    for kind, options in KINDS.items():
        results[kind], seconds = stepped(params, options)
        print(f"{kind}: {seconds * 1e3:.0f} ms per step (best of 5), {len(params)} tensors, "
              f"{sum(p.numel() for p in params) / 1e6:.1f}M parameters", flush=True)
    gap = max(float((a - b).detach().abs().max())
              for a, b in zip(results["fused"], results["for-loop"]))
    print("max |fused - for-loop| after 6 steps:", gap)


if __name__ == "__main__":
    main(*sys.argv[1:])
