"""What every method shares: freezing, counting and saving only the parameters that train."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from peftsum.errors import UserError


@dataclass(frozen=True)
class MethodParams:
    """Hyperparameters every method has."""

    lr: float = 1e-4
    """AdamW peak learning rate."""

    @property
    def reserved_positions(self) -> int:
        """Context positions the method takes before the text (a soft prompt's length)."""
        return 0


def freeze(model: torch.nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def save_trainable(model: torch.nn.Module, path) -> None:
    save_file(trainable_state(model), str(path))


def load_trainable(model: torch.nn.Module, path) -> None:
    """Copy saved trainable tensors into a freshly wrapped model; the names must match exactly."""
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise UserError(f"{path}: not a readable safetensors file ({err})") from None
    params = dict(model.named_parameters())
    expected = {n for n, p in params.items() if p.requires_grad}
    if set(state) != expected:
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        raise UserError(f"{path} does not match the method: missing {missing[:3]}, "
                        f"unexpected {unexpected[:3]}")
    with torch.no_grad():
        for name, tensor in state.items():
            params[name].copy_(tensor)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The Hugging Face model inside a method's wrapper (a soft-prompt wrapper, a PeftModel)."""
    if hasattr(model, "get_base_model"):
        return model.get_base_model()
    return getattr(model, "base", model)


def decoder_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The transformer blocks of a causal LM (GPT-2 calls them h, Llama layers)."""
    base = model.base_model
    for attr in ("h", "layers"):
        if isinstance(getattr(base, attr, None), torch.nn.ModuleList):
            return getattr(base, attr)
    raise UserError(f"cannot find the transformer blocks of {type(model).__name__}")


def final_norm(model: torch.nn.Module) -> torch.nn.Module:
    base = model.base_model
    for attr in ("ln_f", "norm"):
        if isinstance(getattr(base, attr, None), torch.nn.Module):
            return getattr(base, attr)
    raise UserError(f"cannot find the final norm of {type(model).__name__}")


def numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
