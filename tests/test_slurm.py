"""The SLURM profile on a real single-node SLURM with 2 fake GPUs (root and apt-get needed).

Runs from `make test-slurm` (CI does), which sets PEFTSUM_SLURM_TEST=1; anywhere else it skips,
because bringing the cluster up installs Debian packages and starts daemons.
"""

import os
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CAN_RUN = (os.environ.get("PEFTSUM_SLURM_TEST") == "1" and hasattr(os, "geteuid")
           and os.geteuid() == 0 and shutil.which("apt-get") is not None)
pytestmark = pytest.mark.skipif(
    not CAN_RUN, reason="SLURM test: needs root and apt-get, and runs only from `make test-slurm`")

# The CI variant of profiles/slurm: only the partition, the status command (no slurmdbd here,
# so no sacct) and the sizes change. A command-line option replaces the profile's whole value.
SMALL = ["mem_mb=1500", "runtime=10"]
CI_OVERRIDES = [
    "--default-resources", "slurm_partition=debug", *SMALL,
    "--set-resources", *[f"{rule}:{r}" for rule in ("train", "evaluate", "evaluate_zero_shot")
                         for r in ("cpus_per_gpu=1", *SMALL)],
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


def train_jobs(workdir: Path) -> list[dict]:
    """SLURM job id, GPUs and start/end time of each training job, from its log."""
    jobs = []
    for log in sorted((workdir / "logs" / "train").glob("*.log")):
        lines = log.read_text().splitlines()
        found = re.search(r"SLURM job (\d+): using its GPUs \['(\d+)'\], no lease", log.read_text())
        assert found, f"{log.name}: no SLURM GPU line:\n" + "\n".join(lines[:5])
        stamps = [datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f") for line in lines
                  if re.match(r"\d{4}-\d\d-\d\d ", line)]
        jobs.append({"log": log.name, "job": found[1], "gpu": found[2],
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


def three_methods(tmp_path: Path) -> Path:
    """The smoke config with the assignment's three methods only (it holds every kind): the
    cluster run stays short, and its three training jobs are what the test counts."""
    config = yaml.safe_load((ROOT / "tests" / "smoke.yaml").read_text())
    config["methods"] = {k: config["methods"][k] for k in ("prompt_tuning", "lora", "last_layers")}
    configfile = tmp_path / "three_methods.yaml"
    configfile.write_text(yaml.safe_dump(config))
    return configfile


def test_smoke_workflow_through_sbatch(cluster, tmp_path):
    # Up to training first: then the three training jobs are the only ones ready, and with two
    # job slots two of them must be queued together, so the GPU split is seen on every run
    # (in one pass the scheduler may pair a training job with an evaluation instead).
    configfile = three_methods(tmp_path)
    until_train = submit(tmp_path, configfile, tmp_path / "locks", "--until", "train")
    rest = submit(tmp_path, configfile, tmp_path / "locks")
    submitted = submitted_jobs(until_train, False) + submitted_jobs(rest, True)

    jobs = train_jobs(tmp_path)
    assert len(jobs) == 3 and {j["job"] for j in jobs} <= set(submitted)
    overlapping = [(a, b) for i, a in enumerate(jobs) for b in jobs[i + 1:]
                   if a["start"] < b["end"] and b["start"] < a["end"]]
    assert overlapping, f"no two training jobs overlapped: {jobs}"
    assert all(a["gpu"] != b["gpu"] for a, b in overlapping), overlapping
    for a, b in overlapping:
        print(f"overlapping: {a['log']} job {a['job']} CUDA_VISIBLE_DEVICES={a['gpu']}, "
              f"{b['log']} job {b['job']} CUDA_VISIBLE_DEVICES={b['gpu']}")
    assert not list((tmp_path / "locks").glob("*.lock"))  # the lease stayed out of the way
    assert (tmp_path / "results" / "report" / "report.html").stat().st_size > 0


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
