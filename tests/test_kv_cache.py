import pytest
import torch
from conftest import gpt2
from transformers import LlamaConfig, LlamaForCausalLM

from peftsum.evaluation.kv_cache import GrowingLayer, growing_cache
from peftsum.runtime.precision import autocast, cast_frozen_weights


def tiny_llama() -> LlamaForCausalLM:
    """RoPE: under bf16 autocast its keys come out fp32 and its values bf16."""
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=2, num_attention_heads=4,
                                        num_key_value_heads=2, max_position_embeddings=128))


def test_layer_appends_in_place_and_equals_concatenation():
    layer, parts = GrowingLayer(reserve=3), [torch.randn(2, 2, n, 4) for n in (5, 1, 1, 1, 1)]
    pointers = []
    for part in parts:
        keys, values = layer.update(part, -part)
        pointers.append(keys.data_ptr())
    assert torch.equal(keys, torch.cat(parts, dim=-2)) and torch.equal(values, -keys)
    # the prompt + 3 reserved tokens share one buffer; the 4th new token needs a new one
    assert len(set(pointers[:4])) == 1 and pointers[4] != pointers[0]


@pytest.mark.parametrize("make_model", [lambda: gpt2(n_layer=2, n_head=2, n_embd=32),
                                        tiny_llama], ids=["gpt2", "llama"])
@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("num_beams, reserve", [(1, 12), (1, 2), (3, 12)],
                         ids=["greedy", "greedy-regrowing", "beam"])
def test_generation_identical_to_dynamic_cache(make_model, bf16, num_beams, reserve):
    model = make_model().eval()
    dtype = torch.bfloat16 if bf16 else None
    if bf16:
        cast_frozen_weights(model, dtype)
    ids = torch.randint(1, 100, (3, 9))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # left padding, as evaluation batches have
    kwargs = {"input_ids": ids, "attention_mask": mask, "max_new_tokens": 12, "do_sample": False,
              "num_beams": num_beams, "pad_token_id": 0, "eos_token_id": None}
    with torch.no_grad(), autocast(torch.device("cpu"), dtype):
        expected = model.generate(**kwargs)
        cache = growing_cache(reserve)
        got = model.generate(**kwargs, past_key_values=cache)
    assert torch.equal(got, expected)
    if bf16:  # keys kept in the dtype attention casts them to anyway
        assert {layer.keys.dtype for layer in cache.layers} == {torch.bfloat16}
