"""AdaLoRA through PEFT (Zhang et al. 2023): SVD-shaped adapters P diag(E) Q whose rank budget
moves during training from init_r per layer towards target_r on average, to where it matters.

The loop calls after_optimizer_step (PEFT's update_and_allocate: importance scores from the
step's gradients, then masking of E) after every optimizer step, before the gradients are
cleared, and adds regularization (P and Q kept orthogonal) to the loss, as PEFT's own forward
does when it computes the loss itself. The budget schedule needs the run's length: total_step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from peftsum.errors import UserError
from peftsum.methods import adapters
from peftsum.methods.common import MethodParams


@dataclass(frozen=True)
class Params(MethodParams):
    lr: float = 1e-3
    """AdamW learning rate."""
    init_r: int = field(default=12, metadata={"min": 1})
    """Rank every adapted layer starts with."""
    target_r: int = field(default=8, metadata={"min": 1})
    """Average rank per layer left after the budget is reallocated."""
    alpha: int = field(default=32, metadata={"gt": 0})
    """Scaling numerator (PEFT's lora_alpha)."""
    dropout: float = field(default=0.1, metadata={"min": 0.0, "max": 1.0})
    """Dropout on the adapter input."""
    total_step: int | None = field(default=None, metadata={"min": 1})
    """The run's optimizer steps (required): the budget schedule runs over them."""
    tinit: int = field(default=0, metadata={"min": 0})
    """Steps before the budget starts to shrink."""
    tfinal: int = field(default=0, metadata={"min": 0})
    """Last steps with the final budget fixed."""
    delta_t: int = field(default=1, metadata={"min": 1})
    """Steps between two budget allocations."""
    beta1: float = field(default=0.85, metadata={"min": 0.0, "max": 1.0})
    """EMA coefficient of the importance (sensitivity) scores."""
    beta2: float = field(default=0.85, metadata={"min": 0.0, "max": 1.0})
    """EMA coefficient of their uncertainty."""
    orth_reg_weight: float = field(default=0.5, metadata={"min": 0.0})
    """Weight of the orthogonality penalty on P and Q."""
    target_modules: tuple | None = None
    """Module names to adapt; null = PEFT's default for the architecture (GPT-2: c_attn)."""


def targets(model, params: Params) -> list[str]:
    if params.target_modules:
        return list(params.target_modules)
    return adapters.default_targets(model, "TRANSFORMERS_MODELS_TO_ADALORA_TARGET_MODULES_MAPPING",
                                    "AdaLoRA target_modules")


def apply(model, tokenizer, params: Params):
    from peft import AdaLoraConfig

    if params.total_step is None:
        raise UserError("adalora needs total_step: the run's optimizer steps (training.max_steps, "
                        "or epochs x ceil(ceil(train size / batch_size) / grad_accum))")
    names = targets(model, params)
    return adapters.wrap(model, AdaLoraConfig, init_r=params.init_r, target_r=params.target_r,
                         lora_alpha=params.alpha, lora_dropout=params.dropout,
                         total_step=params.total_step, tinit=params.tinit, tfinal=params.tfinal,
                         deltaT=params.delta_t, beta1=params.beta1, beta2=params.beta2,
                         orth_reg_weight=params.orth_reg_weight, target_modules=names,
                         fan_in_fan_out=adapters.uses_conv1d(model, names))


def after_optimizer_step(model, step: int) -> None:
    """Reallocate the rank budget from this step's gradients (step counts from 0)."""
    model.base_model.update_and_allocate(step)


def regularization(model, params: Params):
    """orth_reg_weight x the mean over P and Q matrices of || P P^T - I ||_F (PEFT's term)."""
    import torch

    norms = []
    for name, p in model.named_parameters():
        if p.requires_grad and ("lora_A" in name or "lora_B" in name):
            gram = p @ p.T if "lora_A" in name else p.T @ p  # (r, r)
            norms.append(torch.linalg.matrix_norm(gram - torch.eye(len(gram), device=p.device)))
    return params.orth_reg_weight * torch.stack(norms).mean()


def expected_trainable(model, params: Params) -> tuple[int, str]:
    """init_r x (in + out + 1) per adapted layer: P, Q and the singular values E."""
    names = targets(model, params)
    counts = [params.init_r * (i + o + 1) for i, o in
              (adapters.in_out(m) for _, m in adapters.layers(model, names))]
    total, formula = adapters.summed(counts, f"init_r x (in + out + 1), init_r={params.init_r}")
    return total, f"{formula} ({', '.join(names)})"


def describe(params: Params) -> str:
    where = ", ".join(params.target_modules) if params.target_modules else "PEFT default targets"
    return f"AdaLoRA rank {params.init_r} -> {params.target_r} on {where}"
