"""The SLURM profile on a real single-node SLURM with 2 fake GPUs (root and apt-get needed):
a smoke study whose grid points run as SLURM jobs of their own, and a failing job's log.

Runs from `make test-slurm` (CI does), which sets PEFTSUM_SLURM_TEST=1; anywhere else it skips,
because bringing the cluster up installs Debian packages and starts daemons.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from conftest import SMOKE_LOGS, SMOKE_RESULTS

from peftsum import config as peftsum_config
from peftsum.training import sweep

ROOT = Path(__file__).resolve().parents[1]
CAN_RUN = (os.environ.get("PEFTSUM_SLURM_TEST") == "1" and hasattr(os, "geteuid")
           and os.geteuid() == 0 and shutil.which("apt-get") is not None)
pytestmark = pytest.mark.skipif(
    not CAN_RUN, reason="SLURM test: needs root and apt-get, and runs only from `make test-slurm`")

# The CI variant of profiles/slurm: only the partition, the status command (no slurmdbd here,
# so no sacct) and the sizes change. A command-line option replaces the profile's whole value.
SMALL = ["mem_mb=1500", "runtime=10"]
GPU_RULES = ("train", "train_point", "evaluate", "evaluate_zero_shot")
CI_OVERRIDES = [
    "--default-resources", "slurm_partition=debug", *SMALL,
    "--set-resources", *[f"{rule}:{r}" for rule in GPU_RULES for r in ("cpus_per_gpu=1", *SMALL)],
    "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "5",
    "--latency-wait", "5", "--jobs", "2",
]


@pytest.fixture(scope="module")
def cluster():
    up = subprocess.run(["bash", str(ROOT / ".ci" / "slurm" / "slurm_up.sh")], check=False,
                        env={**os.environ, "FAKE_GPUS": "2"}, capture_output=True, text=True)
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
    yield
    subprocess.run(["bash", str(ROOT / ".ci" / "slurm" / "slurm_down.sh")], check=False)


def submit(workdir: Path, configfile: Path, lock_dir: Path, *extra: str
           ) -> subprocess.CompletedProcess:
    # SIGTERM does not stop a Snakemake that waits on SLURM: a hard limit kills it.
    command = ["timeout", "-s", "KILL", "1200", sys.executable, "-m", "snakemake",
               "--snakefile", str(ROOT / "Snakefile"), "--profile", str(ROOT / "profiles" / "slurm"),
               *CI_OVERRIDES, "--directory", str(workdir), "--configfile", str(configfile), *extra]
    env = {**os.environ, "PEFTSUM_GPU_LOCK_DIR": str(lock_dir), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(command, check=False, capture_output=True, text=True, env=env)


def train_jobs(workdir: Path, logs: list[str]) -> list[dict]:
    """SLURM job id, GPUs and start/end time of each training job, from its log."""
    jobs = []
    for name in logs:
        lines = (workdir / SMOKE_LOGS / "train" / name).read_text().splitlines()
        found = re.search(r"SLURM job (\d+): using its GPUs \['(\d+)'\], no lease", "\n".join(lines))
        assert found, f"{name}: no SLURM GPU line:\n" + "\n".join(lines[:5])
        stamps = [datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f") for line in lines
                  if re.match(r"\d{4}-\d\d-\d\d ", line)]
        jobs.append({"log": name, "job": found[1], "gpu": found[2],
                     "start": stamps[0], "end": stamps[-1]})
    return jobs


def submitted_jobs(done: subprocess.CompletedProcess, has_all_rule: bool) -> list[str]:
    """SLURM job ids of one Snakemake run, checked against the jobs it planned."""
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", output)
    planned = re.search(r"^total\s+(\d+)", output, re.MULTILINE)
    assert planned and len(set(submitted)) == int(planned[1]) - has_all_rule  # `all` runs locally
    return submitted


# A smoke study: LoRA swept over four learning rates. One method keeps the cluster run short; its
# four grid points (train_point jobs) are what the test counts.
GRID = {"lr": [0.0003, 0.001, 0.003, 0.01]}


def smoke_study(tmp_path: Path) -> Path:
    config = yaml.safe_load((ROOT / "tests" / "smoke.yaml").read_text())
    config["methods"] = {"lora": {**config["methods"]["lora"], "sweep": GRID}}
    configfile = tmp_path / "smoke_study.yaml"
    configfile.write_text(yaml.safe_dump(config))
    return configfile


def test_smoke_study_grid_runs_as_separate_slurm_jobs_on_different_gpus(cluster, tmp_path):
    # Up to the grid first: then its four train_point jobs are the only ones ready, and with two
    # job slots two of them must be queued together, so the GPU split is seen on every run
    # (in one pass the scheduler may pair a grid point with another job instead).
    configfile = smoke_study(tmp_path)
    until_grid = submit(tmp_path, configfile, tmp_path / "locks", "--until", "train_point")
    rest = submit(tmp_path, configfile, tmp_path / "locks")
    submitted = submitted_jobs(until_grid, False) + submitted_jobs(rest, True)

    points = list(sweep.points(GRID))
    assert len(points) >= 4
    config = peftsum_config.load(configfile)
    seed = sweep.selection_seed(config["selection"], config["training"]["seeds"])
    jobs = train_jobs(tmp_path, [f"lora_{point}_seed{seed}.log" for point in points])
    assert len({j["job"] for j in jobs}) == len(points)  # each point its own SLURM job
    assert {j["job"] for j in jobs} <= set(submitted)
    overlapping = [(a, b) for i, a in enumerate(jobs) for b in jobs[i + 1:]
                   if a["start"] < b["end"] and b["start"] < a["end"]]
    assert overlapping, f"no two grid points overlapped: {jobs}"
    assert all(a["gpu"] != b["gpu"] for a, b in overlapping), overlapping
    for a, b in overlapping:
        print(f"overlapping: {a['log']} job {a['job']} CUDA_VISIBLE_DEVICES={a['gpu']}, "
              f"{b['log']} job {b['job']} CUDA_VISIBLE_DEVICES={b['gpu']}")
    assert not list((tmp_path / "locks").glob("*.lock"))  # the lease stayed out of the way
    selection = json.loads((tmp_path / SMOKE_RESULTS / "select" / "lora.json").read_text())
    assert [p["point"] for p in selection["points"]] == points
    assert (tmp_path / SMOKE_RESULTS / "report" / "report.html").stat().st_size > 0


def test_failing_job_is_reported_with_its_log(cluster, tmp_path):
    config = yaml.safe_load((ROOT / "tests" / "smoke.yaml").read_text())
    config["data"]["sizes"]["train"] = 100000  # more than the source has: the split job fails
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    done = submit(tmp_path, configfile, tmp_path / "locks")
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert re.search(r"Error in rule split", output), output[-4000:]
    assert "data.sizes.train = 100000 is larger than" in output  # the job's log, shown
