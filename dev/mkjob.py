"""Save the bench's cpu-demo job (model, tokenized examples, methods) for the other dev/ scripts.

    python dev/mkjob.py OUT.json [METHODS] [ATTENTION]

METHODS: comma-separated demo methods (default: prompt_tuning,lora,last_layers,full);
ATTENTION: training.attention for the job (default: the demo config's). Run from the repository
root after `make demo` has downloaded the model (resources/models/).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from peftsum.tools.bench import presets

DEMO_METHODS = "prompt_tuning,lora,last_layers,full"
SAMPLE = Path("../shared/data/cnndm-sample/test.jsonl")


def main(out: str, methods: str = DEMO_METHODS, attention: str | None = None) -> None:
    preset = presets.preset("cpu-demo", Path("config"), steps=None, n_test=None, cpu_bf16=None,
                            attention=attention)
    job = presets.job(preset, Path("resources/models"), SAMPLE, methods.split(","),
                      torch.get_num_threads())
    job.save(Path(out))
    print("saved", out, list(job.methods), job.preset.attention, len(job.train))


if __name__ == "__main__":
    main(*sys.argv[1:])
