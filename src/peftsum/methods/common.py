"""What every method shares: hyperparameter checks, freezing, saving only what trains.

Importable without torch: the config check (`check_params`) runs before torch, transformers or
peft are imported, so a typo fails in the first second. Functions that need torch import it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from peftsum.errors import UserError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class MethodParams:
    """Hyperparameters every method has.

    Ranges and allowed values are declared on each field as metadata ("min" >=, "gt" >,
    "max" <=, "choices"); the annotation gives the type. A subclass that only changes a default
    keeps the range declared here.
    """

    lr: float = dataclasses.field(default=1e-4, metadata={"gt": 0})
    """AdamW peak learning rate."""

    @property
    def reserved_positions(self) -> int:
        """Context positions the method takes before the text (a soft prompt's length)."""
        return 0

    @property
    def prompt_positions(self) -> int:
        """Positions the method runs through the decoder blocks before the text (a soft
        prompt's), which training's FLOPs count."""
        return self.reserved_positions


# --- hyperparameter checks ------------------------------------------------------------------

_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
               tuple: "a list"}
_PLURALS = {int: "integers", float: "numbers", bool: "booleans", str: "strings"}


def _type_words(kind) -> str:
    base = typing.get_origin(kind) or kind
    items = typing.get_args(kind)
    if base is tuple and items and items[0] in _PLURALS:
        return f"a list of {_PLURALS[items[0]]}"
    return _TYPE_WORDS.get(base, getattr(base, "__name__", str(base)))


def _metadata(params_cls: type, name: str) -> dict:
    """The field's range metadata, from the nearest class in the MRO that declares some."""
    for cls in params_cls.__mro__:
        for f in dataclasses.fields(cls) if dataclasses.is_dataclass(cls) else ():
            if f.name == name and f.metadata:
                return dict(f.metadata)
    return {}


def _split_optional(annotation) -> tuple[object, bool]:
    """(the type inside X | None, whether None is allowed)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else annotation), len(args) < len(
            typing.get_args(annotation))
    return annotation, False


def _convert(value, kind) -> tuple[bool, object]:
    """(whether value is of kind, the value converted): floats take ints and numeric strings."""
    base = typing.get_origin(kind) or kind
    if base is bool:
        return isinstance(value, bool), value
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if base is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                return False, value
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok and math.isfinite(value), float(value) if ok else value
    if base is str:
        return isinstance(value, str), value
    if base is tuple:
        if not isinstance(value, (list, tuple)):
            return False, value
        item = (typing.get_args(kind) or (object,))[0]
        ok = all(isinstance(v, item) for v in value) if item is not object else True
        return ok, tuple(value)
    return isinstance(value, base), value


def _range_words(meta: dict) -> str:
    words = [f"{sign} {meta[key]}" for key, sign in (("min", ">="), ("gt", ">"), ("max", "<="))
             if key in meta]
    return " " + " and ".join(words) if words else ""


def _check_field(kind, meta: dict, value, key: str):
    inner, optional = _split_optional(kind)
    if value is None and optional:
        return None
    ok, converted = _convert(value, inner)
    expected = _type_words(inner)
    if "choices" in meta:
        if not ok or converted not in meta["choices"]:
            choices = ", ".join(map(str, meta["choices"]))
            raise UserError(f"config: {key} must be one of {choices}, got {value!r}")
        return converted
    in_range = ok and all(
        k not in meta or test(converted, meta[k])
        for k, test in (("min", lambda v, b: v >= b), ("gt", lambda v, b: v > b),
                        ("max", lambda v, b: v <= b)))
    if not in_range:
        null = " or null" if optional else ""
        raise UserError(f"config: {key} must be {expected}{_range_words(meta)}{null}, "
                        f"got {value!r}")
    return converted


def check_params(params_cls: type, spec: dict, where: str) -> dict:
    """spec's hyperparameters type- and range-checked against params_cls's fields, converted
    (a float from an int or from a string such as '1e-4', a tuple from a list).

    `where` names the entry in errors, e.g. 'methods.lora'; unknown keys are named too.
    """
    fields = {f.name: f for f in dataclasses.fields(params_cls)}
    unknown = sorted(set(spec) - set(fields))
    if unknown:
        raise UserError(f"config: {where}: unknown key {unknown[0]!r} "
                        f"(allowed: {', '.join(fields)})")
    hints = typing.get_type_hints(params_cls)
    return {name: _check_field(hints[name], _metadata(params_cls, name), value, f"{where}.{name}")
            for name, value in spec.items()}


# --- what trains ----------------------------------------------------------------------------

def freeze(model: torch.nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def save_trainable(model: torch.nn.Module, path, metadata: dict | None = None) -> None:
    """The trainable tensors, with `metadata` (what defines them) as JSON strings in the header."""
    from safetensors.torch import save_file

    save_file(trainable_state(model), str(path),
              metadata={k: json.dumps(v, sort_keys=True) for k, v in (metadata or {}).items()})
    _sort_metadata(path)


def _sort_metadata(path) -> None:
    """safetensors writes its metadata keys in an order that changes from process to process,
    so byte-identical trainings gave files with other sha256 sums: rewrite the header with
    them sorted. The tensors' offsets count from the end of the header, so they stay valid."""
    data = Path(path).read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    if "__metadata__" not in header:
        return
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as safetensors pads it
    Path(path).write_bytes(len(text).to_bytes(8, "little") + text + data[8 + size:])


def check_metadata(path, expected: dict) -> None:
    """Refuse weights whose stored metadata differs from `expected`, naming the first key."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        stored = f.metadata() or {}
    for key, value in expected.items():
        if key not in stored:
            continue  # written before this key was stored: nothing to compare
        saved, value = json.loads(stored[key]), json.loads(json.dumps(value, sort_keys=True))
        if saved != value:
            raise UserError(f"{path} was trained with {_first_difference(key, saved, value)}: "
                            "the run's record was changed or belongs to other weights")


def _first_difference(key: str, saved, given) -> str:
    if isinstance(saved, dict) and isinstance(given, dict):
        for sub in sorted(set(saved) | set(given)):
            if saved.get(sub) != given.get(sub):
                return _first_difference(f"{key}.{sub}", saved.get(sub), given.get(sub))
    return f"{key} = {json.dumps(saved)}, not {json.dumps(given)}"


def load_trainable(model: torch.nn.Module, path, expected: dict | None = None) -> None:
    """Copy saved trainable tensors into a freshly wrapped model; the names must match exactly,
    and the metadata saved with them must match `expected`."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
        check_metadata(path, expected or {})
    except (SafetensorError, OSError) as err:
        raise UserError(f"{path}: not a readable safetensors file ({err})") from None
    params = dict(model.named_parameters())
    wanted = {n for n, p in params.items() if p.requires_grad}
    if set(state) != wanted:
        missing, unexpected = sorted(wanted - set(state)), sorted(set(state) - wanted)
        raise UserError(f"{path} does not match the method: missing {missing[:3]}, "
                        f"unexpected {unexpected[:3]}")
    with torch.no_grad():
        for name, tensor in state.items():
            params[name].copy_(tensor)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The Hugging Face model inside a method's wrapper (a soft-prompt wrapper, a PeftModel)."""
    if hasattr(model, "get_base_model"):
        return model.get_base_model()
    return getattr(model, "base", model)


def decoder_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The transformer blocks of a causal LM (GPT-2 calls them h, Llama layers)."""
    import torch

    base = model.base_model
    for attr in ("h", "layers"):
        if isinstance(getattr(base, attr, None), torch.nn.ModuleList):
            return getattr(base, attr)
    raise UserError(f"cannot find the transformer blocks of {type(model).__name__}")


def final_norm(model: torch.nn.Module) -> torch.nn.Module:
    import torch

    base = model.base_model
    for attr in ("ln_f", "norm"):
        if isinstance(getattr(base, attr, None), torch.nn.Module):
            return getattr(base, attr)
    raise UserError(f"cannot find the final norm of {type(model).__name__}")


def numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
