"""BitFit (Ben Zaken et al. 2022): only the model's bias terms train, norms' biases included."""

from __future__ import annotations

from dataclasses import dataclass

from peftsum.errors import UserError
from peftsum.methods.common import MethodParams


@dataclass(frozen=True)
class Params(MethodParams):
    lr: float = 1e-3
    """AdamW learning rate; biases want a larger one than full fine-tuning."""


def biases(model) -> list[tuple[str, object]]:
    """(name, parameter) of every bias; a model without any cannot do BitFit."""
    found = [(n, p) for n, p in model.named_parameters() if n.rsplit(".", 1)[-1] == "bias"]
    if not found:
        raise UserError(f"bitfit: {type(model).__name__} has no bias terms (e.g. Llama's "
                        "layers have none): choose another method")
    return found


def apply(model, tokenizer, params: Params):
    model.requires_grad_(False)
    for _, p in biases(model):
        p.requires_grad_(True)
    return model


def expected_trainable(model, params: Params) -> tuple[int, str]:
    found = biases(model)
    n = sum(p.numel() for _, p in found)
    return n, f"all bias terms: {len(found)} tensors, {n:,} parameters"


def describe(params: Params) -> str:
    return "bias terms only (BitFit)"
