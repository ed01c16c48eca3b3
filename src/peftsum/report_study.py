"""The study's part of the report: the sweep grid and its sensitivity figure, and the spread of
scores over seeds. Reads result files' contents only: no torch."""

from __future__ import annotations

from matplotlib.figure import Figure

from peftsum.report_figures import MARKERS, is_trained, new_figure
from peftsum.report_tables import Cell, Table, fmt
from peftsum.stats import seed_interval

CAPTIONS = {
    "sensitivity.png": (
        "Validation loss of each sweep point against each swept hyperparameter (one panel per "
        "hyperparameter, one line per method and setting of the others, log scale where the "
        "values span a factor of 10 or more); the star marks the chosen point. Lower is better. A "
        "flat line means "
        "the method does not care about that value; a chosen point at the edge of the grid "
        "means a better one may lie outside it. The test split was not read for any of this."
    ),
    "seed_spread.png": (
        "Test ROUGE-L of every training seed (dots) and the mean over seeds with its 95 % "
        "t-interval (bar). Higher is better. Methods whose intervals overlap widely are not told apart by these "
        "seeds; one far-off dot is a seed a single-seed comparison could have been built on."
    ),
}


def grid_table(selections: list[dict]) -> Table:
    """Every sweep point with its validation loss, the chosen one in bold."""
    table = Table(["Method", "Point", "Best validation loss", "At step"],
                  [False, False, True, True])
    for selection in selections:
        for point in selection["points"]:
            chosen = point["point"] == selection["chosen"]
            table.rows.append([Cell(selection["method"]), Cell(point["point"], bold=chosen),
                               Cell(fmt(point["val_loss"], 4), bold=chosen),
                               Cell(fmt(point["best_step"]))])
    return table


def sensitivity_figure(selections: list[dict], colors: dict[str, str]) -> Figure | None:
    keys = sorted({key for s in selections for p in s["points"] for key in p["hparams"]})
    if not keys:
        return None
    figure, axes = new_figure(4.2 * len(keys) + 1.5, 3.6, ncols=len(keys))
    for ax, key in zip(axes if len(keys) > 1 else [axes], keys):
        for selection in selections:
            _sensitivity_lines(ax, key, selection, colors[selection["method"]])
        values = [p["hparams"][key] for s in selections for p in s["points"] if key in p["hparams"]]
        numeric = [v for v in values if isinstance(v, (int, float)) and v > 0]
        if numeric and max(numeric) >= 10 * min(numeric):
            ax.set_xscale("log")
        if len(numeric) == len(values):  # the grid's own values as ticks, not matplotlib's
            ticks = sorted(set(numeric))
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.minorticks_off()
        ax.set_xlabel(key)
        ax.set_ylabel("best validation loss")
        ax.grid(alpha=0.3)
    figure.legend(loc="outside right upper", fontsize="small")
    return figure


def _sensitivity_lines(ax, key: str, selection: dict, color: str) -> None:
    """One line per setting of the other swept keys; every point labelled with its value."""
    lines: dict[str, list[dict]] = {}
    for point in selection["points"]:
        if key in point["hparams"] and point["val_loss"] is not None:
            others = ",".join(f"{k}={v}" for k, v in sorted(point["hparams"].items()) if k != key)
            lines.setdefault(others, []).append(point)
    for i, (others, points) in enumerate(lines.items()):
        points.sort(key=lambda p: p["hparams"][key])
        xs, ys = [p["hparams"][key] for p in points], [p["val_loss"] for p in points]
        label = selection["method"] + (f" ({others})" if others else "")
        ax.plot(xs, ys, marker=MARKERS[i % len(MARKERS)], color=color, label=label, alpha=0.85)
        for p in points:
            ax.annotate(f"{p['hparams'][key]}", (p["hparams"][key], p["val_loss"]),
                        textcoords="offset points", xytext=(4, 4), fontsize="x-small")
            if p["point"] == selection["chosen"]:
                ax.plot([p["hparams"][key]], [p["val_loss"]], marker="*", markersize=15,
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
