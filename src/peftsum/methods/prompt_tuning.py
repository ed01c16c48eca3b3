"""Prompt tuning: a trainable soft prompt [n_tokens, d_model] before the input embeddings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from peftsum.methods.common import MethodParams, freeze

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class Params(MethodParams):
    lr: float = 3e-2
    """Prompt tuning needs a large learning rate (Lester et al. 2021)."""
    n_tokens: int = field(default=20, metadata={"min": 1})
    """Soft-prompt length, in context positions."""
    init_text: str = "Summarize the following article:"
    """Text whose token embeddings, cycled to n_tokens, initialise the prompt (not random noise)."""

    @property
    def reserved_positions(self) -> int:
        return self.n_tokens


def initial_prompt(model: nn.Module, tokenizer, params: Params) -> torch.Tensor:
    import torch

    ids = tokenizer(params.init_text, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]
    cycled = torch.tensor([ids[i % len(ids)] for i in range(params.n_tokens)])
    return model.get_input_embeddings().weight[cycled].detach().float()  # (P, C)


def apply(model: nn.Module, tokenizer, params: Params) -> nn.Module:
    from peftsum.methods.soft_prompt import SoftPromptModel

    freeze(model)
    return SoftPromptModel(model, initial_prompt(model, tokenizer, params))


def expected_trainable(model: nn.Module, params: Params) -> tuple[int, str]:
    d = model.get_input_embeddings().embedding_dim
    return params.n_tokens * d, f"n_tokens x d_model = {params.n_tokens} x {d:,} = {params.n_tokens * d:,}"


def describe(params: Params) -> str:
    return f"soft prompt of {params.n_tokens} tokens"
