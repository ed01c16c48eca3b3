import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from peftsum.models import gpt2_tokenizer


@pytest.fixture(scope="session")
def tokenizer():
    tok = gpt2_tokenizer()
    tok.pad_token = tok.eos_token
    return tok


def gpt2(**sizes) -> GPT2LMHeadModel:
    """A seeded random GPT-2 (GPT-2 small when no sizes are given)."""
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(**sizes))


@pytest.fixture
def tiny_gpt2():
    return gpt2(n_layer=2, n_head=2, n_embd=32, n_positions=128)
