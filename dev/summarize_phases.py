"""Where the time of one `peftsum summarize` call goes, phase by phase.

Each repeat is a fresh process that runs the real restore.load_run and restore.summarize with
timers wrapped around the functions they call, as `peftsum summarize --run RUN --input TEXT`
would (same thread count, same precision choice); the table gives each phase's median.

    python dev/summarize_phases.py results/demo/train/lora/seed0 article.txt --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

START = time.perf_counter()

# (module, attribute) wrapped with a timer, and the phase it counts toward. models.load's
# seconds are those of from_pretrained once the weights check and the tokenizer are taken out.
TIMED = [("peftsum.data.models", "verify_weights", "weights check"),
         ("peftsum.data.models", "load_tokenizer", "tokenizer"),
         ("peftsum.data.models", "load", "base model"),
         ("peftsum.methods", "Method.load_for_inference", "run's weights"),
         ("peftsum.evaluation.restore", "amp_dtype", "precision choice"),
         ("peftsum.evaluation.restore", "place_for_inference", "placement (cast)"),
         ("peftsum.evaluation.greedy", "prefill_grouped", "prefill"),
         ("peftsum.evaluation.greedy", "decode", "decoding")]


def _wrap(seconds: dict, module, path: str, phase: str) -> None:
    owner_name, _, name = path.rpartition(".")
    owner = getattr(module, owner_name) if owner_name else module
    inner = getattr(owner, name)

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            seconds[phase] = seconds.get(phase, 0.0) + time.perf_counter() - start
    setattr(owner, name, timed)


def once(run: Path, text: Path) -> dict:
    """One call's seconds per phase (as JSON on stdout), in this process."""
    import importlib

    from peftsum.evaluation import restore

    seconds = {"imports": time.perf_counter() - START}
    for module, path, phase in TIMED:
        _wrap(seconds, importlib.import_module(module), path, phase)
    model, tokenizer, record = restore.load_run(run)
    summary = restore.summarize(model, tokenizer, record, [text.read_text()], restore.decoding(run))
    seconds["base model"] -= seconds["weights check"] + seconds["tokenizer"]
    seconds["total in process"] = time.perf_counter() - START
    seconds["summary words"] = len(summary[0].split())
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("input", type=Path, help="a text file: one article")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.once:
        print(json.dumps(once(args.run, args.input)))
        return
    rows = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, str(args.run), str(args.input), "--once"],
                              capture_output=True, text=True, check=True,
                              env={**os.environ, "TQDM_DISABLE": "1"})
        rows.append({**json.loads(done.stdout.splitlines()[-1]),
                     "process wall": time.perf_counter() - start})
    for phase in rows[0]:
        values = [r[phase] for r in rows]
        print(f"{phase:18} {statistics.median(values):8.2f}   "
              + " ".join(f"{v:.2f}" for v in values))


if __name__ == "__main__":
    main()
