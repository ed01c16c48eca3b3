"""LoRA through PEFT: low-rank adapters on chosen linear layers of a frozen model.

Options of the same kind: DoRA (use_dora: the update's direction and magnitude learned apart, one
magnitude vector per adapted layer), rank-stabilised scaling (use_rslora: alpha / sqrt(r)
instead of alpha / r) and PEFT's initialisations (init). PiSSA and OLoRA start the adapter
from the base weight's principal directions and leave the base holding the residual, which
they compute again, identically, whenever the method wraps a fresh base (restore).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from peftsum.errors import UserError
from peftsum.methods import adapters
from peftsum.methods.common import MethodParams

# Our names for PEFT's init_lora_weights values that need no data pass and no extra package.
INITS = {"default": True, "gaussian": "gaussian", "pissa": "pissa", "olora": "olora",
         "orthogonal": "orthogonal"}


@dataclass(frozen=True)
class Params(MethodParams):
    lr: float = 2e-4
    """AdamW learning rate; around 2e-4 works for GPT-2."""
    r: int = field(default=8, metadata={"min": 1})
    """Adapter rank."""
    alpha: int = field(default=32, metadata={"min": 1})
    """Scaling numerator: the update is scaled by alpha / r."""
    dropout: float = field(default=0.1, metadata={"min": 0, "max": 1})
    """Dropout on the adapter input."""
    target_modules: tuple[str, ...] | None = None
    """Module names to adapt; null = PEFT's default for the architecture (GPT-2: c_attn)."""
    use_dora: bool = False
    """DoRA: also learn each adapted layer's weight-column magnitudes (out_features each)."""
    use_rslora: bool = False
    """Rank-stabilised LoRA: scale by alpha / sqrt(r)."""
    init: str = field(default="default", metadata={"choices": tuple(INITS)})
    """Adapter initialisation: default (A Kaiming, B zero), gaussian, pissa, olora or orthogonal."""


def targets(model, params: Params) -> list[str]:
    if params.target_modules:
        return list(params.target_modules)
    return adapters.default_targets(model, "TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING",
                                    "LoRA target_modules")


def _check_init(params: Params, conv1d: bool) -> None:
    if params.init not in INITS:
        raise UserError(f"lora init must be one of {', '.join(INITS)}, got {params.init!r}")
    if params.init == "olora" and conv1d:
        raise UserError("lora init olora does not support GPT-2's Conv1D layers (PEFT's OLoRA "
                        "assumes (out, in) weights): use pissa or another init")


def apply(model, tokenizer, params: Params):
    from peft import LoraConfig

    from peftsum.methods import cpu_dropout  # imports torch: the config check must not

    names = targets(model, params)
    conv1d = adapters.uses_conv1d(model, names)
    _check_init(params, conv1d)
    model = adapters.wrap(model, LoraConfig, r=params.r, lora_alpha=params.alpha,
                          lora_dropout=params.dropout, target_modules=names,
                          fan_in_fan_out=conv1d, bias="none", use_dora=params.use_dora,
                          use_rslora=params.use_rslora, init_lora_weights=INITS[params.init])
    cpu_dropout.use_in_lora_layers(model)
    return model


def expected_trainable(model, params: Params) -> tuple[int, str]:
    """r x (in + out) per adapted layer, + out with DoRA's magnitude vector."""
    names = targets(model, params)
    dims = [adapters.in_out(m) for _, m in adapters.layers(model, names)]
    counts = [params.r * (i + o) + (o if params.use_dora else 0) for i, o in dims]
    label = "r x (in + out) + out (DoRA)" if params.use_dora else "r x (in + out)"
    total, formula = adapters.summed(counts, f"{label}, r={params.r}")
    return total, f"{formula} ({', '.join(names)})"


def describe(params: Params) -> str:
    where = ", ".join(params.target_modules) if params.target_modules else "PEFT default targets"
    variant = "DoRA" if params.use_dora else "LoRA"
    extras = [x for x, on in (("rsLoRA scaling", params.use_rslora),
                              (f"{params.init} init", params.init != "default")) if on]
    return f"{variant} adapters r={params.r} on {where}" + "".join(f", {x}" for x in extras)
