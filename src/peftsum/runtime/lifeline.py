"""A job's processes end with the Snakemake that started them.

Snakemake stops its jobs when it is interrupted, but not when it is killed (SIGKILL, a lost
login node, an OOM kill): a training job then runs on as an orphan beside the rerun, holding its
GPU. `follow_snakemake()` (called by every stage's guard) starts a daemon thread that checks
each second that the chain of parent processes up to the Snakemake process is unbroken; when it
breaks, it ends this process's children (a torchrun agent passes that on to its ranks) and then
this process. A stage run by hand, with no Snakemake above it, is left alone: closing a terminal
must not end a `nohup` run. Linux only (it reads /proc); elsewhere it does nothing.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
_MAX_DEPTH = 32


def parent_of(pid: int) -> int | None:
    """The parent of a live process; None when it is gone or a zombie (or /proc is missing)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, ppid = text.rsplit(")", 1)[1].split()[:2]  # the name in (...) may hold spaces
    return None if state in ("Z", "X") else int(ppid)


def is_snakemake(pid: int) -> bool:
    """Whether pid runs Snakemake: `snakemake ...`, `python .../snakemake ...`, `python -m snakemake`."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:3]
    except OSError:
        return False
    return any(Path(os.fsdecode(arg)).name == "snakemake" for arg in argv)


def snakemake_chain(pid: int | None = None) -> list[int] | None:
    """[pid, its parent, ..., the outermost Snakemake process above it], or None without one.

    The outermost: a job Snakemake runs through a sub-Snakemake (`--target-jobs`) ends with the
    Snakemake the user started.
    """
    chain, outermost = [pid or os.getpid()], None
    while len(chain) < _MAX_DEPTH:
        parent = parent_of(chain[-1])
        if parent is None or parent <= 1:
            break
        chain.append(parent)
        if is_snakemake(parent):
            outermost = len(chain)
    return chain[:outermost] if outermost else None


def unbroken(chain: list[int]) -> bool:
    return all(parent_of(child) == parent for child, parent in itertools.pairwise(chain))


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != pid and parent_of(int(entry.name)) == pid:
            found.append(int(entry.name))
    return found


def _end_job(chain: list[int]) -> None:
    log.error("Snakemake (pid %d) is gone: ending this job and its processes", chain[-1])
    for child in children(os.getpid()):
        try:
            os.kill(child, signal.SIGTERM)
        except ProcessLookupError:
            pass
    os.kill(os.getpid(), signal.SIGKILL)  # a checkpoint is written atomically: resume is safe


def _watch(chain: list[int]) -> None:
    while unbroken(chain):
        time.sleep(POLL_SECONDS)
    _end_job(chain)


def follow_snakemake() -> list[int] | None:
    """Start the watch when Snakemake is an ancestor of this process; return the chain."""
    chain = snakemake_chain()
    if chain is not None:
        threading.Thread(target=_watch, args=(chain,), name="follow-snakemake",
                         daemon=True).start()
    return chain
