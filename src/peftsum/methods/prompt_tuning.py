"""Prompt tuning: a trainable soft prompt [n_tokens, d_model] before the input embeddings.

Initialisations compared by Lester et al. (2021): text (a phrase's token embeddings), vocab
(embeddings of tokens drawn from the vocabulary's frequent part) and random (uniform noise).
"""

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
    init: str = field(default="text", metadata={"choices": ("text", "vocab", "random")})
    """Initialisation: text (init_text's embeddings), vocab (embeddings of tokens drawn from
    ids below vocab_top) or random (uniform in +-init_range)."""
    init_text: str = "Summarize the following article:"
    """Text whose token embeddings, cycled to n_tokens, initialise the prompt (init text)."""
    vocab_top: int = field(default=5000, metadata={"min": 1})
    """init vocab draws from ids below this: BPE vocabularies list frequent merges first."""
    init_range: float = field(default=0.5, metadata={"gt": 0})
    """init random: uniform in [-init_range, init_range] (0.5 as in Lester et al.)."""

    @property
    def reserved_positions(self) -> int:
        return self.n_tokens


def initial_prompt(model: nn.Module, tokenizer, params: Params) -> torch.Tensor:
    """(P, C) in fp32; vocab and random draw from torch's generator, which the run seeds."""
    import torch

    weight = model.get_input_embeddings().weight
    if params.init == "random":
        return torch.empty(params.n_tokens, weight.shape[1]).uniform_(-params.init_range,
                                                                      params.init_range)
    if params.init == "vocab":
        ids = torch.randint(min(params.vocab_top, weight.shape[0]), (params.n_tokens,))
    else:
        text = tokenizer(params.init_text, add_special_tokens=False)["input_ids"]
        text = text or [tokenizer.eos_token_id]
        ids = torch.tensor([text[i % len(text)] for i in range(params.n_tokens)])
    return weight[ids].detach().float()


def apply(model: nn.Module, tokenizer, params: Params) -> nn.Module:
    from peftsum.methods.soft_prompt import SoftPromptModel

    freeze(model)
    return SoftPromptModel(model, initial_prompt(model, tokenizer, params))


def expected_trainable(model: nn.Module, params: Params) -> tuple[int, str]:
    d = model.get_input_embeddings().embedding_dim
    return params.n_tokens * d, f"n_tokens x d_model = {params.n_tokens} x {d:,} = {params.n_tokens * d:,}"


def describe(params: Params) -> str:
    return f"soft prompt of {params.n_tokens} tokens ({params.init} init)"
