"""The one training loop, shared by every method.

AdamW on the parameters the method leaves trainable, linear warm-up then linear decay, gradient
clipping and accumulation, validation every eval_every steps and at each epoch end; the best
weights by validation loss are kept, and training stops after `patience` passes without improvement.
Only what trained is saved (safetensors), with the resolved hyperparameters and a per-step log.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from peftsum import models
from peftsum.config import TrainingConfig
from peftsum.data.batches import collate, length_grouped_batches, pad_fraction
from peftsum.evaluate import mean_loss
from peftsum.io import atomic_path, read_jsonl, write_json, write_jsonl
from peftsum.loss import summary_nll
from peftsum.methods import Method
from peftsum.methods.common import save_trainable, trainable_state
from peftsum.resources import Stopwatch, autocast, device, device_name, peak_gpu_mb, peak_rss_mb

log = logging.getLogger(__name__)


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


class Trainer:
    """Holds what one run needs; fit() is the loop, read top to bottom."""

    def __init__(self, model, tokenizer, method: Method, cfg: TrainingConfig, seed: int,
                 train: list[dict], validation: list[dict]):
        self.dev = device()
        self.model = model.to(self.dev)
        self.pad_id = tokenizer.pad_token_id
        self.method, self.cfg, self.seed = method, cfg, seed
        self.train_set, self.val_set = train, validation[: cfg.eval_samples]
        self.lengths = [len(e["input_ids"]) for e in train]
        steps_per_epoch = math.ceil(math.ceil(len(train) / cfg.batch_size) / cfg.grad_accum)
        self.total_steps = min(cfg.max_steps or math.inf, cfg.epochs * steps_per_epoch)
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=method.params.lr,
                                           weight_decay=cfg.weight_decay,
                                           fused=self.dev.type == "cuda")
        warmup = max(1, round(cfg.warmup_ratio * self.total_steps))
        self.scheduler = linear_schedule(self.optimizer, warmup, self.total_steps)
        self.rows: list[dict] = []
        self.best = {"step": None, "val_loss": math.inf}
        self.best_state: dict | None = None
        self.bad_evals = 0
        self.tokens_seen = 0

    def _micro_batches(self, epoch: int):
        for batch in length_grouped_batches(self.lengths, self.cfg.batch_size, self.seed * 1000 + epoch):
            yield collate([self.train_set[i] for i in batch], self.pad_id)

    def _validate(self, step: int) -> bool:
        """Validation loss; keeps the best weights; True when patience has run out."""
        val_loss = mean_loss(self.model, self.val_set, self.cfg.batch_size, self.pad_id,
                             self.dev, self.cfg.cpu_bf16)
        self.model.train()
        self.rows.append({"step": step, "val_loss": val_loss})
        log.info("step %d: validation loss %.4f", step, val_loss)
        if val_loss < self.best["val_loss"]:
            self.best = {"step": step, "val_loss": val_loss}
            self.best_state = trainable_state(self.model)
            self.bad_evals = 0
        else:
            self.bad_evals += 1
        return self.cfg.patience is not None and self.bad_evals >= self.cfg.patience

    def _optimizer_step(self) -> None:
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        torch.nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def fit(self) -> dict:
        cfg, step, micro, stopped_early = self.cfg, 0, 0, False
        window = {"loss": 0.0, "tokens": 0, "pad": 0.0, "batches": 0}
        self.model.train()
        progress = tqdm(total=self.total_steps, desc=f"train {self.method.name}", mininterval=5)
        with Stopwatch() as clock:
            window_clock = Stopwatch().__enter__()
            for epoch in range(cfg.epochs):
                for batch in self._micro_batches(epoch):
                    batch = {k: v.to(self.dev) for k, v in batch.items()}
                    with autocast(self.dev, cfg.cpu_bf16):
                        nll, n_tokens = summary_nll(self.model, batch)
                    (nll / max(1, n_tokens) / cfg.grad_accum).backward()
                    window["loss"] += nll.item() / max(1, n_tokens)
                    n_real = int(batch["attention_mask"].sum())
                    window["tokens"] += n_real
                    self.tokens_seen += n_real
                    window["pad"] += pad_fraction(batch)
                    window["batches"] += 1
                    micro += 1
                    if micro % cfg.grad_accum:
                        continue
                    self._optimizer_step()
                    step += 1
                    progress.update()
                    if step % cfg.log_every == 0:
                        self._log_row(step, epoch, window, window_clock.elapsed())
                        window = dict.fromkeys(window, 0)
                        window_clock = Stopwatch().__enter__()
                    if step % cfg.eval_every == 0 and (stopped_early := self._validate(step)):
                        break
                    if step >= self.total_steps:
                        break
                if stopped_early or step >= self.total_steps:
                    break
                if step % cfg.eval_every and (stopped_early := self._validate(step)):
                    break
        progress.close()
        return {"optimizer_steps": step, "train_wall_s": clock.seconds, "stopped_early": stopped_early}

    def _log_row(self, step: int, epoch: int, window: dict, seconds: float) -> None:
        row = {"step": step, "epoch": epoch, "train_loss": window["loss"] / window["batches"],
               "lr": self.scheduler.get_last_lr()[0], "tokens_per_s": window["tokens"] / seconds,
               "pad_fraction": window["pad"] / window["batches"]}
        self.rows.append(row)
        log.info("step %d: loss %.4f lr %.2e %.0f tokens/s pad %.1f%%", step, row["train_loss"],
                 row["lr"], row["tokens_per_s"], 100 * row["pad_fraction"])


def run(model_dir: Path, data_dir: Path, method: Method, cfg: TrainingConfig, seed: int,
        out_dir: Path) -> dict:
    """Train one method with one seed; write trainable.safetensors, run.json and steps.jsonl."""
    out_dir = Path(out_dir)
    seed_everything(seed)  # before any random init (LoRA's A matrices)
    model, tokenizer = models.load(model_dir)
    model, counts = method.wrap(model, tokenizer)
    log.info("%s: %s trainable (%s), %s added, %s total", method.name, f"{counts.trainable:,}",
             counts.formula, f"{counts.added:,}", f"{counts.total:,}")
    trainer = Trainer(model, tokenizer, method, cfg, seed, read_jsonl(Path(data_dir) / "train.jsonl"),
                      read_jsonl(Path(data_dir) / "validation.jsonl"))
    outcome = trainer.fit()
    if trainer.best_state is not None:  # the weights saved are the best by validation loss
        trainer.model.load_state_dict(trainer.best_state, strict=False)
    summary = {
        "name": method.name, "kind": method.kind, "seed": seed, "trains": method.describe(),
        "params": dataclasses.asdict(counts),
        "resources": {
            "train_wall_s": outcome["train_wall_s"], "optimizer_steps": outcome["optimizer_steps"],
            # Real (non-pad) tokens per wall-clock second, validation passes included.
            "tokens_seen": trainer.tokens_seen,
            "tokens_per_s": trainer.tokens_seen / outcome["train_wall_s"],
            "peak_rss_mb": peak_rss_mb(), "peak_gpu_mb": peak_gpu_mb(),
            "device": device_name(trainer.dev),
        },
        "best": trainer.best, "stopped_early": outcome["stopped_early"],
        "hparams": {**method.hparams(), **dataclasses.asdict(cfg), "seed": seed},
    }
    with atomic_path(out_dir / "trainable.safetensors") as tmp:
        save_trainable(trainer.model, tmp)
    write_jsonl(out_dir / "steps.jsonl", trainer.rows)
    write_json(out_dir / "run.json", summary)  # last: its presence means the run is complete
    return summary
