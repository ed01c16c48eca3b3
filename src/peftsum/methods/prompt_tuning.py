"""Prompt tuning: a trainable soft prompt [n_tokens, d_model] before the input embeddings.

Initialisations compared by Lester et al. (2021): text (a phrase's token embeddings), vocab
(embeddings of tokens drawn from the vocabulary's frequent part) and random (uniform noise).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from peftsum.methods.common import MethodParams, freeze


@dataclass(frozen=True)
class Params(MethodParams):
    lr: float = 3e-2
    """Prompt tuning needs a large learning rate (Lester et al. 2021)."""
    n_tokens: int = 20
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


class SoftPromptModel(nn.Module):
    """Wraps a frozen causal LM; behaves like it for forward() and generate()."""

    def __init__(self, base: nn.Module, prompt: torch.Tensor):
        super().__init__()
        self.base = base
        self.soft_prompt = nn.Parameter(prompt.clone())  # (P, C)

    @property
    def config(self):
        return self.base.config

    def forward(self, input_ids, attention_mask, **kwargs):
        embeds, mask = prepend(self.base, self._prompt(len(input_ids)), input_ids, attention_mask)
        out = self.base(inputs_embeds=embeds, attention_mask=mask, **kwargs)
        if not kwargs.get("logits_to_keep"):  # all positions: drop the prompt's, align with input_ids
            out.logits = out.logits[:, self.soft_prompt.shape[0]:]
        return out

    def _prompt(self, batch_size: int) -> torch.Tensor:
        return self.soft_prompt.expand(batch_size, -1, -1)  # (B, P, C)

    def generate(self, input_ids, attention_mask, **kwargs):
        return generate_after(self.base, self._prompt(len(input_ids)), input_ids, attention_mask,
                              **kwargs)


def prepend(base: nn.Module, prompt: torch.Tensor, input_ids, attention_mask):
    """The prompt's (B, P, C) embeddings before the tokens', and its positions unmasked, before
    any left padding: a row's text then starts at position P whatever its padding."""
    tokens = base.get_input_embeddings()(input_ids)  # (B, T, C)
    ones = attention_mask.new_ones(len(input_ids), prompt.shape[1])
    return torch.cat([prompt.to(tokens.dtype), tokens], 1), torch.cat([ones, attention_mask], 1)


@torch.no_grad()
def generate_after(base: nn.Module, prompt: torch.Tensor, input_ids, attention_mask, **kwargs):
    """Like HF generate on input_ids, with prompt (B, P, C) before them: the input followed by
    the new tokens."""
    embeds, mask = prepend(base, prompt, input_ids, attention_mask)
    # Given only inputs_embeds, a decoder-only HF model returns just the new tokens.
    new_tokens = base.generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)
    return torch.cat([input_ids, new_tokens], 1)


def initial_prompt(model: nn.Module, tokenizer, params: Params) -> torch.Tensor:
    """(P, C) in fp32; vocab and random draw from torch's generator, which the run seeds."""
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
    freeze(model)
    return SoftPromptModel(model, initial_prompt(model, tokenizer, params))


def expected_trainable(model: nn.Module, params: Params) -> tuple[int, str]:
    d = model.get_input_embeddings().embedding_dim
    return params.n_tokens * d, f"n_tokens x d_model = {params.n_tokens} x {d:,} = {params.n_tokens * d:,}"


def describe(params: Params) -> str:
    return f"soft prompt of {params.n_tokens} tokens ({params.init} init)"
