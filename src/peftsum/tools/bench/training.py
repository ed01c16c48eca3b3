"""Training variants: our loop, the Hugging Face Trainer with PEFT, a loop that pads to max length.

Every variant gets the same tokenized examples in the same micro-batches and order (the plan),
the same initial weights and trainable parameters, AdamW with the same warm-up/decay schedule
and clipping, the same autocast dtype and the same number of optimizer steps. Each reports when
every optimizer step ended, the learning rates and training losses it logged, and the loss of
the same probe examples after the last step, computed by the same function for all
(peftsum.training.loss.loss_sums): equal losses show that they trained the same thing.
"""

from __future__ import annotations

import tempfile
import time

import torch
import torch.nn.functional as F
from peft import PromptTuningConfig, PromptTuningInit, get_peft_model
from transformers import (
    DataCollatorForSeq2Seq,
    PrinterCallback,
    TrainerCallback,
    TrainingArguments,
)
from transformers import Trainer as HFTrainer

from peftsum.config import TrainingConfig
from peftsum.data import models
from peftsum.data.batches import collate
from peftsum.data.tokenize import IGNORE_INDEX, make_labels
from peftsum.methods import Method
from peftsum.methods.common import decoder_blocks, final_norm, unwrap
from peftsum.methods.prompt_tuning import initial_prompt
from peftsum.runtime import distributed
from peftsum.runtime.measure import flops_per_position
from peftsum.runtime.precision import amp_dtype, autocast
from peftsum.tools.bench.presets import Job
from peftsum.training.loop import (
    StepHook,
    Trainer,
    build_optimizer,
    epoch_plan,
    seed_everything,
)
from peftsum.training.loss import mean_loss

NEVER = 10**9  # no validation, logging window or checkpoint inside the timed steps


def training_config(job: Job) -> TrainingConfig:
    p = job.preset
    return TrainingConfig.from_dict({
        "epochs": 1, "max_steps": p.steps, "batch_size": p.batch_size, "grad_accum": p.grad_accum,
        "eval_every": NEVER, "log_every": 1, "patience": None, "cpu_bf16": p.cpu_bf16,
        "checkpoint_every": NEVER, "attention": p.attention})


def plan(job: Job) -> list[list[list[int]]]:
    """The optimizer steps of our loop's first epoch, each a list of micro-batches of indices;
    train_ours checks that the loop ran exactly these."""
    return epoch_plan([len(e["input_ids"]) for e in job.train], training_config(job), job.seed, 0)


def _setup(job: Job):
    """Seed, then load: LoRA's random A matrices start equal in every variant."""
    seed_everything(job.seed)
    dev = distributed.setup()
    model, tokenizer = models.load(job.model_dir)
    return model, tokenizer, dev, amp_dtype(dev, job.preset.cpu_bf16)


def _now(dev: torch.device) -> float:
    """The time once the device has finished its queued work (CUDA runs asynchronously)."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter()


def _flops(model) -> dict:
    """Training FLOPs per real token by the package's formula with the LM head on every token,
    and the head's part of them (report.MFU_FORMULA says how each MFU counts the head)."""
    base = unwrap(model)
    per_position = flops_per_position(model, decoder_blocks(base), final_norm(base),
                                      base.get_output_embeddings())
    head = sum(per_position["head"].values())
    return {"flops_per_token": sum(per_position["blocks"].values()) + head,
            "head_flops_per_token": head}


def _optimizer(model, method: Method, cfg: TrainingConfig):
    """AdamW and the warm-up/decay schedule of our loop, over the model's trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    return build_optimizer(params, method.params.lr, cfg, cfg.max_steps)


def _result(start: float, ends: list[float], lrs: list[float], losses: list[float], model,
            probe_loss: float, **extra) -> dict:
    return {"step_end_s": [e - start for e in ends], "lr": lrs, "train_loss": losses,
            "probe_loss": probe_loss, **_flops(model), **extra}


class _StepTimer(StepHook):
    """When each optimizer step of our loop ended and which micro-batches it ran; with
    profile_step, that step runs under torch.profiler and its top operators are kept."""

    def __init__(self, dev: torch.device, profile_step: int | None = None):
        self.dev, self.profile_step = dev, profile_step
        self.ran, self.ends, self.top = [], [], []
        self.profiler = None

    def before_step(self, step, micro_batches):
        if step == self.profile_step:
            self.profiler = torch.profiler.profile()
            self.profiler.start()

    def after_step(self, step, micro_batches, stats):
        if self.profiler is not None:
            self.profiler.stop()
            self.top.extend(_top_ops(self.profiler))
            self.profiler = None
        self.ran.append(micro_batches)
        self.ends.append(_now(self.dev))


def train_ours(job: Job, method: Method, profile: bool = False) -> dict:
    """peftsum.training.loop.Trainer.fit(), each optimizer step timed by a step hook; profile: the
    last step runs under torch.profiler and the top operators are returned (then it is not a
    timing)."""
    model, tokenizer, dev, _ = _setup(job)
    model, _ = method.wrap(model, tokenizer)
    timer = _StepTimer(dev, job.preset.steps - 1 if profile else None)
    trainer = Trainer(model, tokenizer, method, training_config(job), job.seed, job.train,
                      job.probe, dev, hooks=(timer,))
    start = time.perf_counter()
    trainer.fit()  # validates once after the last step: that validation loss is the probe loss
    logged = [r for r in trainer.rows if "train_loss" in r]
    return _result(start, timer.ends, [r["lr"] for r in logged],
                   [r["train_loss"] for r in logged], trainer.model, trainer.rows[-1]["val_loss"],
                   ran_plan=timer.ran == plan(job), **({"profile": timer.top} if profile else {}))


def _top_ops(prof, n: int = 12) -> list[dict]:
    """Operators by self time on the device that computes (the GPU, else the CPU), with their
    share of the step's total."""
    events = list(prof.key_averages())
    on_gpu = any(e.self_device_time_total for e in events)
    events.sort(key=lambda e: e.self_device_time_total if on_gpu else e.self_cpu_time_total,
                reverse=True)
    times = [e.self_device_time_total if on_gpu else e.self_cpu_time_total for e in events]
    total = sum(times) or 1
    return [{"op": e.key, "calls": e.count, "self_ms": t / 1e3, "share": t / total,
             "device": "gpu" if on_gpu else "cpu"} for e, t in zip(events[:n], times)]


class _StepClock(TrainerCallback):
    """When each optimizer step of the HF Trainer ended, and its learning rate after it."""

    def __init__(self, dev: torch.device):
        self.dev, self.ends, self.lrs = dev, [], []

    def on_step_end(self, args, state, control, lr_scheduler=None, **kwargs):
        self.ends.append(_now(self.dev))
        self.lrs.append(lr_scheduler.get_last_lr()[0])


class _MethodStep(TrainerCallback):
    """The method's per-step update (AdaLoRA's rank budget) after each optimizer step of the HF
    Trainer, before it clears the gradients, as our loop calls it."""

    def __init__(self, method: Method, model):
        self.method, self.model = method, model

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.method.after_optimizer_step(self.model, state.global_step)


class _InOrderTrainer(HFTrainer):
    """The HF Trainer reading its data set in order: the data set is laid out in the plan's
    order, so it sees the same micro-batches as the other variants, not its own shuffle."""

    def _get_train_sampler(self, train_dataset=None):
        return torch.utils.data.SequentialSampler(train_dataset or self.train_dataset)


def _peft_prompt_tuning(model, tokenizer, method: Method, model_dir: str):
    """PEFT's own prompt tuning, what an HF + PEFT script uses, initialised from the same text.

    Returns the model and whether its initial prompt equals our SoftPromptModel's.
    """
    ours = initial_prompt(model, tokenizer, method.params)
    config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=method.params.n_tokens,
                                prompt_tuning_init=PromptTuningInit.TEXT,
                                prompt_tuning_init_text=method.params.init_text,
                                tokenizer_name_or_path=model_dir)
    peft_model = get_peft_model(model, config)
    theirs = peft_model.prompt_encoder["default"].embedding.weight.detach()
    return peft_model, torch.equal(theirs.float(), ours)


def train_hf_trainer(job: Job, method: Method) -> dict:
    """transformers.Trainer with PEFT (LoRA, prompt tuning) or the same frozen parameters."""
    model, tokenizer, dev, dtype = _setup(job)
    same_init = None
    if method.kind == "prompt_tuning":
        model, same_init = _peft_prompt_tuning(model, tokenizer, method, job.model_dir)
    else:
        model, _ = method.wrap(model, tokenizer)
    model.to(dev)
    cfg = training_config(job)
    order = [i for step in plan(job) for micro in step for i in micro]
    features = [{"input_ids": e["input_ids"], "attention_mask": [1] * len(e["input_ids"]),
                 "labels": make_labels(e["input_ids"], e["source_len"])}
                for e in (job.train[i] for i in order)]
    tokenizer.padding_side = "right"
    clock = _StepClock(dev)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=cfg.batch_size,
            gradient_accumulation_steps=cfg.grad_accum, max_steps=cfg.max_steps,
            max_grad_norm=cfg.max_grad_norm, bf16=dtype == torch.bfloat16,
            fp16=dtype == torch.float16, use_cpu=dev.type == "cpu", report_to="none",
            save_strategy="no", eval_strategy="no", logging_steps=1, disable_tqdm=True,
            remove_unused_columns=False, dataloader_num_workers=0, seed=job.seed)
        trainer = _InOrderTrainer(
            model=model, args=args, train_dataset=features,
            callbacks=[clock, _MethodStep(method, model)],
            data_collator=DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE_INDEX),
            optimizers=_optimizer(model, method, cfg))
        # Each micro-batch's mean loss / grad_accum, as our loop, rather than one mean over all
        # of the step's tokens: the same gradient definition, so that the losses can agree.
        trainer.model_accepts_loss_kwargs = False
        trainer.remove_callback(PrinterCallback)  # it prints every step's log to stdout
        start = time.perf_counter()
        trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    probe = mean_loss(model, job.probe, cfg.batch_size, tokenizer.pad_token_id, dev, dtype)
    return _result(start, clock.ends, clock.lrs, losses, model, probe,
                   same_prompt_init=same_init)


def _padded(examples: list[dict], width: int, pad_id: int) -> dict[str, torch.Tensor]:
    """collate(), then right-padded on to width."""
    batch = collate(examples, pad_id)
    extra = width - batch["input_ids"].shape[1]
    fill = {"input_ids": pad_id, "attention_mask": 0, "labels": IGNORE_INDEX}
    return {k: F.pad(v, (0, extra), value=fill[k]) for k, v in batch.items()}


def train_pad_to_max(job: Job, method: Method) -> dict:
    """The plain loop: every example padded to the template's max_length, logits everywhere."""
    model, tokenizer, dev, dtype = _setup(job)
    model, _ = method.wrap(model, tokenizer)
    model.to(dev).train()
    cfg = training_config(job)
    optimizer, scheduler = _optimizer(model, method, cfg)
    scaler = torch.amp.GradScaler(dev.type, enabled=dtype == torch.float16)  # as our loop
    params = [p for p in model.parameters() if p.requires_grad]
    # The soft prompt takes its positions from the same context, as in the workflow.
    width = job.preset.template["max_length"] - method.params.reserved_positions
    ends, lrs, losses, start = [], [], [], time.perf_counter()
    for step in plan(job):
        step_loss = 0.0
        for micro in step:
            batch = {k: v.to(dev) for k, v in
                     _padded([job.train[i] for i in micro], width, tokenizer.pad_token_id).items()}
            width_t = batch["input_ids"].shape[1]
            with autocast(dev, dtype):  # PEFT's P-tuning also returns its virtual tokens' logits
                logits = model(input_ids=batch["input_ids"],
                               attention_mask=batch["attention_mask"]).logits[:, -width_t:]
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(),
                                   batch["labels"][:, 1:].flatten(), ignore_index=IGNORE_INDEX)
            extra = method.regularization(model)
            scaler.scale((loss if extra is None else loss + extra) / len(step)).backward()
            step_loss += loss.item() / len(step)
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        method.after_optimizer_step(model, len(ends))  # AdaLoRA's budget, as our loop
        optimizer.zero_grad(set_to_none=True)
        ends.append(_now(dev))
        lrs.append(scheduler.get_last_lr()[0])
        losses.append(step_loss)
    probe = mean_loss(model, job.probe, cfg.batch_size, tokenizer.pad_token_id, dev, dtype)
    return _result(start, ends, lrs, losses, model, probe)


VARIANTS = {"ours": train_ours, "hf_trainer": train_hf_trainer, "pad_to_max": train_pad_to_max}
