"""IA3 through PEFT (Liu et al. 2022): learned vectors rescale chosen layers of a frozen model.

An attention layer's output is rescaled (one value per output feature); a feed-forward layer's
input is (one per input feature). Targets and feed-forward modules default to PEFT's mapping
for the architecture (GPT-2: c_attn and mlp.c_proj, the latter feed-forward).
"""

from __future__ import annotations

from dataclasses import dataclass

from peftsum.methods import adapters
from peftsum.methods.common import MethodParams


@dataclass(frozen=True)
class Params(MethodParams):
    lr: float = 3e-3
    """AdamW learning rate; IA3's vectors start at one and want a large one."""
    target_modules: tuple | None = None
    """Module names to rescale; null = PEFT's default for the architecture."""
    feedforward_modules: tuple | None = None
    """Which of target_modules are feed-forward (input rescaled); null = PEFT's default."""


def modules(model, params: Params) -> tuple[list[str], list[str]]:
    """(targets, feed-forward targets)."""
    names = list(params.target_modules or adapters.default_targets(
        model, "TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING", "IA3 target_modules"))
    if params.feedforward_modules is not None:
        feedforward = list(params.feedforward_modules)
    elif params.target_modules:
        feedforward = []
    else:
        feedforward = adapters.default_targets(
            model, "TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING", "IA3 feedforward_modules")
    return names, feedforward  # PEFT checks that feedforward is a subset of names


def apply(model, tokenizer, params: Params):
    from peft import IA3Config

    names, feedforward = modules(model, params)
    return adapters.wrap(model, IA3Config, target_modules=names, feedforward_modules=feedforward,
                         fan_in_fan_out=adapters.uses_conv1d(model, names))


def expected_trainable(model, params: Params) -> tuple[int, str]:
    """out_features per attention target, in_features per feed-forward target."""
    names, feedforward = modules(model, params)
    counts = []
    for name, module in adapters.layers(model, names):
        n_in, n_out = adapters.in_out(module)
        counts.append(n_in if adapters.matches(name, feedforward) else n_out)
    return adapters.summed(counts, "out (in for feed-forward) features")


def describe(params: Params) -> str:
    where = ", ".join(params.target_modules) if params.target_modules else "PEFT default targets"
    return f"IA3 rescaling vectors on {where}"
