"""python -m peftsum.tools.gpucheck (make gpu-check): the GPU path in one go, for a machine with CUDA.

1. the smoke workflow on the GPUs (bf16 autocast, fused AdamW, NVML figures, the GPU lease);
   with two GPUs or more its trainings run two at a time, each on its own leased GPU;
2. with two GPUs: the smoke trainings again as torchrun DDP runs over two GPUs (NCCL);
3. python -m peftsum.tools.bench --preset gpu-gpt2.
Writes results/gpu-check/gpu-check.json (every figure, each step's command, wall time and
outcome) and gpu-check.md (a short table). A failed step is recorded and the next one runs.
Without CUDA it stops at once with one line. About 5-8 minutes on one modern GPU.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from peftsum import config

ROOT = Path(__file__).resolve().parents[3]
SMOKE = ROOT / "tests" / "smoke.yaml"
SMOKE_EXPERIMENT = config.load(SMOKE)["experiment"]  # its folder under results/ and logs/
FIGURES = ("device", "precision", "gpu_count", "tokens_per_s", "mfu", "peak_gpu_mb",
           "gpu_energy_j", "gpu_util_pct")


def _run(name: str, command: list[str], log_dir: Path) -> dict:
    """Run one step's command; its output goes to log_dir/<name>.log."""
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log_dir / f"{name}.log", "w") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False,
                              cwd=ROOT).returncode
    return {"step": name, "command": " ".join(command), "ok": code == 0, "returncode": code,
            "wall_s": time.perf_counter() - started, "log": str(log_dir / f"{name}.log")}


def _snakemake(workdir: Path, gpus: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
            "--cores", "all", "--resources", f"gpu={gpus}", *extra, "--directory", str(workdir),
            "--configfile", str(SMOKE)]


def training_figures(workdir: Path) -> list[dict]:
    """Each training's figures from its run.json, and the GPU its job leased (from its log)."""
    rows = []
    results, logs = workdir / "results" / SMOKE_EXPERIMENT, workdir / "logs" / SMOKE_EXPERIMENT
    for run_file in sorted((results / "train").glob("**/run.json")):
        run = json.loads(run_file.read_text())
        log_file = logs / "train" / f"{run['name']}_seed{run['seed']}.log"
        leased = re.search(r"leased GPU (\S+)", log_file.read_text()) if log_file.exists() else None
        rows.append({"run": str(run_file.parent.relative_to(workdir)),
                     "leased_gpu": leased.group(1) if leased else None,
                     **{k: run["resources"].get(k) for k in FIGURES}})
    return rows


def _bench_figures(bench_json: Path) -> list[dict]:
    if not bench_json.exists():
        return []
    training = json.loads(bench_json.read_text()).get("training") or {}
    return [{"run": f"bench {method}/{variant}",
             **{k: figures.get(k) for k in ("tokens_per_s", "mfu", "peak_gpu_mb")}}
            for method, variants in training.items() for variant, figures in variants.items()]


def table(rows: list[dict]) -> str:
    """The figures as a Markdown table: tokens/s, MFU, peak memory, energy."""
    def cell(value):
        if value is None:
            return "-"
        return f"{value:,.3g}" if isinstance(value, float) else str(value)

    columns = ["run", "leased_gpu", *FIGURES]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def check(out: Path, gpus: int) -> dict:
    steps, rows = [], []
    smoke = out / "smoke"
    steps.append(_run("smoke", _snakemake(smoke, min(gpus, 2)), out / "logs"))
    rows += training_figures(smoke)
    if gpus >= 2:
        leased = {r["leased_gpu"] for r in rows}
        steps[-1]["distinct_gpus_leased"] = sorted(filter(None, leased))
        ddp = out / "ddp"
        steps.append(_run("ddp", _snakemake(ddp, 2, "--until", "train", "--set-resources",
                                            "train:gpu=2"), out / "logs"))
        rows += training_figures(ddp)
    bench_json = out / "bench-gpu-gpt2.json"
    steps.append(_run("bench", [sys.executable, "-m", "peftsum.tools.bench", "--preset", "gpu-gpt2",
                                "--out", str(bench_json)], out / "logs"))
    rows += _bench_figures(bench_json)
    return {"steps": steps, "figures": rows}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m peftsum.tools.gpucheck", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="results/gpu-check", help="where the JSON and table go")
    args = p.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        sys.exit("gpu-check: no CUDA device here (torch.cuda.is_available() is False): "
                 "nothing run; run it on a machine with an NVIDIA GPU")
    out = Path(args.out).resolve()
    gpus = torch.cuda.device_count()
    names = [torch.cuda.get_device_name(i) for i in range(gpus)]
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    result = {"started_at": started, "gpus": names, "torch": torch.__version__,
              "cuda": torch.version.cuda, **check(out, gpus)}
    (out / "gpu-check.json").write_text(json.dumps(result, indent=2))
    status = ", ".join(f"{s['step']} {'ok' if s['ok'] else 'FAILED'} ({s['wall_s']:.0f} s)"
                       for s in result["steps"])
    text = f"gpu-check {started} on {', '.join(names)}: {status}\n\n{table(result['figures'])}\n"
    (out / "gpu-check.md").write_text(text)
    print(text)
    if not all(s["ok"] for s in result["steps"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
