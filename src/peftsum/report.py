"""Render the comparison report (Markdown + self-contained HTML) from result files.

Only reads files written by earlier stages (no torch/transformers), so the
report can be re-rendered on a laptop from copied results.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from peftsum import aggregate
from peftsum.io import read_json, read_jsonl, write_atomic

DEFAULT_TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "report_templates"
MISSING = "—"
ARTICLE_CHARS = 600
ALPHA = 0.05  # significance level of the paired tests

ROUGE_COLUMNS = [
    ("rouge1", "ROUGE-1"),
    ("rouge2", "ROUGE-2"),
    ("rougeL", "ROUGE-L"),
    ("rougeLsum", "ROUGE-Lsum"),
]
QUALITY_NOTE = (
    "ROUGE scores are F1 × 100 with stemming, averaged over the test articles; brackets hold "
    "the 95 % percentile-bootstrap confidence interval of that mean (resampling test "
    "articles). ROUGE-L is computed on the whole summary without sentence splitting; "
    "ROUGE-Lsum is summary-level LCS on newline-split sentences. "
    "Best value per column in bold (lowest for loss and perplexity)."
)
SEEDS_NOTE = (
    "Mean ± sample standard deviation (n − 1) across training seeds, and for ROUGE the 95% "
    "t-interval of the mean over seeds in brackets; a value without ± comes from a single run. "
    "Best mean per column in bold."
)
SIGNIFICANCE_NOTE = (
    "Bootstrap test on the same test articles, resampling a method's seeds and the articles "
    "together (articles paired between the two systems): Δ is the mean difference over seeds "
    "and articles (first system − second, ROUGE points); p is two-sided, from {n_resamples:,} "
    "resamples shifted to the null (smallest possible p: {p_min:.4f}), then Holm-adjusted over "
    "every pair of this table, per metric, so that the family of comparisons keeps a 5% "
    "error rate. Adjusted p < 0.05 in bold."
)
LENGTH_NOTE = (
    "Words are whitespace-separated tokens of the decoded text. Generated tokens count "
    "model tokens up to the end-of-sequence token; cut off is the share of outputs that "
    "reached max_new_tokens{max_new} without one (lead3 is extractive: no generation)."
)
RESOURCES_NOTE = (
    "Training FLOPs = FLOPs per real (non-pad) token × tokens seen, counting matrix "
    "multiplications only: forward 2 × (block + head parameters) per token; activation "
    "gradients 2 × the parameters from the lowest trained layer up; weight gradients "
    "2 × the trained parameters; attention-score FLOPs are left out. MFU = training FLOPs / "
    "wall time / (dense bf16 peak FLOP/s of the GPU × GPU count), given for mixed-precision GPU "
    "runs only. Tokens/s and samples/s are over the whole training wall time, validation "
    "included."
)
MEMORY_NOTE = (
    "Peak GPU allocated: memory held by tensors; reserved: held by PyTorch's caching "
    "allocator (closer to what nvidia-smi shows). Checkpoint: size of the saved trainable "
    "weights. GPU energy and utilisation need NVML and are blank without it."
)
SETUP_TITLES = {
    "model": "Model",
    "data": "Data",
    "tokenize": "Tokenized lengths",
    "template": "Prompt template",
    "decoding": "Decoding",
    "training": "Training",
    "hardware": "Hardware",
    "versions": "Software versions",
}


@dataclass
class Cell:
    text: str
    bold: bool = False
    note: str = ""  # secondary text after the value, e.g. a confidence interval


@dataclass
class Table:
    headers: list[str]
    numeric: list[bool]  # per column: right-align
    rows: list[list[Cell]] = field(default_factory=list)


@dataclass
class FigureFile:
    title: str
    relpath: str  # relative to report.md
    data_uri: str  # embedded in the HTML so it is self-contained


def render(
    metrics_json: Path,
    steps: dict[str, Path],
    predictions: dict[str, Path],
    articles: Path,
    setup: dict,
    out_md: Path,
    out_html: Path,
    n_examples: int = 3,
    *,
    templates_dir: Path | None = None,
    significance: Path | None = None,
    by_method: Path | None = None,
) -> None:
    """Write report.md (figures as PNG files under figures/) and a self-contained report.html.

    `significance` is aggregate's significance.json (no significance table without it);
    `by_method` its metrics_by_method.json (computed from `metrics_json` when not given).
    """
    rows = with_labels(read_json(metrics_json))
    methods = read_json(by_method) if by_method is not None else aggregate.method_summary(rows)
    tests = read_json(significance) if significance is not None else None
    pairs = tests["pairs"] if tests else []
    figures = save_figures(rows, read_steps(steps), Path(out_md).parent / "figures")
    max_new = (setup.get("decoding") or {}).get("max_new_tokens")
    context = {
        "title": "Parameter-efficient fine-tuning for summarization",
        "summary": summary_paragraph(rows, setup),
        "setup": setup_sections(setup),
        "methods": methods_table(rows),
        "quality": quality_table(rows),
        "quality_note": QUALITY_NOTE,
        "seeds": seeds_table(methods) if any(m["n_seeds"] > 1 for m in methods) else None,
        "seeds_note": SEEDS_NOTE,
        "significance": significance_table(pairs, rows) if pairs else None,
        "significance_note": SIGNIFICANCE_NOTE.format(
            n_resamples=tests["n_resamples"], p_min=1 / (tests["n_resamples"] + 1)
        )
        if tests
        else "",
        "lengths": lengths_table(rows),
        "lengths_note": LENGTH_NOTE.format(max_new=f" ({max_new})" if max_new else ""),
        "resources": resources_table(rows),
        "resources_note": " ".join(filter(None, [devices_sentence(rows), RESOURCES_NOTE])),
        "memory": memory_table(rows),
        "memory_note": MEMORY_NOTE,
        "figures": figures,
        "findings": " ".join(findings(rows, methods, pairs)),
        "examples": example_summaries(rows, predictions, articles, n_examples),
    }
    env = template_env(templates_dir or DEFAULT_TEMPLATES_DIR)
    write_atomic(out_md, env.get_template("report.md.j2").render(context))
    write_atomic(out_html, env.get_template("report.html.j2").render(context))


# ---------------------------------------------------------------- reading inputs


def read_steps(steps: dict[str, Path]) -> dict[str, list[dict]]:
    return {name: read_jsonl(path) for name, path in steps.items()}


def is_trained(row: dict) -> bool:
    return row.get("trainable_params") is not None


def with_labels(rows: list[dict]) -> list[dict]:
    """Add a display "label": the name, or "name/seedN" when a name has several seeds."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["name"]] = counts.get(row["name"], 0) + 1
    return [
        row
        | {"label": row["name"] if counts[row["name"]] == 1 else f"{row['name']}/seed{row['seed']}"}
        for row in rows
    ]


# ---------------------------------------------------------------- formatting


def fmt(value, digits: int = 2) -> str:
    """Human-readable number; None/NaN become a dash so tables never show 'None'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def fmt_pct(value) -> str:
    # Shares span 100 % (full fine-tuning) to ~0.01 % (prompt tuning): keep 3 significant digits.
    return MISSING if value is None else f"{value:.3g}"


def fmt_sig(value, digits: int = 3) -> str:
    """Significant digits, for values spanning orders of magnitude (checkpoint sizes)."""
    return MISSING if value is None else f"{value:.{digits}g}"


def fmt_flops(value) -> str:
    """Scientific notation without the '+': 2.5e15."""
    if value is None:
        return MISSING
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def fmt_share(value, digits: int = 1) -> str:
    """A fraction (0..1) as a percentage: 0.0062 -> '0.6 %'."""
    return MISSING if value is None else f"{value * 100:.{digits}f} %"


def fmt_p(p) -> str:
    if p is None:
        return MISSING
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def fmt_mean_std(mean, std, digits: int = 2) -> str:
    if mean is None:
        return MISSING
    return fmt(mean, digits) if std is None else f"{fmt(mean, digits)} ± {fmt(std, digits)}"


def fmt_setup_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        scalar = all(not isinstance(v, (dict, list)) for v in value)
        return ", ".join(map(fmt_setup_value, value)) if scalar else json.dumps(value)
    return fmt(value)


def truncate(text: str, limit: int = ARTICLE_CHARS) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip() + " …"


# ---------------------------------------------------------------- tables


def setup_sections(setup: dict) -> list[dict]:
    """One key/value table per setup entry; known entries first, unknown ones still shown."""
    ordered = [k for k in SETUP_TITLES if k in setup] + [k for k in setup if k not in SETUP_TITLES]
    sections = []
    for key in ordered:
        items = (
            flatten(setup[key])
            if isinstance(setup[key], dict)
            else [(key, fmt_setup_value(setup[key]))]
        )
        table = Table(["Key", "Value"], [False, False], [[Cell(k), Cell(v)] for k, v in items])
        sections.append(
            {"title": SETUP_TITLES.get(key, key.replace("_", " ").capitalize()), "table": table}
        )
    return sections


def flatten(mapping: dict, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts become dotted keys, so any structure fits a two-column table."""
    items = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            items.extend(flatten(value, f"{name}."))
        else:
            items.append((name, fmt_setup_value(value)))
    return items


def methods_table(rows: list[dict]) -> Table:
    table = Table(
        ["Method", "What trains", "Trainable", "Added", "Total", "Share of model (%)", "Formula"],
        [False, False, True, True, True, True, False],
    )
    for row in filter(is_trained, rows):
        table.rows.append(
            [
                Cell(row["label"]),
                Cell(fmt(row["trains"])),
                Cell(fmt(row["trainable_params"])),
                Cell(fmt(row["added_params"])),
                Cell(fmt(row["total_params"])),
                Cell(fmt_pct(row["trainable_pct"])),
                Cell(fmt(row["formula"])),
            ]
        )
    return table


def quality_table(rows: list[dict]) -> Table:
    # (column, header, digits, lower is better)
    columns = [("test_loss", "Test loss", 3, True), ("perplexity", "Perplexity", 2, True)]
    columns += [(key, header, 2, False) for key, header in ROUGE_COLUMNS]
    best = {key: best_value([r.get(key) for r in rows], lower) for key, _, _, lower in columns}
    table = Table(["Method"] + [c[1] for c in columns], [False] + [True] * len(columns))
    for row in rows:
        cells = [
            Cell(
                fmt(row.get(key), digits),
                bold=row.get(key) is not None and row.get(key) == best[key],
                note=ci_text(row, key, digits),
            )
            for key, _, digits, _ in columns
        ]
        table.rows.append([Cell(row["label"])] + cells)
    return table


def ci_text(row: dict, key: str, digits: int) -> str:
    low, high = row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
    return "" if low is None or high is None else f"[{low:.{digits}f}, {high:.{digits}f}]"


def best_value(values: list, lower_is_better: bool):
    present = [v for v in values if v is not None]
    if not present:
        return None
    return min(present) if lower_is_better else max(present)


def seeds_table(methods: list[dict]) -> Table:
    columns = [("test_loss", "Test loss", 3, True)]
    columns += [(key, header, 2, False) for key, header in ROUGE_COLUMNS]
    columns += [("train_wall_s", "Train wall (s)", 1, True)]
    best = {
        key: best_value([m.get(f"{key}_mean") for m in methods], lower)
        for key, _, _, lower in columns
    }
    table = Table(
        ["Method", "Seeds"] + [c[1] for c in columns], [False, True] + [True] * len(columns)
    )
    for method in methods:
        cells = []
        for key, _, digits, _ in columns:
            mean, std = method.get(f"{key}_mean"), method.get(f"{key}_std")
            bold = mean is not None and mean == best[key] and key != "train_wall_s"
            interval = (ci_text({f"{key}_ci_low": method.get(f"{key}_seed_low"),
                                 f"{key}_ci_high": method.get(f"{key}_seed_high")}, key, digits)
                        if key in aggregate.ROUGE_KEYS else "")
            text = fmt_mean_std(mean, std, digits) + (f" {interval}" if interval else "")
            cells.append(Cell(text, bold=bold))
        table.rows.append([Cell(method["name"]), Cell(fmt(method["n_seeds"]))] + cells)
    return table


def significance_table(pairs: list[dict], rows: list[dict]) -> Table:
    def system(name: str, seeds: list) -> str:
        return f"{name} ({len(seeds)} seeds)" if len(seeds) > 1 else name

    table = Table(
        ["System A", "System B", "Δ ROUGE-L", "p (Holm)", "Δ ROUGE-Lsum", "p (Holm)"],
        [False, False, True, True, True, True],
    )
    for pair in pairs:
        cells = [
            Cell(system(pair["system_a"], pair["seeds_a"])),
            Cell(system(pair["system_b"], pair["seeds_b"])),
        ]
        for key in ("rougeL", "rougeLsum"):
            diff, p = pair.get(f"{key}_diff"), pair.get(f"{key}_p_holm")
            cells.append(Cell(MISSING if diff is None else f"{diff:+.2f}"))
            cells.append(Cell(fmt_p(p), bold=p is not None and p < ALPHA))
        table.rows.append(cells)
    return table


def lengths_table(rows: list[dict]) -> Table:
    headers = [
        "Method",
        "Predicted words",
        "Reference words",
        "Generated tokens",
        "Cut off at max_new_tokens",
    ]
    table = Table(headers, [False] + [True] * (len(headers) - 1))
    for row in rows:
        table.rows.append(
            [
                Cell(row["label"]),
                Cell(fmt(row.get("mean_pred_words"), 1)),
                Cell(fmt(row.get("mean_ref_words"), 1)),
                Cell(fmt(row.get("mean_gen_tokens"), 1)),
                Cell(fmt_share(row.get("hit_max_new_tokens"), 0)),
            ]
        )
    return table


def resources_table(rows: list[dict]) -> Table:
    """Training and generation cost per run (compute and time)."""
    # (header, format, key); NVML columns only when some run has them.
    columns = [
        ("Precision", fmt, "precision"),
        ("Train wall (s)", lambda v: fmt(v, 1), "train_wall_s"),
        ("Tokens/s", lambda v: fmt(v, 0), "tokens_per_s"),
        ("Samples/s", lambda v: fmt(v, 1), "samples_per_s"),
        ("Train FLOPs", fmt_flops, "train_flops"),
        ("MFU", lambda v: fmt_share(v, 2), "mfu"),
        ("GPU util (%)", lambda v: fmt(v, 0), "gpu_util_pct"),
        ("GPU energy (kJ)", lambda v: MISSING if v is None else fmt(v / 1000, 1), "gpu_energy_j"),
        ("Optimizer steps", fmt, "optimizer_steps"),
        ("Generation wall (s)", lambda v: fmt(v, 1), "gen_wall_s"),
    ]
    nvml = {"gpu_util_pct", "gpu_energy_j"}
    columns = [c for c in columns if c[2] not in nvml or any(r.get(c[2]) is not None for r in rows)]
    table = Table(
        ["Method"] + [c[0] for c in columns], [False] + [c[2] != "precision" for c in columns]
    )
    for row in rows:
        table.rows.append([Cell(row["label"])] + [Cell(f(row.get(key))) for _, f, key in columns])
    return table


def devices_sentence(rows: list[dict]) -> str:
    """Where the runs trained, e.g. "Trained on 1 × NVIDIA H100 80GB HBM3." (names are long,
    so they are kept out of the table)."""
    groups: dict[str, list[str]] = {}
    for row in filter(is_trained, rows):
        if row.get("device") is None:
            continue
        count = row.get("gpu_count")
        where = f"{count} × {row['device']}" if count and row["device"] != "cpu" else row["device"]
        groups.setdefault(where, []).append(row["label"])
    if not groups:
        return ""
    if len(groups) == 1:
        return f"Trained on {next(iter(groups))}."
    return (
        "Trained on "
        + "; ".join(f"{w} ({', '.join(labels)})" for w, labels in groups.items())
        + "."
    )


def memory_table(rows: list[dict]) -> Table:
    headers = [
        "Method",
        "Peak RSS (MB)",
        "Peak GPU allocated (MB)",
        "Peak GPU reserved (MB)",
        "Checkpoint (MB)",
    ]
    table = Table(headers, [False] + [True] * (len(headers) - 1))
    for row in filter(is_trained, rows):
        table.rows.append(
            [
                Cell(row["label"]),
                Cell(fmt(row.get("peak_rss_mb"), 0)),
                Cell(fmt(row.get("peak_gpu_mb"), 0)),
                Cell(fmt(row.get("peak_gpu_reserved_mb"), 0)),
                Cell(fmt_sig(row.get("checkpoint_mb"))),
            ]
        )
    return table


# ---------------------------------------------------------------- text from numbers


def summary_paragraph(rows: list[dict], setup: dict) -> str:
    trained = [row["label"] for row in rows if is_trained(row)]
    baselines = [row["label"] for row in rows if not is_trained(row)]
    model = (setup.get("model") or {}).get("name") or "the base model"
    n_test = next((r["n_test"] for r in rows if r.get("n_test") is not None), None)
    text = f"This report compares {counted(len(trained), 'parameter-efficient fine-tuning run')}"
    text += f" ({', '.join(trained)})" if trained else ""
    text += (
        f" with {counted(len(baselines), 'baseline')} ({', '.join(baselines)})" if baselines else ""
    )
    text += f" for summarization, all built on {model}."
    if n_test is not None:
        text += f" Quality is measured on {n_test:,} held-out test articles."
    return (
        text + " It lists what each method trains and costs, its test quality with confidence "
        "intervals and significance tests, and example outputs."
    )


def counted(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def findings(
    rows: list[dict], methods: list[dict] | None = None, pairs: list[dict] = ()
) -> list[str]:
    """Sentences derived from the numbers, so they stay true when results change.

    Systems are compared by name: a method trained with several seeds by its mean.
    """
    methods = methods if methods is not None else aggregate.method_summary(rows)
    sentences = [
        best_rouge_sentence(methods),
        significance_sentence(methods, pairs),
        cheapest_sentence(rows),
        fastest_sentence(methods),
        cut_off_sentence(rows),
    ]
    return [s for s in sentences if s]


def ranked_by_rouge_l(methods: list[dict]) -> list[dict]:
    scored = [m for m in methods if m.get("rougeL_mean") is not None]
    return sorted(scored, key=lambda m: -m["rougeL_mean"])


def best_rouge_sentence(methods: list[dict]) -> str:
    scored = ranked_by_rouge_l(methods)
    if not scored:
        return "No ROUGE-L scores are available."
    best = scored[0]
    seeds = f", mean of {best['n_seeds']} seeds" if best["n_seeds"] > 1 else ""
    sentence = f"{best['name']} has the best ROUGE-L ({best['rougeL_mean']:.2f}{seeds})"
    runner_up = scored[1] if len(scored) > 1 else None
    if runner_up:
        gap = best["rougeL_mean"] - runner_up["rougeL_mean"]
        sentence += f", {gap:.2f} points above the next best, {runner_up['name']}"
        sentence += f" ({runner_up['rougeL_mean']:.2f})"
    zero_shot = strongest_zero_shot(scored[1:])
    if zero_shot and zero_shot is not runner_up:
        gap = best["rougeL_mean"] - zero_shot["rougeL_mean"]
        sentence += f", and {gap:.2f} points above the {zero_shot['name']} baseline"
        sentence += f" ({zero_shot['rougeL_mean']:.2f})"
    return sentence + "."


ZERO_SHOT_BASELINES = ("zero_shot", "zero_shot_chat")  # the untrained model's rows


def strongest_zero_shot(scored: list[dict]) -> dict | None:
    """The untrained model's best row; scored is best first. By exact name: a method may be
    called zero_shot_anything."""
    return next((m for m in scored if m["name"] in ZERO_SHOT_BASELINES), None)


def find_pair(pairs: list[dict], first: str, second: str) -> dict | None:
    return next((p for p in pairs if {p["system_a"], p["system_b"]} == {first, second}), None)


def significance_sentence(methods: list[dict], pairs: list[dict]) -> str:
    """Whether the best's lead over the runner-up and over the strongest zero-shot baseline is
    significant (ROUGE-L)."""
    scored = ranked_by_rouge_l(methods)
    if len(scored) < 2 or not pairs:
        return ""
    best = scored[0]["name"]
    zero_shot = strongest_zero_shot(scored[2:])
    others = [scored[1]["name"]] + ([zero_shot["name"]] if zero_shot else [])
    clauses = []
    for other in others:
        pair = find_pair(pairs, best, other)
        if pair is None or pair.get("rougeL_p_holm") is None:
            continue
        p, diff = pair["rougeL_p_holm"], pair["rougeL_diff"]
        stats = f"p {fmt_p(p)}" if p < 0.001 else f"p = {fmt_p(p)}"
        stats += f" after Holm's correction, Δ = {diff:+.2f}"
        ahead, paired = pair["rougeL_seeds_ahead"], pair["rougeL_seed_pairs"]
        if paired > 1:
            stats += f", ahead in {ahead} of {paired} seeds"
        subject = f"{best}'s" if not clauses else "its"
        if p < ALPHA:
            clauses.append(f"{subject} lead over {other} is significant ({stats})")
        else:
            clauses.append(f"{best} and {other} cannot be told apart ({stats})")
    if not clauses:
        return ""
    return ("Resampling seeds and test articles together, on ROUGE-L, " + "; ".join(clauses)
            + ".")


def cheapest_sentence(rows: list[dict]) -> str:
    first_runs: dict[str, dict] = {}
    for row in filter(is_trained, rows):
        first_runs.setdefault(row["name"], row)  # seeds of a method train the same parameters
    trained = list(first_runs.values())
    if not trained:
        return ""
    cheapest = min(trained, key=lambda r: r["trainable_params"])
    name, params, pct = cheapest["name"], cheapest["trainable_params"], cheapest["trainable_pct"]
    share = f", {fmt_pct(pct)} % of the model" if pct is not None else ""
    if len(trained) == 1:
        return f"{name} trains {params:,} parameters{share}."
    return f"The cheapest trained method in trainable parameters is {name} ({params:,}{share})."


def fastest_sentence(methods: list[dict]) -> str:
    timed = [m for m in methods if m.get("train_wall_s_mean") is not None]
    if not timed:
        return ""
    fastest = min(timed, key=lambda m: m["train_wall_s_mean"])
    name, seconds = fastest["name"], fastest["train_wall_s_mean"]
    mean = " on average" if fastest["n_seeds"] > 1 else ""
    if len(timed) == 1:
        return f"{name} trained in {seconds:,.1f} s{mean}."
    return f"{name} trained fastest ({seconds:,.1f} s wall time{mean})."


def cut_off_sentence(rows: list[dict]) -> str:
    shares = [r for r in rows if r.get("hit_max_new_tokens")]
    if not shares:
        return ""
    worst = max(shares, key=lambda r: r["hit_max_new_tokens"])
    return (
        f"{worst['label']} is cut off at max_new_tokens without an end-of-sequence token on "
        f"{fmt_share(worst['hit_max_new_tokens'], 0)} of the test articles, the most of any system."
    )


# ---------------------------------------------------------------- examples


def example_summaries(
    rows: list[dict], predictions: dict[str, Path], articles: Path, n_examples: int
) -> list[dict]:
    """The first test articles with the reference and every system's prediction.

    Each prediction comes as (name, text, score), score being its ROUGE-L text when known.
    """
    names = list(
        dict.fromkeys([r["name"] for r in rows if r["name"] in predictions] + list(predictions))
    )
    by_name = {name: {p["id"]: p for p in read_jsonl(predictions[name])} for name in names}
    examples = []
    for article in read_jsonl(articles)[:n_examples]:
        systems = []
        for name in names:
            record = by_name[name].get(article["id"]) or {}
            score = record.get("rougeL")
            systems.append(
                (
                    name,
                    record.get("prediction", MISSING),
                    "" if score is None else f"ROUGE-L {score:.1f}",
                )
            )
        examples.append(
            {
                "id": article["id"],
                "article": truncate(article["article"]),
                "reference": article["highlights"],
                "predictions": systems,
            }
        )
    return examples


# ---------------------------------------------------------------- figures


def save_figures(rows: list[dict], steps: dict[str, list[dict]], folder: Path) -> list[FigureFile]:
    """Write each figure as PNG under `folder` and keep its bytes for embedding in the HTML."""
    drawn = [
        ("loss_curves.png", "Training (solid) and validation (dashed) loss", loss_figure(steps)),
        (
            "rouge.png",
            "ROUGE F1 × 100 per method and baseline; whiskers: 95 % bootstrap interval",
            rouge_figure(rows),
        ),
        (
            "pareto.png",
            (
                "ROUGE-L against trainable parameters (log scale) and training time; grey "
                "line: Pareto front of the trained runs, dashed lines: baselines, whiskers: "
                "95 % interval"
            ),
            pareto_figure(rows),
        ),
        ("resources.png", "Training time and peak memory per run", resources_figure(rows)),
    ]
    figures = []
    for filename, title, figure in drawn:
        if figure is None:
            continue
        png = png_bytes(figure)
        write_atomic(folder / filename, png)
        data_uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        figures.append(FigureFile(title, f"{folder.name}/{filename}", data_uri))
    return figures


def new_figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, object]:
    # A bare Figure on an Agg canvas avoids pyplot's global state and any GUI backend.
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, (figure.add_subplot() if ncols == 1 else figure.subplots(1, ncols))


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    return buffer.getvalue()


def method_colors(rows: list[dict]) -> dict[str, str]:
    """One color per method name, shared by its seeds and across figures."""
    names = list(dict.fromkeys(r["name"] for r in rows))
    return {name: f"C{i % 10}" for i, name in enumerate(names)}


def loss_figure(steps: dict[str, list[dict]]) -> Figure | None:
    if not any(steps.values()):
        return None
    figure, ax = new_figure(7, 4)
    for i, (name, records) in enumerate(steps.items()):
        color = f"C{i % 10}"  # train and val of one run share a color
        train = [(r["step"], r["train_loss"]) for r in records if r.get("train_loss") is not None]
        val = [(r["step"], r["val_loss"]) for r in records if r.get("val_loss") is not None]
        if train:
            ax.plot(*zip(*train), "-", color=color, label=f"{name} train")
        if val:
            ax.plot(*zip(*val), "--o", color=color, markersize=4, label=f"{name} val")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    figure.legend(loc="outside right upper", fontsize="small")  # outside, so it never hides a curve
    return figure


def ci_errors(rows: list[dict], key: str) -> list[list[float]]:
    """Asymmetric error bar lengths [below, above]; zero where no interval is known."""
    below, above = [], []
    for r in rows:
        value, low, high = r.get(key), r.get(f"{key}_ci_low"), r.get(f"{key}_ci_high")
        known = None not in (value, low, high)
        below.append(value - low if known else 0.0)
        above.append(high - value if known else 0.0)
    return [below, above]


def rouge_figure(rows: list[dict]) -> Figure | None:
    if not any(r.get(key) is not None for r in rows for key, _ in ROUGE_COLUMNS):
        return None
    figure, ax = new_figure(max(6.0, 1.3 * len(rows) + 2), 4.2)
    width = 0.8 / len(ROUGE_COLUMNS)
    for j, (key, header) in enumerate(ROUGE_COLUMNS):
        heights = [math.nan if r.get(key) is None else r[key] for r in rows]
        positions = [i + (j - (len(ROUGE_COLUMNS) - 1) / 2) * width for i in range(len(rows))]
        ax.bar(positions, heights, width, label=header, color=f"C{j}")
        ax.errorbar(
            positions,
            heights,
            yerr=ci_errors(rows, key),
            fmt="none",
            ecolor="#333333",
            elinewidth=1,
            capsize=2,
        )
    ax.set_xticks(range(len(rows)), [r["label"] for r in rows], rotation=20, ha="right")
    ax.set_ylabel("F1 × 100")
    ax.grid(axis="y", alpha=0.3)
    figure.legend(loc="outside upper center", ncols=len(ROUGE_COLUMNS), fontsize="small")
    return figure


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both cost (lower x) and quality (higher y), by x."""
    front, best_y = [], -math.inf
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best_y:
            front.append((x, y))
            best_y = y
    return front


def pareto_figure(rows: list[dict]) -> Figure | None:
    trained = [r for r in rows if is_trained(r) and r.get("rougeL") is not None]
    if not trained:
        return None
    baselines = [r for r in rows if not is_trained(r) and r.get("rougeL") is not None]
    colors = method_colors(rows)
    # Seeds of one method share its color and differ in marker; a legend names every run,
    # so labels never collide with points or each other.
    seen: dict[str, int] = {}
    markers = {}
    for r in trained:
        markers[r["label"]] = "osD^vP*X"[seen.get(r["name"], 0) % 8]
        seen[r["name"]] = seen.get(r["name"], 0) + 1
    figure, axes = new_figure(10, 4.6, ncols=2)
    panels = [
        (axes[0], "trainable_params", "trainable parameters (log scale)", True),
        (axes[1], "train_wall_s", "training wall time (s)", False),
    ]
    for ax, key, xlabel, log in panels:
        points = [r for r in trained if r.get(key) is not None]
        front = pareto_front([(r[key], r["rougeL"]) for r in points])
        if len(front) > 1:
            ax.step(*zip(*front), where="post", color="grey", alpha=0.6, zorder=0)
        for r in points:
            ax.errorbar(
                r[key],
                r["rougeL"],
                yerr=ci_errors([r], "rougeL"),
                fmt=markers[r["label"]],
                color=colors[r["name"]],
                capsize=3,
                markersize=7,
                label=r["label"],
            )
        for r in baselines:
            ax.axhline(
                r["rougeL"], linestyle="--", color=colors[r["name"]], linewidth=1, label=r["label"]
            )
        if log:
            ax.set_xscale("log")
        ax.margins(x=0.15, y=0.1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("ROUGE-L (F1 × 100)")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    order = [labels.index(r["label"]) for r in trained + baselines if r["label"] in labels]
    handles, labels = [handles[i] for i in order], [labels[i] for i in order]
    figure.legend(
        handles, labels, loc="outside lower center", ncols=min(len(labels), 6), fontsize="small"
    )
    return figure


def resources_figure(rows: list[dict]) -> Figure | None:
    trained = [r for r in rows if is_trained(r)]
    memory_keys = [
        ("peak_rss_mb", "peak RSS"),
        ("peak_gpu_mb", "peak GPU allocated"),
        ("peak_gpu_reserved_mb", "peak GPU reserved"),
    ]
    has_time = any(r.get("train_wall_s") is not None for r in trained)
    has_memory = any(r.get(k) is not None for r in trained for k, _ in memory_keys)
    if not trained or not (has_time or has_memory):
        return None
    colors = method_colors(rows)
    figure, (time_ax, memory_ax) = new_figure(max(8.0, 1.6 * len(trained) + 4), 4, ncols=2)
    labels = [r["label"] for r in trained]
    positions = range(len(trained))
    times = [math.nan if r.get("train_wall_s") is None else r["train_wall_s"] for r in trained]
    time_ax.bar(positions, times, 0.6, color=[colors[r["name"]] for r in trained])
    time_ax.set_ylabel("training wall time (s)")
    width = 0.8 / len(memory_keys)
    for j, (key, label) in enumerate(memory_keys):
        heights = [math.nan if r.get(key) is None else r[key] / 1024 for r in trained]
        offsets = [i + (j - (len(memory_keys) - 1) / 2) * width for i in positions]
        memory_ax.bar(offsets, heights, width, label=label, color=f"C{j + 6}")
    memory_ax.set_ylabel("peak memory (GiB)")
    # Above the bars, so it never hides one.
    memory_ax.legend(
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncols=len(memory_keys),
        fontsize="small",
        frameon=False,
    )
    for ax in (time_ax, memory_ax):
        ax.set_xticks(positions, labels, rotation=20, ha="right")
        ax.grid(axis="y", alpha=0.3)
    return figure


# ---------------------------------------------------------------- templates


def template_env(templates_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        # Escape data in the HTML report only; Markdown uses its own `md` filter.
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2", "html"), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["md"] = md_cell
    env.filters["quote"] = md_quote
    return env


def md_cell(text: str) -> str:
    """Keep a value inside one Markdown table cell, shown as text rather than markup."""
    return md_text(text).replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def md_quote(text: str) -> str:
    return "\n".join("> " + line for line in md_text(text).splitlines() or [""])


def md_text(text) -> str:
    # Markdown viewers render raw HTML; neutralise tags coming from model outputs or articles.
    # Only a "<" that could open a tag (letter, "/", "!" or "?" next) is escaped: "< 0.001" stays.
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", str(text))
