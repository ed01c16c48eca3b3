"""The GPU lease with fake GPU ids: no GPU needed."""

import os
import signal
import subprocess
import sys
import time

import pytest

from peftsum import gpu

HOLDER = """
import os, sys, time
from peftsum.gpu import lease
held = lease(int(sys.argv[1]), ids=sys.argv[2].split(","), lock_dir=sys.argv[3], timeout=30)
print(os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
time.sleep(60)
"""


def hold(n, ids, lock_dir):
    """A separate process that leases n GPUs and keeps them; returns it and the ids it got."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(n), ids, str(lock_dir)],
                            stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def test_concurrent_jobs_get_different_gpus_and_sigkill_frees_one(tmp_path):
    first, a = hold(1, "0,1", tmp_path)
    second, b = hold(1, "0,1", tmp_path)
    try:
        assert {a, b} == {"0", "1"}
        with pytest.raises(TimeoutError):
            gpu.lease(1, ids=["0", "1"], lock_dir=tmp_path, timeout=0)
        os.kill(first.pid, signal.SIGKILL)  # the kernel drops its flock
        first.wait()
        time.sleep(0.1)
        got = gpu.lease(1, ids=["0", "1"], lock_dir=tmp_path, timeout=5)
        assert got.ids == [a] and os.environ["CUDA_VISIBLE_DEVICES"] == a
        got.release()
    finally:
        for proc in (first, second):
            proc.kill()
            proc.wait()


def test_two_gpu_request_takes_all_or_nothing(tmp_path):
    holder, held = hold(1, "0,1,2", tmp_path)
    try:
        got = gpu.lease(2, ids=["0", "1", "2"], lock_dir=tmp_path, timeout=5)
        assert sorted(got.ids) == sorted({"0", "1", "2"} - {held})
        with pytest.raises(TimeoutError):
            gpu.lease(1, ids=["0", "1", "2"], lock_dir=tmp_path, timeout=0)
        got.release()
    finally:
        holder.kill()
        holder.wait()


def test_lease_only_among_visible_devices(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    got = gpu.lease(1, lock_dir=tmp_path, timeout=5)
    assert got.ids == ["3"] and os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu3.lock"]
    got.release()


def test_under_slurm_the_lease_stays_out_of_the_way(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    got = gpu.lease(1, lock_dir=tmp_path, timeout=0)
    assert got.ids == ["0"] and not list(tmp_path.iterdir())


def test_zero_gpus_hides_every_device(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    gpu.lease(0)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
