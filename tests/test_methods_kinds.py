"""The kinds beyond the first four (issue 14): counts on GPT-2 small, frozen weights, saved files,
restore, batched generation, AdaLoRA's per-step hook and PEFT exports."""

import contextlib
import io
from pathlib import Path

import pytest
import torch
from conftest import SMOKE_RESULTS, gpt2, two_examples
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, LogitsProcessorList

from peftsum import config
from peftsum.config import EvalConfig
from peftsum.data import models
from peftsum.data.batches import collate, collate_sources
from peftsum.errors import UserError
from peftsum.evaluation import greedy, restore
from peftsum.evaluation.generate import GeneratedNoRepeatNGram, cache_owner, generate
from peftsum.evaluation.kv_cache import GrowingLayer, growing_cache
from peftsum.files import read_jsonl
from peftsum.methods import KINDS, all_from_config, from_config
from peftsum.methods.common import load_trainable, save_trainable
from peftsum.records import RunRecord
from peftsum.runtime.precision import place_for_inference
from peftsum.tools.bench import presets
from peftsum.tools.bench.__main__ import main as bench_main
from peftsum.training.loss import mean_loss, summary_nll

GPT2_SMALL = 124_439_808  # FACTS.md
L, D = 12, 768  # GPT-2 small: blocks, width; c_attn 768 -> 2304, c_fc 768 -> 3072
LORA_C_ATTN = 294_912  # FACTS.md: r=8 on c_attn
ROOT = Path(__file__).resolve().parents[1]

# GPT-2 small's exact counts, each from its formula written out by hand.
SMALL_COUNTS = [
    ({"kind": "lora", "use_dora": True}, LORA_C_ATTN + L * 2304),  # + a magnitude per output
    ({"kind": "lora", "use_rslora": True, "init": "gaussian"}, LORA_C_ATTN),
    ({"kind": "lora", "init": "pissa"}, LORA_C_ATTN),
    # every bias: ln_1, ln_2 (768 each), c_attn 2304, attn c_proj 768, c_fc 3072, mlp c_proj 768
    ({"kind": "bitfit"}, L * (2 * D + 2304 + D + 3072 + D) + D),
    ({"kind": "ia3"}, L * (2304 + 3072)),  # c_attn's outputs, mlp.c_proj's inputs
    ({"kind": "prefix_tuning", "num_virtual_tokens": 20}, 20 * L * 2 * D),
    ({"kind": "prefix_tuning", "num_virtual_tokens": 20, "prefix_projection": True,
      "encoder_hidden_size": 512}, 20 * D + (D + 1) * 512 + (512 + 1) * L * 2 * D),
    ({"kind": "p_tuning", "num_virtual_tokens": 20}, 20 * D + 3 * (D + 1) * D),  # MLP h = d
    # BiLSTM h=128: 2 directions x 4 gates x 128 x (input + 128 + 2 biases) per layer; head 2h->2h->d
    ({"kind": "p_tuning", "num_virtual_tokens": 20, "encoder": "LSTM", "encoder_hidden_size": 128},
     20 * D + 8 * 128 * (D + 128 + 2) + 8 * 128 * (256 + 128 + 2) + 257 * 256 + 257 * D),
    ({"kind": "adalora", "total_step": 100}, L * 12 * (D + 2304 + 1)),  # init_r x (in + out + 1)
    ({"kind": "peft", "config": "VeraConfig", "kwargs": {"r": 256, "target_modules": ["c_attn"]}},
     L * (2304 + 256)),  # lambda_b (out) + lambda_d (r); the random projections do not train
    ({"kind": "prompt_tuning", "n_tokens": 20, "init": "vocab"}, 20 * D),
]


@pytest.mark.parametrize(("spec", "trainable"), SMALL_COUNTS)
def test_parameter_counts_on_gpt2_small(tokenizer, spec, trainable):
    wrapped, counts = from_config("m", spec).wrap(gpt2(), tokenizer)
    assert counts.trainable == trainable
    assert sum(p.numel() for p in wrapped.parameters() if p.requires_grad) == trainable
    # BitFit adds nothing; AdaLoRA also adds a frozen rank count (ranknum) per adapted layer.
    added = {"bitfit": 0, "adalora": trainable + L}.get(spec["kind"], trainable)
    assert (counts.base_total, counts.added, counts.total) == (GPT2_SMALL, added, GPT2_SMALL + added)


def tiny():
    return gpt2(n_layer=2, n_head=2, n_embd=32, n_positions=128)


# Every new kind and option on a tiny GPT-2 (IA3 and PEFT's own kinds on their default targets).
TINY_SPECS = [
    {"kind": "lora", "use_dora": True, "r": 4},
    {"kind": "lora", "init": "pissa", "use_rslora": True, "r": 4},
    {"kind": "lora", "init": "orthogonal", "r": 4},
    {"kind": "bitfit"},
    {"kind": "ia3"},
    {"kind": "prefix_tuning", "num_virtual_tokens": 4},
    {"kind": "prefix_tuning", "num_virtual_tokens": 4, "prefix_projection": True,
     "encoder_hidden_size": 16},
    {"kind": "p_tuning", "num_virtual_tokens": 4, "encoder_hidden_size": 16},
    {"kind": "p_tuning", "num_virtual_tokens": 4, "encoder": "LSTM", "encoder_hidden_size": 8},
    {"kind": "adalora", "init_r": 4, "target_r": 2, "total_step": 10},
    {"kind": "peft", "config": "VeraConfig", "kwargs": {"r": 8, "target_modules": ["c_attn"]}},
    {"kind": "prompt_tuning", "n_tokens": 4, "init": "random"},
    {"kind": "prompt_tuning", "n_tokens": 4, "init": "vocab"},
]
IDS = [f"{s['kind']}-{'-'.join(f'{k}={v}' for k, v in s.items() if k != 'kind')}"[:60]
       for s in TINY_SPECS]


def _batch(tokenizer):
    return collate(two_examples(tokenizer), tokenizer.pad_token_id)


def _train_step(method, model, batch):
    """One step of the loop's kind: loss (+ the method's term), AdamW without weight decay, the
    method's per-step hook."""
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2,
                                  weight_decay=0.0)
    nll, n = summary_nll(model, batch)
    extra = method.regularization(model)
    (nll / n + (0 if extra is None else extra)).backward()
    optimizer.step()
    method.after_optimizer_step(model, 0)
    optimizer.zero_grad()
    model.eval()


@pytest.mark.parametrize("spec", TINY_SPECS, ids=IDS)
def test_a_step_moves_only_what_trains_and_restores_exactly(tokenizer, tmp_path, spec):
    method = from_config("m", spec)
    wrapped, _ = method.wrap(tiny(), tokenizer)
    frozen = {n: p.detach().clone() for n, p in wrapped.named_parameters() if not p.requires_grad}
    trainable = {n: p.detach().clone() for n, p in wrapped.named_parameters() if p.requires_grad}
    batch = _batch(tokenizer)
    _train_step(method, wrapped, batch)
    params = dict(wrapped.named_parameters())
    assert all(torch.equal(params[n], v) for n, v in frozen.items())
    assert any(not torch.equal(params[n], v) for n, v in trainable.items())

    save_trainable(wrapped, tmp_path / "w.safetensors")
    assert set(load_file(str(tmp_path / "w.safetensors"))) == set(trainable)  # only what trained
    restored, _ = method.wrap(tiny(), tokenizer)
    load_trainable(restored, tmp_path / "w.safetensors")
    restored.eval()
    with torch.no_grad():
        a = wrapped(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        b = restored(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.equal(a, b)


ARTICLES = ["The cat sat on the mat and looked at the birds in the garden.", "Hello there.",
            "Stocks rose sharply on Monday after the central bank cut rates."]


def _examples(tokenizer):
    return [{"input_ids": ids, "source_len": len(ids)} for ids in
            (tokenizer(a + "\nTL;DR:")["input_ids"] for a in ARTICLES)]


def tiny_llama():
    """The demo model's architecture, tiny: grouped-query attention, RoPE, no biases."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64,
                                        num_attention_heads=4, num_key_value_heads=2,
                                        vocab_size=50257))


def _perturbed(spec, tokenizer, make=tiny):
    """The method on a tiny model with its trainable weights moved off their (often neutral)
    initial values, as training would."""
    wrapped, _ = from_config("m", spec).wrap(make(), tokenizer)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in wrapped.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=generator) * 0.5)
    return wrapped.eval()


def _generate(model, tokenizer, batch_size):
    cfg = EvalConfig.from_dict({"batch_size": batch_size, "max_new_tokens": 8,
                                "no_repeat_ngram_size": 3})
    return [o["text"] for o in generate(model, tokenizer, _examples(tokenizer), cfg,
                                        torch.device("cpu"))]


@pytest.mark.parametrize("spec", TINY_SPECS, ids=IDS)
def test_batched_left_padded_generation_equals_one_at_a_time(tokenizer, spec):
    model = _perturbed(spec, tokenizer)
    batched = _generate(model, tokenizer, batch_size=3)
    assert batched == _generate(model, tokenizer, batch_size=1)
    assert batched != _generate(tiny().eval(), tokenizer, batch_size=3)


@pytest.mark.parametrize("spec", [
    {"kind": "prefix_tuning", "num_virtual_tokens": 4},
    {"kind": "p_tuning", "num_virtual_tokens": 4, "encoder_hidden_size": 16},
    {"kind": "lora", "init": "olora", "use_dora": True, "r": 4},
    {"kind": "peft", "config": "LoHaConfig", "kwargs": {"r": 4, "target_modules": ["q_proj"]}},
], ids=["prefix_tuning", "p_tuning", "dora-olora", "loha"])
def test_batched_generation_equals_one_at_a_time_on_llama(tokenizer, spec):
    """Grouped-query attention: the prefix has fewer key/value heads than queries."""
    model = _perturbed(spec, tokenizer, tiny_llama)
    batched = _generate(model, tokenizer, batch_size=3)
    assert batched == _generate(model, tokenizer, batch_size=1)
    assert batched != _generate(tiny_llama().eval(), tokenizer, batch_size=3)


@pytest.mark.parametrize("spec", TINY_SPECS, ids=IDS)
def test_every_kind_evaluates_under_cpu_bf16(tokenizer, spec):
    """As evaluation runs it with cpu_bf16: adapters merged, frozen weights stored in bf16."""
    model = _perturbed(spec, tokenizer)
    if hasattr(model, "merge_adapter"):
        model.merge_adapter()
    place_for_inference(model, torch.device("cpu"), torch.bfloat16)
    examples = [{**e, "input_ids": e["input_ids"] + [50256]} for e in _examples(tokenizer)]
    loss = mean_loss(model, examples, 2, tokenizer.pad_token_id, torch.device("cpu"), torch.bfloat16)
    assert 0 < loss < 20
    cfg = EvalConfig.from_dict({"batch_size": 3, "max_new_tokens": 4, "num_beams": 2})
    outputs = generate(model, tokenizer, _examples(tokenizer), cfg, torch.device("cpu"),
                       torch.bfloat16)
    assert all(o["n_tokens"] > 0 for o in outputs)


def test_prefix_tuning_generates_into_the_given_in_place_cache(tokenizer):
    model = _perturbed({"kind": "prefix_tuning", "num_virtual_tokens": 4}, tokenizer)
    ids = torch.tensor([tokenizer("Hello there, my friend")["input_ids"]])
    cache = growing_cache(3)
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=3,
                         do_sample=False, past_key_values=cache,
                         pad_token_id=tokenizer.eos_token_id)
    assert out.shape[1] == ids.shape[1] + 3
    assert all(isinstance(layer, GrowingLayer) for layer in cache.layers) and cache.layers
    # the prefix, the prompt, and all new tokens but the last (never fed back)
    assert cache.get_seq_length() == 4 + ids.shape[1] + 2


def test_adalora_hook_masks_the_budget_at_the_end_of_its_schedule(tokenizer):
    spec = {"kind": "adalora", "init_r": 4, "target_r": 1, "total_step": 3, "tfinal": 1}
    method = from_config("m", spec)
    model, _ = method.wrap(tiny(), tokenizer)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = _batch(tokenizer)
    model.train()
    for step in range(3):
        nll, n = summary_nll(model, batch)
        (nll / n + method.regularization(model)).backward()
        optimizer.step()
        method.after_optimizer_step(model, step)  # step 2 = total_step - tfinal: final budget
        optimizer.zero_grad()
    values = torch.cat([p.flatten() for n, p in model.named_parameters() if "lora_E" in n])
    assert len(values) == 4 * 2  # init_r x 2 adapted layers (c_attn)
    assert int((values != 0).sum()) == 1 * 2  # the budget: target_r x adapted layers


def test_adalora_without_total_step_is_a_one_line_error(tokenizer):
    with pytest.raises(UserError, match="total_step"):
        from_config("m", {"kind": "adalora"}).wrap(tiny(), tokenizer)


@pytest.mark.parametrize(("spec", "message"), [
    ({"kind": "bitfit"}, "no bias terms"),
    ({"kind": "lora", "init": "loftq"}, "init must be one of"),
    ({"kind": "peft", "config": "NoSuchConfig"}, "neither a PEFT config class"),
    ({"kind": "peft", "config": "PrefixTuningConfig"}, "use kind prefix_tuning"),
    ({"kind": "peft", "config": "VeraConfig", "kwargs": {"nonsense": 1}}, "PEFT VeraConfig"),
])
def test_impossible_settings_are_one_line_errors(tokenizer, spec, message):
    with pytest.raises(UserError, match=message):
        from_config("m", spec).wrap(tiny_llama(), tokenizer)


def test_olora_on_gpt2_conv1d_is_a_one_line_error(tokenizer):
    with pytest.raises(UserError, match="Conv1D"):
        from_config("m", {"kind": "lora", "init": "olora"}).wrap(tiny(), tokenizer)


def test_prompt_tuning_vocab_and_random_inits(tokenizer):
    torch.manual_seed(3)
    vocab, _ = from_config("m", {"kind": "prompt_tuning", "n_tokens": 6, "init": "vocab",
                                 "vocab_top": 100}).wrap(tiny(), tokenizer)
    table = vocab.base.get_input_embeddings().weight[:100]
    rows = [(table == row).all(1).nonzero() for row in vocab.soft_prompt]
    assert all(len(r) == 1 for r in rows)  # each row is the embedding of one id below 100
    torch.manual_seed(3)
    again, _ = from_config("m", {"kind": "prompt_tuning", "n_tokens": 6, "init": "vocab",
                                 "vocab_top": 100}).wrap(tiny(), tokenizer)
    assert torch.equal(again.soft_prompt, vocab.soft_prompt)  # seeded by the run's seed
    uniform, _ = from_config("m", {"kind": "prompt_tuning", "n_tokens": 50, "init": "random",
                                   "init_range": 0.25}).wrap(tiny(), tokenizer)
    assert uniform.soft_prompt.abs().max() <= 0.25 and uniform.soft_prompt.abs().max() > 0.2


@pytest.mark.parametrize("spec", [s for s in TINY_SPECS if s["kind"] not in
                                  ("bitfit", "prompt_tuning")], ids=[
    i for s, i in zip(TINY_SPECS, IDS) if s["kind"] not in ("bitfit", "prompt_tuning")])
def test_peft_kinds_export_an_adapter_that_peft_loads(tokenizer, tmp_path, spec):
    model = _perturbed(spec, tokenizer)
    record = RunRecord(name="m", method=spec, template={"prefix": "", "suffix": "\nTL;DR:",
                                                       "summary_prefix": " ", "max_length": 64,
                                                       "max_target_tokens": 8},
                       base_model={"context_length": 128}, reserved_positions=4)
    restore.export(model, tokenizer, record, tmp_path, ("base", None))
    loaded = PeftModel.from_pretrained(tiny(), tmp_path).eval()
    batch = _batch(tokenizer)
    with torch.no_grad():
        a = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        b = loaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(a, b)


NEW_IN_SMOKE = ["bitfit", "ia3", "prefix_tuning", "p_tuning", "adalora", "vera"]


@pytest.mark.slow
@pytest.mark.parametrize("method", NEW_IN_SMOKE)
def test_smoke_runs_restore_to_the_evaluation_predictions_and_export(smoke_workflow, tmp_path,
                                                                      method, monkeypatch):
    monkeypatch.chdir(smoke_workflow)  # the run records its base model relative to the workdir
    run_dir = smoke_workflow / SMOKE_RESULTS / "train" / method / "seed0"
    articles = read_jsonl(SMOKE_RESULTS / "data/split/test.jsonl")
    expected = read_jsonl(SMOKE_RESULTS / f"eval/{method}/seed0/predictions.jsonl")
    model, tokenizer, run = restore.load_run(run_dir)
    got = restore.summarize(model, tokenizer, run, [a["article"] for a in articles],
                            restore.decoding(run_dir))
    assert got == [e["prediction"] for e in expected]

    restore.export(model, tokenizer, run, tmp_path / "export", restore.base_reference(run))
    base = models.load(smoke_workflow / "resources" / "models" / "tiny-gpt2")[0]
    if method == "bitfit":  # its own weights changed: a whole model
        exported = AutoModelForCausalLM.from_pretrained(tmp_path / "export")
    else:
        exported = PeftModel.from_pretrained(base, tmp_path / "export")
    batch = _batch(tokenizer)
    model.float().eval()
    with torch.no_grad():
        a = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        b = exported.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)  # restored adapters are merged


def test_methods_config_has_every_family_and_each_wraps_a_llama(tokenizer):
    """config/methods.yaml on a tiny model of the demo's architecture (Llama: no biases)."""
    cfg = config.load(ROOT / "config" / "methods.yaml")
    methods = all_from_config(cfg)
    assert {m.kind for m in methods} == set(KINDS) - {"bitfit"}
    assert next(m for m in methods if m.kind == "adalora").params.total_step == \
        cfg["training"]["max_steps"]
    for method in methods:
        _, counts = method.wrap(tiny_llama(), tokenizer)
        assert counts.trainable > 0



@pytest.mark.slow
def test_bench_trains_every_new_kind_alike_in_its_three_loops(tmp_path):
    """Our loop, the HF Trainer (with the method's per-step hook) and the plain padded loop:
    the same losses for each kind (tiny-kinds preset: fp32, no dropout)."""
    argv = ["--preset", "tiny-kinds", "--in-process", "--parts", "train", "--threads", "1",
            "--models-dir", str(tmp_path / "models"), "--config-dir", str(ROOT / "config"),
            "--out", str(tmp_path / "bench.json")]
    with contextlib.redirect_stdout(io.StringIO()):
        results = bench_main(argv)
    assert set(results["training"]) == set(presets.preset("tiny-kinds", ROOT / "config").methods)
    for method, variants in results["training"].items():
        assert set(variants) == {"ours", "hf_trainer", "pad_to_max"}
        for name, row in variants.items():
            assert row["loss_gap"] < 1e-4 and row["train_loss_gap"] < 1e-4, (method, name, row)


def test_the_training_loop_calls_adalora_after_every_step(tokenizer):
    """Trainer.fit() itself: at the end of AdaLoRA's schedule only the budget is left."""
    from peftsum.config import TrainingConfig
    from peftsum.training.loop import Trainer

    method = from_config("m", {"kind": "adalora", "init_r": 4, "target_r": 1, "total_step": 3,
                               "tfinal": 1, "lr": 1e-2})
    model, _ = method.wrap(tiny(), tokenizer)
    examples = two_examples(tokenizer)
    cfg = TrainingConfig.from_dict({"epochs": 3, "batch_size": 2, "eval_every": 100,
                                    "patience": None, "log_every": 1, "checkpoint_every": 100})
    Trainer(model, tokenizer, method, cfg, 0, examples, examples, torch.device("cpu")).fit()
    values = torch.cat([p.flatten() for n, p in model.named_parameters() if "lora_E" in n])
    assert int((values != 0).sum()) == 1 * 2  # target_r x adapted layers


def _with_summaries(tokenizer):
    """_examples with a reference summary (+ EOS) of unequal lengths after each source."""
    summaries = ["A storm hit the coast.", "Prices rose again this year, as they did before.",
                 "Team wins."]
    return [{**e, "input_ids": e["input_ids"] + tokenizer(" " + s)["input_ids"] + [50256]}
            for e, s in zip(_examples(tokenizer), summaries)]


BASE_SPECS = [{"kind": "prompt_tuning", "n_tokens": 4}, {"kind": "last_layers", "n_blocks": 1},
              {"kind": "lora", "r": 4}]


@pytest.mark.parametrize(("make", "spec"), [(tiny, s) for s in TINY_SPECS + BASE_SPECS]
                         + [(tiny_llama, s) for s in BASE_SPECS + TINY_SPECS[7:8]],
                         ids=[f"gpt2-{i}" for i in IDS + [s["kind"] for s in BASE_SPECS]]
                         + [f"llama-{s['kind']}" for s in BASE_SPECS + TINY_SPECS[7:8]])
def test_loss_from_the_generation_cache_equals_the_loss_pass(tokenizer, make, spec):
    """Scoring the summaries from generation's cache of the sources (left-padded, a soft prompt
    before the padding) gives the right-padded loss pass's loss; prefix tuning keeps that pass."""
    from peftsum.evaluation.generate import generate_and_score
    from peftsum.training.loss import loss_sums

    model = _perturbed(spec, tokenizer, make)
    examples, dev = _with_summaries(tokenizer), torch.device("cpu")
    cfg = EvalConfig.from_dict({"batch_size": 3, "max_new_tokens": 5})
    generation = generate_and_score(model, tokenizer, examples, cfg, dev)
    assert [o["text"] for o in generation.outputs] == [
        o["text"] for o in generate(model, tokenizer, examples, cfg, dev)]
    if spec["kind"] == "prefix_tuning":
        assert generation.loss_sums is None
        return
    total, count = generation.loss_sums
    expected_total, expected_count = loss_sums(model, examples, 1, tokenizer.pad_token_id, dev)
    assert count == expected_count == sum(len(e["input_ids"]) - e["source_len"] for e in examples)
    assert total == pytest.approx(expected_total, rel=1e-5)


def _up_to(tokens: list[int], eos: int) -> list[int]:
    return tokens[: tokens.index(eos) + 1] if eos in tokens else tokens


def _generate_whole(model, sources, max_new_tokens: int, eos: int) -> list[list[int]]:
    """generate() over the whole batch (what beam search and prefix tuning still run)."""
    out = model.generate(**sources, max_new_tokens=max_new_tokens, do_sample=False,
                         eos_token_id=eos, pad_token_id=50256,
                         logits_processor=LogitsProcessorList([GeneratedNoRepeatNGram(3)]),
                         past_key_values=growing_cache(max_new_tokens))
    return [_up_to(t, eos) for t in out[:, sources["input_ids"].shape[1]:].tolist()]


# Not prefix tuning (generate() whole), nor BitFit and VeRA: perturbed, they write the same
# tokens whatever the source, so that no EOS ends their rows apart.
ENDING_APART = [i for i, s in enumerate(TINY_SPECS)
                if s["kind"] not in ("prefix_tuning", "bitfit", "peft")]


@pytest.mark.parametrize(("make", "spec"), [(tiny, TINY_SPECS[i]) for i in ENDING_APART]
                         + [(tiny, s) for s in BASE_SPECS]
                         + [(tiny_llama, s) for s in BASE_SPECS + TINY_SPECS[7:8]],
                         ids=[f"gpt2-{IDS[i]}" for i in ENDING_APART]
                         + [f"gpt2-{s['kind']}" for s in BASE_SPECS]
                         + [f"llama-{s['kind']}" for s in BASE_SPECS + TINY_SPECS[7:8]])
@pytest.mark.parametrize("overhead", [None, 0], ids=["one-prefill", "prefill-per-length"])
def test_greedy_decoding_drops_ended_rows_and_equals_generate(tokenizer, make, spec, overhead):
    """peftsum.evaluation.greedy gives generate()'s tokens (n-gram blocking included) while the rows that
    ended leave the batch: fewer rows are decoded than generate() decodes. With overhead 0 the
    prefill runs once per source length and the caches are merged, left-padded."""
    model = _perturbed(spec, tokenizer, make)
    sources = collate_sources(_examples(tokenizer) + _examples(tokenizer)[:1], 50256)
    free = _generate_whole(model, sources, 12, eos=50256)
    eos = max(sorted({t for row in free for t in row}),  # as EOS: the one ending rows most apart
              key=lambda t: len({row.index(t) if t in row else -1 for row in free}))
    expected = _generate_whole(model, sources, 12, eos)
    assert len({len(t) for t in expected}) > 1  # rows end at different steps
    owner, decoded_rows = cache_owner(model), []
    start, cache = greedy.prefill_grouped(model, sources, 12, 50256, overhead)
    owner.register_forward_pre_hook(
        lambda module, args, kwargs: decoded_rows.append(len(kwargs["input_ids"])), with_kwargs=True)
    ours = greedy.decode(owner, cache, start, 12, eos, 50256, 3)
    assert [_up_to(t, eos) for t in ours] == expected
    steps = max(map(len, expected)) - 1
    assert len(decoded_rows) == steps and sum(decoded_rows) < len(expected) * steps


def test_length_groups_weigh_padding_against_one_more_forward():
    lengths = [10, 9, 3, 2]
    assert greedy.length_groups(lengths, 0) == [range(1), range(1, 2), range(2, 3), range(3, 4)]
    assert greedy.length_groups(lengths, 5) == [range(2), range(2, 4)]  # 26 + 10 tokens
    assert greedy.length_groups(lengths, 100) == [range(4)]
