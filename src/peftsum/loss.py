"""Cross-entropy on summary tokens only (labels are IGNORE_INDEX elsewhere)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from peftsum.data.tokenize import IGNORE_INDEX


def summary_nll(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Summed negative log-likelihood of the summary tokens, and how many there were."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = batch["labels"][:, 1:]  # token t is predicted from positions < t
    nll = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(),
                          ignore_index=IGNORE_INDEX, reduction="sum")
    return nll, int((targets != IGNORE_INDEX).sum())
