"""DDP on CPU (gloo): a step with fewer micro-batches than ranks, per-rank figures and RNG."""

import json
import os
import subprocess
import sys

import pytest
from test_training import train_command, val_losses

DDP_TIMEOUT_S = 300  # a rank left out of the all-reduce hangs (NCCL) or aborts (gloo)


def run(args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          check=False, timeout=DDP_TIMEOUT_S)


def torchrun(*args):
    return run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args])


def train_curve(folder):
    rows = [json.loads(line) for line in (folder / "steps.jsonl").read_text().splitlines()]
    return [(r["step"], r["train_loss"]) for r in rows if "train_loss" in r]


@pytest.fixture
def odd_steps(smoke, tmp_path):
    """The smoke data in 7 micro-batches of 5 (32 examples), 2 per step: each epoch's last step
    has one micro-batch, so one of two ranks has none there."""
    root, config = smoke
    config = json.loads(json.dumps(config))
    config["training"].update(batch_size=5, grad_accum=2, log_every=1)
    (tmp_path / "config.json").write_text(json.dumps(config))
    for name in ("model", "tokenized"):
        (tmp_path / name).symlink_to(root / name)
    return tmp_path


def test_a_rank_without_a_micro_batch_joins_the_all_reduce(odd_steps):
    single = run(train_command(odd_steps, odd_steps / "one"))
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = torchrun(*train_command(odd_steps, odd_steps / "two"))
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one, two = train_curve(odd_steps / "one"), train_curve(odd_steps / "two")
    assert [s for s, _ in two] == [s for s, _ in one] and len(one) >= 4
    # The zero-weight pass adds nothing: the updates, so the later losses, are the same.
    assert [loss for _, loss in two] == pytest.approx([loss for _, loss in one], rel=1e-4)
    assert val_losses(odd_steps / "two") == pytest.approx(val_losses(odd_steps / "one"), rel=1e-4)
