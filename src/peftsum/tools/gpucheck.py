"""python -m peftsum.tools.gpucheck (make gpu-check): the GPU path proven in one command.

Budget: at most 8 minutes on one H100 (each step's timeout below; the sum is BUDGET_S). Needs
the venv only: random GPT-2-shaped models and synthetic token ids, no network, no data.
Each step runs in a process of its own under its own timeout, and results/gpu-check/
gpu-check.json is rewritten after every step, so that a run cut short still leaves figures.

1. unit: on the GPU, greedy decoding with rows that end (EOS) against generate(), through the
   KV cache, and every kind's batched generation against one example at a time;
2. train: every demo method on a GPT-2-small-shaped model at the full experiment's shapes
   (micro-batch 8 x grad_accum 2, up to 1,024 tokens, dropout on) and at batch 32 x 640:
   tokens/s and MFU (training FLOPs as runtime.measure counts them, over the data-sheet peak);
3. generate: the evaluation's decoding (batch 32, 128 new tokens, no-repeat 3): tokens/s;
4. precision: LoRA's losses over 20 steps in fp32 and in bf16, and 10 steps forced to fp16
   with loss scaling;
5. ddp (two GPUs or more): LoRA with grad_accum 2 over 2 GPUs against 1 GPU: loss agreement
   (dropout off) and scaling of tokens/s;
6. workflow: the smoke workflow on the GPUs (lease, NVML figures) with the time left.
--rehearse shrinks every shape so that the whole path runs on a CPU (the test suite does).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from peftsum import config, paths, records

ROOT = Path(__file__).resolve().parents[3]
SMOKE = ROOT / "tests" / "smoke.yaml"
SMOKE_EXPERIMENT = config.load(SMOKE)["experiment"]  # its folder under results/ and logs/
FIGURES = ("device", "precision", "gpu_count", "tokens_per_s", "mfu", "peak_gpu_mb",
           "gpu_energy_j", "gpu_util_pct")
# Seconds per step on one H100; the workflow step gets what is left of BUDGET_S.
TIMEOUTS = {"unit": 60, "train": 120, "generate": 40, "precision": 50, "ddp": 80}
BUDGET_S = 480
DEMO = {"prompt_tuning": {"kind": "prompt_tuning", "n_tokens": 20, "init": "random", "lr": 0.03},
        "lora": {"kind": "lora", "r": 8, "alpha": 32, "dropout": 0.1, "target_modules": ["c_attn"],
                 "lr": 2e-4},
        "last_layers": {"kind": "last_layers", "n_blocks": 0, "lr": 1e-4},
        "full": {"kind": "full", "lr": 5e-5}}
# Every kind whose generation the unit step compares, batched against one at a time.
UNIT_KINDS = [*DEMO.values(), {"kind": "ia3"}, {"kind": "bitfit"},
              {"kind": "prefix_tuning", "num_virtual_tokens": 4},
              {"kind": "p_tuning", "num_virtual_tokens": 4, "encoder_hidden_size": 16},
              {"kind": "lora", "r": 4, "use_dora": True}]


@dataclasses.dataclass(frozen=True)
class Shapes:
    model: dict  # GPT2Config's sizes ({}: GPT-2 small)
    train: tuple  # (batch size, grad_accum, shortest and longest example) of each training
    steps: int  # optimizer steps of each training
    generate: tuple  # (batch, new tokens, source tokens)
    precision_steps: tuple  # (fp32 and bf16, fp16)
    unit_kinds: tuple  # the kinds whose batched generation is compared with one at a time
    summary_tokens: int = 64  # of each example, the rest is its source


FULL = Shapes(model={}, train=((8, 2, 512, 1024), (32, 1, 640, 640)), steps=8,
              generate=(32, 128, 512), precision_steps=(20, 10), unit_kinds=tuple(UNIT_KINDS))
REHEARSAL = Shapes(model={"n_layer": 2, "n_head": 2, "n_embd": 32, "n_positions": 128},
                   train=((2, 2, 24, 48),), steps=2, generate=(4, 6, 16), precision_steps=(2, 2),
                   unit_kinds=(DEMO["lora"], UNIT_KINDS[6]), summary_tokens=8)


# --- the steps' work (in the step's own process) ----------------------------------------------
def _device():
    """This process's device: CUDA (its rank's GPU under torchrun) where there is one."""
    from peftsum.runtime import distributed

    return distributed.setup()


def _tokenizer():
    from peftsum.data.models import gpt2_tokenizer

    tok = gpt2_tokenizer()
    tok.pad_token = tok.eos_token
    return tok


def _model(shapes: Shapes, dropout: bool = True):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    off = {} if dropout else {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
    return GPT2LMHeadModel(GPT2Config(**shapes.model, **off))


def _examples(n: int, shortest: int, longest: int, summary: int, seed: int = 0) -> list[dict]:
    """n token sequences of random ids, lengths in [shortest, longest], the last `summary`
    tokens of each its summary (the loss's targets)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(shortest, longest + 1, (n,), generator=gen).tolist()
    return [{"input_ids": torch.randint(0, 50000, (length,), generator=gen).tolist(),
             "source_len": length - summary} for length in lengths]


def train_once(name: str, spec: dict, shapes: Shapes, shape: tuple, steps: int, dev,
               dtype="auto", dropout: bool = True) -> dict:
    """One Trainer.fit() of `steps` optimizer steps: its losses, tokens/s (median of the steps
    after the first) and MFU."""
    import torch

    from peftsum.config import TrainingConfig
    from peftsum.methods import from_config
    from peftsum.runtime.measure import device_name, peak_flops, peak_gpu_mb
    from peftsum.training.loop import Trainer, flops_of, seed_everything

    batch, accum, shortest, longest = shape
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    seed_everything(0)
    if not dropout and "dropout" in spec:
        spec = {**spec, "dropout": 0.0}
    tok, method = _tokenizer(), from_config(name, spec)
    model, _ = method.wrap(_model(shapes, dropout), tok)
    examples = _examples(steps * batch * accum, shortest, longest, shapes.summary_tokens)
    cfg = TrainingConfig.from_dict({"epochs": 1, "max_steps": steps, "batch_size": batch,
                                    "grad_accum": accum, "eval_every": 10**9, "eval_samples": 1,
                                    "log_every": 1, "patience": None, "checkpoint_every": 10**9})
    trainer = Trainer(model, tok, method, cfg, 0, examples, examples[:1], dev, dtype=dtype)
    state = trainer.fit()
    rows = [r for r in trainer.rows if "train_loss" in r]
    tokens_per_s = statistics.median(r["tokens_per_s"] for r in rows[1:] or rows)
    flops_per_token = flops_of(trainer)["total"] / state["tokens"]
    peak = peak_flops(device_name(dev)) if trainer.dtype is not None else None
    return {"method": name, "shape": f"{batch} x {accum} x {shortest}-{longest}",
            "device": device_name(dev), "precision": str(trainer.dtype or "float32").replace("torch.", ""),
            "tokens_per_s": tokens_per_s, "flops_per_token": flops_per_token,
            "mfu": tokens_per_s * flops_per_token / peak if peak else None,
            "losses": [r["train_loss"] for r in rows], "loss_scale": trainer.scaler.get_scale()
            if trainer.scaler.is_enabled() else None, **peak_gpu_mb()}


def step_train(shapes: Shapes) -> dict:
    dev = _device()
    return {"runs": [train_once(name, spec, shapes, shape, shapes.steps, dev)
                     for shape in shapes.train for name, spec in DEMO.items()]}


def step_precision(shapes: Shapes) -> dict:
    """fp32 against the device's bf16 from the same weights and data, dropout off; then fp16
    forced, with loss scaling."""
    import torch

    dev = _device()
    full, half = shapes.precision_steps
    runs = {label: train_once("lora", DEMO["lora"], shapes, shapes.train[0], steps, dev, dtype,
                              dropout=False)
            for label, dtype, steps in (("fp32", None, full), ("bf16", torch.bfloat16, full),
                                        ("fp16", torch.float16, half))}
    gaps = [abs(a - b) / abs(a) for a, b in zip(runs["fp32"]["losses"], runs["bf16"]["losses"])]
    fp16_finite = all(map(math.isfinite, runs["fp16"]["losses"]))
    return {"runs": list(runs.values()), "bf16_max_rel_gap": max(gaps),
            "fp16_finite": fp16_finite, "ok": max(gaps) < 0.02 and fp16_finite}


def step_generate(shapes: Shapes) -> dict:
    from peftsum.config import EvalConfig
    from peftsum.evaluation.generate import generate_and_score
    from peftsum.methods import from_config
    from peftsum.runtime.precision import amp_dtype, place_for_inference

    dev, tok = _device(), _tokenizer()
    batch, new_tokens, source = shapes.generate
    model, _ = from_config("lora", DEMO["lora"]).wrap(_model(shapes), tok)
    dtype = amp_dtype(dev, False)
    model = place_for_inference(model, dev, dtype)
    examples = _examples(batch, source // 2, source, shapes.summary_tokens)
    cfg = EvalConfig.from_dict({"batch_size": batch, "max_new_tokens": new_tokens,
                                "no_repeat_ngram_size": 3})
    generation = generate_and_score(model, tok, examples, cfg, dev, dtype)
    tokens = sum(o["n_tokens"] for o in generation.outputs)
    return {"examples": batch, "new_tokens": tokens, "seconds": generation.seconds,
            "tokens_per_s": tokens / generation.seconds}


def _perturbed(spec: dict, shapes: Shapes, tok, dev):
    """The method on a small model, its trainable weights moved off their (often neutral)
    initial values as training would, on dev."""
    import torch

    from peftsum.methods import from_config

    model, _ = from_config("m", {**spec, "lr": 1e-3}).wrap(_model(shapes), tok)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.5)
    return model.to(dev).eval()


def _greedy_with_ending_rows(tok, dev) -> dict:
    """greedy.decode against generate() with an EOS that ends the rows at different steps."""
    import torch
    from transformers import LogitsProcessorList

    from peftsum.data.batches import collate_sources
    from peftsum.evaluation import greedy
    from peftsum.evaluation.generate import GeneratedNoRepeatNGram, cache_owner
    from peftsum.evaluation.kv_cache import growing_cache

    model = _perturbed(DEMO["lora"], dataclasses.replace(REHEARSAL, model={
        **REHEARSAL.model, "n_positions": 256}), tok, dev)
    ids = [tok(t)["input_ids"] for t in ("The cat sat on the mat and looked at the birds.",
                                         "Hello there.", "Stocks rose on Monday after the news.",
                                         "A short one.")]
    sources = {k: v.to(dev) for k, v in collate_sources(
        [{"input_ids": i, "source_len": len(i)} for i in ids], tok.pad_token_id).items()}

    def whole(eos):
        with torch.no_grad():
            out = model.generate(**sources, max_new_tokens=12, do_sample=False, eos_token_id=eos,
                                 pad_token_id=tok.pad_token_id, past_key_values=growing_cache(12),
                                 logits_processor=LogitsProcessorList([GeneratedNoRepeatNGram(3)]))
        rows = out[:, sources["input_ids"].shape[1]:].tolist()
        return [r[: r.index(eos) + 1] if eos in r else r for r in rows]

    free = whole(tok.eos_token_id)
    eos = max({t for row in free for t in row},
              key=lambda t: len({row.index(t) if t in row else -1 for row in free}))
    expected = whole(eos)
    with torch.no_grad():
        start, cache = greedy.prefill_grouped(model, sources, 12, tok.pad_token_id, None)
        ours = greedy.decode(cache_owner(model), cache, start, 12, eos, tok.pad_token_id, 3)
    ours = [r[: r.index(eos) + 1] if eos in r else r for r in ours]
    return {"rows_end_apart": len({len(r) for r in expected}) > 1, "equal": ours == expected}


def step_unit(shapes: Shapes) -> dict:
    from peftsum.config import EvalConfig
    from peftsum.evaluation.generate import generate

    dev, tok = _device(), _tokenizer()
    greedy_check = _greedy_with_ending_rows(tok, dev)
    examples = _examples(4, 6, 20, 0, seed=3)
    batched = {}
    small = dataclasses.replace(REHEARSAL, model={**REHEARSAL.model, "n_positions": 256})
    for spec in shapes.unit_kinds:
        model = _perturbed(spec, small, tok, dev)
        decodings = {b: EvalConfig.from_dict({"batch_size": b, "max_new_tokens": 8,
                                              "no_repeat_ngram_size": 3}) for b in (4, 1)}
        texts = {b: [o["text"] for o in generate(model, tok, examples, cfg, dev)]
                 for b, cfg in decodings.items()}
        batched["-".join(str(v) for v in spec.values())] = texts[4] == texts[1]
    return {"greedy_with_ending_rows": greedy_check, "batched_equals_one_at_a_time": batched,
            "ok": greedy_check["equal"] and all(batched.values())}


def step_ddp_worker(shapes: Shapes) -> dict:
    """LoRA with grad_accum 2, dropout off: in every rank under torchrun, or alone."""
    from peftsum.runtime import distributed

    shape = (shapes.train[0][0], 2, *shapes.train[0][2:])
    result = train_once("lora", DEMO["lora"], shapes, shape, shapes.steps, _device(),
                        dropout=False)
    distributed.teardown()
    return {**result, "world_size": distributed.world()[1]}


def step_ddp(shapes: Shapes, out: Path, rehearse: bool) -> dict:
    """The worker alone, then over 2 processes (NCCL on GPUs, gloo in a rehearsal)."""
    flag = ["--rehearse"] if rehearse else []
    runs = {}
    for label, launcher in (("one", []), ("two", ["-m", "torch.distributed.run", "--standalone",
                                                  "--nproc_per_node=2"])):
        target = out / f"ddp-{label}.json"
        command = [sys.executable, *launcher, "-m", "peftsum.tools.gpucheck", "--worker",
                   "ddp_worker", "--result", str(target), *flag]
        env = {**os.environ, "OMP_NUM_THREADS": "1"} if rehearse else None
        subprocess.run(command, check=True, cwd=ROOT, env=env)  # its output: this step's log
        runs[label] = json.loads(target.read_text())
    gaps = [abs(a - b) / abs(a) for a, b in zip(runs["one"]["losses"], runs["two"]["losses"])]
    return {"runs": list(runs.values()), "loss_max_rel_gap": max(gaps),
            "scaling": runs["two"]["tokens_per_s"] / runs["one"]["tokens_per_s"],
            "ok": max(gaps) < 2e-3}  # fp32 gradients reduced in another order, in bf16 steps


WORKERS = {"unit": step_unit, "train": step_train, "generate": step_generate,
           "precision": step_precision, "ddp_worker": step_ddp_worker}


def work(name: str, result: Path, rehearse: bool) -> None:
    """One step's work, its figures written to result (by rank 0)."""
    figures = WORKERS[name](REHEARSAL if rehearse else FULL)
    if int(os.environ.get("RANK", "0")) == 0:
        result.write_text(json.dumps(figures, indent=2))


# --- the driver: one process per step, each under its timeout ---------------------------------
def _snakemake(workdir: Path, gpus: int) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
            "--cores", "all", "--resources", f"gpu={gpus}", "--directory", str(workdir),
            "--configfile", str(SMOKE)]


def training_figures(workdir: Path) -> list[dict]:
    """Each training's figures from its run.json, and the GPU its job leased (from its log)."""
    rows = []
    runs = paths.run_json(paths.TRAIN_RUN).format(experiment=SMOKE_EXPERIMENT, method="*",
                                                  seed="*")
    for run_file in sorted(workdir.glob(runs)):
        run = records.read_run(run_file, needs=("name", "seed", "resources"))
        log_file = workdir / paths.log("train", "{method}_seed{seed}").format(
            experiment=SMOKE_EXPERIMENT, method=run.name, seed=run.seed)
        leased = re.search(r"leased GPU (\S+)", log_file.read_text()) if log_file.exists() else None
        rows.append({"run": str(run_file.parent.relative_to(workdir)),
                     "leased_gpu": leased.group(1) if leased else None,
                     **{k: run.resources.get(k) for k in FIGURES}})
    return rows


def table(rows: list[dict]) -> str:
    """Figures as a Markdown table: tokens/s, MFU, peak memory, energy."""
    def cell(value):
        if value is None:
            return "-"
        return f"{value:,.3g}" if isinstance(value, float) else str(value)

    columns = ["run", "leased_gpu", *FIGURES]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def _run_step(name: str, out: Path, timeout: float, rehearse: bool, gpus: int) -> dict:
    """The step in a process of its own, its output in out/logs/<name>.log."""
    log_file, result = out / "logs" / f"{name}.log", out / f"{name}.json"
    result.unlink(missing_ok=True)
    flag = ["--rehearse"] if rehearse else []
    if name == "ddp":
        command = [sys.executable, "-m", "peftsum.tools.gpucheck", "--worker", "ddp",
                   "--result", str(result), "--out", str(out), *flag]
    elif name == "workflow":
        command = _snakemake(out / "smoke", min(gpus, 2))
    else:
        command = [sys.executable, "-m", "peftsum.tools.gpucheck", "--worker", name,
                   "--result", str(result), *flag]
    started = time.perf_counter()
    with open(log_file, "w") as log:
        # its own process group: a step cut short takes its children (Snakemake's jobs) along
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
            status = "ok" if code == 0 else f"failed (exit {code})"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            status = f"timed out after {timeout:.0f} s"
    figures = json.loads(result.read_text()) if result.exists() else {}
    if name == "workflow":
        figures = {"runs": training_figures(out / "smoke")}
    if status == "ok" and figures.get("ok") is False:
        status = "failed (a check did not hold)"
    return {"step": name, "status": status, "ok": status == "ok", "timeout_s": timeout,
            "wall_s": time.perf_counter() - started, "log": str(log_file), "figures": figures}


def plan(gpus: int, rehearse: bool) -> list[tuple[str, float]]:
    """The steps and their timeouts: ddp only with two GPUs (or in a rehearsal), the
    workflow (not in a rehearsal) with what is left of the budget."""
    steps = [(name, t) for name, t in TIMEOUTS.items() if name != "ddp" or gpus >= 2 or rehearse]
    if not rehearse:
        steps.append(("workflow", BUDGET_S - sum(t for _, t in steps)))
    return steps


def check(out: Path, gpus: int, rehearse: bool, header: dict) -> dict:
    """Every step in turn, the JSON rewritten after each."""
    (out / "logs").mkdir(parents=True, exist_ok=True)
    result = {**header, "rehearse": rehearse, "budget_s": BUDGET_S, "steps": []}
    for name, timeout in plan(gpus, rehearse):
        result["steps"].append(_run_step(name, out, timeout, rehearse, gpus))
        (out / "gpu-check.json").write_text(json.dumps(result, indent=2))
    return result


def summary_rows(result: dict) -> list[dict]:
    """One table row per training figure of every step."""
    rows = []
    for step in result["steps"]:
        for run in step["figures"].get("runs", []):
            rows.append({"run": run.get("run") or f"{step['step']} {run['method']} {run['shape']}",
                         **run})
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m peftsum.tools.gpucheck",
                                description=__doc__.split("\n")[0])
    p.add_argument("--out", default="results/gpu-check", help="where the JSON and table go")
    p.add_argument("--rehearse", action="store_true",
                   help="every shape shrunk, so that it runs on a CPU (the test suite's rehearsal)")
    p.add_argument("--worker", choices=[*WORKERS, "ddp"], help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    if args.worker == "ddp":
        args.result.write_text(json.dumps(step_ddp(REHEARSAL if args.rehearse else FULL, out,
                                                   args.rehearse), indent=2))
        return
    if args.worker:
        work(args.worker, args.result, args.rehearse)
        return
    import torch

    if not torch.cuda.is_available() and not args.rehearse:
        sys.exit("gpu-check: no CUDA device here (torch.cuda.is_available() is False): "
                 "nothing run; run it on a machine with an NVIDIA GPU")
    gpus = torch.cuda.device_count()
    names = [torch.cuda.get_device_name(i) for i in range(gpus)] or ["cpu (rehearsal)"]
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    result = check(out, gpus, args.rehearse, {"started_at": started, "gpus": names,
                                              "torch": torch.__version__,
                                              "cuda": torch.version.cuda})
    status = ", ".join(f"{s['step']} {s['status']} ({s['wall_s']:.0f} s)" for s in result["steps"])
    text = f"gpu-check {started} on {', '.join(names)}: {status}\n\n{table(summary_rows(result))}\n"
    (out / "gpu-check.md").write_text(text)
    print(text)
    if not all(s["ok"] for s in result["steps"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
