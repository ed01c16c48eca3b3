"""Prefix tuning through PEFT (Li & Liang 2021): trainable keys and values before the text in
every layer's attention, optionally produced by a two-layer MLP (prefix_projection)."""

from __future__ import annotations

from dataclasses import dataclass, field

from peftsum.methods import adapters
from peftsum.methods.common import MethodParams


@dataclass(frozen=True)
class Params(MethodParams):
    lr: float = 1e-2
    """AdamW learning rate; prefixes want a large one (PEFT's examples: 1e-2)."""
    num_virtual_tokens: int = field(default=20, metadata={"min": 1})
    """Prefix length: key/value positions every layer attends to before the text."""
    prefix_projection: bool = False
    """Produce the prefix with an MLP (d -> encoder_hidden_size -> layers x 2 x d) that trains."""
    encoder_hidden_size: int | None = field(default=None, metadata={"min": 1})
    """The MLP's hidden width; null = the key/value width (PEFT's default)."""

    @property
    def reserved_positions(self) -> int:
        return self.num_virtual_tokens  # the text's positions start after the prefix

    @property
    def prompt_positions(self) -> int:
        return 0  # the prefix is keys and values only: no block computes its positions


def kv_dim(config) -> int:
    """Width of one layer's keys (= values): head_dim x key/value heads, as PEFT sizes a prefix
    (grouped-query attention, e.g. Llama's, has fewer key/value heads than query heads)."""
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return head_dim * (getattr(config, "num_key_value_heads", None) or heads)


def apply(model, tokenizer, params: Params):
    from peft import PrefixTuningConfig

    from peftsum.methods.prompt_learning import PrefixTuningModel

    return adapters.wrap(model, PrefixTuningConfig, model_class=PrefixTuningModel,
                         num_virtual_tokens=params.num_virtual_tokens,
                         prefix_projection=params.prefix_projection,
                         encoder_hidden_size=params.encoder_hidden_size)


def expected_trainable(model, params: Params) -> tuple[int, str]:
    """P x (L x 2 x kv) without the MLP; with it P x kv + (kv + 1) h + (h + 1) (L x 2 x kv)."""
    p, layers, kv = params.num_virtual_tokens, model.config.num_hidden_layers, kv_dim(model.config)
    out = layers * 2 * kv
    if not params.prefix_projection:
        return p * out, f"P x (layers x 2 x kv) = {p} x ({layers} x 2 x {kv:,}) = {p * out:,}"
    h = params.encoder_hidden_size or kv
    n = p * kv + (kv + 1) * h + (h + 1) * out
    return n, (f"P x kv + (kv + 1) x h + (h + 1) x (layers x 2 x kv) = {p} x {kv:,} + "
               f"{kv + 1:,} x {h:,} + {h + 1:,} x {out:,} = {n:,}")


def describe(params: Params) -> str:
    mlp = f", MLP-projected (hidden {params.encoder_hidden_size or 'kv width'})" \
        if params.prefix_projection else ""
    return f"prefix of {params.num_virtual_tokens} key/value positions in every layer{mlp}"
