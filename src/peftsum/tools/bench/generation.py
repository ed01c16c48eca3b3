"""Generation variants on the test sources: our evaluation against pipeline("text-generation").

All decode greedily from the same token ids (the job tokenizes the sources the way pipeline()
does), with the same max_new_tokens, EOS and pad ids, no n-gram blocking (ours counts generated
tokens only, HF's also the prompt: with blocking on they would decode under different rules),
the same autocast dtype, on the untrained base model. Each variant first generates two tokens
for one source, untimed: one-off costs (first allocations, kernel choices) are not compared.
"""

from __future__ import annotations

import dataclasses
import time

from transformers import pipeline

from peftsum.config import EvalConfig
from peftsum.data import models
from peftsum.evaluation.generate import generate
from peftsum.runtime import distributed
from peftsum.runtime.precision import amp_dtype, autocast, place_for_inference
from peftsum.tools.bench.presets import Job


def _setup(job: Job):
    dev = distributed.setup()
    model, tokenizer = models.load(job.model_dir)
    return model.to(dev), tokenizer, dev, amp_dtype(dev, job.preset.cpu_bf16, "generate")


def generate_ours(job: Job) -> dict:
    """peftsum.evaluation.generate.generate: batches sorted by source length, left padding, KV cache, the
    frozen weights stored in the autocast dtype."""
    model, tokenizer, dev, dtype = _setup(job)
    place_for_inference(model, dev, dtype)  # as the evaluate rule does
    p = job.preset
    cfg = EvalConfig.from_dict({"batch_size": p.gen_batch_size, "max_new_tokens": p.max_new_tokens,
                                "num_beams": 1, "no_repeat_ngram_size": 0, "cpu_bf16": p.cpu_bf16})
    generate(model, tokenizer, job.test[:1], dataclasses.replace(cfg, max_new_tokens=2), dev,
             dtype)  # untimed warm-up, as in every variant
    start = time.perf_counter()
    outputs = generate(model, tokenizer, job.test, cfg, dev, dtype)
    return {"seconds": time.perf_counter() - start, "texts": [o["text"] for o in outputs],
            "n_tokens": [o["n_tokens"] for o in outputs], "batch_size": p.gen_batch_size}


def generate_pipeline(job: Job, batch_size: int) -> dict:
    """pipeline("text-generation") over the test texts in their order, batch_size at a time."""
    model, tokenizer, dev, dtype = _setup(job)
    tokenizer.padding_side = "left"  # batched decoder-only generation needs left padding
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer, device=dev)
    settings = {"return_full_text": False, "do_sample": False, "num_beams": 1,
                "max_new_tokens": job.preset.max_new_tokens, "no_repeat_ngram_size": 0,
                "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    with autocast(dev, dtype):
        generator(job.test_texts[:1], **{**settings, "max_new_tokens": 2})  # untimed warm-up
        start = time.perf_counter()
        outputs = generator(job.test_texts, batch_size=batch_size, **settings)
    seconds = time.perf_counter() - start
    # Our generate() strips the decoded text; so does this comparison, nothing else.
    return {"seconds": seconds, "texts": [o[0]["generated_text"].strip() for o in outputs],
            "batch_size": batch_size}


VARIANTS = {"ours": generate_ours,
            "pipeline_one": lambda job: generate_pipeline(job, 1),
            "pipeline_batched": lambda job: generate_pipeline(job, job.preset.gen_batch_size)}
