"""The report's figures: PNG files, each with a caption that says what to read from it.

One colour per method name in every figure (and in the explorer): `method_colors`. Seeds of a
method share its colour and differ in marker, line style or hatch. No torch, no pyplot state.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import Bbox

from peftsum.files import write_atomic
from peftsum.metrics import ROUGE
from peftsum.report import study as report_study
from peftsum.report.canvas import MARKERS, new_figure
from peftsum.report.tables import is_trained

ROUGE_COLUMNS = [(metric.key, metric.label) for metric in ROUGE]
# matplotlib's tab10 then tab20's light shades: distinct, and readable on white.
PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5",
]  # fmt: skip
HATCHES = ["", "//", "..", "xx", "\\\\", "++"]

CAPTIONS = {
    "loss_curves.png": (
        "Training (solid) and validation (dashed, dots) loss per run, in the method's colour. "
        "Lower is better; the validation curves are the comparable ones. A validation curve "
        "that rises while the training curve still falls means the run overfits."
    ),
    "rouge.png": (
        "Test ROUGE F1 × 100 per system, grouped by ROUGE variant; whiskers: 95 % bootstrap "
        "interval over test articles. Higher is better; bars whose whiskers overlap are not "
        "clearly apart (the significance table tests them)."
    ),
    "pareto.png": (
        "Quality against cost: ROUGE-L of each trained run (labelled) against its trainable "
        "parameters (left, log scale) and training time (right); dashed lines: baselines; grey "
        "steps: the Pareto front. Up and to the left is better: a run on the front is not beaten "
        "on both quality and cost by another."
    ),
    "resources.png": (
        "Training wall time (left) and peak memory (right, hatch per memory kind) per run. "
        "Lower is cheaper; time includes validation passes."
    ),
}


@dataclass
class FigureFile:
    title: str  # alt text: what the figure shows
    caption: str  # what to read from it
    relpath: str  # relative to report.md
    data_uri: str  # embedded in the HTML so it is self-contained


def method_colors(names: list[str]) -> dict[str, str]:
    """One colour per method name, shared by its seeds, every figure and the explorer. By sorted
    name, so that files listing the same systems in another order still agree."""
    unique = sorted(set(names))
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(unique)}


def run_name(label: str) -> str:
    """lora/seed0 -> lora: a run's method name from its label."""
    return label.split("/", 1)[0]


def save_figures(rows: list[dict], steps: dict[str, list[dict]], folder: Path,
                 selections: list[dict] = (), curve: dict | None = None) -> list[FigureFile]:
    """Write each figure as PNG under `folder` and keep its bytes for embedding in the HTML.

    selections: the sweeps' select files (results/select/<method>.json), for the sensitivity
    figure; curve: results/curve.json, for the learning curves."""
    colors = method_colors([r["name"] for r in rows] + [run_name(label) for label in steps]
                           + [s["method"] for s in selections])
    drawn = [
        ("loss_curves.png", "Training and validation loss", loss_figure(steps, colors)),
        ("rouge.png", "ROUGE per system with 95 % intervals", rouge_figure(rows, colors)),
        ("seed_spread.png", "Test ROUGE-L of every seed, with the mean's interval",
         report_study.seed_spread_figure(rows, colors)),
        ("sensitivity.png", "Validation score across each sweep",
         report_study.sensitivity_figure(list(selections), colors)),
        ("learning_curves.png", "Test scores against training-set size",
         report_study.curve_figure(curve, colors)),
        ("pareto.png", "ROUGE-L against trainable parameters and time", pareto_figure(rows, colors)),
        ("resources.png", "Training time and peak memory per run", resources_figure(rows, colors)),
    ]
    figures = []
    for filename, title, figure in drawn:
        if figure is None:
            continue
        png = png_bytes(figure)
        write_atomic(folder / filename, png)
        # Vector beside it, for papers: the same figure, any size.
        write_atomic((folder / filename).with_suffix(".svg"), svg_bytes(figure))
        data_uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        caption = CAPTIONS.get(filename) or report_study.CAPTIONS[filename]
        figures.append(FigureFile(title, caption, f"{folder.name}/{filename}", data_uri))
    return figures


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    return buffer.getvalue()


def svg_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    # No date or tool version in the file: the same results give the same bytes.
    figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return buffer.getvalue()


LABEL_GAP = 2.0  # points between two labels moved apart
LABEL_ROOM = 3.0  # points between a label and its axes' frame
LABEL_ROUNDS = 4  # of moving labels apart and widening the limits; one or two suffice


def separate_labels(ax, texts: list) -> None:
    """Move annotations (offset in points) up until no two boxes overlap, lowest first; the
    labels of close points and baselines otherwise print over each other."""
    renderer = ax.figure.canvas.get_renderer()
    points_per_pixel = 72 / ax.figure.dpi
    placed = []
    for text in sorted(texts, key=lambda t: t.get_window_extent(renderer).y0):
        box = text.get_window_extent(renderer)
        for other in sorted(placed, key=lambda b: b.y0):
            if box.overlaps(other):
                shift = (other.y1 - box.y0) * points_per_pixel + LABEL_GAP
                text.xyann = (text.xyann[0], text.xyann[1] + shift)
                box = text.get_window_extent(renderer)
        placed.append(box)


def place_labels(ax, texts: list) -> None:
    """Labels apart and inside the frame: moving labels apart can push one out, and widening the
    limits brings points, and so their labels, closer together; a few rounds settle both."""
    for _ in range(LABEL_ROUNDS):
        separate_labels(ax, texts)
        if not widen_to_fit(ax, texts):
            return
        ax.figure.canvas.draw()


def widen_to_fit(ax, texts: list) -> bool:
    """Widen the axes' limits so that every label's box keeps LABEL_ROOM inside the frame; the
    label of a point at an edge (the longest run, the best score) otherwise crosses it. Works in
    display space, so log axes widen evenly too. Whether the limits changed."""
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    room = LABEL_ROOM * ax.figure.dpi / 72
    labels = Bbox.union([text.get_window_extent(renderer) for text in texts])
    low = (min(0.0, labels.x0 - room - frame.x0), min(0.0, labels.y0 - room - frame.y0))
    high = (max(0.0, labels.x1 + room - frame.x1), max(0.0, labels.y1 + room - frame.y1))
    if low == (0.0, 0.0) and high == (0.0, 0.0):
        return False
    (x0, y0), (x1, y1) = ax.transData.inverted().transform(
        [(frame.x0 + low[0], frame.y0 + low[1]), (frame.x1 + high[0], frame.y1 + high[1])])
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    return True


def seed_styles(labels: list[str]) -> dict[str, int]:
    """The how-manieth run of its method each label is (0 for the first seed)."""
    seen: dict[str, int] = {}
    styles = {}
    for label in labels:
        name = run_name(label)
        styles[label] = seen.get(name, 0)
        seen[name] = styles[label] + 1
    return styles


def loss_figure(steps: dict[str, list[dict]], colors: dict[str, str]) -> Figure | None:
    if not any(steps.values()):
        return None
    figure, ax = new_figure(7, 4)
    styles = seed_styles(list(steps))
    for label, records in steps.items():
        color, marker = colors[run_name(label)], MARKERS[styles[label] % len(MARKERS)]
        train = [(r["step"], r["train_loss"]) for r in records if r.get("train_loss") is not None]
        val = [(r["step"], r["val_loss"]) for r in records if r.get("val_loss") is not None]
        if train:
            ax.plot(*zip(*train), "-", color=color, alpha=0.85, label=f"{label} train")
        if val:
            ax.plot(*zip(*val), "--", marker=marker, color=color, markersize=4,
                    label=f"{label} val")
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


def rouge_figure(rows: list[dict], colors: dict[str, str]) -> Figure | None:
    if not any(r.get(key) is not None for r in rows for key, _ in ROUGE_COLUMNS):
        return None
    figure, ax = new_figure(max(7.0, 0.45 * len(rows) * len(ROUGE_COLUMNS) + 2), 4.2)
    width = 0.8 / len(rows)
    styles = seed_styles([r["label"] for r in rows])
    for i, row in enumerate(rows):
        heights = [math.nan if row.get(key) is None else row[key] for key, _ in ROUGE_COLUMNS]
        positions = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(ROUGE_COLUMNS))]
        ax.bar(positions, heights, width, label=row["label"], color=colors[row["name"]],
               hatch=HATCHES[styles[row["label"]] % len(HATCHES)], edgecolor="white")
        errors = [ci_errors([row], key) for key, _ in ROUGE_COLUMNS]
        ax.errorbar(positions, heights, yerr=[[e[0][0] for e in errors], [e[1][0] for e in errors]],
                    fmt="none", ecolor="#333333", elinewidth=1, capsize=2)
    ax.set_xticks(range(len(ROUGE_COLUMNS)), [header for _, header in ROUGE_COLUMNS])
    ax.set_ylabel("F1 × 100")
    ax.grid(axis="y", alpha=0.3)
    figure.legend(loc="outside right upper", fontsize="small")
    return figure


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both cost (lower x) and quality (higher y), by x."""
    front, best_y = [], -math.inf
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best_y:
            front.append((x, y))
            best_y = y
    return front


def pareto_figure(rows: list[dict], colors: dict[str, str]) -> Figure | None:
    trained = [r for r in rows if is_trained(r) and r.get("rougeL") is not None]
    if not trained:
        return None
    baselines = [r for r in rows if not is_trained(r) and r.get("rougeL") is not None]
    styles = seed_styles([r["label"] for r in trained])
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
        for k, r in enumerate(sorted(points, key=lambda r: r[key])):
            ax.errorbar(r[key], r["rougeL"], yerr=ci_errors([r], "rougeL"),
                        fmt=MARKERS[styles[r["label"]] % len(MARKERS)], color=colors[r["name"]],
                        capsize=3, markersize=7)
            # The label beside its point, so a reader needs no legend to tell the runs apart;
            # neighbours along x alternate above and below, so close points keep their labels.
            ax.annotate(r["label"], (r[key], r["rougeL"]), xytext=(6, 4 if k % 2 == 0 else -4),
                        textcoords="offset points", fontsize="small", color=colors[r["name"]],
                        va="bottom" if k % 2 == 0 else "top")
        for r in baselines:
            ax.axhline(r["rougeL"], linestyle="--", color=colors[r["name"]], linewidth=1)
            # Its bottom above its own line, never struck through by it.
            ax.annotate(r["label"], (1.0, r["rougeL"]), xycoords=("axes fraction", "data"),
                        xytext=(-4, 2), textcoords="offset points", ha="right", va="bottom",
                        fontsize="small", color=colors[r["name"]])
        if log:
            ax.set_xscale("log")
        ax.margins(x=0.2, y=0.12)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("ROUGE-L (F1 × 100)")
        ax.grid(alpha=0.3)
    figure.canvas.draw()  # final limits and layout, so that label boxes are where they print
    for ax in axes:
        place_labels(ax, list(ax.texts))
    return figure


MEMORY_KEYS = [
    ("peak_rss_mb", "peak RSS"),
    ("peak_gpu_mb", "peak GPU allocated"),
    ("peak_gpu_reserved_mb", "peak GPU reserved"),
]


def resources_figure(rows: list[dict], colors: dict[str, str]) -> Figure | None:
    trained = [r for r in rows if is_trained(r)]
    has_time = any(r.get("train_wall_s") is not None for r in trained)
    has_memory = any(r.get(k) is not None for r in trained for k, _ in MEMORY_KEYS)
    if not trained or not (has_time or has_memory):
        return None
    figure, (time_ax, memory_ax) = new_figure(max(8.0, 1.6 * len(trained) + 4), 4, ncols=2)
    labels = [r["label"] for r in trained]
    run_colors = [colors[r["name"]] for r in trained]
    positions = range(len(trained))
    times = [math.nan if r.get("train_wall_s") is None else r["train_wall_s"] for r in trained]
    time_ax.bar(positions, times, 0.6, color=run_colors)
    time_ax.set_ylabel("training wall time (s)")
    kinds = [(key, label) for key, label in MEMORY_KEYS if any(r.get(key) for r in trained)]
    width = 0.8 / max(1, len(kinds))
    for j, (key, _) in enumerate(kinds):
        heights = [math.nan if r.get(key) is None else r[key] / 1024 for r in trained]
        offsets = [i + (j - (len(kinds) - 1) / 2) * width for i in positions]
        memory_ax.bar(offsets, heights, width, color=run_colors, hatch=HATCHES[j],
                      edgecolor="white")
    memory_ax.set_ylabel("peak memory (GiB)")
    legend = [Patch(facecolor="#999999", hatch=HATCHES[j], edgecolor="white", label=label)
              for j, (_, label) in enumerate(kinds)]
    # Above the bars, so it never hides one.
    memory_ax.legend(handles=legend, loc="lower center", bbox_to_anchor=(0.5, 1.0),
                     ncols=max(1, len(kinds)), fontsize="small", frameon=False)
    for ax in (time_ax, memory_ax):
        ax.set_xticks(positions, labels, rotation=20, ha="right")
        ax.grid(axis="y", alpha=0.3)
    return figure
