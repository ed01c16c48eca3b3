"""Read a dataset's own train / validation / test splits into one shape: id, article, highlights."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

from peftsum.errors import UserError
from peftsum.io import write_jsonl

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


def _rename(rows, columns: dict, where: str):
    """Map the configured column names onto id / article / highlights, checking they exist."""
    for i, row in enumerate(rows):
        missing = [columns[k] for k in ("id", "article", "highlights") if columns[k] not in row]
        if missing:
            raise UserError(f"{where}: row {i + 1} has no column {', '.join(map(repr, missing))}")
        yield {k: str(row[columns[k]] or "") for k in ("id", "article", "highlights")}


def _split_file(folder: Path, split: str, suffix: str) -> Path:
    path = folder / f"{split}{suffix}"
    if not path.is_file():
        raise UserError(f"data.path: missing file {path}")
    return path


def _read_csv(cfg: dict, split: str):
    path = _split_file(Path(cfg["path"] or ""), split, ".csv")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in cfg["columns"].values() if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: missing column {', '.join(map(repr, missing))}")
        yield from _rename(reader, cfg["columns"], str(path))


def _read_jsonl(cfg: dict, split: str):
    path = _split_file(Path(cfg["path"] or ""), split, ".jsonl")
    with open(path) as f:
        rows = (json.loads(line) for line in f if line.strip())
        yield from _rename(rows, cfg["columns"], str(path))


def _read_hf(cfg: dict, split: str):
    import datasets  # heavy, and only this source needs it

    try:
        ds = datasets.load_dataset(cfg["id"], cfg["config_name"], split=split)
    except (OSError, ConnectionError, ValueError) as err:
        raise UserError(
            f"cannot load dataset '{cfg['id']}' from the Hugging Face hub ({str(err).splitlines()[0]}); "
            "offline, use config/demo.yaml or data.source: csv / jsonl / aclsum"
        ) from None
    yield from _rename(ds, cfg["columns"], f"{cfg['id']}:{split}")


def _read_aclsum(cfg: dict, split: str):
    """ACLSum: the abstract is the source; challenge, approach and outcome, one line each, the summary."""
    from peftsum.models import package_file

    path = package_file("aclsum", f"dataset/{'val' if split == 'validation' else split}.jsonl")
    with open(path) as f:
        for line in f:
            paper = json.loads(line)
            summary = paper["summary"]
            yield {
                "id": str(paper["id"]),
                "article": " ".join(paper["sentences"]["abstract"]),
                "highlights": "\n".join(summary[k] for k in ("challenge", "approach", "outcome")),
            }


_READERS = {"csv": _read_csv, "jsonl": _read_jsonl, "hf": _read_hf, "aclsum": _read_aclsum}


def read_split(cfg: dict, split: str):
    """Rows of one of the source's own splits, as dicts with id, article, highlights."""
    return _READERS[cfg["source"]](cfg, split)


def materialise(cfg: dict, out_dir: Path) -> dict:
    """Write the three source splits to out_dir/{split}.jsonl; return the row counts."""
    counts = {}
    for split in SPLITS:
        rows = list(read_split(cfg, split))
        write_jsonl(Path(out_dir) / f"{split}.jsonl", rows)
        counts[split] = len(rows)
    log.info("materialised %s (%s): %s", cfg["name"], cfg["source"], counts)
    return counts
