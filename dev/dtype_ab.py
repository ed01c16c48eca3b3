"""bf16 autocast against fp32 for one training micro-batch of a whole model on the CPU: whether
the CPU has bf16 kernels (peftsum.runtime.precision.cpu_has_native_bf16) shows here.

    python dev/dtype_ab.py MODEL_DIR

4 x 448 random tokens forward and backward, bf16 with eager attention against fp32 with eager
and with sdpa; one warm-up call each, then 3 rounds alternating them, the fastest of each kept.
"""

from __future__ import annotations

import sys
import time

import torch
from transformers import AutoModelForCausalLM

from peftsum.runtime.precision import autocast

VARIANTS = [("bf16", torch.bfloat16, "eager"), ("fp32", None, "eager"), ("fp32", None, "sdpa")]


def step(model, tokens: torch.Tensor, dtype: torch.dtype | None) -> float:
    with autocast(torch.device("cpu"), dtype):
        loss = model(input_ids=tokens, labels=tokens).loss
    loss.backward()
    return loss.item()


def main(model_dir: str) -> None:
    torch.manual_seed(0)
    tokens = torch.randint(0, 40000, (4, 448))
    models = {attention: AutoModelForCausalLM.from_pretrained(model_dir,
                                                              attn_implementation=attention)
              for attention in ("eager", "sdpa")}
    for name, dtype, attention in VARIANTS:
        print(name, attention, "loss", round(step(models[attention], tokens, dtype), 4))
    best = {}
    for _ in range(3):
        for name, dtype, attention in VARIANTS:
            start = time.perf_counter()
            step(models[attention], tokens, dtype)
            seconds = time.perf_counter() - start
            best[name, attention] = min(best.get((name, attention), seconds), seconds)
    for (name, attention), seconds in best.items():
        print(f"{name} {attention}: {seconds:.2f} s")


if __name__ == "__main__":
    main(*sys.argv[1:])
