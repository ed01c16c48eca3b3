"""Table cells and number formats shared by the report's sections (no torch)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MISSING = "—"


def is_trained(row: dict) -> bool:
    """Whether an aggregated row is a trained run (a baseline has no trainable parameters)."""
    return row.get("trainable_params") is not None


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


def p_text(p: float) -> str:
    """'p < 0.001' or 'p = 0.012', for sentences."""
    return f"p {fmt_p(p)}" if p < 0.001 else f"p = {fmt_p(p)}"


def fmt_mean_std(mean, std, digits: int = 2) -> str:
    if mean is None:
        return MISSING
    return fmt(mean, digits) if std is None else f"{fmt(mean, digits)} ± {fmt(std, digits)}"


def best_value(values: list, lower_is_better: bool):
    present = [v for v in values if v is not None]
    if not present:
        return None
    return min(present) if lower_is_better else max(present)
