"""P-tuning through PEFT (Liu et al. 2021): virtual-token embeddings before the text, produced
by a prompt encoder (an MLP, or a bidirectional LSTM with an MLP head) that trains."""

from __future__ import annotations

from dataclasses import dataclass, field

from peftsum.methods import adapters
from peftsum.methods.common import MethodParams


@dataclass(frozen=True)
class Params(MethodParams):
    lr: float = 1e-2
    """AdamW learning rate; PEFT's P-tuning examples use 1e-2 to 1e-3."""
    num_virtual_tokens: int = field(default=20, metadata={"min": 1})
    """Virtual tokens, in context positions."""
    encoder: str = field(default="MLP", metadata={"choices": ("MLP", "LSTM")})
    """The prompt encoder: MLP (3 linear layers) or LSTM (bidirectional, then a 2-layer MLP)."""
    encoder_hidden_size: int | None = field(default=None, metadata={"min": 1})
    """The encoder's hidden width; null = d_model (PEFT's default)."""
    encoder_num_layers: int = field(default=2, metadata={"min": 1})
    """LSTM layers (PEFT's MLP always has 3 linear layers and ignores this)."""
    encoder_dropout: float = field(default=0.0, metadata={"min": 0.0, "max": 1.0})
    """Dropout between the LSTM's layers."""

    @property
    def reserved_positions(self) -> int:
        return self.num_virtual_tokens


def apply(model, tokenizer, params: Params):
    from peft import PromptEncoderConfig

    from peftsum.methods.prompt_learning import PromptEncoderModel

    return adapters.wrap(model, PromptEncoderConfig, model_class=PromptEncoderModel,
                         num_virtual_tokens=params.num_virtual_tokens,
                         encoder_reparameterization_type=params.encoder,
                         encoder_hidden_size=params.encoder_hidden_size,
                         encoder_num_layers=params.encoder_num_layers,
                         encoder_dropout=params.encoder_dropout)


def _lstm(d: int, h: int, layers: int) -> int:
    """A bidirectional LSTM: per direction and layer 4 gates x h x (input + h + 2 biases)."""
    return sum(2 * 4 * h * ((d if i == 0 else 2 * h) + h + 2) for i in range(layers))


def expected_trainable(model, params: Params) -> tuple[int, str]:
    p, d = params.num_virtual_tokens, model.get_input_embeddings().embedding_dim
    h = params.encoder_hidden_size or d
    if params.encoder == "MLP":
        mlp = (d + 1) * h + (h + 1) * h + (h + 1) * d
        n = p * d + mlp
        return n, (f"P x d + MLP (d+1) h + (h+1) h + (h+1) d = {p} x {d:,} + {mlp:,} = {n:,}"
                   f" (h = {h:,})")
    lstm = _lstm(d, h, params.encoder_num_layers)
    head = (2 * h + 1) * 2 * h + (2 * h + 1) * d
    n = p * d + lstm + head
    return n, (f"P x d + BiLSTM({params.encoder_num_layers} layers, h = {h:,}) + MLP head "
               f"(2h+1) 2h + (2h+1) d = {p * d:,} + {lstm:,} + {head:,} = {n:,}")


def describe(params: Params) -> str:
    return f"{params.num_virtual_tokens} virtual tokens from an {params.encoder} prompt encoder"
