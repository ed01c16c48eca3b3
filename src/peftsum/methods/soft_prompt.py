"""The soft-prompt wrapper of prompt tuning, and the prepending that P-tuning shares (kept apart
so that prompt_tuning imports without torch)."""

from __future__ import annotations

import torch
from torch import nn


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
