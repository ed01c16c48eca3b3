"""`peftsum export`: every kind loads with plain transformers / PEFT and summarizes as peftsum does.

Each kind trains a few steps (stages.train, so run.json is the workflow's) on the smoke config's
tiny random GPT-2; its export is then loaded the way a user outside peftsum would: the folder's
adapter_config.json or config.json, its tokenizer and prompt_template.json, and
`model.generate` with greedy search.
"""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from peftsum import stages
from peftsum.__main__ import main
from peftsum.config import EvalConfig, TrainingConfig
from peftsum.data import models
from peftsum.errors import UserError
from peftsum.evaluation import restore
from peftsum.files import read_jsonl
from peftsum.methods import KINDS, from_config
from peftsum.records import MetricsRecord, RunRecord

# Every kind, small enough for the tiny GPT-2; learning rates large enough that two steps move
# the greedy output away from the base model's.
SPECS = {
    "prompt_tuning": {"kind": "prompt_tuning", "n_tokens": 4, "init": "vocab", "lr": 0.5},
    "lora": {"kind": "lora", "r": 4, "lr": 0.05},
    "last_layers": {"kind": "last_layers", "n_blocks": 1, "final_norm": True, "lr": 0.01},
    "full": {"kind": "full", "lr": 0.001},
    "bitfit": {"kind": "bitfit", "lr": 0.05},
    "ia3": {"kind": "ia3", "lr": 0.05},
    "prefix_tuning": {"kind": "prefix_tuning", "num_virtual_tokens": 4, "lr": 0.05},
    "p_tuning": {"kind": "p_tuning", "num_virtual_tokens": 4, "encoder_hidden_size": 16,
                 "lr": 0.05},
    "adalora": {"kind": "adalora", "init_r": 4, "target_r": 2, "total_step": 2, "lr": 0.05},
    "peft": {"kind": "peft", "config": "VeraConfig", "kwargs": {"r": 8,
                                                               "target_modules": ["c_attn"]},
             "lr": 0.1},
}
TRAINING = TrainingConfig.from_dict({"epochs": 1, "max_steps": 2, "batch_size": 4, "eval_every": 2,
                                     "eval_samples": 4, "log_every": 2, "patience": None,
                                     "checkpoint_every": 100, "cpu_bf16": False})
DECODING = EvalConfig.from_dict({"batch_size": 1, "max_new_tokens": 12, "num_beams": 1,
                                 "no_repeat_ngram_size": 0, "cpu_bf16": False})


def test_every_kind_has_an_export_case():
    assert set(SPECS) == set(KINDS)


@pytest.fixture(scope="module")
def workdir(smoke_files, tmp_path_factory):
    """A folder with a tiny random GPT-2 (the smoke model's sizes) at model/. Its weights are
    drawn wider than GPT-2's 0.02: at that scale each token's own embedding dominates the last
    position, so the greedy output of every prompt-side kind repeats the article's last token
    whatever was trained, and could not tell a lost soft prompt or prefix."""
    folder = tmp_path_factory.mktemp("workdir")
    models.materialise({"name": "wide", "source": "random", "random": {
        "n_layer": 2, "n_head": 2, "n_embd": 64, "n_positions": 512, "initializer_range": INIT,
        "seed": 0}}, folder / "model")
    return folder


INIT = 0.3


@pytest.fixture(scope="module", params=list(SPECS))
def run(request, workdir, smoke_files):
    """(the folder the run's paths are relative to, as the workflow's are; the run; an article)"""
    root, _ = smoke_files
    out = workdir / "results" / "train" / request.param / "seed0"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        stages.train(from_config(request.param, SPECS[request.param]), TRAINING, 0,
                     Path("model"), root / "tokenized", out)
    perturb(out / "trainable.safetensors")
    return workdir, out, read_jsonl(root / "split" / "test.jsonl")[0]["article"]


def perturb(weights: Path) -> None:
    """Move the trained weights far from their start: two steps on the tiny random model leave
    most kinds' greedy output equal to the base model's, which would not tell a lost adapter."""
    with safe_open(weights, "pt") as f:
        metadata, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    generator = torch.Generator().manual_seed(1)
    save_file({k: v + torch.randn(v.shape, generator=generator) * 0.5 for k, v in state.items()},
              weights, metadata)


def plain_summary(folder: Path, article: str) -> str:
    """What a user gets from the export with transformers and PEFT alone."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if (folder / "adapter_config.json").is_file():
        config = json.loads((folder / "adapter_config.json").read_text())
        base = AutoModelForCausalLM.from_pretrained(config["base_model_name_or_path"],
                                                    revision=config["revision"])
        model = PeftModel.from_pretrained(base, folder)
    else:
        model = AutoModelForCausalLM.from_pretrained(folder)
    template = json.loads((folder / "prompt_template.json").read_text())
    inputs = tokenizer(template["prefix"] + article + template["suffix"], return_tensors="pt")
    with torch.no_grad():
        output = model.eval().generate(**inputs, do_sample=False,
                                       max_new_tokens=DECODING.max_new_tokens,
                                       pad_token_id=tokenizer.eos_token_id)
    new = output[0, inputs["input_ids"].shape[1]:]
    return tokenizer.decode(new, skip_special_tokens=True).strip()


def test_export_loads_outside_peftsum_with_the_same_greedy_summary(run, tmp_path, monkeypatch):
    workdir, run_dir, article = run
    monkeypatch.chdir(workdir)
    model, tokenizer, record = restore.load_run(run_dir)
    expected = restore.summarize(model, tokenizer, record, [article], DECODING)[0]
    base, _ = models.load(Path(record.base_model["dir"]))
    assert expected != restore.summarize(base, tokenizer, record, [article], DECODING)[0]
    main(["export", str(run_dir), str(tmp_path / "export")])
    monkeypatch.chdir(tmp_path)  # the export loads from anywhere
    assert plain_summary(tmp_path / "export", article) == expected
    adapter = tmp_path / "export" / "adapter_config.json"
    if adapter.is_file():  # the base named by an absolute path, loadable from anywhere
        assert Path(json.loads(adapter.read_text())["base_model_name_or_path"]).is_absolute()
    card = (tmp_path / "export" / "README.md").read_text()
    assert record.kind in card and "## Test metrics" in card and "TL;DR:" in card


def test_prompt_tuning_is_peft_prompt_tuning_with_the_trained_soft_prompt(smoke_files, tmp_path):
    root, _ = smoke_files
    run_dir = tmp_path / "pt"
    stages.train(from_config("prompt_tuning", SPECS["prompt_tuning"]), TRAINING, 0,
                 root / "model", root / "tokenized", run_dir)
    model, _, _ = restore.load_run(run_dir)
    restore.export_run(run_dir, tmp_path / "export")
    config = json.loads((tmp_path / "export" / "adapter_config.json").read_text())
    assert config["peft_type"] == "PROMPT_TUNING" and config["num_virtual_tokens"] == 4
    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(root / "model"),
                                       tmp_path / "export")
    torch.testing.assert_close(loaded.prompt_encoder["default"].embedding.weight,
                               model.soft_prompt, rtol=0, atol=0)


def test_model_card_names_a_hub_base_by_id_and_revision_and_shows_the_metrics():
    run = RunRecord(name="lora", seed=0, trains="LoRA r=8", train_examples=100,
                    method={"kind": "lora", "r": 8}, hparams={"r": 8, "lr": 0.001},
                    template={"prefix": "", "suffix": "\nTL;DR:", "summary_prefix": " "},
                    base_model={"source": "hf", "id": "openai-community/gpt2", "revision": "main",
                                "commit": "607a30d783dfa663caf39e06633721c8d4cfcd7e", "dir": "x"})
    base = restore.base_reference(run)
    assert base == ("openai-community/gpt2", "607a30d783dfa663caf39e06633721c8d4cfcd7e")
    card = restore.model_card(run, base, MetricsRecord(name="lora", rougeL=23.456, n_test=50,
                                                       decoding={"max_new_tokens": 64}),
                              "PeftModel(...)")
    assert "base_model: openai-community/gpt2\n" in card and "| ROUGE-L | 23.46 |" in card
    assert "| test examples | 50 |" in card and "max_new_tokens=64" in card
    local = dataclasses.replace(run, base_model={"source": "gguf", "dir": "resources/models/m"})
    assert Path(restore.base_reference(local)[0]).is_absolute()


def test_export_refuses_a_non_empty_folder_before_loading(tmp_path, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({
        "name": "lora", "method": {"kind": "lora"}, "template": {},
        "base_model": {"dir": str(tmp_path / "nowhere"), "name": "x", "weights_sha256": "0"}}))
    with pytest.raises(UserError, match="the folder is not empty"):
        restore.export_run(run_dir, busy)
    assert (busy / "notes.txt").read_text() == "mine"
