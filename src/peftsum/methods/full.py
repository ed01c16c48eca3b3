"""Full fine-tuning: every weight trains. The upper reference, at the cost of a whole model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from peftsum.methods.common import MethodParams

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class Params(MethodParams):
    lr: float = 5e-5
    """AdamW learning rate; full fine-tuning wants a small one."""


def apply(model: nn.Module, tokenizer, params: Params) -> nn.Module:
    model.requires_grad_(True)
    return model


def expected_trainable(model: nn.Module, params: Params) -> tuple[int, str]:
    from peftsum.data.models import count_parameters

    n = count_parameters(model)
    return n, f"all parameters = {n:,}"


def describe(params: Params) -> str:
    return "every weight (full fine-tuning)"
