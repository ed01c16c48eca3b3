"""The method registry: a config entry {kind, hyperparameters} becomes a Method.

Each kind is a small module with Params, apply(model, tokenizer, params), expected_trainable and
describe; optionally regularization(model, params) (a term added to the loss) and
after_optimizer_step(model, step) (called after each optimizer step, gradients still there).
The training loop asks the method; methods never import train or evaluate. This package and
every method module import without torch, transformers or peft (functions import them), so that
the config is checked before any of them loads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from peftsum.errors import UserError
from peftsum.methods import (
    adalora,
    bitfit,
    full,
    ia3,
    last_layers,
    lora,
    p_tuning,
    peft_config,
    prefix_tuning,
    prompt_tuning,
)
from peftsum.methods.common import check_params, load_trainable

if TYPE_CHECKING:
    from torch import nn

KINDS: dict[str, ModuleType] = {
    "prompt_tuning": prompt_tuning,
    "lora": lora,
    "last_layers": last_layers,
    "full": full,
    "bitfit": bitfit,
    "ia3": ia3,
    "prefix_tuning": prefix_tuning,
    "p_tuning": p_tuning,
    "adalora": adalora,
    "peft": peft_config,
}


@dataclass(frozen=True)
class ParamCounts:
    trainable: int
    added: int  # parameters the base model did not have (soft prompt, adapters, an untied head)
    total: int
    base_total: int
    formula: str


@dataclass(frozen=True)
class Method:
    name: str
    kind: str
    params: object

    @property
    def module(self) -> ModuleType:
        return KINDS[self.kind]

    def describe(self) -> str:
        return self.module.describe(self.params)

    def hparams(self) -> dict:
        return {"kind": self.kind, **dataclasses.asdict(self.params)}

    def wrap(self, model: nn.Module, tokenizer) -> tuple[nn.Module, ParamCounts]:
        """Freeze the model, add what trains, and check the trainable count against the formula."""
        from peftsum.data.models import count_parameters

        base_total = count_parameters(model)
        expected, formula = self.module.expected_trainable(model, self.params)
        wrapped = self.module.apply(model, tokenizer, self.params)
        trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
        if trainable != expected:
            raise RuntimeError(f"{self.name}: {trainable:,} parameters train, formula says "
                               f"{expected:,} ({formula})")
        total = count_parameters(wrapped)
        return wrapped, ParamCounts(trainable, total - base_total, total, base_total, formula)

    def regularization(self, model: nn.Module):
        """A term the method adds to the training loss (AdaLoRA's orthogonality), or None."""
        term = getattr(self.module, "regularization", None)
        return term(model, self.params) if term else None

    def after_optimizer_step(self, model: nn.Module, step: int) -> None:
        """The method's own per-step update (AdaLoRA's rank budget); step counts from 0."""
        hook = getattr(self.module, "after_optimizer_step", None)
        if hook:
            hook(model, step)

    def weights_metadata(self, base_weights_sha256: str) -> dict:
        """What defines the trained weights, stored beside them and checked when they load."""
        return {"method": self.hparams(), "base_weights_sha256": base_weights_sha256}

    def load_for_inference(self, model: nn.Module, tokenizer, weights,
                           base_weights_sha256: str, extra: dict | None = None) -> nn.Module:
        """The base model with this method's trained weights, ready to generate; refuses weights
        trained with other hyperparameters, on other base weights, or with other `extra`
        metadata (the template).

        LoRA adapters are merged into the frozen weights: the same function with one matmul per
        layer instead of three, which roughly halves LoRA's generation time on a CPU.
        """
        expected = {**self.weights_metadata(base_weights_sha256), **(extra or {})}
        wrapped, _ = self.wrap(model, tokenizer)
        load_trainable(wrapped, weights, expected)
        if hasattr(wrapped, "merge_adapter"):
            wrapped.merge_adapter()
        return wrapped


def from_config(name: str, spec: dict) -> Method:
    """A Method from a config entry, its hyperparameters type- and range-checked by its Params."""
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind not in KINDS:
        raise UserError(f"config: methods.{name}.kind must be one of {', '.join(KINDS)}, got {kind!r}")
    params_cls = KINDS[kind].Params
    return Method(name, kind, params_cls(**check_params(params_cls, spec, f"methods.{name}")))


def all_from_config(config: dict) -> list[Method]:
    return [from_config(name, spec) for name, spec in config["methods"].items()]


def reserved_positions(methods: list[Method]) -> int:
    """Positions every example leaves free, so all methods see the same truncated text."""
    return max((m.params.reserved_positions for m in methods), default=0)
