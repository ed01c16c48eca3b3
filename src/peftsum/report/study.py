"""The study's part of the report: the sweep grid and its sensitivity figure, the spread of
scores over seeds, and the learning curves with their crossovers. Reads result files' contents
only: no torch."""

from __future__ import annotations

from matplotlib.figure import Figure

from peftsum.analysis.stats import seed_interval
from peftsum.report.canvas import MARKERS, new_figure
from peftsum.report.tables import Cell, Table, fmt, is_trained, p_text

CAPTIONS = {
    "sensitivity.png": (
        "The selection's validation score (best validation loss: lower is better; or ROUGE-L of "
        "validation summaries: higher is better) of each sweep point against each swept "
        "hyperparameter (one panel per hyperparameter, one line per method and setting of the "
        "others, log scale where the values span a factor of 10 or more); the star marks the "
        "chosen point. A flat line means "
        "the method does not care about that value; a chosen point at the edge of the grid "
        "means a better one may lie outside it. The test split was not read for any of this."
    ),
    "seed_spread.png": (
        "Test ROUGE-L of every training seed (dots) and the mean over seeds with its 95 % "
        "t-interval (bar). Higher is better. Methods whose intervals overlap widely are not told apart by these "
        "seeds; one far-off dot is a seed a single-seed comparison could have been built on."
    ),
    "learning_curves.png": (
        "Test ROUGE-L (left, higher is better) and test loss (right, lower is better) of each "
        "method against the number of training examples (nested subsets, log scale), mean over "
        "seeds with 95 % intervals (ROUGE-L: t-interval over seeds and articles together; loss: "
        "t-interval over seeds). Lines that cross are a change of order with data; the findings "
        "say whether it is significant. Swept hyperparameters were chosen at the largest size."
    ),
}

# The selection metric's key in a sweep point, its axis label, and whether higher is better.
SELECTION_SCORES = {"val_loss": ("val_loss", "best validation loss"),
                    "rougeL": ("val_rougeL", "validation ROUGE-L")}


def selection_score(selections: list[dict]) -> tuple[str, str]:
    """(the sweep points' key, its label) of the selections' metric (one for the whole config)."""
    return SELECTION_SCORES[selections[0].get("metric", "val_loss") if selections else "val_loss"]


def grid_table(selections: list[dict]) -> Table:
    """Every sweep point with its validation scores, the chosen one in bold."""
    by_rouge = selection_score(selections)[0] == "val_rougeL"
    table = Table(["Method", "Point", "Best validation loss", "At step"]
                  + (["Validation ROUGE-L"] if by_rouge else []),
                  [False, False, True, True] + ([True] if by_rouge else []))
    for selection in selections:
        for point in selection["points"]:
            chosen = point["point"] == selection["chosen"]
            table.rows.append([Cell(selection["method"]), Cell(point["point"], bold=chosen),
                               Cell(fmt(point["val_loss"], 4), bold=chosen),
                               Cell(fmt(point["best_step"]))]
                              + ([Cell(fmt(point["val_rougeL"]), bold=chosen)] if by_rouge else []))
    return table


def sensitivity_figure(selections: list[dict], colors: dict[str, str]) -> Figure | None:
    keys = sorted({key for s in selections for p in s["points"] for key in p["hparams"]})
    if not keys:
        return None
    score, label = selection_score(selections)
    figure, axes = new_figure(4.2 * len(keys) + 1.5, 3.6, ncols=len(keys))
    for ax, key in zip(axes if len(keys) > 1 else [axes], keys):
        for selection in selections:
            _sensitivity_lines(ax, key, score, selection, colors[selection["method"]])
        values = [p["hparams"][key] for s in selections for p in s["points"] if key in p["hparams"]]
        numeric = [v for v in values if isinstance(v, (int, float)) and v > 0]
        if numeric and max(numeric) >= 10 * min(numeric):
            ax.set_xscale("log")
        if len(numeric) == len(values):  # the grid's own values as ticks, not matplotlib's
            ticks = sorted(set(numeric))
            # Upright: two grids' values a factor 2 apart (0.0005, 0.001) overlap when level.
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks], rotation=90)
            ax.minorticks_off()
        ax.set_xlabel(key)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    figure.legend(loc="outside right upper", fontsize="small")
    return figure


def _sensitivity_lines(ax, key: str, score: str, selection: dict, color: str) -> None:
    """One line per setting of the other swept keys; every point labelled with its value."""
    lines: dict[str, list[dict]] = {}
    for point in selection["points"]:
        if key in point["hparams"] and point.get(score) is not None:
            others = ",".join(f"{k}={v}" for k, v in sorted(point["hparams"].items()) if k != key)
            lines.setdefault(others, []).append(point)
    for i, (others, points) in enumerate(lines.items()):
        points.sort(key=lambda p: p["hparams"][key])
        xs, ys = [p["hparams"][key] for p in points], [p[score] for p in points]
        label = selection["method"] + (f" ({others})" if others else "")
        ax.plot(xs, ys, marker=MARKERS[i % len(MARKERS)], color=color, label=label, alpha=0.85)
        for p in points:
            ax.annotate(f"{p['hparams'][key]}", (p["hparams"][key], p[score]),
                        textcoords="offset points", xytext=(4, 4), fontsize="x-small")
            if p["point"] == selection["chosen"]:
                ax.plot([p["hparams"][key]], [p[score]], marker="*", markersize=15,
                        color=color, markeredgecolor="black", linestyle="none")


def seed_spread_figure(rows: list[dict], colors: dict[str, str]) -> Figure | None:
    by_name: dict[str, list[float]] = {}
    for row in filter(is_trained, rows):
        if row.get("rougeL") is not None:
            by_name.setdefault(row["name"], []).append(row["rougeL"])
    if not any(len(scores) > 1 for scores in by_name.values()):
        return None
    figure, ax = new_figure(max(5.0, 1.1 * len(by_name) + 2), 3.8)
    for i, (name, scores) in enumerate(by_name.items()):
        mean, low, high = seed_interval(scores)
        if low is not None:
            ax.errorbar([i], [mean], yerr=[[mean - low], [high - mean]], fmt="_", markersize=22,
                        color=colors[name], elinewidth=2, capsize=6)
        offsets = [(j - (len(scores) - 1) / 2) * 0.08 for j in range(len(scores))]
        ax.scatter([i + o for o in offsets], scores, color=colors[name], edgecolor="black",
                   zorder=3, label=f"{name} ({len(scores)} seeds)")
    ax.set_xticks(range(len(by_name)), list(by_name), rotation=20, ha="right")
    ax.set_ylabel("test ROUGE-L")
    ax.grid(axis="y", alpha=0.3)
    figure.legend(loc="outside right upper", fontsize="small")
    return figure


def curve_figure(curve: dict | None, colors: dict[str, str]) -> Figure | None:
    if not curve or len(curve["sizes"]) < 2:
        return None
    figure, (rouge_ax, loss_ax) = new_figure(10.5, 3.8, ncols=2)
    by_method: dict[str, list[dict]] = {}
    for point in curve["points"]:
        by_method.setdefault(point["method"], []).append(point)
    for i, (method, points) in enumerate(by_method.items()):
        points.sort(key=lambda p: p["train_examples"])
        xs = [p["train_examples"] for p in points]
        for ax, key in ((rouge_ax, "rougeL"), (loss_ax, "test_loss")):
            ys = [p[key] for p in points]
            errors = [[y - (p[f"{key}_low"] if p[f"{key}_low"] is not None else y) for y, p in
                       zip(ys, points)],
                      [(p[f"{key}_high"] if p[f"{key}_high"] is not None else y) - y for y, p in
                       zip(ys, points)]]
            ax.errorbar(xs, ys, yerr=errors, marker=MARKERS[i % len(MARKERS)], capsize=4,
                        color=colors[method], label=method if ax is rouge_ax else None)
    for ax, label in ((rouge_ax, "test ROUGE-L"), (loss_ax, "test loss")):
        ax.set_xscale("log")
        ax.set_xticks(curve["sizes"], [str(n) for n in curve["sizes"]])
        ax.minorticks_off()
        ax.set_xlabel("training examples")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    figure.legend(loc="outside right upper", fontsize="small")
    return figure


def curve_table(curve: dict) -> Table:
    """One row per method, one column per training size: mean ROUGE-L [interval]."""
    sizes = curve["sizes"]
    table = Table(["Method"] + [f"n = {n}" for n in sizes], [False] + [True] * len(sizes))
    by_method: dict[str, dict[int, dict]] = {}
    for point in curve["points"]:
        by_method.setdefault(point["method"], {})[point["train_examples"]] = point
    for method, points in by_method.items():
        cells = [Cell(method)]
        for n in sizes:
            p = points.get(n)
            cells.append(Cell(fmt(p["rougeL"]), note=f"[{fmt(p['rougeL_low'])}, "
                              f"{fmt(p['rougeL_high'])}]") if p else Cell(fmt(None)))
        table.rows.append(cells)
    return table


def crossover_sentences(curve: dict | None) -> list[str]:
    """One finding per change of order between two methods along the curve; or that there is
    none."""
    if not curve or len(curve["sizes"]) < 2:
        return []
    if not curve["crossovers"]:
        sizes = ", ".join(map(str, curve["sizes"]))
        return [(f"Along the learning curves (n = {sizes} training examples) no two methods "
                 "change order on ROUGE-L.")]
    sentences = []
    for c in curve["crossovers"]:
        before, after = c["before"], c["after"]
        first, second = (c["a"], c["b"]) if before["diff"] > 0 else (c["b"], c["a"])
        verdict = ("significant on both sides after Holm's correction: the order changes with "
                   "the data" if c["significant"] else "not significant on both sides after "
                   "Holm's correction, so these seeds do not show a crossover")
        sentences.append(
            f"On ROUGE-L {first} is ahead of {second} with {before['train_examples']} training "
            f"examples (Δ = {abs(before['diff']):.2f}, {p_text(before['p_holm'])}) and behind "
            f"it with {after['train_examples']} (Δ = {abs(after['diff']):.2f}, "
            f"{p_text(after['p_holm'])}): {verdict}.")
    return sentences
