"""Where and with what a run was made: the provenance part of its run.json.

Recorded by the job that trains, so the report describes the training machine, not the one that
renders the report.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from peftsum.runtime.machine import cpu_model

PACKAGES = ("peftsum", "torch", "transformers", "peft", "snakemake", "rouge-score")


def versions() -> dict:
    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {name: installed(name) for name in PACKAGES}


def hardware() -> dict:
    import torch

    return {"machine": platform.machine(), "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
            "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}


def git_state(folder: Path | None = None) -> dict:
    """The commit of the code that ran and whether the tree had uncommitted changes (None
    outside a git checkout, e.g. an installed wheel)."""
    folder = folder or Path(__file__).parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], capture_output=True, text=True, check=False,
                                  cwd=folder, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None

    commit, status = git("rev-parse", "HEAD"), git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit.strip() if commit else None,
            "git_dirty": bool(status.strip()) if status is not None else None}


def cpu_precision(cpu_bf16: bool | str | None) -> dict | None:
    """The CPU's bf16-or-fp32 choice for the setting cpu_bf16 and why (runtime.precision); None
    where a GPU computes or no setting is given."""
    import torch

    if cpu_bf16 is None or torch.cuda.is_available():
        return None
    from peftsum.runtime.precision import cpu_choice

    return cpu_choice(cpu_bf16)


def record(config_hash: str, cpu_bf16: bool | str | None = None) -> dict:
    """The provenance of a run starting now; config_hash identifies its settings, cpu_bf16 is
    its precision setting (recorded with the choice it leads to on this machine)."""
    import torch

    # A CPU's sums differ in their last digits with the thread count: `--config
    # threads=<cpu_threads>` reproduces a run's digits.
    return {"started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            **git_state(), "config_hash": config_hash, "python": platform.python_version(),
            "versions": versions(), "hardware": hardware(),
            "cpu_threads": torch.get_num_threads(), "cpu_precision": cpu_precision(cpu_bf16)}
