"""The soft-prompt wrapper of prompt tuning (kept apart so prompt_tuning imports without torch)."""

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
