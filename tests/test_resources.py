"""Storing the frozen weights in bf16 once must change nothing but speed and memory; held CPU
memory serves large blocks from the heap instead of fresh mappings."""

import copy
import subprocess
import sys

import pytest
import torch

from peftsum.methods import from_config
from peftsum.runtime.precision import cast_frozen_weights


def _lora_logits_and_grads(model, ids):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(input_ids=ids).logits
    logits.float().logsumexp(-1).mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return logits, grads


def test_frozen_weights_in_bf16_give_the_same_logits_and_gradients(tiny_gpt2, tokenizer):
    model, _ = from_config("lora", {"kind": "lora", "dropout": 0.0, "lr": 1e-3}).wrap(
        tiny_gpt2.eval(), tokenizer)
    cast = copy.deepcopy(model)
    # 2 blocks x (attention in, attention out, MLP in, MLP out) + the tied head.
    assert cast_frozen_weights(cast, torch.bfloat16) == 9
    ids = torch.randint(0, tokenizer.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    logits, grads = _lora_logits_and_grads(model, ids)
    logits_cast, grads_cast = _lora_logits_and_grads(cast, ids)
    assert torch.equal(logits, logits_cast)
    assert grads.keys() == grads_cast.keys() and grads
    for name in grads:
        assert torch.equal(grads[name], grads_cast[name]), name
    trainable = {p.dtype for p in cast.parameters() if p.requires_grad}
    embeddings = cast.get_input_embeddings().weight
    assert trainable == {torch.float32} and embeddings.dtype == torch.float32
    assert cast.get_output_embeddings().weight.dtype == torch.bfloat16  # its own copy


def test_nothing_is_cast_in_full_precision_or_when_everything_trains(tiny_gpt2):
    assert cast_frozen_weights(tiny_gpt2, None) == 0
    assert cast_frozen_weights(tiny_gpt2, torch.bfloat16) == 0  # a fresh model trains everything
    assert {p.dtype for p in tiny_gpt2.parameters()} == {torch.float32}


def test_eager_and_sdpa_attention_give_the_same_loss(tiny_gpt2, tokenizer):
    ids = torch.randint(0, tokenizer.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[0, :5] = 0  # left padding, as in generation batches
    losses = []
    for attention in ("sdpa", "eager"):
        tiny_gpt2.eval().set_attn_implementation(attention)
        labels = ids.clone()
        labels[0, :6] = -100  # nothing predicted from padding, nor the first real token
        losses.append(tiny_gpt2(input_ids=ids, attention_mask=mask, labels=labels).loss)
    torch.testing.assert_close(losses[0], losses[1])


def test_auto_attention_is_eager_only_under_bf16_on_a_cpu():
    from peftsum.runtime.precision import training_attention

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert training_attention("auto", cpu, torch.bfloat16) == "eager"
    assert training_attention("auto", cpu, None) == "sdpa"  # fp32: sdpa was faster there
    assert training_attention("auto", gpu, torch.bfloat16) == "sdpa"
    assert training_attention("eager", cpu, None) == "eager"  # an explicit choice stands


NEW_MAPPINGS_OF_A_LARGE_BLOCK = """
import sys, torch
from peftsum.runtime.precision import hold_freed_cpu_memory
held = hold_freed_cpu_memory() if sys.argv[1] == "hold" else False
def anonymous_mappings():  # /proc/self/maps lines without a path: mmap'd blocks ([heap] has one)
    return {line.split()[0] for line in open("/proc/self/maps") if len(line.split()) == 5}
before = anonymous_mappings()
block = torch.empty(16 * 2**20)  # 64 MiB, alive while the mappings are read again
sizes = [int(end, 16) - int(start, 16)
         for start, end in (r.split("-") for r in anonymous_mappings() - before)]
print(held, sum(size >= 64 * 2**20 for size in sizes))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt")
def test_held_cpu_memory_serves_a_large_block_from_the_heap_not_a_fresh_mapping():
    def run(mode):
        out = subprocess.run([sys.executable, "-c", NEW_MAPPINGS_OF_A_LARGE_BLOCK, mode],
                             capture_output=True, text=True, check=True).stdout.split()
        return out[0] == "True", int(out[1])

    assert run("default") == (False, 1)  # glibc maps it fresh, and unmaps it when freed
    assert run("hold") == (True, 0)
