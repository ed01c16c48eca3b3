"""Use a trained run: put its weights back on the base model, summarize new text, export.

A run folder (results/train/<method>/seed<seed>/) holds only what trained plus run.json, which
names the method, the base model (with the hash of its weights), the template and the decoding
settings the run was evaluated with; loading checks the base model against that hash.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from peftsum import methods, models
from peftsum.config import EvalConfig, TemplateConfig
from peftsum.data.tokenize import Encoder, source_budget
from peftsum.errors import UserError
from peftsum.evaluate import generate
from peftsum.methods.common import unwrap
from peftsum.resources import amp_dtype, place_for_inference

log = logging.getLogger(__name__)


def read_run(run_dir: Path) -> dict:
    path = Path(run_dir) / "run.json"
    try:
        run = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{run_dir} is not a trained run (no run.json)") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is corrupt ({err})") from None
    missing = [k for k in ("method", "base_model", "template", "decoding") if k not in run]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}: it was not written by peftsum train")
    return run


def base_model_dir(run: dict, model_dir: Path | None) -> Path:
    """The base model folder: as given, else where the run was trained; its weights must match."""
    folder = Path(model_dir or run["base_model"]["dir"])
    if not (folder / "model_info.json").is_file():
        raise UserError(f"base model {folder} not found: run the workflow's download rule for "
                        f"'{run['base_model']['name']}', or pass --model")
    expected, actual = run["base_model"]["weights_sha256"], models.model_info(folder).get(
        "weights_sha256")
    if actual != expected:
        raise UserError(f"base model {folder} differs from the one this run was trained on "
                        f"(weights sha256 {str(actual)[:12]} != {expected[:12]})")
    return folder


def load_run(run_dir: Path, model_dir: Path | None = None):
    """(model with the run's weights, tokenizer, run.json) ready for generation."""
    run = read_run(run_dir)
    method = methods.from_config(run["name"], run["method"])
    model, tokenizer = models.load(base_model_dir(run, model_dir))
    model = method.load_for_inference(model, tokenizer, Path(run_dir) / "trainable.safetensors")
    return model, tokenizer, run


def decoding(run: dict, **overrides) -> EvalConfig:
    """The decoding the run was evaluated with, with the given settings replaced."""
    settings = {**run["decoding"], **{k: v for k, v in overrides.items() if v is not None}}
    return EvalConfig.from_dict(settings)


def summarize(model, tokenizer, run: dict, articles: list[str], cfg: EvalConfig) -> list[str]:
    """Summaries of articles, through the same template and truncation as training."""
    template = TemplateConfig.from_dict(run["template"])
    context = run["base_model"]["context_length"]
    encoder = Encoder(tokenizer, template, source_budget(template, context,
                                                         run["reserved_positions"]))
    examples = encoder.encode(articles, [""] * len(articles))  # only the source part is used
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = amp_dtype(dev, cfg.cpu_bf16)
    outputs = generate(place_for_inference(model, dev, dtype), tokenizer, examples, cfg, dev, dtype)
    return [o["text"] for o in outputs]


def export(model, tokenizer, run: dict, out_dir: Path) -> str:
    """The PEFT kinds: a standard PEFT adapter folder; last layers and BitFit (which change the
    model's own weights): a full save_pretrained model folder."""
    out_dir = Path(out_dir)
    kind = run["method"]["kind"]
    if hasattr(model, "peft_config"):  # a PeftModel
        model.save_pretrained(out_dir)  # adapter_config.json + adapter_model.safetensors
        return f"PEFT adapter: PeftModel.from_pretrained(base, '{out_dir}')"
    if kind in ("last_layers", "bitfit"):
        unwrap(model).save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
        return f"full model: AutoModelForCausalLM.from_pretrained('{out_dir}')"
    raise UserError(f"a {kind} run has no standard export format: its trainable.safetensors "
                    "is the whole of what it adds")

