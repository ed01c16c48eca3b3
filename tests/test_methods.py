import copy

import pytest
import torch
from conftest import gpt2, two_examples

from peftsum.config import TrainingConfig
from peftsum.data.batches import collate
from peftsum.methods import from_config
from peftsum.methods.common import load_trainable, save_trainable
from peftsum.training.loop import Trainer
from peftsum.training.loss import summary_nll

GPT2_SMALL = 124_439_808  # FACTS.md
WTE = 50257 * 768


@pytest.mark.parametrize(("spec", "trainable", "added"), [
    ({"kind": "prompt_tuning", "n_tokens": 20}, 20 * 768, 20 * 768),
    ({"kind": "lora", "r": 8, "target_modules": ["c_attn"]}, 294_912, 294_912),
    ({"kind": "last_layers"}, WTE, WTE),  # the untied head is an added copy of wte
    ({"kind": "last_layers", "n_blocks": 2, "final_norm": True}, WTE + 2 * 7_087_872 + 1_536, WTE),
    ({"kind": "full"}, GPT2_SMALL, 0),
])
def test_parameter_counts_on_gpt2_small(tokenizer, spec, trainable, added):
    model = gpt2()
    wrapped, counts = from_config("m", spec).wrap(model, tokenizer)
    assert counts.base_total == GPT2_SMALL
    assert counts.trainable == trainable
    assert sum(p.numel() for p in wrapped.parameters() if p.requires_grad) == trainable
    assert counts.added == added
    assert counts.total == GPT2_SMALL + added


def test_lora_trains_only_adapters(tiny_gpt2, tokenizer):
    wrapped, _ = from_config("lora", {"kind": "lora"}).wrap(tiny_gpt2, tokenizer)
    names = [n for n, p in wrapped.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n and "c_attn" in n for n in names)


def test_last_layers_trains_named_modules(tiny_gpt2, tokenizer):
    spec = {"kind": "last_layers", "n_blocks": 1, "final_norm": True}
    wrapped, _ = from_config("ll", spec).wrap(tiny_gpt2, tokenizer)
    names = {n.split(".")[0] + "." + n.split(".")[1] for n, p in wrapped.named_parameters()
             if p.requires_grad}
    assert names == {"lm_head.weight", "transformer.h", "transformer.ln_f"}
    assert all(n.startswith("transformer.h.1.") for n, p in wrapped.named_parameters()
               if p.requires_grad and n.startswith("transformer.h"))


def _batch(tokenizer):
    return collate(two_examples(tokenizer), tokenizer.pad_token_id)


def _train_step(model, batch):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2,
                                  weight_decay=0.1)
    nll, n = summary_nll(model, batch)
    (nll / n).backward()
    optimizer.step()


KINDS = [{"kind": "prompt_tuning", "n_tokens": 4}, {"kind": "lora"},
         {"kind": "last_layers", "n_blocks": 1, "final_norm": True}, {"kind": "full"}]


@pytest.mark.parametrize("spec", KINDS, ids=[k["kind"] for k in KINDS])
def test_only_trainable_parameters_are_optimized_get_gradients_and_move(tiny_gpt2, tokenizer,
                                                                         spec):
    method = from_config("m", {**spec, "lr": 1e-2})
    wrapped, _ = method.wrap(tiny_gpt2, tokenizer)
    examples = two_examples(tokenizer)
    # Weight decay 0: AdamW's decay would move any parameter it holds, gradient or not.
    cfg = TrainingConfig.from_dict({"epochs": 3, "batch_size": 2, "weight_decay": 0.0,
                                    "warmup_ratio": 0.0, "eval_every": 100, "log_every": 100,
                                    "patience": None, "checkpoint_every": 100})
    trainer = Trainer(wrapped, tokenizer, method, cfg, 0, examples, examples, torch.device("cpu"))
    params = dict(wrapped.named_parameters())
    trainable = {n for n, p in params.items() if p.requires_grad}
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(params[n]) for n in trainable}
    before = {n: p.detach().clone() for n, p in params.items()}
    assert trainer.fit()["step"] == 3
    for name, param in params.items():  # frozen: bit-identical; trainable: moved by its gradient
        assert torch.equal(param, before[name]) == (name not in trainable), name
    nll, n = summary_nll(wrapped, collate(examples, tokenizer.pad_token_id))
    (nll / n).backward()
    for name, param in params.items():
        if name in trainable:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None, name
    if method.kind == "last_layers":  # the head trains on its own copy of the tied embeddings
        assert "lm_head.weight" in trainable and "transformer.wte.weight" not in trainable


def test_prompt_tuning_init_copies_token_embeddings(tiny_gpt2, tokenizer):
    spec = {"kind": "prompt_tuning", "n_tokens": 5, "init_text": "Summarize:"}
    wrapped, _ = from_config("pt", spec).wrap(tiny_gpt2, tokenizer)
    ids = tokenizer("Summarize:", add_special_tokens=False)["input_ids"]
    expected = tiny_gpt2.transformer.wte.weight[[ids[i % len(ids)] for i in range(5)]]
    assert torch.equal(wrapped.soft_prompt, expected)


def test_prompt_tuning_batched_generate_differs_from_base(tiny_gpt2, tokenizer):
    tokenizer = copy.deepcopy(tokenizer)  # the session's tokenizer pads on the right
    tokenizer.padding_side = "left"
    batch = tokenizer(["The cat sat on the mat and", "Hello"], return_tensors="pt", padding=True)
    kwargs = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": tokenizer.eos_token_id}
    tiny_gpt2.eval()
    base_out = tiny_gpt2.generate(**batch, **kwargs)
    spec = {"kind": "prompt_tuning", "n_tokens": 4}
    wrapped, _ = from_config("pt", spec).wrap(tiny_gpt2, tokenizer)
    with torch.no_grad():
        wrapped.soft_prompt.normal_(0, 1, generator=torch.Generator().manual_seed(1))
    prompted = wrapped.generate(**batch, **kwargs)
    assert prompted.shape == base_out.shape  # input echoed, then exactly the new tokens
    assert torch.equal(prompted[:, : batch["input_ids"].shape[1]], batch["input_ids"])
    assert not torch.equal(prompted, base_out)
    # Batched with left padding equals one at a time: the soft prompt sits before the padding.
    for i in range(2):
        single = tokenizer([["The cat sat on the mat and", "Hello"][i]], return_tensors="pt")
        alone = wrapped.generate(**single, **kwargs)
        assert torch.equal(alone[0, -6:], prompted[i, -6:])


@pytest.mark.parametrize("spec", [{"kind": "prompt_tuning", "n_tokens": 4}, {"kind": "lora"},
                                  {"kind": "last_layers", "n_blocks": 1}])
def test_saved_weights_restore_the_same_logits(tiny_gpt2, tokenizer, tmp_path, spec):
    method = from_config("m", spec)
    wrapped, _ = method.wrap(tiny_gpt2, tokenizer)
    _train_step(wrapped, _batch(tokenizer))
    save_trainable(wrapped, tmp_path / "w.safetensors")
    restored, _ = method.wrap(gpt2(n_layer=2, n_head=2, n_embd=32, n_positions=128), tokenizer)
    load_trainable(restored, tmp_path / "w.safetensors")
    batch = _batch(tokenizer)
    wrapped.eval()
    restored.eval()
    with torch.no_grad():
        a = wrapped(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        b = restored(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.equal(a, b)
