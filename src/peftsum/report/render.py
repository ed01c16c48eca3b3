"""Render the comparison report (Markdown + self-contained HTML) from result files.

Only reads files written by earlier stages (no torch/transformers), so the
report can be re-rendered on a laptop from copied results. The order is a reader's:
findings, quality, figures, significance, cost, output length, examples, then the setup
as an appendix (report_setup). Figures: report_figures.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import jinja2

from peftsum import records
from peftsum.analysis import aggregate
from peftsum.analysis.stats import ALPHA
from peftsum.files import read_json, read_jsonl, write_atomic
from peftsum.metrics import BY_KEY, ROUGE, ROUGE_KEYS
from peftsum.records import RunRecord
from peftsum.report import study as report_study
from peftsum.report.figures import is_trained, save_figures
from peftsum.report.setup import appendix
from peftsum.report.tables import (
    MISSING,
    Cell,
    Table,
    best_value,
    fmt,
    fmt_flops,
    fmt_mean_std,
    fmt_p,
    fmt_pct,
    fmt_share,
    fmt_sig,
    p_text,
)

# Package data, so that an installed peftsum renders without the repository beside it.
DEFAULT_TEMPLATES_DIR = Path(str(resources.files("peftsum.report") / "templates"))
ARTICLE_CHARS = 600
MAX_PAIRS_SAID = 6  # more pairs of trained methods are counted in the findings, not listed
EXPLORER_HREF = "explorer.html"  # beside report.html

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
GRID_NOTE = (
    "Each sweep point trained with the selection seed{seed}, which no final run uses; the point "
    "with the {chosen} (bold) then trains afresh with every training seed and is evaluated on "
    "test. Early stopping (the weights kept are those with the lowest validation loss) reads "
    "{early}; the choice reads {choice}. Validation articles are removed from the training "
    "split, and the test split is not read for either."
)
CURVE_NOTE = (
    "Mean test ROUGE-L over seeds per training-set size, 95 % t-interval over seeds and "
    "test articles together in brackets (docs/statistics.md). Smaller sizes are nested subsets of the training "
    "split (one seeded permutation); each method keeps the hyperparameters chosen at "
    "n = {selected_at}, and the same number of epochs, so a smaller set also means fewer "
    "optimizer steps."
)
SIGNIFICANCE_NOTE = (
    "Paired t-test on the same test articles: Δ is the mean difference over seeds and articles "
    "(first system − second, ROUGE points); its standard error adds the methods' seed-to-seed "
    "variance and the system-by-article variance, with Satterthwaite degrees of freedom, so "
    "that a few seeds count as a few. With one seed per method it is the paired t-test over "
    "articles: a comparison of two trained checkpoints on these articles that says nothing "
    "about seed variance. p is two-sided and analytic (not resampled), then Holm-adjusted "
    "within each of two families, one per question asked beforehand, so that each keeps a "
    "{alpha:.0%} family-wise error rate: which method is best (the verdicts: each trained "
    "method against the strongest baseline, each pair of trained methods), and whether "
    "training helped at all (the floor: each trained method against {untrained}, the untrained "
    "model in the same template). The questions are separate, so the floor's answer does not "
    "depend on how many methods are compared with each other. Where {untrained} is the "
    "strongest baseline, its pairs answer both and are corrected once, in the verdict family, "
    "the stricter. Other pairs are context, with their unadjusted p in "
    "brackets and no verdict. ROUGE-L is the primary metric and carries the verdicts; "
    "ROUGE-Lsum is secondary (Holm within the same families, no verdict drawn). Adjusted "
    "p < {alpha} in bold."
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
    runs: dict[str, Path] | None = None,
    explorer: bool = False,
    selections: list[Path] = (),
    curve: Path | None = None,
) -> None:
    """Write report.md (figures as PNG files under figures/) and a self-contained report.html.

    `significance` is aggregate's significance.json (no significance table without it);
    `by_method` its metrics_by_method.json (computed from `metrics_json` when not given);
    `runs` the training runs' run.json by run label (hyperparameters, hardware, versions);
    `explorer`: link explorer.html, written beside the report (peftsum.report.explorer);
    `selections`: the sweeps' select files (the grid table and the sensitivity figure);
    `curve`: aggregate_curve's curve.json (the learning curves and their crossovers).
    """
    rows = with_labels(read_json(metrics_json))
    trained = {label: records.read_run(path, needs=("name",))
               for label, path in (runs or {}).items()}
    methods = read_json(by_method) if by_method is not None else aggregate.method_summary(rows)
    tests = read_json(significance) if significance is not None else None
    pairs = tests["pairs"] if tests else []
    key, rest = split_pairs(pairs, methods, rows)
    sweeps = [read_json(path) for path in selections]
    curves = read_json(curve) if curve is not None else None
    figures = save_figures(rows, read_steps(steps), Path(out_md).parent / "figures", sweeps,
                           curves)
    max_new = (setup.get("decoding") or {}).get("max_new_tokens")
    context = {
        "title": "Parameter-efficient fine-tuning for summarization",
        "summary": summary_paragraph(rows, setup),
        "findings": findings(rows, methods, pairs) + report_study.crossover_sentences(curves),
        "quality": quality_table(rows),
        "quality_note": QUALITY_NOTE,
        "seeds": seeds_table(methods) if any(m["n_seeds"] > 1 for m in methods) else None,
        "seeds_note": SEEDS_NOTE,
        "grid": report_study.grid_table(sweeps) if sweeps else None,
        "grid_note": grid_note(sweeps, list(trained.values())),
        "curve": report_study.curve_table(curves) if curves else None,
        "curve_note": CURVE_NOTE.format(selected_at=curves["selected_at"]) if curves else "",
        "figures": figures,
        "significance": significance_table(key, rows) if pairs else None,
        "significance_intro": significance_intro(methods, rows, pairs) if pairs else "",
        "significance_rest": significance_table(rest, rows) if rest else None,
        "significance_note": " ".join(filter(None, [
            SIGNIFICANCE_NOTE.format(alpha=ALPHA, untrained=aggregate.UNTRAINED),
            power_sentence(pairs)])) if tests else "",
        "methods": methods_table(rows),
        "resources": resources_table(rows),
        "resources_note": " ".join(filter(None, [devices_sentence(rows), RESOURCES_NOTE])),
        "memory": memory_table(rows),
        "memory_note": MEMORY_NOTE,
        "lengths": lengths_table(rows),
        "lengths_note": LENGTH_NOTE.format(max_new=f" ({max_new})" if max_new else ""),
        "examples": example_summaries(rows, predictions, articles, n_examples),
        "explorer": EXPLORER_HREF if explorer else None,
        "n_articles": len(read_jsonl(articles)),
        "appendix": appendix(setup, trained),
    }
    env = template_env(templates_dir or DEFAULT_TEMPLATES_DIR)
    # For papers: beside the figures (a folder the workflow declares), in LaTeX with booktabs.
    write_atomic(Path(out_md).parent / "figures" / LATEX_TABLE,
                 latex_table(context["quality"], LATEX_CAPTION))
    write_atomic(out_md, env.get_template("report.md.j2").render(context))
    write_atomic(out_html, env.get_template("report.html.j2").render(context))


# ---------------------------------------------------------------- reading inputs


def read_steps(steps: dict[str, Path]) -> dict[str, list[dict]]:
    return {name: read_jsonl(path) for name, path in steps.items()}


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


def truncate(text: str, limit: int = ARTICLE_CHARS) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip() + " …"


# ---------------------------------------------------------------- tables


def first_run_per_method(rows: list[dict]) -> list[dict]:
    """One trained row per method name: its seeds train the same parameters."""
    first: dict[str, dict] = {}
    for row in filter(is_trained, rows):
        first.setdefault(row["name"], row)
    return list(first.values())


def methods_table(rows: list[dict]) -> Table:
    """What each method trains: one row per method."""
    table = Table(
        ["Method", "What trains", "Trainable", "Added", "Total", "Share of model (%)", "Formula"],
        [False, False, True, True, True, True, False],
    )
    for row in first_run_per_method(rows):
        table.rows.append(
            [
                Cell(row["name"]),
                Cell(fmt(row["trains"])),
                Cell(fmt(row["trainable_params"])),
                Cell(fmt(row["added_params"])),
                Cell(fmt(row["total_params"])),
                Cell(fmt_pct(row["trainable_pct"])),
                Cell(fmt(row["formula"])),
            ]
        )
    return table


# (column, header, digits, lower is better), as the quality and seeds tables list them.
ROUGE_TABLE_COLUMNS = [(m.key, m.label, m.digits, not m.higher_is_better) for m in ROUGE]


def quality_table(rows: list[dict]) -> Table:
    # (column, header, digits, lower is better)
    columns = [("test_loss", "Test loss", 3, True), ("perplexity", "Perplexity", 2, True)]
    columns += ROUGE_TABLE_COLUMNS
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


def seeds_table(methods: list[dict]) -> Table:
    columns = [("test_loss", "Test loss", 3, True)]
    columns += ROUGE_TABLE_COLUMNS
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
                        if key in ROUGE_KEYS else "")
            cells.append(Cell(fmt_mean_std(mean, std, digits), bold=bold, note=interval))
        table.rows.append([Cell(method["name"]), Cell(fmt(method["n_seeds"]))] + cells)
    return table


def grid_note(sweeps: list[dict], runs: list[RunRecord]) -> str:
    """GRID_NOTE for these sweeps: the grid's seed, and the validation data early stopping and
    the choice read (the runs' eval_samples, the selection's validation articles)."""
    seeds = sorted({point["seed"] for sweep in sweeps for point in sweep.get("points", [])})
    samples = next((r.hparams.get("eval_samples") for r in runs if r.hparams), None)
    early = (f"the first {samples:,} validation examples" if samples
             else "the whole validation split")
    if report_study.selection_score(sweeps)[0] == "val_rougeL":
        articles = next((point.get("val_articles") for sweep in sweeps
                         for point in sweep.get("points", [])), None)
        choice = ("the greedy summaries of the first "
                  + (f"{articles:,} " if articles else "") + "validation articles")
        chosen = "highest validation ROUGE-L"
    else:
        choice, chosen = "the same validation loss", "lowest validation loss"
    return GRID_NOTE.format(seed=f" ({', '.join(map(str, seeds))})" if seeds else "",
                            chosen=chosen, early=early, choice=choice)


def significance_table(pairs: list[dict], rows: list[dict]) -> Table:
    def system(name: str, seeds: list) -> str:
        return f"{name} ({len(seeds)} seeds)" if len(seeds) > 1 else name

    headers = ["System A", "System B"]
    for key in aggregate.TESTED_METRICS:
        secondary = "" if key == aggregate.PRIMARY_METRIC else " (secondary)"
        headers += [f"Δ {BY_KEY[key].label}{secondary}", "p (Holm)"]
    table = Table(headers, [False, False] + [True] * (len(headers) - 2))
    for pair in pairs:
        cells = [
            Cell(system(pair["system_a"], pair["seeds_a"])),
            Cell(system(pair["system_b"], pair["seeds_b"])),
        ]
        for key in aggregate.TESTED_METRICS:
            diff = pair.get(f"{key}_diff")
            cells.append(Cell(MISSING if diff is None else f"{diff:+.2f}"))
            cells.append(p_cell(pair, key))
        table.rows.append(cells)
    return table


def p_cell(pair: dict, key: str) -> Cell:
    """Holm's p of a verdict pair (bold below ALPHA on the primary metric); a context pair's
    unadjusted p in brackets, never bold."""
    if pair.get("family") == aggregate.CONTEXT:
        p = pair.get(f"{key}_p")
        return Cell(MISSING if p is None else f"({fmt_p(p)})")
    p = pair.get(f"{key}_p_holm")
    return Cell(fmt_p(p), bold=p is not None and p < ALPHA)


def key_systems(methods: list[dict], rows: list[dict]) -> tuple[str | None, str | None]:
    """The best system by mean ROUGE-L and the strongest baseline (an untrained system)."""
    scored = ranked_by_rouge_l(methods)
    trained = {r["name"] for r in rows if is_trained(r)}
    baseline = next((m["name"] for m in scored if m["name"] not in trained), None)
    return (scored[0]["name"] if scored else None), baseline


def split_pairs(pairs: list[dict], methods: list[dict], rows: list[dict]) -> tuple[list, list]:
    """The comparisons a reader asks about first, and the rest.

    First the best system against every other (by the other's rank), then each trained method
    against the strongest baseline, then the floor's pairs (each trained method against the
    untrained model) not shown yet.
    """
    best, baseline = key_systems(methods, rows)
    rank = {m["name"]: i for i, m in enumerate(ranked_by_rouge_l(methods))}
    trained = {r["name"] for r in rows if is_trained(r)}

    def other(pair: dict, name: str) -> str:
        return pair["system_b"] if pair["system_a"] == name else pair["system_a"]

    def involves(pair: dict, name: str | None) -> bool:
        return name in (pair["system_a"], pair["system_b"])

    against_best = sorted(
        (p for p in pairs if involves(p, best)), key=lambda p: rank.get(other(p, best), len(rank))
    )
    against_baseline = sorted(
        (p for p in pairs if involves(p, baseline) and not involves(p, best)
         and other(p, baseline) in trained),
        key=lambda p: rank.get(other(p, baseline), len(rank)),
    )
    floor = sorted(
        (p for p in pairs if p.get("family") == aggregate.FLOOR and not involves(p, best)),
        key=lambda p: rank.get(other(p, aggregate.UNTRAINED), len(rank)),
    )
    first = against_best + against_baseline + floor
    return first, [p for p in pairs if not any(p is q for q in first)]


def significance_intro(methods: list[dict], rows: list[dict], pairs: list[dict]) -> str:
    best, baseline = key_systems(methods, rows)
    text = f"{best}, the best by mean ROUGE-L, against every other system"
    if baseline and baseline != best:
        text += f"; then each trained method against {baseline}, the strongest baseline"
    if any(p.get("family") == aggregate.FLOOR for p in pairs):
        text += (f"; then each trained method against {aggregate.UNTRAINED}, the untrained "
                 "model (the floor)")
    return text + "."


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
    # (header, format, key); the hardware's columns only where some run has them (no MFU or
    # GPU figures for CPU runs).
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
    columns = [c for c in columns if c[2] not in HARDWARE_KEYS or measured(rows, c[2])]
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
    """Peak memory and checkpoint size per trained run; the GPU columns only for GPU runs."""
    trained = list(filter(is_trained, rows))
    columns = [("Peak RSS (MB)", "peak_rss_mb"), ("Peak GPU allocated (MB)", "peak_gpu_mb"),
               ("Peak GPU reserved (MB)", "peak_gpu_reserved_mb")]
    columns = [c for c in columns if c[1] not in HARDWARE_KEYS or measured(trained, c[1])]
    table = Table(["Method"] + [h for h, _ in columns] + ["Checkpoint (MB)"],
                  [False] + [True] * (len(columns) + 1))
    for row in trained:
        table.rows.append([Cell(row["label"])]
                          + [Cell(fmt(row.get(key), 0)) for _, key in columns]
                          + [Cell(fmt_sig(row.get("checkpoint_mb")))])
    return table


# Figures that only some hardware measures (MFU needs a known peak, the rest a GPU): a column
# of them is left out where no run has one.
HARDWARE_KEYS = {"mfu", "gpu_util_pct", "gpu_energy_j", "peak_gpu_mb", "peak_gpu_reserved_mb"}


def measured(rows: list[dict], key: str) -> bool:
    return any(r.get(key) is not None for r in rows)


# ---------------------------------------------------------------- text from numbers


def summary_paragraph(rows: list[dict], setup: dict) -> str:
    trained = [row["label"] for row in rows if is_trained(row)]
    baselines = [row["label"] for row in rows if not is_trained(row)]
    model = (setup.get("model") or {}).get("name") or "the base model"
    n_test = next((r["n_test"] for r in rows if r.get("n_test") is not None), None)
    text = f"This report compares {counted(len(trained), 'fine-tuning run')}"
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
    """Short findings derived from the numbers, so they stay true when results change: first
    the takeaway in plain words (takeaway_sentence), then the verdicts, then the costs.

    Systems are compared by name: a method trained with several seeds by its mean.
    """
    methods = methods if methods is not None else aggregate.method_summary(rows)
    sentences = [
        takeaway_sentence(methods, rows),
        best_rouge_sentence(methods),
        significance_sentence(methods, pairs),
        strongest_baseline_sentence(methods, pairs),
        floor_sentence(methods, pairs),
        other_trained_pairs_sentence(methods, pairs),
        cheapest_sentence(rows),
        fastest_sentence(methods),
        cut_off_sentence(rows),
    ]
    return [s for s in sentences if s]


def takeaway_sentence(methods: list[dict], rows: list[dict]) -> str:
    """Quality against cost in one line: the best method that trains a part of the model,
    as a share of full fine-tuning's ROUGE-L and parameters where `full` ran, else its gain
    over the untrained model and the share of the model it trains."""
    scored = ranked_by_rouge_l(methods)
    runs = {r["name"]: r for r in first_run_per_method(rows)}  # kind and parameter counts
    trained = [m for m in scored if m["name"] in runs]
    full = next((m for m in trained if runs[m["name"]].get("kind") == "full"), None)
    partial = next((m for m in trained if runs[m["name"]].get("kind") != "full"), None)
    if partial is None:
        return ""
    mine = runs[partial["name"]]
    if full is not None:
        quality = partial["rougeL_mean"] / full["rougeL_mean"]
        share = mine["trainable_params"] / runs[full["name"]]["trainable_params"]
        return (f"{partial['name']} reaches {quality * 100:.0f} % of full fine-tuning's ROUGE-L "
                f"({partial['rougeL_mean']:.2f} against {full['rougeL_mean']:.2f}) training "
                f"{fmt_pct(share * 100)} % of its parameters.")
    untrained = next((m for m in scored if m["name"] == aggregate.UNTRAINED), None)
    trains = (f"training {fmt_pct(mine['trainable_pct'])} % of the model's parameters"
              if mine.get("trainable_pct") is not None else
              f"training {mine['trainable_params']:,} parameters")
    if untrained is None:
        return f"{partial['name']} scores best among the trained methods, {trains}."
    gain = partial["rougeL_mean"] - untrained["rougeL_mean"]
    return (f"{partial['name']}, {trains}, scores {gain:+.2f} ROUGE-L against the untrained "
            f"model ({partial['rougeL_mean']:.2f} against {untrained['rougeL_mean']:.2f}).")


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


ZERO_SHOT_BASELINES = (aggregate.UNTRAINED, "zero_shot_chat")  # the untrained model's rows


def strongest_zero_shot(scored: list[dict]) -> dict | None:
    """The untrained model's best row; scored is best first. By exact name: a method may be
    called zero_shot_anything."""
    return next((m for m in scored if m["name"] in ZERO_SHOT_BASELINES), None)


def find_pair(pairs: list[dict], first: str, second: str) -> dict | None:
    return next((p for p in pairs if {p["system_a"], p["system_b"]} == {first, second}), None)


def significance_sentence(methods: list[dict], pairs: list[dict]) -> str:
    """Whether the best's lead over the runner-up and over the strongest zero-shot baseline is
    significant (ROUGE-L); a pair the floor sentence states is left to it."""
    scored = ranked_by_rouge_l(methods)
    if len(scored) < 2 or not pairs:
        return ""
    best = scored[0]["name"]
    zero_shot = strongest_zero_shot(scored[2:])
    others = [scored[1]["name"]] + ([zero_shot["name"]] if zero_shot else [])
    floor = [pair for _, pair in floor_pairs(methods, pairs)]
    told = [(other, pair) for other in others
            if (pair := find_pair(pairs, best, other)) and pair.get("rougeL_p_holm") is not None
            and not any(pair is stated for stated in floor)]
    if not told:
        return ""
    clauses = [pair_verdict(f"{best}'s" if not i else "its", best, other, pair)
               for i, (other, pair) in enumerate(told)]
    baselines = {m["name"] for m in methods if m.get("kind") == "baseline"}
    with_baseline = any({p["system_a"], p["system_b"]} & baselines for _, p in told)
    checkpoints = ("a trained checkpoint with a baseline" if with_baseline
                   else "two trained checkpoints")
    return f"{design_text([p for _, p in told], checkpoints)}, on ROUGE-L, " + (
        "; ".join(clauses) + ".")


def design_text(pairs: list[dict], checkpoints: str) -> str:
    """What the tests of `pairs` compare: methods over seeds and articles, or, with one seed
    per method, `checkpoints` on these articles (one seed compares checkpoints, not methods)."""
    if any(pair["rougeL_seed_pairs"] > 1 for pair in pairs):
        return "Over training seeds and test articles (paired t-test)"
    return (f"With one seed per method, comparing {checkpoints} on these test articles (paired "
            "t-test over articles; nothing about seed variance)")


def trained_names(methods: list[dict]) -> list[str]:
    """The trained methods, best ROUGE-L first."""
    return [m["name"] for m in ranked_by_rouge_l(methods)
            if m.get("kind", "baseline") != "baseline"]


def floor_pairs(methods: list[dict], pairs: list[dict]) -> list[tuple[str, dict]]:
    """(trained method, its test against the untrained model) for each trained method whose test
    carries Holm's p: in the floor family, or in the verdict family where the untrained model is
    the strongest baseline."""
    return [(name, pair) for name in trained_names(methods)
            if (pair := find_pair(pairs, name, aggregate.UNTRAINED))
            and pair.get("rougeL_p_holm") is not None]


def floor_sentence(methods: list[dict], pairs: list[dict]) -> str:
    """The floor's answer on ROUGE-L: which trained methods beat the untrained model, and which
    cannot be told apart from it or fall below it."""
    told = floor_pairs(methods, pairs)
    if not told:
        return ""
    several_seeds = any(pair["rougeL_seed_pairs"] > 1 for _, pair in told)

    def single(pair: dict) -> str:  # a single run among several seeds is one checkpoint
        return " [one checkpoint]" if several_seeds and pair.get("design") == "checkpoints" else ""

    helped = [name for name, pair in told
              if pair["system_a"] == name and pair["rougeL_p_holm"] < ALPHA]
    clauses = []
    if helped:
        each = "; ".join(f"{name}: {pair_stats(pair)}{single(pair)}"
                         for name, pair in told if name in helped)
        clauses.append(f"training helped: {joined(helped)} beat{'s' if len(helped) == 1 else ''} "
                       f"the untrained model, {aggregate.UNTRAINED} ({each})")
    for name, pair in told:
        if name not in helped:
            ahead, behind = pair["system_a"], pair["system_b"]
            clauses.append(pair_verdict(f"{ahead}'s", ahead, behind, pair) + single(pair))
    design = design_text([pair for _, pair in told],
                         "each trained checkpoint with the untrained model")
    return f"{design}, on ROUGE-L, " + "; ".join(clauses) + "."


def joined(names: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"


def pair_verdict(subject: str, ahead: str, behind: str, pair: dict) -> str:
    """'<subject> lead over <behind> is significant (...)' or '<ahead> and <behind> cannot be
    told apart (...)', by Holm's p on ROUGE-L."""
    if pair["rougeL_p_holm"] < ALPHA:
        return f"{subject} lead over {behind} is significant ({pair_stats(pair)})"
    return f"{ahead} and {behind} cannot be told apart ({pair_stats(pair)})"


def pair_stats(pair: dict) -> str:
    """Holm's p, the difference and the seeds' vote of one ROUGE-L comparison (system_a is
    the one ahead on the mean)."""
    stats = f"{p_text(pair['rougeL_p_holm'])} after Holm's correction, Δ = {pair['rougeL_diff']:+.2f}"
    ahead, paired = pair["rougeL_seeds_ahead"], pair["rougeL_seed_pairs"]
    if paired > 1:
        stats += f", ahead in {ahead} of {paired} seeds"
    return stats


def power_sentence(pairs: list[dict]) -> str:
    """What the design can detect on ROUGE-L: the range of differences found with 80 % power
    over the verdict family, and for the largest difference it did not call, the seeds or test
    articles that would (aggregate.significance's power columns)."""
    family = [p for p in pairs if p.get("family") == aggregate.VERDICT
              and p.get("detectable_80") is not None]
    if not family:
        return ""
    detectable = sorted(p["detectable_80"] for p in family)
    text = (f"Power: this design detects a ROUGE-L difference of {detectable[0]:.2f}"
            + (f"–{detectable[-1]:.2f}" if detectable[-1] - detectable[0] >= 0.005 else "")
            + f" points with 80 % power at Holm's strictest level (α / {len(family)}).")
    missed = [p for p in family if p["rougeL_p_holm"] >= ALPHA]
    if not missed:
        return text
    largest = max(missed, key=lambda p: abs(p["rougeL_diff"]))
    needs = [f"about {largest['seeds_needed']} seeds per method"
             if largest.get("seeds_needed") else None,
             f"about {largest['articles_needed']:,} test articles"
             if largest.get("articles_needed") else None]
    needs = [n for n in needs if n]
    missed_text = (f" The largest difference it did not call, {largest['system_a']} over "
                   f"{largest['system_b']} (Δ = {largest['rougeL_diff']:+.2f}), ")
    if not needs:
        return text + missed_text + ("is too small for more seeds or more test articles alone "
                                     "to find with 80 % power.")
    return text + missed_text + f"would need {' or '.join(needs)} to be found with 80 % power."


def strongest_baseline_sentence(methods: list[dict], pairs: list[dict]) -> str:
    """Each trained method against the strongest baseline, the verdicts' other half, where that
    baseline is not the untrained model (the floor sentence says those) and the pair is not the
    best against the runner-up (significance_sentence says that one)."""
    scored = ranked_by_rouge_l(methods)
    trained = trained_names(methods)
    strongest = next((m["name"] for m in scored if m["name"] not in trained), None)
    if strongest in (None, aggregate.UNTRAINED):
        return ""
    told = {m["name"] for m in scored[:2]}
    said = [pair for name in trained if {name, strongest} != told
            and (pair := find_pair(pairs, name, strongest))
            and pair.get("rougeL_p_holm") is not None]
    if not said:
        return ""
    clauses = [pair_verdict(f"{p['system_a']}'s", p["system_a"], p["system_b"], p) for p in said]
    scope = (" (one checkpoint per method, on these test articles: nothing about seed "
             "variance)" if all(p.get("design") == "checkpoints" for p in said) else "")
    return (f"Against {strongest}, the strongest baseline{scope}, on ROUGE-L: "
            + "; ".join(clauses) + ".")


def other_trained_pairs_sentence(methods: list[dict], pairs: list[dict]) -> str:
    """Every pair of trained methods that significance_sentence leaves out (it has the best
    against the runner-up): a study's question is often between two of the others."""
    scored = ranked_by_rouge_l(methods)
    trained = trained_names(methods)
    told = {m["name"] for m in scored[:2]}
    others = [find_pair(pairs, first, second)
              for i, first in enumerate(trained) for second in trained[i + 1:]
              if {first, second} != told]
    others = [pair for pair in others if pair and pair.get("rougeL_p_holm") is not None]
    if len(others) > MAX_PAIRS_SAID:
        significant = sum(pair["rougeL_p_holm"] < ALPHA for pair in others)
        return (f"Of the other {len(others)} pairs of trained methods, {significant} differ "
                "significantly on ROUGE-L after Holm's correction (the significance table has "
                "them all).")
    if not others:
        return ""
    # A pair of single runs compares two checkpoints: say so once if all are, else per pair.
    single = [p.get("design") == "checkpoints" for p in others]
    clauses = [pair_verdict(f"{p['system_a']}'s", p["system_a"], p["system_b"], p)
               + (" [one checkpoint each]" if one and not all(single) else "")
               for p, one in zip(others, single)]
    scope = (" (one checkpoint each, on these test articles: nothing about seed variance)"
             if all(single) else "")
    return f"The other pairs of trained methods{scope}, on ROUGE-L: " + "; ".join(clauses) + "."


def cheapest_sentence(rows: list[dict]) -> str:
    trained = first_run_per_method(rows)
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


# ---------------------------------------------------------------- templates


LATEX_TABLE = "main_results.tex"
LATEX_CAPTION = ("Test quality per system; ROUGE F1 $\\times$ 100, 95\\,\\% bootstrap intervals "
                 "in brackets, the best value of each column in bold.")
LATEX_SPECIALS = {c: "\\" + c for c in "&%$#_{}"} | {"~": r"\textasciitilde{}",
                                                    "^": r"\textasciicircum{}",
                                                    "\\": r"\textbackslash{}"}


def latex_table(table: Table, caption: str) -> str:
    """A booktabs table (needs \\usepackage{booktabs}) with the cells as the report shows them."""
    def cell(c: Cell) -> str:
        text = latex_escape(c.text) + (f" {latex_escape(c.note)}" if c.note else "")
        return f"\\textbf{{{text}}}" if c.bold else text

    spec = "".join("r" if numeric else "l" for numeric in table.numeric)
    lines = ["\\begin{table}[t]", "\\centering", f"\\begin{{tabular}}{{{spec}}}", "\\toprule",
             " & ".join(latex_escape(h) for h in table.headers) + " \\\\", "\\midrule",
             *(" & ".join(cell(c) for c in row) + " \\\\" for row in table.rows),
             "\\bottomrule", "\\end{tabular}", f"\\caption{{{caption}}}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIALS.get(c, c) for c in text)


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
