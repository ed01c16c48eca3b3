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
from pathlib import Path

import torch

from peftsum import methods
from peftsum.config import EvalConfig, TemplateConfig
from peftsum.data import models
from peftsum.data.tokenize import Encoder, source_budget
from peftsum.errors import UserError
from peftsum.evaluation.generate import generate
from peftsum.methods.common import unwrap
from peftsum.runtime.precision import amp_dtype, place_for_inference

log = logging.getLogger(__name__)


def read_run(run_dir: Path) -> dict:
    path = Path(run_dir) / "run.json"
    try:
        run = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{run_dir} is not a trained run (no run.json)") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is corrupt ({err})") from None
    missing = [k for k in ("method", "base_model", "template") if k not in run]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}: it was not written by peftsum train")
    return run


def base_model_dir(run: dict, model_dir: Path | None) -> Path:
    """The base model folder: as given, else where the run was trained; its weights must match."""
    folder = Path(model_dir or run["base_model"]["dir"])
    if not (folder / "model_info.json").is_file():
        raise UserError(f"base model {folder} not found: run the workflow's download rule for "
                        f"'{run['base_model']['name']}', or pass --model")
    # models.load then checks the weights files themselves against model_info.json.
    expected, actual = run["base_model"]["weights_sha256"], models.model_info(folder).get(
        "weights_sha256")
    if actual != expected:
        raise UserError(f"base model {folder} differs from the one this run was trained on "
                        f"(weights sha256 {str(actual)[:12]} != {expected[:12]})")
    recorded, context = run["base_model"].get("context_length"), models.model_info(folder).get(
        "context_length")
    if recorded != context:  # summarize truncates articles to it
        raise UserError(f"run.json says base_model.context_length = {recorded}, but {folder} has "
                        f"{context}: the run's record was changed")
    return folder


def load_run(run_dir: Path, model_dir: Path | None = None):
    """(model with the run's weights, tokenizer, run.json) ready for generation."""
    run = read_run(run_dir)
    method = methods.from_config(run["name"], run["method"])
    model, tokenizer = models.load(base_model_dir(run, model_dir))
    model = method.load_for_inference(model, tokenizer, Path(run_dir) / "trainable.safetensors",
                                      run["base_model"]["weights_sha256"],
                                      {"template": run["template"],
                                       "reserved_positions": run.get("reserved_positions")})
    return model, tokenizer, run


def evaluation_of(run_dir: Path) -> Path | None:
    """Where the workflow writes a run's evaluation: .../train/M/seedS -> .../eval/M/seedS;
    None for a run folder outside that layout (copied elsewhere)."""
    run_dir = Path(run_dir).resolve()
    if len(run_dir.parents) < 3 or run_dir.parents[1].name != "train":
        return None
    return run_dir.parents[2] / "eval" / run_dir.parent.name / run_dir.name / "metrics.json"


def decoding(run_dir: Path, **overrides) -> EvalConfig:
    """The decoding the run was evaluated with (the defaults when it has no evaluation), with
    the given settings replaced."""
    metrics = evaluation_of(run_dir)
    evaluated = {}
    if metrics is not None and metrics.is_file():
        try:
            evaluated = json.loads(metrics.read_text()).get("decoding", {})
        except (json.JSONDecodeError, AttributeError):
            raise UserError(f"{metrics} is corrupt: rerun the run's evaluation") from None
    if not evaluated:
        log.info("no evaluation of %s found: decoding with the default settings", run_dir)
    settings = {**evaluated, **{k: v for k, v in overrides.items() if v is not None}}
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


# Kinds whose model is a PeftModel (a standard adapter folder), and kinds that change the
# model's own weights (a save_pretrained model folder).
PEFT_EXPORTS = ("lora", "ia3", "prefix_tuning", "p_tuning", "adalora", "peft")
MODEL_EXPORTS = ("last_layers", "bitfit")
EXPORTS = PEFT_EXPORTS + MODEL_EXPORTS


def _require_export_format(kind: str) -> None:
    if kind not in EXPORTS:
        raise UserError(f"a {kind} run has no standard export format: its trainable.safetensors "
                        "is the whole of what it adds")


def _protected_folders(run_dir: Path, run: dict, model_dir: Path | None) -> list[Path]:
    """Folders an export must never write into: resources/, the base model, the run itself."""
    base = Path(model_dir or run["base_model"]["dir"])
    folders = [Path("resources"), base, Path(run_dir)]
    folders += [p for p in [*base.absolute().parents, *base.resolve().parents]
                if p.name == "resources"]
    # Resolved: a link to the base model (or any of these) is the folder itself.
    return [f.resolve() for f in folders]


def check_export(run_dir: Path, run: dict, model_dir: Path | None, out_dir: Path,
                 force: bool = False) -> None:
    """Before anything loads: the run's kind has an export format, and out_dir is neither
    inside resources/, the base model or the run, nor (unless forced) a non-empty folder."""
    _require_export_format(run["method"]["kind"])
    target = Path(out_dir).resolve()
    for folder in _protected_folders(run_dir, run, model_dir):
        if target.is_relative_to(folder) or folder.is_relative_to(target):
            raise UserError(f"--export {out_dir}: refusing to write into {folder} (it holds the "
                            "workflow's models and data, or this run): choose another folder")
    if target.exists() and not target.is_dir():
        raise UserError(f"--export {out_dir}: is a file, not a folder")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise UserError(f"--export {out_dir}: the folder is not empty; choose an empty or new "
                        "folder, or pass --force to write over its files")


def export(model, tokenizer, run: dict, out_dir: Path) -> str:
    """The PEFT kinds: a standard PEFT adapter folder; last layers and BitFit (which change the
    model's own weights): a full save_pretrained model folder."""
    out_dir = Path(out_dir)
    kind = run["method"]["kind"]
    _require_export_format(kind)
    if kind in PEFT_EXPORTS:
        model.save_pretrained(out_dir)  # adapter_config.json + adapter_model.safetensors
        return f"PEFT adapter: PeftModel.from_pretrained(base, '{out_dir}')"
    unwrap(model).save_pretrained(out_dir, safe_serialization=True)  # last_layers, bitfit
    tokenizer.save_pretrained(out_dir)
    return f"full model: AutoModelForCausalLM.from_pretrained('{out_dir}')"

