"""Batches with dynamic padding: grouped by length for training, sorted for evaluation."""

from __future__ import annotations

import random

import torch

from peftsum.data.tokenize import IGNORE_INDEX, make_labels

GROUP_BATCHES = 50  # batches per length-sorted group: little padding, order still random


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int) -> list[list[int]]:
    """Shuffle, sort by length inside groups of GROUP_BATCHES batches, then shuffle the batches."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    group = batch_size * GROUP_BATCHES
    batches = []
    for start in range(0, len(order), group):
        chunk = sorted(order[start:start + group], key=lambda i: lengths[i], reverse=True)
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Longest first, so that padding is least and memory peaks early."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def collate(examples: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded input_ids, attention_mask and labels (summary + EOS only) for loss."""
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[row, :n] = torch.tensor(e["input_ids"])
        mask[row, :n] = 1
        labels[row, :n] = torch.tensor(make_labels(e["input_ids"], e["source_len"]))
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def collate_sources(examples: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-padded sources (everything before the summary) for batched generation."""
    sources = [e["input_ids"][:e["source_len"]] for e in examples]
    width = max(map(len, sources))
    ids = torch.full((len(sources), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sources), width), dtype=torch.long)
    for row, s in enumerate(sources):
        ids[row, width - len(s):] = torch.tensor(s)
        mask[row, width - len(s):] = 1
    return {"input_ids": ids, "attention_mask": mask}


def padding_share(lengths: list[int], batches: list[list[int]], width: int | None = None) -> float:
    """Share of pad tokens when each batch is padded to its longest example (or to `width`)."""
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(len(b) * (width or max(lengths[i] for i in b)) for b in batches)
    return 1 - real / padded


def random_batches(n: int, batch_size: int, seed: int) -> list[list[int]]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def pad_fraction(batch: dict[str, torch.Tensor]) -> float:
    return 1.0 - batch["attention_mask"].float().mean().item()
