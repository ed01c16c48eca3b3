"""Render the comparison report (Markdown + self-contained HTML) from result files.

Only reads files written by earlier stages (no torch/transformers), so the
report can be re-rendered on a laptop from copied results.
"""

from __future__ import annotations

import base64
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from peftsum.io import read_json, read_jsonl, write_atomic

DEFAULT_TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "report_templates"
MISSING = "—"
ARTICLE_CHARS = 600

ROUGE_COLUMNS = [
    ("rouge1", "ROUGE-1"),
    ("rouge2", "ROUGE-2"),
    ("rougeL", "ROUGE-L"),
    ("rougeLsum", "ROUGE-Lsum"),
]
QUALITY_NOTE = (
    "ROUGE scores are F1 × 100 with stemming. ROUGE-L is computed on the whole summary "
    "without sentence splitting; ROUGE-Lsum is summary-level LCS on newline-split sentences. "
    "Best value per column in bold (lowest for loss and perplexity)."
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
) -> None:
    """Write report.md (figures as PNG files under figures/) and a self-contained report.html."""
    rows = with_labels(read_json(metrics_json))
    figures = save_figures(rows, read_steps(steps), Path(out_md).parent / "figures")
    context = {
        "title": "Parameter-efficient fine-tuning for summarization",
        "summary": summary_paragraph(rows, setup),
        "setup": setup_sections(setup),
        "methods": methods_table(rows),
        "quality": quality_table(rows),
        "quality_note": QUALITY_NOTE,
        "resources": resources_table(rows),
        "figures": figures,
        "findings": " ".join(findings(rows)),
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
    best = {key: best_value([r[key] for r in rows], lower) for key, _, _, lower in columns}
    table = Table(["Method"] + [c[1] for c in columns], [False] + [True] * len(columns))
    for row in rows:
        cells = [
            Cell(fmt(row[key], digits), bold=row[key] is not None and row[key] == best[key])
            for key, _, digits, _ in columns
        ]
        table.rows.append([Cell(row["label"])] + cells)
    return table


def best_value(values: list, lower_is_better: bool):
    present = [v for v in values if v is not None]
    if not present:
        return None
    return min(present) if lower_is_better else max(present)


def resources_table(rows: list[dict]) -> Table:
    headers = [
        "Method",
        "Train wall (s)",
        "Tokens/s",
        "Peak RSS (MB)",
        "Peak GPU (MB)",
        "Optimizer steps",
        "Generation wall (s)",
    ]
    table = Table(headers, [False] + [True] * (len(headers) - 1))
    for row in rows:
        table.rows.append(
            [
                Cell(row["label"]),
                Cell(fmt(row["train_wall_s"], 1)),
                Cell(fmt(row["tokens_per_s"], 0)),
                Cell(fmt(row["peak_rss_mb"], 0)),
                Cell(fmt(row["peak_gpu_mb"], 0)),
                Cell(fmt(row["optimizer_steps"])),
                Cell(fmt(row["gen_wall_s"], 1)),
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
        text + " It lists what each method trains and costs, its test quality, and example outputs."
    )


def counted(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def findings(rows: list[dict]) -> list[str]:
    """Sentences derived from the numbers, so they stay true when results change."""
    sentences = [best_rouge_sentence(rows), cheapest_sentence(rows), fastest_sentence(rows)]
    return [s for s in sentences if s]


def best_rouge_sentence(rows: list[dict]) -> str:
    scored = sorted((r for r in rows if r["rougeL"] is not None), key=lambda r: -r["rougeL"])
    if not scored:
        return "No ROUGE-L scores are available."
    best = scored[0]
    sentence = f"{best['label']} has the best ROUGE-L ({best['rougeL']:.2f})"
    runner_up = scored[1] if len(scored) > 1 else None
    if runner_up:
        gap = best["rougeL"] - runner_up["rougeL"]
        sentence += f", {gap:.2f} points above the next best, {runner_up['label']}"
        sentence += f" ({runner_up['rougeL']:.2f})"
    zero_shot = next((r for r in scored[1:] if r["name"] == "zero_shot"), None)
    if zero_shot and zero_shot is not runner_up:
        gap = best["rougeL"] - zero_shot["rougeL"]
        sentence += f", and {gap:.2f} points above the zero_shot baseline"
        sentence += f" ({zero_shot['rougeL']:.2f})"
    return sentence + "."


def cheapest_sentence(rows: list[dict]) -> str:
    trained = list(filter(is_trained, rows))
    if not trained:
        return ""
    cheapest = min(trained, key=lambda r: r["trainable_params"])
    label, params, pct = cheapest["label"], cheapest["trainable_params"], cheapest["trainable_pct"]
    share = f", {fmt_pct(pct)} % of the model" if pct is not None else ""
    if len(trained) == 1:
        return f"{label} trains {params:,} parameters{share}."
    return f"The cheapest trained method in trainable parameters is {label} ({params:,}{share})."


def fastest_sentence(rows: list[dict]) -> str:
    timed = [r for r in rows if r["train_wall_s"] is not None]
    if not timed:
        return ""
    fastest = min(timed, key=lambda r: r["train_wall_s"])
    if len(timed) == 1:
        return f"{fastest['label']} trained in {fastest['train_wall_s']:,.1f} s."
    return f"{fastest['label']} trained fastest ({fastest['train_wall_s']:,.1f} s wall time)."


# ---------------------------------------------------------------- examples


def example_summaries(
    rows: list[dict], predictions: dict[str, Path], articles: Path, n_examples: int
) -> list[dict]:
    """The first test articles with the reference and every system's prediction."""
    names = list(
        dict.fromkeys([r["name"] for r in rows if r["name"] in predictions] + list(predictions))
    )
    by_name = {
        name: {p["id"]: p["prediction"] for p in read_jsonl(predictions[name])} for name in names
    }
    examples = []
    for article in read_jsonl(articles)[:n_examples]:
        examples.append(
            {
                "id": article["id"],
                "article": truncate(article["article"]),
                "reference": article["highlights"],
                "predictions": [
                    (name, by_name[name].get(article["id"], MISSING)) for name in names
                ],
            }
        )
    return examples


# ---------------------------------------------------------------- figures


def save_figures(rows: list[dict], steps: dict[str, list[dict]], folder: Path) -> list[FigureFile]:
    """Write each figure as PNG under `folder` and keep its bytes for embedding in the HTML."""
    drawn = [
        ("loss_curves.png", "Training (solid) and validation (dashed) loss", loss_figure(steps)),
        ("rouge.png", "ROUGE F1 × 100 per method and baseline", rouge_figure(rows)),
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


def new_figure(width: float, height: float) -> tuple[Figure, object]:
    # A bare Figure on an Agg canvas avoids pyplot's global state and any GUI backend.
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    return buffer.getvalue()


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


def rouge_figure(rows: list[dict]) -> Figure | None:
    if not any(r[key] is not None for r in rows for key, _ in ROUGE_COLUMNS):
        return None
    figure, ax = new_figure(max(5.0, 1.3 * len(rows) + 2), 4)
    width = 0.8 / len(ROUGE_COLUMNS)
    for j, (key, header) in enumerate(ROUGE_COLUMNS):
        heights = [math.nan if r[key] is None else r[key] for r in rows]
        positions = [i + (j - (len(ROUGE_COLUMNS) - 1) / 2) * width for i in range(len(rows))]
        ax.bar(positions, heights, width, label=header, color=f"C{j}")
    ax.set_xticks(range(len(rows)), [r["label"] for r in rows], rotation=20, ha="right")
    ax.set_ylabel("F1 × 100")
    ax.grid(axis="y", alpha=0.3)
    figure.legend(loc="outside upper center", ncols=len(ROUGE_COLUMNS), fontsize="small")
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
    return str(text).replace("<", "&lt;")
