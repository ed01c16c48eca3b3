"""The one training loop, shared by every method.

AdamW on the parameters the method leaves trainable, linear warm-up then linear decay, gradient
clipping and accumulation, validation every eval_every steps and at each epoch end; the best
weights by validation loss are kept, and training stops after `patience` passes without
improvement. Every checkpoint_every steps the whole state is saved so that a killed job resumes
where it was. Under torchrun each rank takes its share of every optimizer step's micro-batches.
Only what trained is saved (safetensors), with the resolved hyperparameters and a per-step log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from peftsum import paths, records
from peftsum.config import TrainingConfig, config_hash
from peftsum.data import models
from peftsum.data.batches import collate, length_grouped_batches, pad_fraction
from peftsum.files import atomic_path, read_jsonl, write_jsonl
from peftsum.methods import Method
from peftsum.methods.common import (
    decoder_blocks,
    final_norm,
    save_trainable,
    trainable_state,
    unwrap,
)
from peftsum.runtime import distributed
from peftsum.runtime.measure import (
    GpuMonitor,
    device_name,
    flops_per_position,
    peak_flops,
    peak_gpu_mb,
    peak_rss_mb,
    training_flops,
)
from peftsum.runtime.precision import amp_dtype, autocast, place, training_attention
from peftsum.training import checkpoint, lock
from peftsum.training.loss import logit_columns, loss_sums, summary_nll, summary_span

log = logging.getLogger(__name__)


RANK_SEED_STRIDE = 1_000_003  # rank r > 0 draws from seed + r x this: apart from other seeds
# Epoch e of seed s is shuffled with seed s x this + e: each (seed, epoch) its own order for runs
# of fewer epochs than this.
EPOCH_SEED_STRIDE = 1000


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def linear_schedule(optimizer, warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build_optimizer(params: list[torch.nn.Parameter], lr: float, cfg: TrainingConfig,
                    total_steps: int):
    """AdamW over params and its warm-up/decay schedule over total_steps optimizer steps."""
    # fused: one kernel over all tensors; on the CPU, full fine-tuning's step took a fifth of the
    # default for-loop's time (SmolLM2-135M, docs/performance.md).
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay, fused=True)
    warmup = max(1, round(cfg.warmup_ratio * total_steps))
    return optimizer, linear_schedule(optimizer, warmup, total_steps)


def epoch_plan(lengths: list[int], cfg: TrainingConfig, seed: int, epoch: int
               ) -> list[list[list[int]]]:
    """The optimizer steps of an epoch, each a list of micro-batches (lists of example indices):
    batches of similar lengths in an order drawn from seed and epoch, grad_accum per step."""
    batches = length_grouped_batches(lengths, cfg.batch_size, seed * EPOCH_SEED_STRIDE + epoch)
    ga = cfg.grad_accum
    return [batches[i:i + ga] for i in range(0, len(batches), ga)]


class StepHook:
    """Called around each optimizer step of Trainer.fit(), with the step's number (0 for the
    first), its micro-batches and, after it, its statistics (loss, tokens, samples, pad, micro).
    The loop itself needs none; a benchmark times or profiles the steps through one."""

    def before_step(self, step: int, micro_batches: list[list[int]]) -> None:
        pass

    def after_step(self, step: int, micro_batches: list[list[int]], stats: dict) -> None:
        pass


class Trainer:
    """Holds what one run needs; fit() is the loop, read top to bottom."""

    def __init__(self, model, tokenizer, method: Method, cfg: TrainingConfig, seed: int,
                 train: list[dict], validation: list[dict], dev: torch.device,
                 checkpoint_dir: Path | None = None, fingerprint: str = "",
                 dtype: torch.dtype | str | None = "auto", hooks: tuple[StepHook, ...] = ()):
        self.rank, self.world, _ = distributed.world()
        self.dev, self.method, self.cfg, self.seed = dev, method, cfg, seed
        self.pad_id = tokenizer.pad_token_id
        self.train_set = train
        self.val_set = validation[: cfg.eval_samples][self.rank::self.world]  # this rank's share
        self.lengths = [len(e["input_ids"]) for e in train]
        self.checkpoint_dir, self.fingerprint, self.hooks = checkpoint_dir, fingerprint, hooks
        # "auto": the device's mixed precision; a dtype, or None for fp32, forces one (gpucheck)
        self.dtype = amp_dtype(dev, cfg.cpu_bf16) if dtype == "auto" else dtype
        # The ranks must train in one precision (DDP's gradient buckets and the losses must
        # match), and CPU ranks that measure their precision at once can choose differently.
        self.dtype = distributed.all_gather(self.dtype)[0]
        self.attention = training_attention(cfg.attention, dev, self.dtype)
        unwrap(model).set_attn_implementation(self.attention)
        self.model = place(model, dev, self.dtype)
        if cfg.compile:
            self.model.compile()  # in place: parameter names, and so saved files, stay the same
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.net = self._data_parallel(self.model)
        steps_per_epoch = math.ceil(math.ceil(len(train) / cfg.batch_size) / cfg.grad_accum)
        self.total_steps = min(cfg.max_steps or math.inf, cfg.epochs * steps_per_epoch)
        self.optimizer, self.scheduler = build_optimizer(self.params, method.params.lr, cfg,
                                                         self.total_steps)
        # fp16 needs loss scaling; bf16 has fp32's range and does not.
        self.scaler = torch.amp.GradScaler(dev.type, enabled=self.dtype == torch.float16)
        self.state = {"step": 0, "epoch": 0, "epoch_step": 0, "best_step": None,
                      "best_val_loss": math.inf, "bad_evals": 0, "last_eval_step": None,
                      "tokens": 0, "logit_tokens": 0, "samples": 0,
                      "seconds": 0.0, "epoch_seconds": [], "stopped_early": False}
        self.rows: list[dict] = []
        self.best_weights: dict | None = None
        self.pacer = checkpoint.Pacer()
        self.unsettled = {"tokens": 0, "logit_tokens": 0}  # this rank's, not yet in the state

    def _data_parallel(self, model):
        if self.world == 1:
            return model
        ids = [self.dev.index] if self.dev.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    # --- data -------------------------------------------------------------------------------
    def epoch_plan(self, epoch: int) -> list[list[list[int]]]:
        """The optimizer steps of an epoch, each a list of micro-batches (lists of indices)."""
        return epoch_plan(self.lengths, self.cfg, self.seed, epoch)

    # --- one optimizer step -----------------------------------------------------------------
    def _host_batch(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return collate([self.train_set[j] for j in indices], self.pad_id)

    def _on_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.dev) for k, v in batch.items()}

    def _join_reduce(self, indices: list[int]) -> None:
        """A forward and backward through the DDP module at zero weight: its gradient hooks
        then take part in the all-reduce with zeros (a backward outside the DDP forward never
        reaches them, and the other ranks would wait for this one for ever)."""
        with autocast(self.dev, self.dtype):
            nll, _ = summary_nll(self.net, self._on_device(self._host_batch(indices)))
        self.scaler.scale(nll * 0.0).backward()

    def _step(self, micro_batches: list[list[int]]) -> dict:
        """Forward and backward of this rank's micro-batches, then the update of all ranks.

        Each micro-batch's loss is its mean over summary tokens; the step's gradient is their
        mean over the step's micro-batches, whatever the number of ranks (DDP averages ranks).
        The counts come from the batches before they go to the device and the loss stays a
        device tensor until a log line reads it: nothing here waits for the GPU.
        """
        mine = micro_batches[self.rank::self.world]
        scale = self.world / len(micro_batches)
        stats = {"loss": 0.0, "tokens": 0, "logit_tokens": 0, "samples": 0, "pad": 0.0,
                 "micro": len(mine)}
        if not mine:  # a short last step left this rank nothing: it must still join the reduce
            self._join_reduce(micro_batches[0])
        for i, indices in enumerate(mine):
            last = i == len(mine) - 1
            no_sync = self.net.no_sync() if self.world > 1 and not last else contextlib.nullcontext()
            host = self._host_batch(indices)
            span = summary_span(host["labels"])
            with no_sync:
                with autocast(self.dev, self.dtype):
                    nll, n_tokens = summary_nll(self.net, self._on_device(host), span)
                loss = nll / max(1, n_tokens)
                extra = self.method.regularization(self.model)
                self.scaler.scale((loss if extra is None else loss + extra) * scale).backward()
            stats["loss"] += loss.detach()
            stats["tokens"] += int(host["attention_mask"].sum())
            # the real tokens whose logits the loss pass computed (FLOPs of the LM head)
            stats["logit_tokens"] += int(host["attention_mask"][:, -logit_columns(
                host["labels"], span):].sum())
            stats["samples"] += len(indices)
            stats["pad"] += pad_fraction(host)
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.method.after_optimizer_step(self.model, self.state["step"])  # gradients still here
        self.optimizer.zero_grad(set_to_none=True)
        return stats

    # --- validation, logging, checkpoints ---------------------------------------------------
    def _validate(self) -> None:
        total, count = loss_sums(self.model, self.val_set, self.cfg.batch_size, self.pad_id,
                                 self.dev, self.dtype)
        total, count = distributed.all_sum(total, count, dev=self.dev)
        self.model.train()
        val_loss, s = total / count, self.state
        self.rows.append({"step": s["step"], "val_loss": val_loss})
        s["last_eval_step"] = s["step"]
        log.info("step %d: validation loss %.4f", s["step"], val_loss)
        if val_loss < s["best_val_loss"]:
            s.update(best_step=s["step"], best_val_loss=val_loss, bad_evals=0)
            # A copy: on a CPU trainable_state's tensors share the live parameters' memory, and
            # the saved "best" weights were then the last ones.
            self.best_weights = {n: t.clone() for n, t in trainable_state(self.model).items()}
        else:
            s["bad_evals"] += 1
            s["stopped_early"] = self.cfg.patience is not None and s["bad_evals"] >= self.cfg.patience

    def _log(self, window: dict, seconds: float) -> None:
        loss, micro, tokens, pad = distributed.all_sum(float(window["loss"]), window["micro"],
                                                       window["tokens"], window["pad"], dev=self.dev)
        row = {"step": self.state["step"], "epoch": self.state["epoch"], "train_loss": loss / micro,
               "lr": self.scheduler.get_last_lr()[0], "tokens_per_s": tokens / seconds,
               "pad_fraction": pad / micro}
        self.rows.append(row)
        log.info("step %d: loss %.4f lr %.2e %.0f tokens/s pad %.1f%%", row["step"],
                 row["train_loss"], row["lr"], row["tokens_per_s"], 100 * row["pad_fraction"])

    def _settle_counts(self) -> None:
        """Every rank's tokens since the last call, added to the state in one all-reduce: at
        checkpoints and at the end, not every step, where it would wait for the GPU."""
        summed = distributed.all_sum(*self.unsettled.values(), dev=self.dev)
        for key, value in zip(self.unsettled, summed):
            self.state[key] += int(value)
        self.unsettled = dict.fromkeys(self.unsettled, 0)

    def _save_checkpoint(self) -> None:
        self._settle_counts()
        if self.checkpoint_dir is None:
            return
        # Each rank's own RNG state (dropout masks differ by rank): a resumed run is then the
        # uninterrupted one on every rank, not only on rank 0.
        rank_rng = distributed.all_gather(checkpoint.rng_state())
        if not distributed.is_main():
            return
        checkpoint.save(self.checkpoint_dir, {
            "rank_rng": rank_rng,
            "fingerprint": self.fingerprint, "step": self.state["step"],
            "state": json.dumps(self.state), "rows": json.dumps(self.rows),
            "weights": trainable_state(self.model), "best_weights": self.best_weights or {},
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict()})

    def _resume(self) -> None:
        if self.checkpoint_dir is None:
            return
        saved = checkpoint.load(self.checkpoint_dir, self.fingerprint)
        if saved is None:
            return
        self.model.load_state_dict(saved["weights"], strict=False)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.scaler.load_state_dict(saved["scaler"])
        self.state.update(json.loads(saved["state"]))  # in place: fit() holds a reference
        self.rows = json.loads(saved["rows"])
        self.best_weights = saved["best_weights"] or None
        if len(saved.get("rank_rng", [])) == self.world:  # the load set rank 0's on every rank
            checkpoint.set_rng_state(saved["rank_rng"][self.rank])

    def _done(self) -> bool:
        return self.state["stopped_early"] or self.state["step"] >= self.total_steps

    # --- the loop ---------------------------------------------------------------------------
    def fit(self) -> dict:
        cfg, s = self.cfg, self.state
        self._resume()
        self.model.train()
        window = dict.fromkeys(("loss", "tokens", "samples", "pad", "micro"), 0)
        # Only rank 0 draws a bar; no explicit disable= on it, so that TQDM_DISABLE (a workflow
        # job's shared console, stages.setup_logging) still holds.
        quiet = {} if distributed.is_main() else {"disable": True}
        progress = tqdm(total=self.total_steps, initial=s["step"], desc=f"train {self.method.name}",
                        mininterval=5, **quiet)
        while s["epoch"] < cfg.epochs and not self._done():
            started, steps = time.perf_counter(), self.epoch_plan(s["epoch"])
            window_start = started
            for micro_batches in steps[s["epoch_step"]:]:
                for hook in self.hooks:
                    hook.before_step(s["step"], micro_batches)
                stats = self._step(micro_batches)
                for hook in self.hooks:
                    hook.after_step(s["step"], micro_batches, stats)
                for key in window:
                    window[key] += stats[key]
                for key in self.unsettled:
                    self.unsettled[key] += stats[key]
                s["samples"] += sum(map(len, micro_batches))
                s["step"] += 1
                s["epoch_step"] += 1
                progress.update()
                if s["step"] % cfg.log_every == 0:
                    self._log(window, time.perf_counter() - window_start)
                    window, window_start = dict.fromkeys(window, 0), time.perf_counter()
                if s["step"] % cfg.eval_every == 0:
                    self._validate()
                if self._done():
                    break
                # rank 0's clock decides for every rank: the save gathers from all of them
                if s["step"] % cfg.checkpoint_every == 0 and distributed.all_sum(
                        float(distributed.is_main() and self.pacer.due()), dev=self.dev)[0]:
                    s["seconds"] += time.perf_counter() - started
                    started = time.perf_counter()
                    self.pacer.write(self._save_checkpoint)
            if s["last_eval_step"] != s["step"] and not s["stopped_early"]:
                self._validate()  # at each epoch end, and once more where max_steps ended it
            s["seconds"] += time.perf_counter() - started
            s["epoch_seconds"].append(s["seconds"] - sum(s["epoch_seconds"]))
            s.update(epoch=s["epoch"] + 1, epoch_step=0)
            if not self._done():
                self.pacer.write(self._save_checkpoint)
        progress.close()
        self._settle_counts()
        return s


def _fingerprint(method: Method, cfg: TrainingConfig, seed: int, data_dir: Path) -> str:
    """What a checkpoint must match to be resumed: method, training settings, seed and data."""
    train_file = Path(data_dir) / "train.jsonl"
    return config_hash({"method": method.hparams(), "training": dataclasses.asdict(cfg),
                        "seed": seed, "data": [train_file.stat().st_size,
                                               train_file.stat().st_mtime_ns]})


def run(model_dir: Path, data_dir: Path, method: Method, cfg: TrainingConfig, seed: int,
        out_dir: Path, checkpoint_dir: Path | None = None, provenance: dict | None = None
        ) -> records.RunRecord | None:
    """Train one method with one seed; write trainable.safetensors, run.json and steps.jsonl.

    Rank 0 holds the run's lock throughout: a second trainer of the same run stops at once.
    """
    held = (lock.exclusive(Path(checkpoint_dir or out_dir), f"{method.name} seed {seed}")
            if distributed.is_main() else contextlib.nullcontext())
    with held:
        return _train(model_dir, data_dir, method, cfg, seed, out_dir, checkpoint_dir, provenance)


def _train(model_dir: Path, data_dir: Path, method: Method, cfg: TrainingConfig, seed: int,
           out_dir: Path, checkpoint_dir: Path | None, provenance: dict | None
           ) -> records.RunRecord | None:
    out_dir = Path(out_dir)
    dev = distributed.setup()
    seed_everything(seed)  # before any random init (LoRA's A matrices)
    model, tokenizer = models.load(model_dir)
    model, counts = method.wrap(model, tokenizer)
    rank = distributed.world()[0]
    if rank:  # its own dropout masks from here on; the initial weights are rank 0's (DDP)
        seed_everything(seed + RANK_SEED_STRIDE * rank)
    trainer = Trainer(model, tokenizer, method, cfg, seed,
                      read_jsonl(Path(data_dir) / "train.jsonl"),
                      read_jsonl(Path(data_dir) / "validation.jsonl"), dev, checkpoint_dir,
                      _fingerprint(method, cfg, seed, data_dir))
    log.info("%s: %s trainable (%s), %s added, %s total; attention: %s", method.name,
             f"{counts.trainable:,}", counts.formula, f"{counts.added:,}", f"{counts.total:,}",
             trainer.attention)
    with GpuMonitor(dev) as gpu_monitor:
        state = trainer.fit()
    ranks = distributed.all_gather({**gpu_monitor.summary(), **peak_gpu_mb(),
                                    "peak_rss_mb": peak_rss_mb()})
    if not distributed.is_main():
        distributed.teardown()
        return None
    if trainer.best_weights is not None:  # the weights saved are the best by validation loss
        trainer.model.load_state_dict(trainer.best_weights, strict=False)
    # Stored inside the weights file, so that an edited run.json cannot restore them silently.
    metadata = method.weights_metadata(models.model_info(model_dir)["weights_sha256"])
    for key in ("template", "reserved_positions"):  # what restoring encodes text with
        if provenance and key in provenance:
            metadata[key] = provenance[key]
    with atomic_path(paths.weights(out_dir)) as tmp:
        save_trainable(trainer.model, tmp, metadata)
    record = dataclasses.replace(
        _summary(trainer, counts, state, over_ranks(ranks), paths.weights(out_dir).stat().st_size),
        **(provenance or {}))
    write_jsonl(paths.steps(out_dir), trainer.rows)
    records.write_run(paths.run_json(out_dir), record)  # last: its presence means it is complete
    if checkpoint_dir is not None:
        checkpoint.remove(checkpoint_dir)  # the run is complete: nothing left to resume
    distributed.teardown()
    return record


def over_ranks(ranks: list[dict]) -> dict:
    """Every rank's figures, and over ranks: energy summed (all GPUs used it), utilisation
    averaged, peak memory the largest of one process or GPU."""
    def values(key):
        found = [r[key] for r in ranks]
        return None if None in found else found

    energy, util = values("gpu_energy_j"), values("gpu_util_pct")
    peaks = {k: max(v) if (v := values(k)) else None
             for k in ("peak_rss_mb", "peak_gpu_mb", "peak_gpu_reserved_mb")}
    return {"gpu_energy_j": sum(energy) if energy else None,
            "gpu_util_pct": sum(util) / len(util) if util else None, **peaks, "per_rank": ranks}


def flops_of(trainer: Trainer) -> dict:
    """The model FLOPs of the trainer's steps so far (runtime.measure.training_flops): the
    blocks' over the real tokens and a soft prompt's positions, the head's over the logits."""
    base, state = unwrap(trainer.model), trainer.state
    per_position = flops_per_position(trainer.model, decoder_blocks(base), final_norm(base),
                                      base.get_output_embeddings())
    positions = state["tokens"] + state["samples"] * trainer.method.params.prompt_positions
    return training_flops(per_position, positions, state["logit_tokens"])


def _summary(trainer: Trainer, counts, state: dict, measured: dict,
             weights_bytes: int) -> records.RunRecord:
    flops = flops_of(trainer)
    seconds = state["seconds"]
    total_flops = flops["total"]
    peak = peak_flops(device_name(trainer.dev)) if trainer.dtype is not None else None
    world = trainer.world
    return records.RunRecord(
        name=trainer.method.name, kind=trainer.method.kind, seed=trainer.seed,
        trains=trainer.method.describe(), method=trainer.method.hparams(),
        params=dataclasses.asdict(counts), train_examples=len(trainer.train_set),
        resources={
            "train_wall_s": seconds, "epoch_wall_s": state["epoch_seconds"],
            "optimizer_steps": state["step"], "tokens_seen": state["tokens"],
            "samples_seen": state["samples"],
            # Real (non-pad) tokens per wall-clock second, validation passes included.
            "tokens_per_s": state["tokens"] / seconds, "samples_per_s": state["samples"] / seconds,
            "device": device_name(trainer.dev),
            "gpu_count": world if trainer.dev.type == "cuda" else 0,
            "precision": str(trainer.dtype).replace("torch.", "") if trainer.dtype else "float32",
            "attention": trainer.attention, "train_flops": total_flops,
            # per real token: the blocks' FLOPs of a soft prompt and the head's of the logits
            # computed, shared over the text's tokens
            "flops_per_token": {k: v / max(1, state["tokens"]) for k, v in flops.items()},
            "mfu": total_flops / seconds / (peak * world) if peak else None,
            "checkpoint_mb": weights_bytes / 2**20, **measured,
        },
        best={"step": state["best_step"], "val_loss": state["best_val_loss"]},
        stopped_early=state["stopped_early"],
        hparams={**trainer.method.hparams(), **dataclasses.asdict(trainer.cfg),
                 "seed": trainer.seed, "world_size": world},
    )
