"""The README's results table, from a finished run's files, so that it cannot go stale by hand.

    python dev/results_table.py RESULTS_DIR "COMMAND"

Prints Markdown: a header naming the date, commit and machine of the runs (from their run.json
provenance) and COMMAND, the command that made RESULTS_DIR; then one row per line of
RESULTS_DIR/metrics.tsv: test loss, each ROUGE score with its 95 % bootstrap interval (labels and
digits from peftsum.metrics), trainable parameters, training time and the share of summaries cut
off at max_new_tokens; then the findings of RESULTS_DIR's report, as the report words them.
Paste it between the README's results markers.
"""

from __future__ import annotations

import csv
import sys
from collections import Counter
from pathlib import Path

from peftsum import paths, records
from peftsum.metrics import ROUGE

MISSING = "—"


def number(text: str, digits: int) -> str:
    return f"{float(text):,.{digits}f}" if text not in ("", None) else MISSING


def rouge_cell(row: dict, key: str, digits: int) -> str:
    low, high = row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
    interval = f" [{number(low, digits)}, {number(high, digits)}]" if low and high else ""
    return number(row[key], digits) + interval


def provenance_header(results: Path, command: str) -> str:
    """Date (the last run's start), commit and machine of the runs under results."""
    runs = [records.read_run(p).provenance for p in results.rglob("run.json")]
    runs = sorted((r for r in runs if r), key=lambda r: r["started_at"])
    if not runs:
        return f"#### `{command}`"
    last = runs[-1]
    hardware = last["hardware"]
    gpus = ", ".join(hardware["gpus"]) if hardware["gpus"] else "no GPU"
    dirty = " (uncommitted changes)" if any(r["git_dirty"] for r in runs) else ""
    return (f"#### {last['started_at'][:10]}, commit {str(last['git_commit'])[:7]}{dirty}, "
            f"{hardware['cpu_model']} ({hardware['cpu_count']} cores, {gpus}): `{command}`")


def table(rows: list[dict]) -> list[str]:
    names = Counter(row["name"] for row in rows)
    header = (["system", "test loss"] + [m.label for m in ROUGE]
              + ["trainable params", "train (s)", "cut at max tokens"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        label = row["name"] + (f"/seed{row['seed']}" if names[row["name"]] > 1 else "")
        hit = row["hit_max_new_tokens"]
        cells = ([label, number(row["test_loss"], 2)]
                 + [rouge_cell(row, m.key, m.digits) for m in ROUGE]
                 + [number(row["trainable_params"], 0), number(row["train_wall_s"], 0),
                    f"{100 * float(hit):.0f} %" if hit else MISSING])
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def inside(results: Path, pattern: str) -> Path:
    """The file `pattern` (a paths pattern under paths.RESULTS) of the experiment in results."""
    return results / Path(pattern).relative_to(paths.RESULTS)


def findings(results: Path) -> list[str]:
    """The bullets of the report's Findings section."""
    lines = inside(results, paths.REPORT_MD).read_text().splitlines()
    start = lines.index("## Findings") + 1
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("## "))
    return ["What the report found:", "", *(line for line in lines[start:end] if line.strip())]


def main(results_dir: str, command: str) -> None:
    results = Path(results_dir)
    with open(inside(results, paths.TABLE_TSV), newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    print("\n".join([provenance_header(results, command), "", *table(rows), "",
                      *findings(results)]))


if __name__ == "__main__":
    main(*sys.argv[1:])
