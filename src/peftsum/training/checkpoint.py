"""Resumable training state: written atomically every N steps, outside Snakemake's outputs.

Snakemake deletes a failed job's declared outputs; the checkpoint folder is not one, so a
restarted job finds it. Loaded with weights_only=True: plain tensors, numbers and strings only.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from pathlib import Path

import numpy as np
import torch

from peftsum.files import atomic_path

log = logging.getLogger(__name__)

FILE = "checkpoint.pt"
# A checkpoint may cost at most this share of the training time since the previous one.
MAX_SHARE = 0.05


class Pacer:
    """Whether a scheduled checkpoint is worth writing: when the training since the last write
    took at least 1 / MAX_SHARE times what that write took. Small trainables are written every
    time they are due; large ones on a fast GPU (last layers' untied LM head with its AdamW
    state, ~0.6 GB, every 50 steps of ~0.1 s) less often, never costing more than MAX_SHARE."""

    def __init__(self, clock=time.monotonic):
        self.clock, self.write_s, self.since = clock, 0.0, clock()

    def due(self) -> bool:
        return self.clock() - self.since >= self.write_s / MAX_SHARE

    def write(self, save) -> None:
        """save(), timed: its time sets how long the next one waits."""
        start = self.clock()
        save()
        self.since = self.clock()
        self.write_s = self.since - start
        log.debug("checkpoint written in %.2f s", self.write_s)


def rng_state() -> dict:
    """This process's random states. CUDA's is the current device's only: the one this rank
    draws from, which a resume with another number of visible GPUs can still restore."""
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        # numpy's state holds an ndarray, which weights_only loading refuses: store a tensor.
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
        "cuda": [torch.cuda.get_rng_state()] if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    random.setstate((state["python"][0], tuple(state["python"][1]), state["python"][2]))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        # the first: the current device's, or device 0's where every visible GPU's was saved
        torch.cuda.set_rng_state(state["cuda"][0])


def save(folder: Path, state: dict) -> None:
    with atomic_path(Path(folder) / FILE) as tmp:
        torch.save({**state, "rng": rng_state()}, tmp)


def _set_aside(path: Path, err: Exception) -> None:
    """Keep a checkpoint that cannot be read for inspection, out of every later resume's way."""
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
    with contextlib.suppress(FileNotFoundError):  # another rank moved it first
        path.rename(aside)
    log.warning("%s cannot be read (%s: %s): moved it to %s; this run starts afresh", path,
                type(err).__name__, str(err).splitlines()[0] if str(err) else "", aside.name)


def load(folder: Path, fingerprint: str) -> dict | None:
    """The saved state when it belongs to this run (same settings), else None.

    A checkpoint that cannot be read (a disk filled up, a copy cut short) is moved aside with a
    warning: without that, every rerun and retry would fail on it until someone deletes it.
    """
    path = Path(folder) / FILE
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not {"fingerprint", "step", "rng"} <= set(state):
            raise ValueError("not a peftsum checkpoint")
    # torch.load fails on a damaged file with whatever its parser hits (UnpicklingError,
    # RuntimeError, EOFError, struct.error, ...): any failure to read means it is unusable.
    except Exception as err:  # noqa: BLE001
        _set_aside(path, err)
        return None
    if state.get("fingerprint") != fingerprint:
        log.warning("ignoring %s: it was written with other settings", path)
        return None
    set_rng_state(state["rng"])
    log.info("resuming from %s at step %d", path, state["step"])
    return state


def remove(folder: Path) -> None:
    (Path(folder) / FILE).unlink(missing_ok=True)
