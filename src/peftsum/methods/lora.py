"""LoRA through PEFT: low-rank adapters on chosen linear layers of a frozen model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from peftsum.errors import UserError
from peftsum.methods.common import MethodParams

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class Params(MethodParams):
    lr: float = 2e-4
    """AdamW learning rate; around 2e-4 works for GPT-2."""
    r: int = field(default=8, metadata={"min": 1})
    """Adapter rank."""
    alpha: int = field(default=32, metadata={"min": 1})
    """Scaling numerator: the update is scaled by alpha / r."""
    dropout: float = field(default=0.1, metadata={"min": 0, "max": 1})
    """Dropout on the adapter input."""
    target_modules: tuple[str, ...] | None = None
    """Module names to adapt; null = PEFT's default for the architecture (GPT-2: c_attn)."""


def targets(model: nn.Module, params: Params) -> list[str]:
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    if params.target_modules:
        return list(params.target_modules)
    model_type = model.config.model_type
    if model_type not in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING:
        raise UserError(f"PEFT has no default LoRA targets for '{model_type}': set target_modules")
    return list(TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING[model_type])


def apply(model: nn.Module, tokenizer, params: Params) -> nn.Module:
    from peft import LoraConfig, get_peft_model
    from transformers.pytorch_utils import Conv1D

    names = targets(model, params)
    # GPT-2's Conv1D stores weights as (in, out): PEFT must be told, or it warns and guesses.
    conv1d = any(isinstance(m, Conv1D) for n, m in model.named_modules() if n.split(".")[-1] in names)
    config = LoraConfig(r=params.r, lora_alpha=params.alpha, lora_dropout=params.dropout,
                        target_modules=names, fan_in_fan_out=conv1d, bias="none",
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)  # freezes the base; only adapters train


def expected_trainable(model: nn.Module, params: Params) -> tuple[int, str]:
    """r x (in + out) per adapted layer; weight.shape is (out, in) or, for GPT-2's Conv1D, (in, out)."""
    names = targets(model, params)
    shapes = [m.weight.shape for n, m in model.named_modules()
              if n.split(".")[-1] in names and hasattr(m, "weight")]
    if not shapes:
        raise UserError(f"LoRA target_modules {names} match no layer of {type(model).__name__}")
    total = sum(params.r * sum(s) for s in shapes)
    per_layer = sorted({sum(s) for s in shapes})
    return total, (f"r x (in + out) over {len(shapes)} layers ({', '.join(names)}): "
                   f"{params.r} x {' / '.join(f'{n:,}' for n in per_layer)} -> {total:,}")


def describe(params: Params) -> str:
    where = ", ".join(params.target_modules) if params.target_modules else "PEFT default targets"
    return f"LoRA adapters r={params.r} on {where}"
