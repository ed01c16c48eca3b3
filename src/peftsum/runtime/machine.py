"""The CPU model as lscpu names it: provenance records it, the precision probe keys its cache by it."""

from __future__ import annotations

import platform


def cpu_model() -> str:
    """The CPU's model name as lscpu shows it (from /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else platform.processor() or "unknown"
