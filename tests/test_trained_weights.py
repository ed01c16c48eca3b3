"""Evaluation scores the weights training ended with.

For each method kind: train a few steps through train.run, keep the training-time model (as
run() saves it), and compare its logits on one validation batch with those of the model that
evaluation builds from the saved files (evaluate.load_model: LoRA merged), of the same files
loaded without the merge, and, for LoRA, of the exported adapter loaded by PEFT itself.
"""

import dataclasses

import pytest
import torch
from peft import PeftModel

from peftsum.config import TrainingConfig
from peftsum.data import models
from peftsum.data.batches import collate
from peftsum.evaluation import generate as evaluate
from peftsum.evaluation import restore
from peftsum.files import read_jsonl
from peftsum.methods import from_config
from peftsum.methods.common import load_trainable
from peftsum.records import read_run
from peftsum.runtime.precision import autocast
from peftsum.training import loop as train

# Tolerances, as a share of the largest training-time logit. fp32 on the CPU: merging LoRA's
# B @ A into the weight reorders the sums, nothing more (measured: 3e-7). bf16 (evaluation's
# cpu_bf16, and GPUs): frozen matmul weights stored in bf16, bf16 matmuls (measured: 0.4 % to
# 6 %, the most for last_layers, whose trained head is then stored in bf16).
FP32, BF16 = 1e-5, 0.1
# Learning rates large enough that three steps move the logits far beyond that tolerance.
KINDS = {
    "prompt_tuning": {"kind": "prompt_tuning", "n_tokens": 4, "lr": 0.3},
    "lora": {"kind": "lora", "lr": 0.01},
    "last_layers": {"kind": "last_layers", "n_blocks": 1, "final_norm": True, "lr": 0.01},
    "full": {"kind": "full", "lr": 0.001},
}
# train.run alone records no template (stages.train adds it); what export needs of one.
TEMPLATE = {"prefix": "", "suffix": "\nTL;DR:", "summary_prefix": " ", "max_length": 512,
            "max_target_tokens": 64}
CFG = TrainingConfig.from_dict({"epochs": 1, "max_steps": 3, "batch_size": 4, "eval_every": 3,
                                "eval_samples": 4, "log_every": 3, "patience": None,
                                "checkpoint_every": 100})


def logits(model, batch) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def assert_close_logits(got: torch.Tensor, expected: torch.Tensor, share: float) -> None:
    torch.testing.assert_close(got, expected, rtol=0, atol=share * float(expected.abs().max()))


@pytest.fixture(scope="module", params=list(KINDS))
def trained(request, smoke_files, tmp_path_factory):
    """(method, model folder, run folder, training-time logits, logits before training, batch)."""
    root, _ = smoke_files
    method = from_config(request.param, KINDS[request.param])
    out = tmp_path_factory.mktemp(request.param)
    saved = {}

    def keep_model(model, path, *metadata):  # what run() saves, and the model it saves from
        saved["model"] = model
        save_trainable(model, path, *metadata)

    save_trainable = train.save_trainable
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train, "save_trainable", keep_model)
        train.run(root / "model", root / "tokenized", method, CFG, 0, out)
    model, tokenizer = models.load(root / "model")
    batch = collate(read_jsonl(root / "tokenized" / "validation.jsonl")[:4], tokenizer.pad_token_id)
    untrained = logits(method.wrap(model, tokenizer)[0], batch)
    return method, root / "model", out, logits(saved["model"], batch), untrained, batch


def test_training_moved_the_logits(trained):
    _, _, _, at_end, untrained, _ = trained
    # Else the comparisons below could not tell trained weights from the initial ones.
    assert (at_end - untrained).abs().max() > 2 * BF16 * at_end.abs().max()


@pytest.mark.parametrize(("dtype", "tolerance"), [(None, FP32), (torch.bfloat16, BF16)],
                         ids=["fp32", "bf16"])
def test_evaluation_model_gives_the_training_time_logits(trained, dtype, tolerance):
    method, model_dir, out, at_end, _, batch = trained
    dev = torch.device("cpu")
    model, _ = evaluate.load_model(model_dir, method, out / "trainable.safetensors", dev, dtype)
    with autocast(dev, dtype):
        got = logits(model, batch)
    assert_close_logits(got.float(), at_end, tolerance)


def test_saved_weights_without_the_merge_give_the_training_time_logits(trained):
    method, model_dir, out, at_end, _, batch = trained
    model, tokenizer = models.load(model_dir)
    wrapped, _ = method.wrap(model, tokenizer)
    load_trainable(wrapped, out / "trainable.safetensors")
    assert_close_logits(logits(wrapped, batch), at_end, FP32)


@pytest.mark.parametrize("trained", ["lora"], indirect=True)
def test_exported_lora_adapter_loads_in_peft_with_the_same_logits(trained, tmp_path):
    method, model_dir, out, at_end, _, batch = trained
    model, tokenizer = evaluate.load_model(model_dir, method, out / "trainable.safetensors",
                                           torch.device("cpu"), None)
    record = dataclasses.replace(read_run(out / "run.json"), template=TEMPLATE,
                                 base_model={"context_length": 512}, reserved_positions=0)
    restore.export(model, tokenizer, record, tmp_path, (str(model_dir), None))
    adapter = PeftModel.from_pretrained(models.load(model_dir)[0], tmp_path)
    assert_close_logits(logits(adapter, batch), at_end, FP32)
