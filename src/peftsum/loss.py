"""Cross-entropy on summary tokens only (labels are IGNORE_INDEX elsewhere)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from peftsum.data.tokenize import IGNORE_INDEX


def summary_nll(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Summed negative log-likelihood of the summary tokens, and how many there were.

    Logits are computed only from the position before the batch's first summary token on: the
    LM head over the article would be wasted work (most of GPT-2's head FLOPs on CNN/DailyMail).
    """
    labels = batch["labels"]  # (B, T)
    is_target = (labels != IGNORE_INDEX).any(0)
    first = int(is_target.nonzero()[0]) if is_target.any() else labels.shape[1] - 1
    keep = labels.shape[1] - max(first - 1, 0)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   logits_to_keep=keep).logits  # (B, keep, V): positions T-keep .. T-1
    targets = labels[:, labels.shape[1] - keep + 1:]  # token t is predicted from position t-1
    nll = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(),
                          ignore_index=IGNORE_INDEX, reduction="sum")
    return nll, int((targets != IGNORE_INDEX).sum())
