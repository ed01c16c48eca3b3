import pytest
import torch
import torch.nn.functional as F

from peftsum.data.batches import collate
from peftsum.methods import from_config
from peftsum.training.loss import summary_nll

EXAMPLES = [{"input_ids": list(range(100, 130)), "source_len": 20},
            {"input_ids": list(range(200, 215)), "source_len": 9}]


def full_logits_nll(model, batch):
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = batch["labels"][:, 1:]
    nll = F.cross_entropy(logits[:, :-1].flatten(0, 1), targets.flatten(), ignore_index=-100,
                          reduction="sum")
    return nll, int((targets != -100).sum())


@pytest.mark.parametrize("spec", [None, {"kind": "prompt_tuning", "n_tokens": 4}, {"kind": "lora"},
                                  {"kind": "last_layers"}])
def test_logits_from_the_first_summary_position_give_the_full_loss(tiny_gpt2, tokenizer, spec):
    model = tiny_gpt2 if spec is None else from_config("m", spec).wrap(tiny_gpt2, tokenizer)[0]
    model.eval()
    batch = collate(EXAMPLES, tokenizer.pad_token_id)
    with torch.no_grad():
        expected, expected_n = full_logits_nll(model, batch)
        got, n = summary_nll(model, batch)
    assert n == expected_n == (30 - 20) + (15 - 9)  # every summary token, EOS included
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_the_loss_pass_fills_no_kv_cache(tiny_gpt2, tokenizer, monkeypatch):
    from transformers import cache_utils

    updates = []
    update = cache_utils.DynamicLayer.update
    monkeypatch.setattr(cache_utils.DynamicLayer, "update",
                        lambda self, *a, **k: updates.append(1) or update(self, *a, **k))
    summary_nll(tiny_gpt2, collate(EXAMPLES, tokenizer.pad_token_id))
    assert updates == []  # the config's use_cache would copy every layer's keys and values
