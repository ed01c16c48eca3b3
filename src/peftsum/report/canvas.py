"""What every figure of the report draws on, the study's as the others': a bare Agg figure and the
markers that tell a method's seeds apart. No torch, no pyplot state."""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

MARKERS = "osD^vP*X"


def new_figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, object]:
    # A bare Figure on an Agg canvas avoids pyplot's global state and any GUI backend.
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, (figure.add_subplot() if ncols == 1 else figure.subplots(1, ncols))
