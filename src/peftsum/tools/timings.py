"""Where a workflow run's time went: its jobs' Snakemake benchmark files, per job and per stage (the folder under benchmarks/)."""

from __future__ import annotations

import csv
from pathlib import Path

from peftsum.errors import UserError


def read(bench_dir: Path, experiment: str | None = None) -> list[dict]:
    """One row per job: <bench_dir>/<stage>/<job>.tsv -> stage, job, seconds, peak RSS, CPU time.
    With experiment: that experiment's jobs (<bench_dir>/<experiment>/<stage>/) and the shared
    downloads (<bench_dir>/download_*/), which every experiment's run may have started."""
    bench_dir = Path(bench_dir)
    own = bench_dir / experiment if experiment else bench_dir
    shared = sorted(bench_dir.glob("download_*/*.tsv")) if experiment else []
    rows = []
    for path in shared + sorted(own.glob("*/*.tsv")):
        with path.open() as f:
            runs = list(csv.DictReader(f, delimiter="\t"))
        if not runs:
            continue
        last = runs[-1]  # a job benchmarked with repeats: its last run
        rows.append({"stage": path.parent.name, "job": path.stem, "seconds": float(last["s"]),
                     "max_rss_mb": _number(last.get("max_rss")),
                     "cpu_s": _number(last.get("cpu_time"))})
    if not rows:
        raise UserError(f"{own}: no benchmark files (<stage>/<job>.tsv)")
    return rows


def _number(text: str | None) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):  # Snakemake writes NA where it could not measure
        return None


def per_stage(rows: list[dict]) -> list[dict]:
    """Seconds summed per stage, the slowest first."""
    totals: dict[str, dict] = {}
    for r in rows:
        total = totals.setdefault(r["stage"], {"stage": r["stage"], "jobs": 0, "seconds": 0.0})
        total["jobs"] += 1
        total["seconds"] += r["seconds"]
    return sorted(totals.values(), key=lambda t: -t["seconds"])


def table(rows: list[dict], wall_s: float | None = None) -> str:
    """Markdown: every job, then the stages' totals with their share of all job seconds."""
    jobs_s = sum(r["seconds"] for r in rows)
    lines = ["| stage | job | seconds | peak RSS MB | CPU s |", "|---|---|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["stage"], r["job"])):
        rss = f"{r['max_rss_mb']:,.0f}" if r["max_rss_mb"] is not None else "-"
        cpu = f"{r['cpu_s']:.0f}" if r["cpu_s"] is not None else "-"
        lines.append(f"| {r['stage']} | {r['job']} | {r['seconds']:.1f} | {rss} | {cpu} |")
    lines += ["", "| stage | jobs | seconds | share of job seconds |", "|---|---:|---:|---:|"]
    for t in per_stage(rows):
        lines.append(f"| {t['stage']} | {t['jobs']} | {t['seconds']:.1f} | "
                     f"{t['seconds'] / jobs_s:.0%} |")
    lines += ["", f"Job seconds in all: {jobs_s:.0f}"]
    if wall_s:
        lines[-1] += (f"; wall time {wall_s:.0f} s (jobs overlap where cores allow; the rest is "
                      "Snakemake's own start-up and scheduling)")
    return "\n".join(lines)
