"""One process at a time per run: a rerun never trains the same run twice at once.

An exclusive, non-blocking flock on a file in the run's checkpoint folder. The kernel drops it
when its process dies, even on SIGKILL, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from pathlib import Path

from peftsum.errors import UserError

log = logging.getLogger(__name__)

FILE = "train.lock"


@contextlib.contextmanager
def exclusive(folder: Path, what: str):
    """Hold folder/train.lock for the block; refuse at once when another process holds it."""
    path = Path(folder) / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            raise UserError(f"{what} is already being trained by process {holder} (lock {path}): "
                            "wait for it to end, or end it, then run again") from None
        except OSError as err:  # some network file systems have no flock
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            log.warning("cannot lock %s (%s): not guarding against a second trainer", path, err)
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield
