"""The report's appendix: how the results were made, as compact tables.

Lengths as one split x statistic table, hyperparameters as one column per method, hardware and
versions from the training runs' own records (run.json "provenance"), not from the machine
that renders the report. Only reads what it is given: no torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from peftsum.records import RunRecord
from peftsum.report.tables import Cell, Table, fmt, fmt_share

SPLITS = ("train", "validation", "test")
LENGTH_PARTS = (("article_tokens", "article"), ("summary_tokens", "summary"))
LENGTH_STATS = (("median", "Median"), ("p95", "p95"), ("max", "Max"), ("limit", "Limit"))
KEY_VALUE_TITLES = {
    "model": "Model",
    "template": "Prompt template",
    "decoding": "Decoding",
    "training": "Training settings shared by every method",
}
HANDLED = {"tokenize", "data", "hardware", "versions"}  # sections of their own
VERSION_KEYS = ("torch", "transformers", "peft", "peftsum")  # shown first, in this order


@dataclass
class Section:
    title: str
    table: Table
    note: str = ""
    wide: bool = False  # spans the whole page width instead of one grid column


@dataclass
class Appendix:
    tables: list[Section] = field(default_factory=list)  # full width, first
    key_values: list[Section] = field(default_factory=list)  # small two-column tables, a grid


def appendix(setup: dict, runs: dict[str, RunRecord]) -> Appendix:
    """Sections for `setup` (what stages.report collects) and the runs' run.json records."""
    out = Appendix()
    if "tokenize" in setup:
        out.tables.append(lengths_section(setup["tokenize"]))
    if "data" in setup:
        data_table, data_rest = data_section(setup["data"])
        out.tables.append(data_table)
        if data_rest.table.rows:
            out.key_values.append(data_rest)
    if runs:
        out.tables.append(hyperparameters_section(runs))
    out.tables.append(provenance_section(runs, setup))
    for key in [k for k in KEY_VALUE_TITLES if k in setup] + sorted(
        k for k in setup if k not in KEY_VALUE_TITLES and k not in HANDLED
    ):
        title = KEY_VALUE_TITLES.get(key, key.replace("_", " ").capitalize())
        out.key_values.append(key_value_section(title, setup[key]))
    return out



# ---------------------------------------------------------------- lengths and data


def lengths_section(stats: dict) -> Section:
    """Tokenized lengths: one row per split and text (article, summary)."""
    headers = ["Split", "Text"] + [h for _, h in LENGTH_STATS] + ["Truncated"]
    table = Table(headers, [False, False] + [True] * (len(LENGTH_STATS) + 1))
    for split in [name for name in SPLITS if isinstance(stats.get(name), dict)]:
        for key, text in LENGTH_PARTS:
            values = stats[split].get(key) or {}
            table.rows.append(
                [Cell(split), Cell(text)]
                + [Cell(fmt(values.get(stat), 1)) for stat, _ in LENGTH_STATS]
                + [Cell(fmt_share(values.get("truncated_rate")))]
            )
    scalars = {k: v for k, v in stats.items() if not isinstance(v, dict)}
    note = "Model tokens. Limit: the longest article or summary kept; longer ones are truncated."
    if scalars:
        note += " " + ", ".join(f"{k}: {fmt(v)}" for k, v in scalars.items()) + "."
    return Section("Tokenized lengths", table, note, wide=True)


def data_section(data: dict) -> tuple[Section, Section]:
    """Per split: rows in the source, dropped (by reason) and kept; the source settings apart."""
    per_split = ("source_rows", "dropped", "sizes")
    splits = [s for s in SPLITS if any(s in (data.get(k) or {}) for k in per_split)]
    table = Table(["Split", "Source rows", "Dropped", "Kept"], [False, True, False, True])
    for split in splits:
        dropped = (data.get("dropped") or {}).get(split)
        table.rows.append(
            [
                Cell(split),
                Cell(fmt((data.get("source_rows") or {}).get(split))),
                Cell(dropped_text(dropped)),
                Cell(fmt((data.get("sizes") or {}).get(split))),
            ]
        )
    rest = {k: v for k, v in data.items() if k not in per_split}
    for key in per_split:  # anything not keyed by split stays visible
        extra = {k: v for k, v in (data.get(key) or {}).items() if k not in SPLITS}
        if extra:
            rest[key] = extra
    return (
        Section("Data splits", table, wide=True),
        key_value_section("Data source", rest),
    )


def dropped_text(dropped) -> str:
    if isinstance(dropped, dict):
        return ", ".join(f"{reason} {fmt(n)}" for reason, n in dropped.items()) or "0"
    return fmt(dropped)


# ---------------------------------------------------------------- hyperparameters


def hyperparameters_section(runs: dict[str, RunRecord]) -> Section:
    """One column per method (its seeds share one), one row per setting; settings equal for every
    run go to the note. Methods are few and their settings many (each kind has its own), so
    settings down the side keep the table as narrow as the page."""
    groups: dict[tuple, dict] = {}
    for record in runs.values():
        hparams = {k: v for k, v in (record.hparams or {}).items() if k != "seed"}
        key = (record.name, json.dumps(hparams, sort_keys=True, default=str))
        group = groups.setdefault(key, {"name": record.name, "hparams": hparams, "seeds": []})
        if record.seed is not None:
            group["seeds"].append(record.seed)
    columns = list(groups.values())
    keys = list(dict.fromkeys(k for g in columns for k in g["hparams"]))
    shared = [k for k in keys if len({value_text(g["hparams"].get(k, None)) for g in columns}) == 1
              and all(k in g["hparams"] for g in columns)]
    varying = [k for k in keys if k not in shared] if len(columns) > 1 else keys
    # Left-aligned: a method's column mixes numbers, flags and names.
    table = Table(["Setting"] + [g["name"] for g in columns], [False] * (len(columns) + 1))
    table.rows.append([Cell("Seeds")] + [Cell(", ".join(map(str, sorted(g["seeds"]))) or "—")
                                         for g in columns])
    for k in varying:
        table.rows.append([Cell(k)] + [Cell(value_text(g["hparams"][k]) if k in g["hparams"]
                                            else "—") for g in columns])
    note = "A dash: the method has no such setting."
    if shared and len(columns) > 1:
        common = columns[0]["hparams"]
        note = "Same for every method: " + ", ".join(
            f"{k} {value_text(common[k])}" for k in shared
        ) + ". " + note
    return Section("Hyperparameters", table, note, wide=True)


def value_text(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return fmt(value)


# ---------------------------------------------------------------- hardware and versions


def provenance_section(runs: dict[str, RunRecord], setup: dict) -> Section:
    """Where and with what each run trained; runs with identical records share a row."""
    recorded = {label: r.provenance for label, r in runs.items() if r.provenance}
    headers = ["Runs", "Machine", "CPU", "CPU cores", "GPUs", "CPU precision", "Python",
               "Versions", "Commit"]
    table = Table(headers, [False, False, False, True, False, False, False, False, False])
    if not recorded:
        return fallback_provenance(setup, table)
    groups: dict[str, list[str]] = {}
    records = {}
    for label, provenance in recorded.items():
        key = json.dumps(
            {k: v for k, v in provenance.items() if k not in ("started_at", "config_hash")},
            sort_keys=True,
            default=str,
        )
        groups.setdefault(key, []).append(label)
        records[key] = provenance
    for key, labels in groups.items():
        p, hardware = records[key], records[key].get("hardware") or {}
        every = len(groups) == 1 and len(labels) == len(runs)
        table.rows.append(
            [
                Cell("all runs" if every else ", ".join(labels)),
                Cell(fmt(hardware.get("machine"))),
                Cell(fmt(hardware.get("cpu_model"))),
                Cell(fmt(hardware.get("cpu_count"))),
                Cell(gpus_text(hardware.get("gpus"))),
                Cell(cpu_precision_text(p.get("cpu_precision"))),
                Cell(fmt(p.get("python"))),
                Cell(versions_text(p.get("versions") or {})),
                Cell(commit_text(p.get("git_commit"), p.get("git_dirty"))),
            ]
        )
    missing = [label for label in runs if label not in recorded]
    note = "From each training run's run.json (provenance)."
    if missing:
        note += f" No record for {', '.join(missing)}."
    return Section("Hardware and software of the training runs", table, note, wide=True)


def fallback_provenance(setup: dict, table: Table) -> Section:
    """Runs written before run.json carried provenance: show what the setup holds, and say so."""
    hardware, versions = setup.get("hardware"), setup.get("versions") or {}
    rows = [("Hardware", fmt(hardware) if not isinstance(hardware, dict) else value_text(hardware))]
    rows += [(name, fmt(version)) for name, version in versions.items()]
    kv = Table(["Key", "Value"], [False, False], [[Cell(k), Cell(v)] for k, v in rows])
    note = (
        "The training runs recorded no provenance: these are the machine and versions that "
        "rendered this report, which need not be those the runs trained on."
    )
    return Section("Hardware and software (of the rendering machine)", kv, note, wide=True)


def gpus_text(gpus) -> str:
    if not gpus:
        return "none"
    counts: dict[str, int] = {}
    for name in gpus:
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{n} × {name}" for name, n in counts.items())


def cpu_precision_text(choice: dict | None) -> str:
    """e.g. "bfloat16 (auto; measured: bf16 1.42x fp32's speed ...)"; — where a GPU computed."""
    if not choice:
        return "—"
    setting = {True: "true", False: "false"}.get(choice["setting"], choice["setting"])
    return f"{choice['dtype']} (cpu_bf16: {setting}; {choice['reason']})"


def versions_text(versions: dict) -> str:
    ordered = [k for k in VERSION_KEYS if k in versions] + sorted(
        k for k in versions if k not in VERSION_KEYS
    )
    return ", ".join(f"{k} {versions[k]}" for k in ordered) or "—"


def commit_text(commit, dirty) -> str:
    if not commit:
        return "—"
    return commit[:10] + (" (uncommitted changes)" if dirty else "")


# ---------------------------------------------------------------- the rest: key/value tables


def key_value_section(title: str, value) -> Section:
    items = flatten(value) if isinstance(value, dict) else [(title, value_text(value))]
    table = Table(["Key", "Value"], [False, False], [[Cell(k), Cell(v)] for k, v in items])
    return Section(title, table)


def flatten(mapping: dict, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts become dotted keys, so any structure fits a two-column table."""
    items = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            items.extend(flatten(value, f"{name}."))
        else:
            items.append((name, setup_value_text(value)))
    return items


def setup_value_text(value) -> str:
    if isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value):
        return ", ".join(map(setup_value_text, value))
    return value_text(value)
