"""Draw a seeded sample from each of the source's own splits, after dropping empty and duplicate rows."""

from __future__ import annotations

import logging
import random
from pathlib import Path

from peftsum.data.sources import SPLITS
from peftsum.errors import UserError
from peftsum.files import read_jsonl, write_json, write_jsonl

log = logging.getLogger(__name__)

# Per split, the splits whose articles it must not contain.
HELD_OUT_FROM = {"train": ("validation", "test"), "validation": ("test",), "test": ()}


def clean(rows: list[dict]) -> tuple[list[dict], dict]:
    """Drop rows with an empty article or summary, then repeated articles (first one kept)."""
    kept, seen, dropped = [], set(), {"empty": 0, "duplicate": 0}
    for row in rows:
        if not row["article"].strip() or not row["highlights"].strip():
            dropped["empty"] += 1
        elif row["article"] in seen:
            dropped["duplicate"] += 1
        else:
            seen.add(row["article"])
            kept.append(row)
    return kept, dropped


def check_unique_ids(rows: list[dict], where: Path) -> None:
    """Ids name examples in predictions and paired tests: a repeat would fail after training."""
    first_line: dict[str, int] = {}
    for line, row in enumerate(rows, 1):
        if row["id"] in first_line:
            raise UserError(f"{where}: id {row['id']!r} appears twice (lines "
                            f"{first_line[row['id']]} and {line}); ids must be unique in a split")
        first_line[row["id"]] = line


def sample(rows: list[dict], size: int | None, seed: int, split: str) -> list[dict]:
    if size is None:
        return rows
    if size > len(rows):
        raise UserError(
            f"data.sizes.{split} = {size} is larger than the {len(rows)} usable rows of the "
            f"source's {split} split"
        )
    # Sorted indices keep the sample in source order, which makes files easy to compare.
    return [rows[i] for i in sorted(random.Random(seed).sample(range(len(rows)), size))]


def run(source_dir: Path, out_dir: Path, sizes: dict, seed: int) -> dict:
    """Write out_dir/{split}.jsonl and out_dir/stats.json; never mixes the source's splits."""
    stats = {"seed": seed, "sizes": {}, "source_rows": {}, "dropped": {}}
    samples = {}
    held_out = {split: {row["article"] for row in read_jsonl(Path(source_dir) / f"{split}.jsonl")}
                for split in ("validation", "test")}
    for i, split in enumerate(SPLITS):
        rows = read_jsonl(Path(source_dir) / f"{split}.jsonl")
        check_unique_ids(rows, Path(source_dir) / f"{split}.jsonl")
        kept, dropped = clean(rows)
        # An article that is also a test article must never be trained on or selected by, and
        # one that is a validation article never trained on: selection and early stopping
        # would read what the weights learnt.
        for other in HELD_OUT_FROM[split]:
            before = len(kept)
            kept = [row for row in kept if row["article"] not in held_out[other]]
            dropped[f"in_{other}"] = before - len(kept)
        if not kept:
            raise UserError(f"no rows left in the {split} split after dropping empty and duplicates")
        samples[split] = sample(kept, sizes.get(split), seed + i, split)
        stats["source_rows"][split] = len(rows)
        stats["dropped"][split] = dropped
        stats["sizes"][split] = len(samples[split])
    # Written only once every split is known to be good: no half-written results on error.
    for split, rows in samples.items():
        write_jsonl(Path(out_dir) / f"{split}.jsonl", rows)
    write_json(Path(out_dir) / "stats.json", stats)
    log.info("split: %s (dropped %s)", stats["sizes"], stats["dropped"])
    return stats
