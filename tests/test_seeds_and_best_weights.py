"""What the statistics assume of training: two seeds train differently, and the saved weights
are the ones with the lowest validation loss, not the last ones."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_training import run

from peftsum.config import training_params
from peftsum.evaluation import restore
from peftsum.evaluation.generate import loss_sums
from peftsum.files import read_jsonl


def train(root: Path, out: Path, config: dict, method: str, seed: int) -> Path:
    settings = out.parent / f"{out.name}.settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"name": method, "method": config["methods"][method],
                                    "training": training_params(config["training"]),
                                    "seed": seed}))
    done = run(["-m", "peftsum", "train", "--settings", str(settings), "--model",
                str(root / "model"), "--data", str(root / "tokenized"), "--out", str(out)])
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_two_seeds_train_different_weights(smoke, tmp_path):
    root, config = smoke
    config["training"].update(max_steps=2, eval_every=2)
    # LoRA's B starts at zero, so its A (drawn by the seed) and the data order carry the seed.
    first, second = (load_file(str(train(root, tmp_path / f"seed{s}", config, "lora", s)
                                   / "trainable.safetensors")) for s in (0, 1))
    assert first.keys() == second.keys()
    assert any(not torch.equal(first[name], second[name]) for name in first)


def test_the_saved_weights_are_the_best_by_validation_loss(smoke, tmp_path):
    root, config = smoke
    # A learning rate far too high: validation loss falls, then climbs, so best != last.
    config["methods"]["last_layers"]["lr"] = 5.0
    config["training"].update(max_steps=6, eval_every=1, patience=None, warmup_ratio=0.0)
    out = train(root, tmp_path / "run", config, "last_layers", 0)
    rows = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    losses = {r["step"]: r["val_loss"] for r in rows if "val_loss" in r}
    best_step = min(losses, key=losses.get)
    last_step = max(losses)
    assert best_step != last_step and losses[last_step] > losses[best_step] * 1.01
    model, tokenizer, _ = restore.load_run(out, root / "model")
    validation = read_jsonl(root / "tokenized" / "validation.jsonl")
    samples = config["training"].get("eval_samples")
    total, count = loss_sums(model, validation[:samples], 4, tokenizer.pad_token_id,
                             torch.device("cpu"))
    assert total / count == pytest.approx(losses[best_step], rel=1e-3)
