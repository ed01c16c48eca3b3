"""Last-layers fine-tuning: the LM head, optionally the last blocks and the final norm."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from peftsum.errors import UserError
from peftsum.methods.common import MethodParams, decoder_blocks, final_norm, freeze, numel

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Params(MethodParams):
    lr: float = 1e-4
    """AdamW learning rate."""
    n_blocks: int = field(default=0, metadata={"min": 0})
    """How many of the last transformer blocks also train."""
    final_norm: bool = False
    """Whether the final layer norm trains."""


def _is_tied(model: nn.Module) -> bool:
    return model.get_output_embeddings().weight is model.get_input_embeddings().weight


def _untie_head(model: nn.Module) -> None:
    """Give the head its own copy, so that training it leaves the input embeddings frozen."""
    from torch import nn

    head = model.get_output_embeddings()
    log.warning("%s ties its LM head to the input embeddings: untying it; the head's own copy "
                "(%s parameters) counts as added", type(model).__name__, f"{head.weight.numel():,}")
    head.weight = nn.Parameter(head.weight.detach().clone())
    model.config.tie_word_embeddings = False


def _trained_modules(model: nn.Module, params: Params) -> list[nn.Module]:
    blocks = decoder_blocks(model)
    if params.n_blocks > len(blocks):
        raise UserError(f"last_layers: n_blocks = {params.n_blocks}, but "
                        f"{type(model).__name__} has {len(blocks)} blocks")
    modules = [model.get_output_embeddings()] + list(blocks[len(blocks) - params.n_blocks:])
    return modules + ([final_norm(model)] if params.final_norm else [])


def apply(model: nn.Module, tokenizer, params: Params) -> nn.Module:
    freeze(model)
    if _is_tied(model):
        _untie_head(model)
    for module in _trained_modules(model, params):
        module.requires_grad_(True)
    return model


def expected_trainable(model: nn.Module, params: Params) -> tuple[int, str]:
    head, *rest = _trained_modules(model, params)
    head_n, rest_n = numel(head), sum(numel(m) for m in rest)
    parts = [f"head {head_n:,}"]
    if params.n_blocks:
        parts.append(f"{params.n_blocks} blocks x {numel(decoder_blocks(model)[-1]):,}")
    if params.final_norm:
        parts.append(f"final norm {numel(final_norm(model)):,}")
    return head_n + rest_n, " + ".join(parts) + f" = {head_n + rest_n:,}"


def describe(params: Params) -> str:
    parts = ["LM head (untied)"]
    if params.n_blocks:
        parts.append(f"last {params.n_blocks} blocks")
    if params.final_norm:
        parts.append("final norm")
    return " + ".join(parts)
