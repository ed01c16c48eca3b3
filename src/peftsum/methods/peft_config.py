"""Any other PEFT method by its config class and keyword arguments (VeRA, LoHa, LoKr, FourierFT,
LN tuning, ...), for what has no kind of its own. PEFT decides what trains; the count is checked
against PEFT's own get_nb_trainable_parameters() for the same config on a weightless (meta
device) copy of the architecture."""

from __future__ import annotations

from dataclasses import dataclass, field

from peftsum.errors import UserError
from peftsum.methods import adapters
from peftsum.methods.common import MethodParams

# Kinds of their own: prompt learning needs our generation (prompt_learning.py), AdaLoRA the
# loop's per-step hook.
OWN_KINDS = {"PREFIX_TUNING": "prefix_tuning", "P_TUNING": "p_tuning",
             "PROMPT_TUNING": "prompt_tuning", "ADALORA": "adalora", "LORA": "lora",
             "IA3": "ia3"}


@dataclass(frozen=True)
class Params(MethodParams):
    lr: float = 1e-3
    """AdamW learning rate."""
    config: str = ""
    """PEFT config class (e.g. VeraConfig, LoHaConfig, LoKrConfig) or PEFT type (VERA, LOHA)."""
    kwargs: dict = field(default_factory=dict)
    """Its keyword arguments (task_type is always CAUSAL_LM)."""


def config_class(params: Params):
    """The PEFT config class params name; prompt learning and AdaLoRA have kinds of their own."""
    import peft
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    by_type = {t.upper(): c for t, c in PEFT_TYPE_TO_CONFIG_MAPPING.items()}
    cls = by_type.get(params.config.upper()) or getattr(peft, params.config, None)
    if not (isinstance(cls, type) and issubclass(cls, peft.PeftConfig) and cls is not peft.PeftConfig):
        raise UserError(f"peft config {params.config!r} is neither a PEFT config class "
                        "(e.g. VeraConfig) nor a PEFT type (e.g. VERA)")
    peft_type = next((t for t, c in by_type.items() if c is cls), "")
    if peft_type in OWN_KINDS:
        raise UserError(f"peft config {params.config}: use kind {OWN_KINDS[peft_type]} instead")
    return cls


def apply(model, tokenizer, params: Params):
    return adapters.wrap(model, config_class(params), **params.kwargs)


def expected_trainable(model, params: Params) -> tuple[int, str]:
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):  # the architecture without weights: no memory, no init cost
        shadow = AutoModelForCausalLM.from_config(model.config)
        n = adapters.wrap(shadow, config_class(params), **params.kwargs).get_nb_trainable_parameters()[0]
    return n, f"PEFT's get_nb_trainable_parameters() for {params.config} = {n:,}"


def describe(params: Params) -> str:
    return f"PEFT {params.config}" + "".join(f", {k}={v}" for k, v in params.kwargs.items())
