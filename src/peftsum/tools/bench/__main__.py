"""python -m peftsum.tools.bench: our training loop and evaluation against what a user would write.

Runs every variant on the same model, data and settings, prints a table with ratios and writes
the figures as JSON. Each variant runs in a fresh process (python -m peftsum.tools.bench --variant ...)
so that its peak memory is its own; --in-process runs them all here, faster, without memory
figures. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from peftsum import methods
from peftsum.errors import UserError
from peftsum.files import write_json
from peftsum.runtime import distributed, gpu
from peftsum.runtime.measure import peak_gpu_mb, peak_rss_mb
from peftsum.runtime.precision import amp_dtype
from peftsum.tools.bench import generation, machine, presets, report, training

log = logging.getLogger("peftsum.tools.bench")


def run_variant(job: presets.Job, variant: str) -> dict:
    """train/<method>/<ours|hf_trainer|pad_to_max> or generate/<ours|pipeline_one|...>."""
    kind, *rest = variant.split("/")
    if kind == "train":
        method_name, name = rest
        method = methods.from_config(method_name, job.methods[method_name])
        return training.VARIANTS[name](job, method)
    return generation.VARIANTS[rest[0]](job)


def _in_process(job: presets.Job, variant: str) -> dict:
    return {**run_variant(job, variant), "peak_rss_mb": None, "peak_gpu_mb": None}


def _isolated(job_path: Path, threads: int, variant: str) -> dict:
    """The variant alone in a fresh interpreter; its peak RSS (and GPU memory) are its own."""
    result = job_path.with_name(variant.replace("/", "-") + ".json")
    command = [sys.executable, "-m", "peftsum.tools.bench", "--variant", variant, "--job",
               str(job_path), "--result", str(result), "--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(result.read_text())


def _child(args: argparse.Namespace) -> None:
    result = run_variant(presets.Job.load(args.job), args.variant)
    write_json(args.result, {**result, "peak_rss_mb": peak_rss_mb(),
                             "peak_gpu_mb": peak_gpu_mb()["peak_gpu_mb"]})


def _run_all(job: presets.Job, args: argparse.Namespace) -> dict:
    raw: dict = {"training": {}, "generation": {}}
    with tempfile.TemporaryDirectory(prefix="peftsum-bench-") as work:
        job_path = Path(work) / "job.json"
        job.save(job_path)

        def run(variant: str) -> dict:
            log.info("running %s", variant)
            return (_in_process(job, variant) if args.in_process
                    else _isolated(job_path, args.threads, variant))

        # Rounds of every variant in turn: a busy spell of the machine hits one round's
        # variants, and each variant's fastest round is what the report keeps.
        for _ in range(args.repeats):
            if "train" in args.parts:
                for m in job.methods:
                    for v in training.VARIANTS:
                        raw["training"].setdefault(m, {}).setdefault(v, []).append(
                            run(f"train/{m}/{v}"))
            if "generate" in args.parts:
                for v in generation.VARIANTS:
                    raw["generation"].setdefault(v, []).append(run(f"generate/{v}"))
    return raw


def _profiles(job: presets.Job) -> list[dict]:
    """Where our loop's time goes: each method's last step under torch.profiler, in a run of
    its own (the profiler's overhead would spoil the timed runs)."""
    profiles = []
    for name, spec in job.methods.items():
        run = training.train_ours(job, methods.from_config(name, spec), profile=True)
        profiles.append({"method": name, "top_ops": run["profile"]})
    return profiles


def bench(args: argparse.Namespace) -> dict:
    preset = presets.preset(args.preset, args.config_dir, steps=args.steps, n_test=args.n_test,
                            cpu_bf16=False if args.fp32 else None, attention=args.attention)
    if preset.steps <= report.WARMUP_STEPS or args.repeats < 1:
        raise UserError(f"--steps must exceed the {report.WARMUP_STEPS} warm-up step(s), "
                        "--repeats must be at least 1")
    unknown = set(args.parts.split(",")) - {"train", "generate"}
    if unknown:
        raise UserError(f"--parts: unknown part {min(unknown)!r} (train, generate)")
    names = args.methods.split(",") if args.methods else list(preset.methods)
    job = presets.job(preset, args.models_dir, args.cnndm, names, args.threads)
    dev = distributed.setup()
    dtype = amp_dtype(dev, preset.cpu_bf16) or torch.float32
    before = machine.matmul_peak(dev, dtype, preset.matmul_size)
    raw = _run_all(job, args)
    # Measured before and after the variants, the best kept: a busy moment lowers one of them.
    peak = max(before, machine.matmul_peak(dev, dtype, preset.matmul_size),
               key=lambda m: m["flops"])
    train = report.training(raw["training"], report.step_tokens(training.plan(job), job.train),
                            peak["flops"], args.loss_tolerance) if raw["training"] else {}
    gen = report.generation(raw["generation"]) if raw["generation"] else None
    return {"command": "python -m peftsum.tools.bench " + " ".join(args.argv),
            "preset": dataclasses.asdict(preset), "methods": job.methods,
            "environment": machine.environment(dev), "peak": peak,
            "mfu_formula": report.MFU_FORMULA, "loss_tolerance": args.loss_tolerance,
            "repeats": args.repeats,
            "training": train, "generation": gen, "targets": report.targets(train, gen),
            "profiles": _profiles(job) if args.profile else [], "raw": raw}


def _header(results: dict) -> list[str]:
    p, env, peak = results["preset"], results["environment"], results["peak"]
    n = peak["n"]
    machine_line = (f"peftsum bench, preset {p['name']}: model {p['model']['name']}, data "
                    f"{p['data']}, {peak['dtype']}, our training attention "
                    f"{p.get('attention', 'sdpa')}; {env['device']} ({env['cpu']}, "
                    f"{env.get('cpu_capability')}, {env.get('cpu_matrix_units')}, "
                    f"{env['cores']} cores, {env['threads']} threads), {env['date']}")
    versions = ("torch {torch}, transformers {transformers}, peft {peft}, accelerate "
                "{accelerate}, datasets {datasets}; 1-minute load average at the end "
                "{load_average:.1f}").format(**env)
    peak_line = (f"Peak: {n}x{n} @ {n}x{n} matmul in {peak['dtype']}, best of "
                 f"{peak['repeats']}: {peak['flops'] / 1e9:,.0f} GFLOP/s")
    return [machine_line, versions, peak_line]


def _training_section(results: dict) -> list[str]:
    p = results["preset"]
    caption = (f"Training: {p['steps']} optimizer steps of {p['batch_size']} x {p['grad_accum']} "
               "examples, the same micro-batches in the same order for every variant, each run "
               f"{results['repeats']} time(s), the fastest kept; tokens/s = "
               f"median over steps {report.WARMUP_STEPS + 1}..{p['steps']} of real tokens / "
               "seconds; ours x = our tokens/s over the variant's; loss after = loss on "
               f"{p['n_probe']} held-out examples after the last step, gap relative to ours; "
               "curve gap = largest relative gap of a step's training loss to ours; agrees: "
               f"both gaps within {results['loss_tolerance']:.0%}")
    return ["", caption, report.training_table(results["training"])]


def _generation_section(results: dict) -> list[str]:
    g = next(iter(results["generation"].values()))
    caption = (f"Generation: {g['examples']} test sources, each variant run {results['repeats']} "
               "time(s), the fastest kept; greedy, max_new_tokens "
               f"{results['preset']['max_new_tokens']}, {g['generated_tokens']:,} tokens "
               "generated; ours x = the variant's wall time over ours; shared prefix = mean share "
               "of each text that agrees with pipeline_one before they differ")
    return ["", caption, report.generation_table(results["generation"])]


def render(results: dict) -> str:
    lines = _header(results)
    if results["training"]:
        lines += _training_section(results)
    if results["generation"]:
        lines += _generation_section(results)
    for profile in results["profiles"]:
        caption = (f"Where time goes: our loop's last step ({profile['method']}) "
                   "under torch.profiler, operators by self time")
        lines += ["", caption, report.profile_table(profile["top_ops"])]
    if results["training"]:
        lines += ["", results["mfu_formula"]]
    lines += ["", report.targets_table(results["targets"])]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m peftsum.tools.bench", description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=sorted(presets.PRESETS), default="cpu-demo")
    p.add_argument("--methods", default=None, help="comma-separated (default: the preset's)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per variant")
    p.add_argument("--n-test", type=int, default=None, help="test sources to generate for")
    p.add_argument("--parts", default="train,generate", help="train, generate or train,generate")
    p.add_argument("--repeats", type=int, default=1,
                   help="run every variant this many times, in rounds; the fastest counts")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(),
                   help="torch threads in every variant (default: torch's, here %(default)s)")
    p.add_argument("--loss-tolerance", type=float, default=0.02,
                   help="relative loss gap under which two variants trained the same thing")
    p.add_argument("--fp32", action="store_true",
                   help="no bf16 autocast on the CPU (bf16 changes greedy text with batch shape)")
    p.add_argument("--attention", choices=["sdpa", "eager"], default=None,
                   help="our loop's training.attention (default: the preset's config)")
    p.add_argument("--in-process", action="store_true",
                   help="run the variants in this process: faster, no peak memory figures")
    p.add_argument("--profile", action="store_true",
                   help="profile our loop's last step, for each method")
    p.add_argument("--out", default=None, help="JSON results (default: results/bench/<preset>.json)")
    p.add_argument("--config-dir", default="config", help="where demo.yaml and config.yaml are")
    p.add_argument("--models-dir", default="resources/models")
    p.add_argument("--cnndm", default="../shared/data/cnndm-sample/test.jsonl",
                   help="CNN/DailyMail pairs (JSONL with article, highlights)")
    p.add_argument("--variant", help=argparse.SUPPRESS)  # a child process: run one variant
    p.add_argument("--job", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    return p


def one_gpu() -> gpu.Lease:
    """Every variant on the same single GPU, before CUDA starts (the variants' processes inherit
    CUDA_VISIBLE_DEVICES): the HF Trainer would spread over all visible GPUs (DataParallel)."""
    return gpu.lease(1, ids=gpu.visible_gpu_ids())


def main(argv: list[str] | None = None) -> dict | None:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    args.argv = argv
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.variant:
        _child(args)
        return None
    held = one_gpu()  # noqa: F841 (kept for the whole bench)
    try:
        results = bench(args)
    except UserError as err:
        sys.exit(f"error: {err}")
    write_json(args.out or Path("results/bench") / f"{args.preset}.json", results)
    print(render(results))
    return results


if __name__ == "__main__":
    main()
