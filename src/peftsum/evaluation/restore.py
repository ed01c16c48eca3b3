"""Use a trained run: put its weights back on the base model, summarize new text, export.

A run folder (results/<experiment>/train/<method>/seed<seed>/) holds only what trained plus
run.json, which names the method, the base model (with the hash of its weights) and the
template. Loading checks the base model's weights against that hash, and run.json's method,
template, reserved positions and hash against the metadata saved inside the weights file. The
decoding settings come from the run's evaluation
(results/<experiment>/eval/<method>/seed<seed>/metrics.json) when there is one: decoding is not
part of what a training run depends on, so a change of it reruns the evaluations, not the
trainings.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from peftsum import methods, paths, records
from peftsum.config import EvalConfig, TemplateConfig
from peftsum.data import models
from peftsum.data.tokenize import Encoder, source_budget
from peftsum.errors import UserError
from peftsum.evaluation.generate import generate
from peftsum.files import write_atomic, write_json
from peftsum.methods.common import unwrap
from peftsum.metrics import ROUGE
from peftsum.records import MetricsRecord, RunRecord
from peftsum.runtime.precision import amp_dtype, place_for_inference

log = logging.getLogger(__name__)


def read_run(run_dir: Path) -> RunRecord:
    """The record of the run in run_dir, with what restoring it reads."""
    return records.read_run(paths.run_json(Path(run_dir)),
                            needs=("name", "method", "base_model", "template"))


def base_model_dir(run: RunRecord, model_dir: Path | None) -> Path:
    """The base model folder: as given, else where the run was trained; its weights must match."""
    folder = Path(model_dir or run.base_model["dir"])
    if not (folder / "model_info.json").is_file():
        raise UserError(f"base model {folder} not found: run the workflow's download rule for "
                        f"'{run.base_model['name']}', or pass --model")
    # models.load then checks the weights files themselves against model_info.json.
    expected, actual = run.base_model["weights_sha256"], models.model_info(folder).get(
        "weights_sha256")
    if actual != expected:
        raise UserError(f"base model {folder} differs from the one this run was trained on "
                        f"(weights sha256 {str(actual)[:12]} != {expected[:12]})")
    recorded, context = run.base_model.get("context_length"), models.model_info(folder).get(
        "context_length")
    if recorded != context:  # summarize truncates articles to it
        raise UserError(f"run.json says base_model.context_length = {recorded}, but {folder} has "
                        f"{context}: the run's record was changed")
    return folder


def load_run(run_dir: Path, model_dir: Path | None = None):
    """(model with the run's weights, tokenizer, run.json) ready for generation."""
    run = read_run(run_dir)
    method = methods.from_config(run.name, run.method)
    model, tokenizer = models.load(base_model_dir(run, model_dir))
    model = method.load_for_inference(model, tokenizer, paths.weights(Path(run_dir)),
                                      run.base_model["weights_sha256"],
                                      {"template": run.template,
                                       "reserved_positions": run.reserved_positions})
    return model, tokenizer, run


def evaluation_of(run_dir: Path) -> Path | None:
    """The run's metrics.json where the workflow writes it; None for a run folder outside the
    workflow's layout (copied elsewhere)."""
    folder = paths.evaluation_dir(run_dir)
    return paths.metrics_json(folder) if folder is not None else None


def decoding(run_dir: Path, **overrides) -> EvalConfig:
    """The decoding the run was evaluated with (the defaults when it has no evaluation), with
    the given settings replaced."""
    metrics = evaluation_metrics(run_dir)
    evaluated = (metrics.decoding if metrics is not None else None) or {}
    if not evaluated:
        log.info("no evaluation of %s found: decoding with the default settings", run_dir)
    settings = {**evaluated, **{k: v for k, v in overrides.items() if v is not None}}
    return EvalConfig.from_dict(settings)


def summarize(model, tokenizer, run: RunRecord, articles: list[str], cfg: EvalConfig) -> list[str]:
    """Summaries of articles, through the same template and truncation as training."""
    template = TemplateConfig.from_dict(run.template)
    context = run.base_model["context_length"]
    encoder = Encoder(tokenizer, template, source_budget(template, context,
                                                         run.reserved_positions))
    examples = encoder.encode(articles, [""] * len(articles))  # only the source part is used
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = amp_dtype(dev, cfg.cpu_bf16, "generate")
    outputs = generate(place_for_inference(model, dev, dtype), tokenizer, examples, cfg, dev, dtype)
    return [o["text"] for o in outputs]


# Kinds whose model is a PeftModel (saved as PEFT saves it), the soft prompt (saved as PEFT's
# prompt tuning), and the rest, which change the model's own weights (a save_pretrained model).
PEFT_EXPORTS = ("lora", "ia3", "prefix_tuning", "p_tuning", "adalora", "peft")
PROMPT_TUNING = "prompt_tuning"
TEMPLATE_FILE = "prompt_template.json"


def _protected_folders(run_dir: Path, run: RunRecord, model_dir: Path | None) -> list[Path]:
    """Folders an export must never write into: resources/, the base model, the run itself."""
    base = Path(model_dir or run.base_model["dir"])
    folders = [Path("resources"), base, Path(run_dir)]
    folders += [p for p in [*base.absolute().parents, *base.resolve().parents]
                if p.name == "resources"]
    # Resolved: a link to the base model (or any of these) is the folder itself.
    return [f.resolve() for f in folders]


def check_export(run_dir: Path, run: RunRecord, model_dir: Path | None, out_dir: Path,
                 force: bool = False) -> None:
    """Before anything loads: out_dir is neither inside resources/, the base model or the run,
    nor (unless forced) a non-empty folder."""
    target = Path(out_dir).resolve()
    for folder in _protected_folders(run_dir, run, model_dir):
        if target.is_relative_to(folder) or folder.is_relative_to(target):
            raise UserError(f"export to {out_dir}: refusing to write into {folder} (it holds the "
                            "workflow's models and data, or this run): choose another folder")
    if target.exists() and not target.is_dir():
        raise UserError(f"export to {out_dir}: is a file, not a folder")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise UserError(f"export to {out_dir}: the folder is not empty; choose an empty or new "
                        "folder, or pass --force to write over its files")


def export_run(run_dir: Path, out_dir: Path, model_dir: Path | None = None,
               force: bool = False) -> str:
    """Export a trained run for use without peftsum; returns how to load it."""
    run = read_run(run_dir)
    check_export(run_dir, run, model_dir, out_dir, force)
    model, tokenizer, run = load_run(run_dir, model_dir)
    return export(model, tokenizer, run, out_dir, base_reference(run, model_dir),
                  evaluation_metrics(run_dir))


def base_reference(run: RunRecord, model_dir: Path | None = None) -> tuple[str, str | None]:
    """(name or path, revision) of the base model, as PEFT's adapter config names it: the hub
    id and the commit (else the revision asked for) where it came from the hub, else the
    absolute path of its folder."""
    base = run.base_model
    if base.get("source") == "hf" and model_dir is None:
        return base["id"], base.get("commit") or base.get("revision")
    return os.path.abspath(model_dir or base["dir"]), None


def evaluation_metrics(run_dir: Path) -> MetricsRecord | None:
    """The run's evaluation (metrics.json) where the workflow wrote one, else None."""
    path = evaluation_of(run_dir)
    return records.read_metrics(path) if path is not None and path.is_file() else None


def export(model, tokenizer, run: RunRecord, out_dir: Path, base: tuple[str, str | None],
           metrics: MetricsRecord | None = None) -> str:
    """Write the run as the ecosystem reads it: the PEFT kinds and prompt tuning as a PEFT
    adapter folder naming `base` (name or path, revision), every other kind as a save_pretrained
    model; both with the tokenizer, the prompt template (TEMPLATE_FILE) and a model card."""
    out_dir = Path(out_dir)
    kind = run.method["kind"]
    if kind == PROMPT_TUNING:
        model = prompt_tuning_adapter(model)
    if kind in PEFT_EXPORTS or kind == PROMPT_TUNING:
        model.save_pretrained(out_dir)  # adapter_config.json + adapter_model.safetensors
        _name_base(out_dir / "adapter_config.json", *base)
        how = (f"PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained('{base[0]}'"
               + (f", revision='{base[1]}'" if base[1] else "") + f"), '{out_dir}')")
    else:
        unwrap(model).save_pretrained(out_dir, safe_serialization=True)
        how = f"AutoModelForCausalLM.from_pretrained('{out_dir}')"
    tokenizer.save_pretrained(out_dir)
    write_json(out_dir / TEMPLATE_FILE, {
        **{k: run.template[k] for k in ("prefix", "suffix")},
        "max_source_tokens": source_budget(TemplateConfig.from_dict(run.template),
                                           run.base_model["context_length"],
                                           run.reserved_positions)})
    write_atomic(out_dir / "README.md", model_card(run, base, metrics, how))
    return how


def prompt_tuning_adapter(model):
    """The soft prompt as PEFT's prompt tuning on the same base: PEFT prepends it to the input
    embeddings as SoftPromptModel does."""
    from peft import PromptTuningConfig, TaskType, get_peft_model

    prompt = model.soft_prompt.detach()  # (P, C)
    config = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=prompt.shape[0],
                                token_dim=prompt.shape[1])
    adapter = get_peft_model(unwrap(model), config)
    with torch.no_grad():
        adapter.prompt_encoder[adapter.active_adapter].embedding.weight.copy_(prompt)
    return adapter


def _name_base(config_file: Path, name: str, revision: str | None) -> None:
    """PEFT writes the base's in-memory path (relative to the workflow's folder): name the
    model where it can be found from anywhere."""
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"], config["revision"] = name, revision
    write_json(config_file, config)


CARD_METRICS = (*((metric.key, metric.label) for metric in ROUGE), ("test_loss", "test loss"))


def model_card(run: RunRecord, base: tuple[str, str | None], metrics: MetricsRecord | None,
               how: str) -> str:
    """README.md of an export: base model, data, prompt template, hyperparameters and the
    run's test metrics."""
    name, revision = base
    kind = run.method["kind"]
    front = ["---", f"library_name: {'peft' if how.startswith('PeftModel') else 'transformers'}",
             "pipeline_tag: text-generation", f"tags: [summarization, peftsum, {kind}]", "---"]
    if not os.path.isabs(name):  # a hub id: the hub links the card to its base
        front.insert(1, f"base_model: {name}")
    at = f" at revision `{revision}`" if revision else ""
    examples = run.train_examples if run.train_examples is not None else "an unknown number of"
    lines = [*front, "", f"# {run.name}: {run.trains or kind}", "",
             (f"Trained with peftsum ({kind}, seed {run.seed}) on the base model "
              f"`{name}`{at}, from {examples} training examples."), "",
             *_card_use(run.template, how, metrics), "",
             "## Hyperparameters", "", "| setting | value |", "|---|---|",
             *(f"| {k} | {json.dumps(v)} |" for k, v in (run.hparams or run.method).items()),
             "", "## Test metrics", "", *_card_metrics(metrics)]
    return "\n".join(lines) + "\n"


def _card_use(template: dict, how: str, metrics: MetricsRecord | None) -> list[str]:
    decoding = (metrics.decoding if metrics is not None else None) or {}
    return ["## Use", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
            *(["from peft import PeftModel"] if how.startswith("PeftModel") else []),
            f"model = {how}", "tokenizer = AutoTokenizer.from_pretrained('<this folder>')",
            f"prompt = {json.dumps(template['prefix'])} + article + {json.dumps(template['suffix'])}",
            "inputs = tokenizer(prompt, return_tensors='pt')",
            (f"output = model.generate(**inputs, do_sample=False, max_new_tokens="
             f"{decoding.get('max_new_tokens', 128)})"), "```", "",
            "## Prompt template", "",
            (f"The input is prefix + article + suffix ({TEMPLATE_FILE}), the article cut to "
             "max_source_tokens tokens; in training the summary followed "
             f"{json.dumps(template['summary_prefix'])} and ended with the EOS token. The test "
             "metrics below were decoded with "
             f"{json.dumps(decoding) if decoding else 'greedy search'} (peftsum's "
             "no_repeat_ngram_size counts the generated tokens only, not the article's, unlike "
             "transformers' option of that name).")]


def _card_metrics(metrics: MetricsRecord | None) -> list[str]:
    if not metrics:
        return ["This run had not been evaluated when it was exported."]
    return ["| metric | value |", "|---|---|",
            *(f"| {label} | {getattr(metrics, key):.2f} |" for key, label in CARD_METRICS
              if getattr(metrics, key) is not None),
            f"| test examples | {metrics.n_test} |"]
