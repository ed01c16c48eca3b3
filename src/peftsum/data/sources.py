"""Read a dataset's own train / validation / test splits into one shape: id, article, highlights.

The readers of user files (CSV, JSONL) name the file and line of whatever they cannot read.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

from peftsum.errors import UserError
from peftsum.files import write_jsonl

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")

# Python's csv refuses fields over 128 KB by default; a long article is longer than that.
CSV_FIELD_LIMIT = 2**31 - 1


def utf8_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line of a UTF-8 file (a leading byte-order mark is dropped)."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                yield number, raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise UserError(f"{path}:{number}: not UTF-8 text (byte {raw[err.start]:#04x} at "
                                f"column {err.start + 1})") from None


def jsonl_objects(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) of each non-blank line of a JSON-lines file."""
    for number, line in utf8_lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}:{number}: not valid JSON ({err.msg} at column {err.colno})"
                            ) from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{number}: each line must be a JSON object, got "
                            f"{type(row).__name__}")
        yield number, row


def _text(row: dict, column: str, where: str) -> str:
    value = row[column]
    if value is None or isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value if value is not None else "")
    raise UserError(f"{where}: {column!r} must be text, got {type(value).__name__}")


def _rename(rows: Iterable[tuple[int, dict]], columns: dict, where: str, unit: str = ":"):
    """Map the configured column names onto id / article / highlights, checking they exist;
    rows come with their line (or row) number, which errors name."""
    for number, row in rows:
        at = f"{where}{unit}{number}"
        missing = [columns[k] for k in ("id", "article", "highlights") if columns[k] not in row]
        if missing:
            raise UserError(f"{at}: no column {', '.join(map(repr, missing))}")
        yield {k: _text(row, columns[k], at) for k in ("id", "article", "highlights")}


def _split_file(folder: Path, split: str, suffix: str) -> Path:
    path = folder / f"{split}{suffix}"
    if not path.is_file():
        raise UserError(f"data.path: missing file {path}")
    return path


def _read_csv(cfg: dict, split: str):
    path = _split_file(Path(cfg["path"] or ""), split, ".csv")
    csv.field_size_limit(CSV_FIELD_LIMIT)
    read = [0]  # the last line the csv reader took: where a row ends, or where parsing failed

    def lines():
        for read[0], line in utf8_lines(path):
            yield line

    # strict: an unclosed quote is an error, not the rest of the file swallowed into one field
    reader = csv.DictReader(lines(), strict=True)
    try:
        missing = [c for c in cfg["columns"].values() if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: missing column {', '.join(map(repr, missing))}")
        yield from _rename(((read[0], row) for row in reader), cfg["columns"], str(path))
    except csv.Error as err:
        raise UserError(f"{path}:{read[0]}: not valid CSV ({err})") from None


def _read_jsonl(cfg: dict, split: str):
    path = _split_file(Path(cfg["path"] or ""), split, ".jsonl")
    yield from _rename(jsonl_objects(path), cfg["columns"], str(path))


def _read_hf(cfg: dict, split: str):
    import datasets  # heavy, and only this source needs it

    try:
        ds = datasets.load_dataset(cfg["id"], cfg["config_name"], split=split)
    except (OSError, ConnectionError, ValueError) as err:
        raise UserError(
            f"cannot load dataset '{cfg['id']}' from the Hugging Face hub ({str(err).splitlines()[0]}); "
            "offline, use config/demo.yaml or data.source: csv / jsonl / aclsum"
        ) from None
    yield from _rename(enumerate(ds, 1), cfg["columns"], f"{cfg['id']}:{split}", " row ")


def _read_aclsum(cfg: dict, split: str):
    """ACLSum: the abstract is the source; challenge, approach and outcome, one line each, the summary."""
    from peftsum.data.models import package_file

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
