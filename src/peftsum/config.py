"""The experiment config: validated once against the JSON schema, then read as dataclasses."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import ClassVar

import jsonschema
import yaml

from peftsum.errors import UserError


@functools.cache  # read by every validation and every section's dataclass; never mutated
def load_schema() -> dict:
    text = resources.files("peftsum").joinpath("schemas/config.schema.yaml").read_text()
    return yaml.safe_load(text)


def _fill_defaults(validator_class):
    """A validator that writes each property's default into the instance (as Snakemake does)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _fill_defaults(jsonschema.Draft202012Validator)


def _describe(error: jsonschema.ValidationError) -> str:
    key = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        return f"config: {error.message} at '{key}' (allowed keys: {', '.join(allowed)})"
    return f"config: '{key}': {error.message}{_yaml_number_hint(error)}"


def _yaml_number_hint(error: jsonschema.ValidationError) -> str:
    """YAML 1.1 reads 1e-4 (no dot) as a string: say so where a number was wanted (a --config
    override never gets here: typed_overrides reads it as a number)."""
    if (error.validator != "type" or "number" not in _schema_types(error.schema)
            or not isinstance(error.instance, str)
            or not isinstance(_yaml_scalar(error.instance), float)):
        return ""
    return f" (YAML reads {error.instance} as text: write it with a dot, e.g. 1.0e-4)"


def typed_overrides(overrides: dict) -> dict:
    """Snakemake's `--config` values typed as a config file's would be.

    Snakemake reads a nested override (`--config training='{epochs: 1}'`) with YAML's
    BaseLoader, which leaves every value in it a string. Each string is read as a YAML scalar
    where the schema allows the scalar's type (a number, a boolean, null), and so are a method's
    hyperparameters (the schema leaves them to the method's kind, which checks them); a number
    where the schema expects only a string (`--config experiment=2024`) is read as text.
    """
    return _typed(overrides, load_schema(), ())


def _typed(value, schema: dict | None, path: tuple):
    if isinstance(value, dict):
        return {k: _typed(v, _property_schema(schema, k), (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        items = schema.get("items") if isinstance(schema, dict) else None
        return [_typed(v, items, (*path, i)) for i, v in enumerate(value)]
    types = _schema_types(schema)
    if isinstance(value, str) and (types or path[:1] == ("methods",)):
        typed = _yaml_scalar(value)
        return typed if not types or _json_types(typed) & types else value
    if types == {"string"} and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def _json_types(value) -> set:
    """The schema types value satisfies."""
    if value is None:
        return {"null"}
    if isinstance(value, bool):
        return {"boolean"}
    if isinstance(value, int):
        return {"integer", "number"}
    return {"number"} if isinstance(value, float) else {"string"}


def _property_schema(schema: dict | None, key) -> dict | None:
    if not isinstance(schema, dict):
        return None
    if key in schema.get("properties", {}):
        return schema["properties"][key]
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def _schema_types(schema: dict | None) -> set:
    """The JSON types a schema allows (an enum's from its values); empty when it does not say."""
    if not isinstance(schema, dict):
        return set()
    if "enum" in schema:
        return set().union(*(_json_types(v) for v in schema["enum"]))
    kinds = schema.get("type", [])
    return {kinds} if isinstance(kinds, str) else set(kinds)


def _yaml_scalar(text: str):
    """text as a config file's YAML would read it, and 1e-4 (text in YAML 1.1) as a number."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            number = float(text)
        except ValueError:
            return text
        return number if math.isfinite(number) else text
    return value if value is None or isinstance(value, (bool, int, float)) else text


def validate(raw: dict) -> dict:
    """Return a copy of raw with defaults filled in; raise UserError naming the first bad key."""
    config = copy.deepcopy(raw or {})
    check_folder_names(config)  # before the schema, whose pattern message is less plain
    # Two passes: the first fills nested defaults that the second then checks.
    for _ in range(2):
        errors = sorted(_Validator(load_schema()).iter_errors(config), key=lambda e: e.path)
        if errors:
            raise UserError(_describe(errors[0]))
    config["experiment"] = experiment_name(config)
    check_train_sizes(config["data"])
    return config


# The most threads `threads: auto` gives a job: a small model's matmuls gain little beyond it,
# and every machine with this many cores per job then computes the same digits.
AUTO_THREADS_CAP = 8


def job_threads(setting: int | str, cores: int | None, jobs: int) -> int:
    """Each training and evaluation job's CPU threads: the config's count, or for auto the
    cores shared among the `jobs` that can run at once, capped (cores None: a cluster's job,
    whose cores are its own)."""
    if setting != "auto":
        return setting
    if cores is None:
        return AUTO_THREADS_CAP
    return max(1, min(AUTO_THREADS_CAP, cores // max(1, jobs)))


def check_train_sizes(data: dict) -> None:
    """A learning curve's sizes must fit in the training split, where the config fixes its
    size (data.sizes.train; null takes the whole source split, known only at split): else
    every full-size training would run before the curve's first subset failed."""
    whole = data["sizes"]["train"]
    too_large = [n for n in data["train_sizes"] if whole is not None and n > whole]
    if too_large:
        raise UserError(f"config: data.train_sizes {too_large[0]} is larger than the training "
                        f"split (data.sizes.train = {whole})")


def experiment_name(config: dict) -> str:
    """The folder under results/ (logs/, benchmarks/) of a validated config: its `experiment`,
    else <model.name>_<data.name>, so that configs of other models or data never share one."""
    name = config["experiment"] or f"{config['model']['name']}_{config['data']['name']}"
    return safe_folder_name(name, "experiment")


# Config values that become one folder name under resources/ (resources/models/<model.name>);
# `experiment` becomes one under results/.
FOLDER_NAME_KEYS = (("model", "name"), ("data", "name"))


def safe_folder_name(name: str, key: str) -> str:
    """name, when it is one path component that stays inside its parent folder.

    The schema's pattern says the same; this check is what the code relies on, so that a
    schema edit cannot turn '..' into a path that replaces resources/ itself.
    """
    if (not isinstance(name, str) or not name or name.startswith(".") or "/" in name
            or "\\" in name or "\0" in name or Path(name).name != name):
        raise UserError(f"config: {key} must be one folder name (no '/', not starting with '.'), "
                        f"got {name!r}")
    return name


def check_folder_names(config: dict) -> None:
    for section, key in FOLDER_NAME_KEYS:
        if isinstance(config.get(section), dict) and key in config[section]:
            safe_folder_name(config[section][key], f"{section}.{key}")
    if config.get("experiment"):
        safe_folder_name(config["experiment"], "experiment")


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML keeps the last of two equal keys in one mapping: a method written twice would
    silently lose its first entry."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise UserError(f"{self.name}, line {key_node.start_mark.line + 1}: key {key!r} "
                                "appears twice in one mapping (YAML would keep only the last)")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path):
    """A config file's content; UserError for a missing or invalid file or a repeated key."""
    try:
        with open(path) as f:
            return yaml.load(f, Loader=_UniqueKeyLoader)  # a SafeLoader
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except yaml.YAMLError as err:
        raise UserError(f"config file {path} is not valid YAML: {err}") from None


def load(path: str | Path) -> dict:
    return validate(read_yaml(path))


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(canonical(config), sort_keys=True).encode()).hexdigest()[:12]


def canonical(value):
    """The same settings in one form: dict keys sorted, tuples as lists.

    Snakemake compares a rule's params by their repr, so a config written in another key order
    (or a tuple where YAML gives a list) would otherwise rerun finished jobs.
    """
    if isinstance(value, dict):
        return {str(k): canonical(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return value


# What identifies a model or a data set, per source: the other keys hold unused defaults.
MODEL_SOURCE_KEYS = {"hf": ("id", "revision"), "gguf": ("package", "file", "path"),
                     "local": ("path",), "random": ("random",)}
DATA_SOURCE_KEYS = {"hf": ("id", "config_name", "columns"), "csv": ("path", "columns"),
                    "jsonl": ("path", "columns"), "aclsum": ()}


def _identity(section: dict, keys: dict) -> dict:
    keep = ("name", "source", *keys[section["source"]])
    return canonical({k: v for k, v in section.items() if k in keep})


def model_identity(model: dict) -> dict:
    """The settings download_model's output depends on."""
    return _identity(model, MODEL_SOURCE_KEYS)


def data_identity(data: dict) -> dict:
    """The settings download_data's output depends on: the source, not the sampling."""
    return _identity(data, DATA_SOURCE_KEYS)


def training_params(training: dict) -> dict:
    """The settings one training run depends on: every training key but the list of seeds."""
    return canonical({k: v for k, v in training.items() if k != "seeds"})


def decoding_params(evaluation: dict) -> dict:
    """The settings one evaluation depends on: decoding, not which baselines run."""
    return canonical({k: v for k, v in evaluation.items()
                      if k not in ("baselines", "chat_instruction")})


def section_defaults(section: str) -> dict:
    """The schema's default of each key of a top-level section that declares one."""
    properties = load_schema()["properties"][section]["properties"]
    return {k: copy.deepcopy(p["default"]) for k, p in properties.items() if "default" in p}


def _build(cls, values: dict):
    """A section's dataclass from values, the schema's defaults filling the keys values lacks
    (so that a default is declared once, in the schema); keys with no field are ignored."""
    names = {f.name for f in fields(cls)}
    given = {**section_defaults(cls.SECTION), **values}
    return cls(**{k: v for k, v in given.items() if k in names})


# Each field's default is the schema's: build these with from_dict (a partial dict will do).
@dataclass(frozen=True, kw_only=True)
class TemplateConfig:
    """How an example becomes one token sequence."""

    SECTION: ClassVar[str] = "template"
    prefix: str
    suffix: str
    summary_prefix: str
    max_length: int
    max_target_tokens: int

    @classmethod
    def from_dict(cls, values: dict) -> TemplateConfig:
        return _build(cls, values)


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    """Hyperparameters shared by every method; see the schema for each field's meaning."""

    SECTION: ClassVar[str] = "training"
    epochs: int
    max_steps: int | None
    batch_size: int
    grad_accum: int
    warmup_ratio: float
    weight_decay: float
    max_grad_norm: float
    eval_every: int
    eval_samples: int | None
    patience: int | None
    log_every: int
    cpu_bf16: bool | str  # true, false or auto (runtime.precision.cpu_choice)
    checkpoint_every: int
    compile: bool
    attention: str

    @classmethod
    def from_dict(cls, values: dict) -> TrainingConfig:
        return _build(cls, values)


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """Test-set evaluation and decoding settings."""

    SECTION: ClassVar[str] = "evaluation"
    batch_size: int
    # The schema gives it no default: unset, the loss pass takes batch_size.
    loss_batch_size: int | None = None
    max_new_tokens: int
    num_beams: int
    no_repeat_ngram_size: int
    cpu_bf16: bool | str  # true, false or auto (runtime.precision.cpu_choice)

    @classmethod
    def from_dict(cls, values: dict) -> EvalConfig:
        return _build(cls, values)
