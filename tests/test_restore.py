"""Restore a trained run and summarize: the same predictions as the evaluation step."""

import json
import shutil
import subprocess
import sys

import pytest
from conftest import SMOKE_RESULTS
from peft import PeftModel
from transformers import AutoModelForCausalLM

from peftsum.data import models
from peftsum.errors import UserError
from peftsum.evaluation import restore
from peftsum.files import read_jsonl


def run_dir(workdir, method):
    return workdir / SMOKE_RESULTS / "train" / method / "seed0"


@pytest.mark.slow
@pytest.mark.parametrize("method", ["prompt_tuning", "lora", "last_layers"])
def test_restored_run_reproduces_the_evaluation_predictions(smoke_workflow, method, monkeypatch):
    monkeypatch.chdir(smoke_workflow)  # the run records its base model relative to the workdir
    articles = read_jsonl(SMOKE_RESULTS / "data/split/test.jsonl")
    expected = read_jsonl(SMOKE_RESULTS / f"eval/{method}/seed0/predictions.jsonl")
    model, tokenizer, run = restore.load_run(run_dir(smoke_workflow, method))
    got = restore.summarize(model, tokenizer, run, [a["article"] for a in articles],
                            restore.decoding(run_dir(smoke_workflow, method)))
    assert got == [e["prediction"] for e in expected]


@pytest.mark.slow
def test_summarize_command_reads_jsonl_and_writes_jsonl(smoke_workflow, tmp_path):
    articles = smoke_workflow / SMOKE_RESULTS / "data" / "split" / "test.jsonl"
    out = tmp_path / "summaries.jsonl"
    done = subprocess.run([sys.executable, "-m", "peftsum", "summarize", "--run",
                           str(SMOKE_RESULTS / "train/lora/seed0"), "--input", str(articles), "--output",
                           str(out)], cwd=smoke_workflow, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    expected = read_jsonl(smoke_workflow / SMOKE_RESULTS / "eval/lora/seed0/predictions.jsonl")
    assert [r["id"] for r in rows] == [e["id"] for e in expected]
    assert [r["summary"] for r in rows] == [e["prediction"] for e in expected]


@pytest.mark.slow
def test_exports_load_with_the_standard_loaders(smoke_workflow, tmp_path, monkeypatch):
    monkeypatch.chdir(smoke_workflow)
    base_dir = smoke_workflow / "resources" / "models" / "tiny-gpt2"
    for method in ("lora", "last_layers"):
        model, tokenizer, run = restore.load_run(run_dir(smoke_workflow, method))
        restore.export(model, tokenizer, run, tmp_path / method, restore.base_reference(run))
    adapter = PeftModel.from_pretrained(models.load(base_dir)[0], tmp_path / "lora")
    assert (tmp_path / "lora" / "adapter_config.json").exists()
    assert sum(p.numel() for n, p in adapter.named_parameters() if "lora_" in n) == 4096
    full = AutoModelForCausalLM.from_pretrained(tmp_path / "last_layers")
    assert not full.config.tie_word_embeddings


@pytest.mark.slow
def test_corrupted_or_mismatched_run_gives_one_line_errors(smoke_workflow, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(run_dir(smoke_workflow, "lora"), broken)
    (broken / "trainable.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="not a readable safetensors file"):
        restore.load_run(broken, smoke_workflow / "resources" / "models" / "tiny-gpt2")

    other = tmp_path / "other-model"
    models.materialise({"name": "o", "source": "random", "random": {
        "n_layer": 2, "n_head": 2, "n_embd": 64, "n_positions": 512, "seed": 1}}, other)
    with pytest.raises(UserError, match="differs from the one this run was trained on"):
        restore.load_run(run_dir(smoke_workflow, "lora"), other)

    (broken / "run.json").write_text("{not json")
    article = tmp_path / "article.txt"
    article.write_text("An article.")
    done = subprocess.run([sys.executable, "-m", "peftsum", "summarize", "--run", str(broken),
                           "--input", str(article)], capture_output=True, text=True, check=False)
    assert done.returncode == 1 and "corrupt" in done.stderr and "Traceback" not in done.stderr
