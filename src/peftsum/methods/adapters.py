"""What the PEFT kinds share: target layers by name, their shapes, and building the PeftModel.

torch, transformers and peft are imported inside the functions, so that the registry (and a
config check) can import every method module without them.
"""

from __future__ import annotations

from peftsum.errors import UserError


def default_targets(model, mapping: str, what: str) -> list[str]:
    """PEFT's default module names for the architecture, from peft.utils.constants.<mapping>."""
    from peft.utils import constants

    model_type = model.config.model_type
    defaults = getattr(constants, mapping)
    if model_type not in defaults:
        raise UserError(f"PEFT has no default {what} for '{model_type}': set them in the config")
    return list(defaults[model_type])


def matches(module_name: str, targets: list[str]) -> bool:
    """PEFT's rule for a list of target names: the full name or a dotted suffix of it."""
    return any(module_name == t or module_name.endswith("." + t) for t in targets)


def layers(model, targets: list[str], what: str = "target_modules") -> list[tuple[str, object]]:
    """(name, module) of the linear layers (Linear, GPT-2's Conv1D) that targets name."""
    import torch
    from transformers.pytorch_utils import Conv1D

    found = [(n, m) for n, m in model.named_modules()
             if matches(n, targets) and isinstance(m, (torch.nn.Linear, Conv1D))]
    if not found:
        raise UserError(f"{what} {targets} match no linear layer of {type(model).__name__}")
    return found


def in_out(module) -> tuple[int, int]:
    """(in_features, out_features); GPT-2's Conv1D stores its weight as (in, out)."""
    from transformers.pytorch_utils import Conv1D

    rows, cols = module.weight.shape
    return (rows, cols) if isinstance(module, Conv1D) else (cols, rows)


def uses_conv1d(model, targets: list[str]) -> bool:
    """Whether the targets are GPT-2 Conv1D layers: PEFT must be told (fan_in_fan_out) or it
    warns and guesses."""
    from transformers.pytorch_utils import Conv1D

    return any(isinstance(m, Conv1D) for _, m in layers(model, targets))


def wrap(model, config_class, model_class=None, **kwargs):
    """The PeftModel of config_class(**kwargs) on model (only the adapter trains); PEFT's
    refusals of a setting become one-line errors. model_class: a PeftModelForCausalLM subclass
    to build instead of the one get_peft_model picks."""
    from peft import get_peft_model

    try:
        config = config_class(task_type="CAUSAL_LM", **kwargs)
        if model_class is None:
            return get_peft_model(model, config)
        config.base_model_name_or_path = getattr(model, "name_or_path", None) or None
        return model_class(model, config)
    except (ValueError, TypeError, NotImplementedError) as err:
        raise UserError(f"PEFT {config_class.__name__}: {str(err).splitlines()[0]}") from None


def summed(counts: list[int], label: str) -> tuple[int, str]:
    """A total and its formula over per-layer counts (distinct values listed once)."""
    total = sum(counts)
    distinct = " / ".join(f"{n:,}" for n in sorted(set(counts)))
    return total, f"{label} over {len(counts)} layers: {distinct} -> {total:,}"
