import math

import pytest
import torch

from peftsum.methods import from_config
from peftsum.methods.cpu_dropout import CpuDropout, keep_mask


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
def test_the_mask_keeps_each_element_with_probability_one_minus_p(p):
    torch.manual_seed(0)
    n = 1_000_003  # not a multiple of the four elements a draw gives
    kept = keep_mask(torch.Size([n]), p).double().mean().item()
    assert abs(kept - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)


def test_the_four_elements_of_a_draw_are_not_correlated():
    torch.manual_seed(0)
    mask = keep_mask(torch.Size([400_000, 4]), 0.5).double()
    corr = torch.corrcoef(mask.T)
    assert (corr - torch.eye(4, dtype=corr.dtype)).abs().max() < 0.01


def test_cpu_dropout_scales_the_kept_elements_and_its_gradient_is_the_same_mask():
    x = torch.randn(64, 300, requires_grad=True)
    torch.manual_seed(1)
    out = CpuDropout(0.2).train()(x)
    out.sum().backward()
    kept = out != 0
    assert 0.75 < kept.double().mean().item() < 0.85
    assert torch.allclose(out[kept], x[kept] / 0.8)
    assert torch.allclose(x.grad, kept.float() / 0.8)
    torch.manual_seed(1)
    assert torch.equal(CpuDropout(0.2).train()(x), out)  # seeded: the same mask again


def test_cpu_dropout_is_the_identity_in_eval_mode():
    x = torch.randn(8, 16)
    assert torch.equal(CpuDropout(0.3).eval()(x), x)


def test_lora_layers_drop_out_with_cpu_dropout(tiny_gpt2, tokenizer):
    wrapped, _ = from_config("lora", {"kind": "lora", "dropout": 0.1}).wrap(tiny_gpt2, tokenizer)
    dropouts = [d for m in wrapped.modules() for d in getattr(m, "lora_dropout", {}).values()]
    assert dropouts and all(type(d) is CpuDropout and d.p == 0.1 for d in dropouts)
