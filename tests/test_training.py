"""The training loop's promises: resume after SIGKILL, DDP on CPU, schedules and accounting."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from peftsum.config import training_params

ROOT = Path(__file__).resolve().parents[1]


def train_command(root: Path, out: Path, config: dict, method="lora", extra=()):
    """`python -m peftsum train` of one method of config, seed 0, on root's model and data."""
    settings = out.parent / f"{out.name}.settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"name": method, "method": config["methods"][method],
                                    "training": training_params(config["training"]), "seed": 0}))
    return ["-m", "peftsum", "train", "--settings", str(settings), "--model", str(root / "model"),
            "--data", str(root / "tokenized"), "--out", str(out), *extra]


def run(args, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          check=False, timeout=600, **kwargs)


def weights(folder: Path) -> dict:
    return load_file(str(folder / "trainable.safetensors"))


def val_losses(folder: Path) -> list[float]:
    rows = [json.loads(line) for line in (folder / "steps.jsonl").read_text().splitlines()]
    return [r["val_loss"] for r in rows if "val_loss" in r]


def test_resumes_after_sigkill_with_the_same_result(smoke, tmp_path):
    root, config = smoke
    reference = run(train_command(root, tmp_path / "ref", config))
    assert reference.returncode == 0, reference.stderr[-2000:]

    checkpoints = tmp_path / "ckpt"
    args = train_command(root, tmp_path / "run", config,
                         extra=["--checkpoint-dir", str(checkpoints)])
    job = subprocess.Popen([sys.executable, *args], env={**os.environ, "OMP_NUM_THREADS": "1"},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (checkpoints / "checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    job.send_signal(signal.SIGKILL)  # mid-epoch, right after the first checkpoint
    job.wait()
    assert (checkpoints / "checkpoint.pt").exists()
    assert not (tmp_path / "run" / "run.json").exists()

    resumed = run(args)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stderr
    ref, got = weights(tmp_path / "ref"), weights(tmp_path / "run")
    assert ref.keys() == got.keys()
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-5, atol=1e-6)
    assert val_losses(tmp_path / "run") == pytest.approx(val_losses(tmp_path / "ref"), rel=1e-5)
    assert not (checkpoints / "checkpoint.pt").exists()  # removed once the run is complete


def train_loss_curve(folder: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (folder / "steps.jsonl").read_text().splitlines()]
    return [(r["step"], r["train_loss"]) for r in rows if "train_loss" in r]


# (method, LoRA dropout, relative tolerance of the losses, of the weights as a share of their
# largest). Dropout 0 (the smoke model has none of its own): two ranks compute exactly the
# gradient of one process, up to the order of float sums, so the runs agree to float rounding.
# With dropout on, the ranks draw other masks than one process does: the losses differed by 7e-6
# (relative), a rank taking the wrong micro-batch makes 3e-4; the weights are then not compared:
# AdamW's first steps move each weight by about the learning rate along its gradient's sign,
# which other masks flip for small gradients (after 4 steps LoRA's B differed by more than its
# largest entry). LoRA with its dropout (0.1) is test_ddp's zero-weight-pass case, to 5e-5.
# Prefix tuning enters through the KV cache, IA3 rescales inside the layers.
DDP_CASES = {"lora-exact": ("lora", 0.0, 1e-6, 1e-6),
             "prefix_tuning": ("prefix_tuning", None, 1e-4, None),
             "ia3": ("ia3", None, 1e-4, None)}


@pytest.mark.parametrize(("method", "dropout", "rel", "weight_tolerance"), DDP_CASES.values(),
                         ids=DDP_CASES.keys())
def test_ddp_on_cpu_follows_the_single_process_run(smoke, tmp_path, method, dropout, rel,
                                                   weight_tolerance):
    root, config = smoke
    config["training"].update(grad_accum=2, max_steps=4)  # two ranks share each step's two
    if dropout is not None:                                 # micro-batches
        config["methods"][method]["dropout"] = dropout
    single = run(train_command(root, tmp_path / "one", config, method))
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               *train_command(root, tmp_path / "two", config, method)])
    assert ddp.returncode == 0, ddp.stderr[-3000:]

    one, two = train_loss_curve(tmp_path / "one"), train_loss_curve(tmp_path / "two")
    assert [s for s, _ in one] == [s for s, _ in two] and one
    assert [loss for _, loss in two] == pytest.approx([loss for _, loss in one], rel=rel)
    assert val_losses(tmp_path / "two") == pytest.approx(val_losses(tmp_path / "one"), rel=rel)
    ref, got = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert ref.keys() == got.keys()
    for name in ref if weight_tolerance else ():  # the weights after the steps, too
        scale = float(ref[name].abs().max())
        torch.testing.assert_close(got[name], ref[name], rtol=0, atol=weight_tolerance * scale)
    run_info = json.loads((tmp_path / "two" / "run.json").read_text())
    assert run_info["hparams"]["world_size"] == 2
    assert run_info["resources"]["samples_seen"] == json.loads(
        (tmp_path / "one" / "run.json").read_text())["resources"]["samples_seen"]
