"""Give each concurrent job its own GPUs: one lock file per GPU id, taken with a non-blocking flock.

`snakemake --resources gpu=2` bounds how many GPUs the running jobs ask for, but not which ones
they use: without a lease every job would pick GPU 0. The kernel drops a flock when its process
dies, even on SIGKILL, so a crashed job never keeps a GPU. The lease sets CUDA_VISIBLE_DEVICES
(in nvidia-smi's PCI order), so it must run before CUDA starts.

A job's torchrun workers run in their own sessions and outlive a killed launcher, so each rank
also holds a second lock on its GPU (gpu<id>.rank.lock): a GPU is free only when both are.

Every user's jobs on a workstation share one lock folder (GPUs are shared whoever runs the job):
it is world-writable with the sticky bit, as /tmp, and lock files are readable and writable by
all. A lock file is opened without O_CREAT when it exists, which fs.protected_regular refuses in
such a folder for a file another user owns.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0
WAIT_LOG_SECONDS = 60.0  # a job waiting for GPUs says who holds them this often


LEASE_ENV = "PEFTSUM_GPU_LEASE"  # set by a lease to its lock folder: the ranks lock there too


def default_lock_dir() -> Path:
    """One folder per machine, or per SLURM allocation: two allocations on one node both call
    their GPUs 0, 1, ... and must not take each other's locks."""
    if "PEFTSUM_GPU_LOCK_DIR" in os.environ:
        return Path(os.environ["PEFTSUM_GPU_LOCK_DIR"])
    folder = Path(tempfile.gettempdir()) / "peftsum-gpu-locks"
    return folder / f"slurm-{os.environ['SLURM_JOB_ID']}" if "SLURM_JOB_ID" in os.environ else folder


def visible_gpu_ids() -> list[str]:
    """GPU ids this process may use: CUDA_VISIBLE_DEVICES when set, else what nvidia-smi lists."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return [i.strip() for i in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if i.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                         capture_output=True, text=True, check=False)
    return out.stdout.split() if out.returncode == 0 else []


class Lease:
    """Holds the lock files of the GPUs taken; they stay taken until release() or process exit."""

    def __init__(self, ids: list[str], files: list):
        self.ids, self._files = ids, files

    def release(self) -> None:
        for f in self._files:
            f.close()  # closing the descriptor drops the flock
        self._files = []


def shared_folder(folder: Path) -> Path:
    """folder (and its missing parents) created world-writable with the sticky bit, so that
    every user's jobs can add their lock files and none can remove another's."""
    missing = [p for p in [folder, *folder.parents] if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    for created in missing:
        with contextlib.suppress(PermissionError):  # another user made it first
            created.chmod(0o1777)  # mkdir's mode passes through the umask
    return folder


def _open_shared(path: Path):
    """path opened for reading and writing, created readable and writable by all users."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            os.fchmod(fd, 0o666)  # past the umask: other users lock it too
        except FileExistsError:  # another job created it in between
            fd = os.open(path, os.O_RDWR)
    return os.fdopen(fd, "r+")


def _flock(path: Path):
    """The open file holding an exclusive flock on path, or None when another process holds it."""
    f = _open_shared(path)
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def _is_held(path: Path) -> bool:
    """Whether a process holds the lock file path (probed without taking it)."""
    try:
        with open(path) as f:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except FileNotFoundError:
        return False
    return False  # closing the file dropped the shared lock


def _holder(path: Path) -> str:
    """Who holds the lock file path, as its holder wrote it: pid, user and command."""
    try:
        pid = int(path.read_text().split()[0])
        user = pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, ValueError, IndexError, KeyError):
        return "unknown"
    return f"pid {pid} ({user}: {command.strip()[:120]})"


def _log_wait(ids: list[str], lock_dir: Path, waited: float) -> None:
    """Which of ids are taken and by whom, after waiting `waited` seconds for them."""
    taken = []
    for gpu_id in ids:
        held = [p for p in (lock_dir / f"gpu{gpu_id}.lock", lock_dir / f"gpu{gpu_id}.rank.lock")
                if _is_held(p)]
        if held:
            taken.append(f"GPU {gpu_id} by {_holder(held[0])}")
    log.info("waiting %.0f s for GPUs so far; taken: %s", waited, "; ".join(taken) or "none now")


def _try_lock(lock_dir: Path, gpu_id: str):
    """The job's lock on gpu_id, when neither a job nor a rank left behind by one holds it."""
    if (f := _flock(lock_dir / f"gpu{gpu_id}.lock")) is None:
        return None
    if (rank := _flock(lock_dir / f"gpu{gpu_id}.rank.lock")) is None:
        f.close()
        return None
    rank.close()  # free again for this job's own ranks to take
    return f


_RANK_LOCKS: list = []  # this process's rank locks, held until it exits


def hold_rank_lock(local_rank: int) -> bool:
    """In a rank of a job that leased its GPUs: hold its GPU's rank lock until this process ends.

    False when there was no lease, or another rank holds it (a killed job's worker still on it)."""
    if not os.environ.get(LEASE_ENV):
        return False
    gpu_id = os.environ["CUDA_VISIBLE_DEVICES"].split(",")[local_rank]
    if (f := _flock(Path(os.environ[LEASE_ENV]) / f"gpu{gpu_id}.rank.lock")) is None:
        log.warning("GPU %s: another job's rank still holds it", gpu_id)
        return False
    _RANK_LOCKS.append(f)
    return True


def _take(n: int, ids: list[str], lock_dir: Path) -> Lease | None:
    taken, files = [], []
    for gpu_id in ids:
        if (f := _try_lock(lock_dir, gpu_id)) is not None:
            taken.append(gpu_id)
            files.append(f)
        if len(taken) == n:
            return Lease(taken, files)
    Lease(taken, files).release()  # all or nothing: never sit on part of a request
    return None


def lease(n: int, ids: list[str] | None = None, lock_dir: Path | None = None,
          timeout: float | None = None) -> Lease:
    """Take n free GPUs among ids (default: the visible ones) and set CUDA_VISIBLE_DEVICES.

    A SLURM job given exactly its n GPUs uses them without a lease; inside a larger allocation
    (salloc --gpus=2 running gpu=1 jobs) the jobs lease among the allocation's GPUs.
    """
    os.environ.pop(LEASE_ENV, None)
    if n == 0:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        return Lease([], [])
    # CUDA numbers devices fastest first unless told otherwise; nvidia-smi, NVML and SLURM
    # number them in PCI order: one order, so that an id names the same GPU everywhere.
    os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    ids = visible_gpu_ids() if ids is None else ids
    if "SLURM_JOB_ID" in os.environ and len(ids) == n:
        log.info("SLURM job %s: using its GPUs %s, no lease", os.environ["SLURM_JOB_ID"], ids)
        return Lease(ids, [])
    if not ids:
        log.info("no GPU visible: running on the CPU")
        return Lease([], [])
    if n > len(ids):
        raise RuntimeError(f"asked for {n} GPUs, only {len(ids)} visible ({','.join(ids)})")
    lock_dir = shared_folder(Path(lock_dir or default_lock_dir()))
    start, logged = time.monotonic(), None
    while (got := _take(n, ids, lock_dir)) is None:
        now = time.monotonic()
        if timeout is not None and now - start > timeout:
            raise TimeoutError(f"no {n} free GPUs among {','.join(ids)} after {timeout:.0f} s")
        if logged is None or now - logged >= WAIT_LOG_SECONDS:
            _log_wait(ids, lock_dir, now - start)
            logged = now
        time.sleep(POLL_SECONDS)
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(got.ids)
    os.environ[LEASE_ENV] = str(lock_dir)
    log.info("leased GPU %s (CUDA_VISIBLE_DEVICES=%s)", ",".join(got.ids), ",".join(got.ids))
    return got
