"""Test-set evaluation: loss on summary tokens, batched generation, ROUGE, predictions."""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import LogitsProcessor, LogitsProcessorList, NoRepeatNGramLogitsProcessor

from peftsum import paths, records
from peftsum.config import EvalConfig
from peftsum.data import models
from peftsum.data.batches import collate_sources, sorted_batches
from peftsum.evaluation import greedy
from peftsum.evaluation.kv_cache import growing_cache
from peftsum.evaluation.sentences import lead, split_sentences
from peftsum.files import read_jsonl, write_jsonl
from peftsum.methods import Method
from peftsum.methods.soft_prompt import SoftPromptModel
from peftsum.metrics import ROUGE_KEYS
from peftsum.runtime.measure import Stopwatch
from peftsum.runtime.precision import amp_dtype, autocast, place_for_inference
from peftsum.training.loss import loss_sums, summary_nll_after_prefill

log = logging.getLogger(__name__)



class GeneratedNoRepeatNGram(LogitsProcessor):
    """Forbid repeating an n-gram of the summary itself, not of the article.

    HF's no_repeat_ngram_size also counts the prompt when generate() gets input_ids, which
    forbids copying any n-gram of the article, but not when it gets inputs_embeds (prompt
    tuning): the methods would be decoded under different rules. The first call sees the
    prompt's width (0 with inputs_embeds); only tokens after it count.
    """

    def __init__(self, n: int):
        self.inner = NoRepeatNGramLogitsProcessor(n)
        self.start: int | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.start is None:
            self.start = input_ids.shape[1]
        return self.inner(input_ids[:, self.start:], scores)


def decoding_kwargs(cfg: EvalConfig, tokenizer, cache) -> dict:
    """Greedy or beam search into cache; a fresh n-gram blocker per generate() call."""
    blockers = [GeneratedNoRepeatNGram(cfg.no_repeat_ngram_size)] if cfg.no_repeat_ngram_size else []
    return {"max_new_tokens": cfg.max_new_tokens, "num_beams": cfg.num_beams, "do_sample": False,
            "past_key_values": cache, "logits_processor": LogitsProcessorList(blockers),
            "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}


def cache_owner(model):
    """The model that continues from the cache model.generate() fills, when it holds the
    sources as a forward over the same layout would (greedy search only: beam search reorders
    it): the wrapped model under a soft prompt or P-tuning's (the prompt is in the cache, before
    the padding), the model itself otherwise. None for prefix tuning, whose prefix has no
    positions."""
    if isinstance(model, SoftPromptModel):
        return model.base
    config = getattr(model, "active_peft_config", None)
    if config is None:
        return model
    return None if config.peft_type == "PREFIX_TUNING" else model.get_base_model()


# What one more prefill forward costs, in tokens, where padded tokens cost their compute (the
# CPU; a round figure, not tuned); on a GPU a forward of a few thousand tokens takes about its
# launch time: one group.
PREFILL_GROUP_OVERHEAD = {"cpu": 64}


@dataclasses.dataclass
class Generation:
    outputs: list[dict]  # per example, in the order given
    seconds: float  # in generate() alone
    loss_sums: tuple[float, int] | None  # summed summary NLL and token count, where scored


@torch.no_grad()
def generate(model, tokenizer, examples: list[dict], cfg: EvalConfig, dev,
             dtype: torch.dtype | None = None) -> list[dict]:
    """Greedy or beam summaries, decoded from the new tokens only, in the order of examples."""
    return generate_and_score(model, tokenizer, examples, cfg, dev, dtype, score=False).outputs


@torch.no_grad()
def generate_and_score(model, tokenizer, examples: list[dict], cfg: EvalConfig, dev,
                       dtype: torch.dtype | None = None, score: bool = True) -> Generation:
    """generate(), and with score the reference summaries' loss from the prefill's KV cache of
    the sources (summary_nll_after_prefill), so that no article runs twice. Greedy search runs
    peftsum.evaluation.greedy (rows leave the batch when they end) wherever cache_owner can continue the
    cache; beam search and prefix tuning run generate() whole, and loss_sums is then None."""
    model.eval()
    owner = cache_owner(model) if cfg.num_beams == 1 else None
    outputs: list[dict | None] = [None] * len(examples)
    seconds, total, count = 0.0, 0.0, 0
    batches = sorted_batches([e["source_len"] for e in examples], cfg.batch_size)
    for batch in tqdm(batches, desc="generate", mininterval=5):
        rows = [examples[i] for i in batch]
        tensors = {k: v.to(dev) for k, v in collate_sources(rows, tokenizer.pad_token_id).items()}
        if owner is None:
            new_tokens, took = _generate_whole(model, tokenizer, tensors, cfg, dev, dtype)
        else:
            new_tokens, took, (nll, n) = _generate_greedy(model, owner, tokenizer, tensors, rows,
                                                          cfg, dev, dtype, score)
            total, count = total + nll, count + n
        seconds += took
        for i, tokens in zip(batch, new_tokens):
            ended = tokenizer.eos_token_id in tokens
            tokens = tokens[: tokens.index(tokenizer.eos_token_id)] if ended else tokens
            outputs[i] = {"text": tokenizer.decode(tokens, skip_special_tokens=True).strip(),
                          "n_tokens": len(tokens), "hit_max": not ended}
    scored = score and owner is not None
    return Generation(outputs, seconds, (total, count) if scored else None)


def _generate_whole(model, tokenizer, sources: dict[str, torch.Tensor], cfg: EvalConfig, dev,
                    dtype) -> tuple[list[list[int]], float]:
    """HF generate() over the batch (beam search, prefix tuning): new tokens and seconds."""
    with Stopwatch() as clock, autocast(dev, dtype):
        out = model.generate(**sources, **decoding_kwargs(cfg, tokenizer,
                                                          growing_cache(cfg.max_new_tokens)))
    return out[:, sources["input_ids"].shape[1]:].tolist(), clock.seconds  # never the prompt


def _generate_greedy(model, owner, tokenizer, sources: dict[str, torch.Tensor], rows: list[dict],
                     cfg: EvalConfig, dev, dtype, score: bool
                     ) -> tuple[list[list[int]], float, tuple[float, int]]:
    """peftsum.evaluation.greedy's prefill (in length groups on the CPU), the summaries' loss from its
    cache (untimed), then decoding: new tokens, seconds, and the summed loss and its count."""
    with Stopwatch() as prefilling, autocast(dev, dtype):
        start, cache = greedy.prefill_grouped(model, sources, cfg.max_new_tokens,
                                              tokenizer.pad_token_id,
                                              PREFILL_GROUP_OVERHEAD.get(dev.type))
    loss = _score_from_cache(owner, cache, start, rows, dev, dtype) if score else (0.0, 0)
    with Stopwatch() as decoding, autocast(dev, dtype):
        new_tokens = greedy.decode(owner, cache, start, cfg.max_new_tokens, tokenizer.eos_token_id,
                                   tokenizer.pad_token_id, cfg.no_repeat_ngram_size)
    return new_tokens, prefilling.seconds + decoding.seconds, loss


def _score_from_cache(owner, cache, start: greedy.Prefilled, rows: list[dict], dev,
                      dtype) -> tuple[float, int]:
    summaries = [r["input_ids"][r["source_len"]:] for r in rows]
    with autocast(dev, dtype):
        nll, n = summary_nll_after_prefill(owner, cache, start.prefix_mask, start.first_logits,
                                           summaries)
    return nll.item(), n


def rouge_per_example(predictions: list[str], references: list[str]) -> list[dict[str, float]]:
    """F1 x 100 with stemming; rougeLsum on newline-split sentences, rougeL without."""
    # Here, not at the top: rouge_score imports nltk, which summarize and export never use.
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=True)
    rows = []
    for pred, ref in zip(predictions, references):
        scores = scorer.score("\n".join(split_sentences(ref)), "\n".join(split_sentences(pred)))
        rows.append({key: 100 * scores[key].fmeasure for key in ROUGE_KEYS})
    return rows


def rouge(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Mean F1 x 100 over the examples."""
    rows = rouge_per_example(predictions, references)
    return {key: sum(r[key] for r in rows) / len(rows) for key in ROUGE_KEYS}


def _write(out_dir: Path, name: str, kind: str, seed: int | None, split_rows: list[dict],
           preds: list[str], extra: dict, per_example: list[dict] | None = None) -> dict:
    """predictions.jsonl with per-example scores (for bootstrap statistics) and metrics.json;
    returns what metrics.json holds."""
    refs = [r["highlights"] for r in split_rows]
    scores = rouge_per_example(preds, refs)
    rows = [{"id": r["id"], "reference": ref, "prediction": p, **s, **(e or {}),
             "pred_words": len(p.split()), "ref_words": len(ref.split())}
            for r, ref, p, s, e in zip(split_rows, refs, preds, scores,
                                       per_example or [None] * len(preds))]
    means = {k: sum(s[k] for s in scores) / len(scores) for k in ROUGE_KEYS}
    metrics = records.MetricsRecord(
        name=name, kind=kind, seed=seed, **extra, **means, n_test=len(refs),
        mean_pred_words=sum(r["pred_words"] for r in rows) / len(rows),
        mean_ref_words=sum(r["ref_words"] for r in rows) / len(rows))
    write_jsonl(paths.predictions(Path(out_dir)), rows)
    records.write_metrics(paths.metrics_json(Path(out_dir)), metrics)
    log.info("%s: %s", name, {k: round(v, 2) for k, v in means.items()})
    return records.to_json(metrics)


def load_model(model_dir: Path, method: Method | None, weights: Path | None, dev,
               dtype: torch.dtype | None) -> tuple:
    """The model evaluation scores, and its tokenizer: the base model with the method's trained
    weights (none for a baseline), frozen and placed for inference."""
    model, tokenizer = models.load(model_dir)
    if method is not None:
        model = method.load_for_inference(model, tokenizer, weights,
                                          models.model_info(model_dir)["weights_sha256"])
    return place_for_inference(model, dev, dtype), tokenizer


def run_model(model_dir: Path, tokenized_test: Path, split_test: Path, cfg: EvalConfig,
              out_dir: Path, method: Method | None = None, weights: Path | None = None,
              seed: int | None = None, baseline: str = "zero_shot") -> dict:
    """Evaluate a trained method (method + weights) or, with neither, the untrained model
    under the name `baseline`."""
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = amp_dtype(dev, cfg.cpu_bf16, "generate")
    model, tokenizer = load_model(model_dir, method, weights, dev, dtype)
    examples, split_rows = read_jsonl(tokenized_test), read_jsonl(split_test)
    generation = generate_and_score(model, tokenizer, examples, cfg, dev, dtype)
    total, count = generation.loss_sums or loss_sums(
        model, examples, cfg.loss_batch_size or cfg.batch_size, tokenizer.pad_token_id, dev, dtype)
    test_loss = total / count
    outputs = generation.outputs
    preds = [o["text"] for o in outputs]
    n_new = sum(o["n_tokens"] for o in outputs)
    extra = {"test_loss": test_loss, "perplexity": math.exp(test_loss),
             "gen_wall_s": generation.seconds, "gen_tokens_per_s": n_new / generation.seconds,
             "hit_max_new_tokens": sum(o["hit_max"] for o in outputs) / len(outputs),
             "decoding": dataclasses.asdict(cfg)}
    name, kind = (method.name, method.kind) if method else (baseline, "baseline")
    per_example = [{"gen_tokens": o["n_tokens"], "hit_max": o["hit_max"]} for o in outputs]
    return _write(out_dir, name, kind, seed, split_rows, preds, extra, per_example)


def run_lead3(split_test: Path, out_dir: Path) -> dict:
    """The first three sentences of the article: the classic extractive baseline."""
    split_rows = read_jsonl(split_test)
    preds = [lead(r["article"], 3) for r in split_rows]
    extra = {"test_loss": None, "perplexity": None, "gen_wall_s": None, "hit_max_new_tokens": None}
    return _write(out_dir, "lead3", "baseline", None, split_rows, preds, extra)
