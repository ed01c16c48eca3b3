"""One training micro-batch of a saved bench job, two variants alternated, best time of each.

    python dev/ab_step.py JOB.json METHOD VARIANT_A VARIANT_B [ROUNDS]

The micro-batch is the job's first 4 training examples, forward and backward in bf16 autocast
with the frozen weights in bf16 as the Trainer places them, on 2 threads; one warm-up call each,
then ROUNDS (default 5) rounds alternating the variants, so that a machine's drift hits both.
Variants: eager, sdpa (attention, with peftsum's CPU dropout), torch-dropout, cpu-dropout (LoRA's
dropout, eager attention). JOB.json: dev/mkjob.py.
"""

from __future__ import annotations

import sys
import time

import torch
from torch import nn

from peftsum import methods
from peftsum.data import models
from peftsum.data.batches import collate
from peftsum.runtime import precision
from peftsum.tools.bench import presets
from peftsum.training.loss import summary_nll, summary_span

# variant -> (attention, whether LoRA keeps peftsum's CPU dropout)
VARIANTS = {"eager": ("eager", True), "sdpa": ("sdpa", True),
            "torch-dropout": ("eager", False), "cpu-dropout": ("eager", True)}


def build(job: presets.Job, method: str, variant: str):
    attention, cpu_dropout = VARIANTS[variant]
    torch.manual_seed(0)
    model, tokenizer = models.load(job.model_dir)
    model.set_attn_implementation(attention)
    model, _ = methods.from_config(method, job.methods[method]).wrap(model, tokenizer)
    if not cpu_dropout:
        for module in model.modules():
            for key, dropout in getattr(module, "lora_dropout", {}).items():
                if hasattr(dropout, "p"):  # nn.Identity where the dropout is 0
                    module.lora_dropout[key] = nn.Dropout(dropout.p)
    return precision.place(model, torch.device("cpu"), torch.bfloat16).train()


def time_once(model, batch: dict) -> tuple[float, float]:
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        nll, count = summary_nll(model, batch, summary_span(batch["labels"]))
    loss = nll / count
    loss.backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start, loss.item()


def main(job_path: str, method: str, a: str, b: str, rounds: str = "5") -> None:
    torch.set_num_threads(2)
    job = presets.Job.load(job_path)
    batch = collate(job.train[:4], 0)
    built = {v: build(job, method, v) for v in (a, b)}
    times, losses = {a: [], b: []}, {}
    for model in built.values():
        time_once(model, batch)
    for _ in range(int(rounds)):
        for variant, model in built.items():
            seconds, losses[variant] = time_once(model, batch)
            times[variant].append(seconds)
    for variant in (a, b):
        print(f"{method} {variant}: best {min(times[variant]) * 1e3:.0f} ms "
              f"(loss {losses[variant]:.5f})")
    print(f"{a} / {b}: {min(times[a]) / min(times[b]):.3f} of the time")


if __name__ == "__main__":
    main(*sys.argv[1:])
