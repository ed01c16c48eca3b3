"""Prompt tuning: a trainable soft prompt [n_tokens, d_model] before the input embeddings."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from peftsum.methods.common import MethodParams, freeze


@dataclass(frozen=True)
class Params(MethodParams):
    lr: float = 3e-2
    """Prompt tuning needs a large learning rate (Lester et al. 2021)."""
    n_tokens: int = 20
    """Soft-prompt length, in context positions."""
    init_text: str = "Summarize the following article:"
    """Text whose token embeddings, cycled to n_tokens, initialise the prompt (not random noise)."""

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

    def _embed(self, input_ids, attention_mask):
        tokens = self.base.get_input_embeddings()(input_ids)  # (B, T, C)
        prompt = self.soft_prompt.to(tokens.dtype).expand(len(input_ids), -1, -1)  # (B, P, C)
        ones = attention_mask.new_ones(len(input_ids), prompt.shape[1])
        return torch.cat([prompt, tokens], 1), torch.cat([ones, attention_mask], 1)

    def forward(self, input_ids, attention_mask, **kwargs):
        embeds, mask = self._embed(input_ids, attention_mask)
        out = self.base(inputs_embeds=embeds, attention_mask=mask, **kwargs)
        if not kwargs.get("logits_to_keep"):  # all positions: drop the prompt's, align with input_ids
            out.logits = out.logits[:, self.soft_prompt.shape[0]:]
        return out

    @torch.no_grad()
    def generate(self, input_ids, attention_mask, **kwargs):
        """Like HF generate on input_ids: returns the input followed by the new tokens."""
        embeds, mask = self._embed(input_ids, attention_mask)
        # Given only inputs_embeds, a decoder-only HF model returns just the new tokens.
        new_tokens = self.base.generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)
        return torch.cat([input_ids, new_tokens], 1)


def initial_prompt(model: nn.Module, tokenizer, params: Params) -> torch.Tensor:
    ids = tokenizer(params.init_text, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]
    cycled = torch.tensor([ids[i % len(ids)] for i in range(params.n_tokens)])
    return model.get_input_embeddings().weight[cycled].detach().float()  # (P, C)


def apply(model: nn.Module, tokenizer, params: Params) -> nn.Module:
    freeze(model)
    return SoftPromptModel(model, initial_prompt(model, tokenizer, params))


def expected_trainable(model: nn.Module, params: Params) -> tuple[int, str]:
    d = model.get_input_embeddings().embedding_dim
    return params.n_tokens * d, f"n_tokens x d_model = {params.n_tokens} x {d:,} = {params.n_tokens * d:,}"


def describe(params: Params) -> str:
    return f"soft prompt of {params.n_tokens} tokens"
