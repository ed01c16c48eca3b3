"""PEFT's prompt-learning models (prefix tuning, P-tuning) made to generate like our own kinds.

Imported only when such a model is built: it subclasses PEFT's PeftModelForCausalLM. Training
uses PEFT's forward unchanged; only generation differs:
- prefix tuning: PEFT puts the prefix keys and values into a fresh DynamicCache at the first
  step, dropping the cache generate() was given; here they go into that cache instead, so that
  evaluation's in-place cache (kv_cache.py) holds prefix, prompt and new tokens.
- P-tuning: PEFT's generate drops the position ids, so a left-padded row's text sits at other
  positions than in training (batched output differed from one-at-a-time); here the virtual
  tokens go before the padding, as for our soft prompt, and the mask gives the positions.
"""

from __future__ import annotations

import torch
from peft import PeftModelForCausalLM
from transformers import Cache

from peftsum.methods.soft_prompt import generate_after


class PrefixTuningModel(PeftModelForCausalLM):
    def prepare_inputs_for_generation(self, *args, **kwargs):
        given = kwargs.get("past_key_values")
        inputs = super().prepare_inputs_for_generation(*args, **kwargs)
        prefix = inputs.get("past_key_values")
        if isinstance(given, Cache) and prefix is not given and not given.get_seq_length():
            for index, layer in enumerate(prefix.layers):  # (B, heads, P, head_dim) each
                given.update(layer.keys, layer.values, index)
            inputs["past_key_values"] = given
        return inputs


class PromptEncoderModel(PeftModelForCausalLM):
    def get_prompt(self, batch_size: int, task_ids=None, max_cache_len=None):
        encoder = self.prompt_encoder[self.active_adapter]
        if not (torch.is_autocast_enabled("cpu") and hasattr(encoder, "lstm_head")):
            return super().get_prompt(batch_size, task_ids, max_cache_len)
        # oneDNN has no bf16 LSTM: the (small) encoder runs in fp32, its weights too (evaluation
        # stores frozen Linear weights in bf16, precision.cast_frozen_weights).
        with torch.autocast("cpu", enabled=False):
            encoder.float()
            return super().get_prompt(batch_size, task_ids, max_cache_len)

    def generate(self, input_ids, attention_mask, **kwargs):
        prompt = self.get_prompt(batch_size=len(input_ids))  # (B, P, C) from the prompt encoder
        return generate_after(self.get_base_model(), prompt, input_ids, attention_mask, **kwargs)
