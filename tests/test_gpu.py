"""The GPU path without a GPU: the lease with fake ids, NVML with a fake pynvml, the
precision and peak FLOP/s a device gets by its name."""

import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch

from peftsum.runtime import gpu, measure, precision

HOLDER = """
import os, sys, time
from peftsum.runtime.gpu import lease
held = lease(int(sys.argv[1]), ids=sys.argv[2].split(","), lock_dir=sys.argv[3], timeout=30)
print(os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
time.sleep(60)
"""


@pytest.fixture(autouse=True)
def restore_environment(monkeypatch):
    """A lease sets these in os.environ; put them back after each test."""
    for key in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "PEFTSUM_GPU_LEASE", "SLURM_JOB_ID"):
        monkeypatch.delenv(key, raising=False)
        if key in os.environ:
            monkeypatch.setenv(key, os.environ[key])


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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu3.lock", "gpu3.rank.lock"]
    got.release()


def test_under_slurm_the_lease_stays_out_of_the_way(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    got = gpu.lease(1, lock_dir=tmp_path, timeout=0)
    assert got.ids == ["0"] and not list(tmp_path.iterdir())


def test_the_lock_folder_and_files_are_shared_by_every_user(tmp_path):
    """Created under a umask that keeps others out, as a user's shell has it: the folders come
    out world-writable and sticky (as /tmp), the lock files readable and writable by all."""
    old = os.umask(0o022)
    try:
        got = gpu.lease(1, ids=["0"], lock_dir=tmp_path / "locks" / "slurm-7", timeout=0)
    finally:
        os.umask(old)
    for folder in (tmp_path / "locks", tmp_path / "locks" / "slurm-7"):
        assert folder.stat().st_mode & 0o7777 == 0o1777, folder
    for lock_file in (tmp_path / "locks" / "slurm-7").iterdir():
        assert lock_file.stat().st_mode & 0o777 == 0o666, lock_file
    got.release()


OTHER_USER = """
import sys
from peftsum.runtime.gpu import lease
got = lease(1, ids=sys.argv[1].split(","), lock_dir=sys.argv[2], timeout=0)
print(got.ids[0])
"""


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/python3").exists(),
                    reason="needs root to run a job as another user (nobody)")
def test_another_users_job_takes_a_free_gpu_in_the_same_folder_and_waits_for_a_held_one():
    """The system Python as `nobody` (the lease needs only the standard library), in a folder
    that root's job created first."""
    import shutil
    import tempfile

    shared = Path(tempfile.mkdtemp())  # outside pytest's folders, which only root may enter
    shared.chmod(0o755)
    held = gpu.lease(1, ids=["0"], lock_dir=shared / "locks", timeout=0)

    def as_nobody(ids):
        return subprocess.run(["/usr/bin/python3", "-c", OTHER_USER, ids, str(shared / "locks")],
                              user=65534, group=65534, extra_groups=[], capture_output=True,
                              text=True, check=False, timeout=60,
                              env={"PYTHONPATH": str(Path(gpu.__file__).parents[2])})
    try:
        free = as_nobody("0,1")
        assert free.returncode == 0 and free.stdout.strip() == "1", free.stderr[-2000:]
        busy = as_nobody("0")
        assert busy.returncode != 0 and "TimeoutError" in busy.stderr, busy.stderr[-2000:]
    finally:
        held.release()
        shutil.rmtree(shared)


def test_a_job_waiting_for_a_gpu_says_who_holds_it_and_for_how_long(tmp_path, monkeypatch,
                                                                    caplog):
    holder, _ = hold(1, "0", tmp_path)
    monkeypatch.setattr(gpu, "WAIT_LOG_SECONDS", 0.0)
    monkeypatch.setattr(gpu, "POLL_SECONDS", 0.01)
    try:
        with caplog.at_level("INFO", logger=gpu.__name__), pytest.raises(TimeoutError):
            gpu.lease(1, ids=["0"], lock_dir=tmp_path, timeout=0.05)
    finally:
        holder.kill()
        holder.wait()
    waits = [r.getMessage() for r in caplog.records if "waiting" in r.getMessage()]
    assert len(waits) >= 2  # at once, then again while it waits
    assert all(f"GPU 0 by pid {holder.pid} " in w and "-c" in w for w in waits)
    assert waits[0].startswith("waiting 0 s") and "s for GPUs so far" in waits[-1]


def test_zero_gpus_hides_every_device(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    gpu.lease(0)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""


def test_inside_a_larger_slurm_allocation_each_job_leases_its_share(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "42")  # salloc --gpus=2, then gpu=1 jobs inside it
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    first = gpu.lease(1, lock_dir=tmp_path, timeout=0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # the next job sees the same allocation
    second = gpu.lease(1, lock_dir=tmp_path, timeout=0)
    assert sorted(first.ids + second.ids) == ["0", "1"]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == second.ids[0]
    with pytest.raises(TimeoutError):
        gpu.lease(1, ids=["0", "1"], lock_dir=tmp_path, timeout=0)
    first.release()
    second.release()


def fake_nvidia_smi(folder, count: int) -> str:
    """A PATH with an nvidia-smi that lists `count` GPUs."""
    script = folder / "nvidia-smi"
    script.write_text("#!/bin/sh\n" + "".join(f"echo {i}\n" for i in range(count)))
    script.chmod(0o755)
    return f"{folder}:{os.environ['PATH']}"


def test_under_slurm_without_cuda_visible_devices_the_lease_counts_the_gpus(tmp_path,
                                                                           monkeypatch):
    monkeypatch.setenv("PATH", fake_nvidia_smi(tmp_path, 4))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    got = gpu.lease(2, lock_dir=tmp_path / "locks", timeout=0)
    assert got.ids == ["0", "1"] and os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"  # nvidia-smi's order
    got.release()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    whole = gpu.lease(4, lock_dir=tmp_path / "locks", timeout=0)
    assert whole.ids == ["0", "1", "2", "3"] and not whole._files  # its own GPUs: no lock


def test_each_slurm_allocation_has_its_own_lock_folder(monkeypatch):
    monkeypatch.delenv("PEFTSUM_GPU_LOCK_DIR", raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    seven = gpu.default_lock_dir()
    monkeypatch.setenv("SLURM_JOB_ID", "8")
    assert seven != gpu.default_lock_dir()


LAUNCHER = """
import subprocess, sys
from peftsum.runtime.gpu import lease
held = lease(1, ids=["0"], lock_dir=sys.argv[1], timeout=30)
rank = subprocess.Popen([sys.executable, "-c", sys.argv[2]], start_new_session=True)
rank.wait()
"""
RANK = """
import time
import types
from pathlib import Path
from peftsum.runtime.gpu import hold_rank_lock
print(hold_rank_lock(0), flush=True)
time.sleep(60)
"""


def test_a_rank_keeps_its_gpu_taken_after_its_launcher_is_killed(tmp_path):
    """As torchrun's workers, the rank runs in its own session and outlives its launcher."""
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(tmp_path), RANK],
                                stdout=subprocess.PIPE, text=True)
    rank_pid = None
    try:
        assert launcher.stdout.readline().strip() == "True"  # the rank took its GPU's lock
        rank_pid = int(subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True,
                                      text=True, check=True).stdout.split()[0])
        os.kill(launcher.pid, signal.SIGKILL)
        launcher.wait()
        with pytest.raises(TimeoutError):
            gpu.lease(1, ids=["0"], lock_dir=tmp_path, timeout=0)
        os.kill(rank_pid, signal.SIGKILL)
        rank_pid = None
        time.sleep(0.2)
        gpu.lease(1, ids=["0"], lock_dir=tmp_path, timeout=5).release()
    finally:
        launcher.kill()
        launcher.wait()
        if rank_pid is not None:
            os.kill(rank_pid, signal.SIGKILL)


@pytest.mark.parametrize(("name", "peak"), [
    ("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12), ("NVIDIA H100 NVL", 835e12),
    ("NVIDIA H200", 989e12), ("NVIDIA H200 NVL", 835e12), ("NVIDIA GH200 480GB", 989e12),
    ("NVIDIA A100-SXM4-80GB", 312e12), ("NVIDIA A100 80GB PCIe", 312e12),
    ("NVIDIA L40S", 362e12), ("NVIDIA L40", 181e12), ("NVIDIA L4", 121e12),
    ("NVIDIA A10", 125e12), ("NVIDIA A10G", None), ("NVIDIA GeForce RTX 4090", 165e12),
    ("Tesla V100-SXM2-16GB", 125e12), ("Tesla T4", 65e12), ("cpu", None),
    ("NVIDIA GeForce RTX 3090", 71e12), ("NVIDIA GeForce RTX 3090 Ti", 80e12),
    ("NVIDIA GeForce RTX 2080 Ti", 53.8e12), ("NVIDIA GeForce RTX 2080", None),
    ("NVIDIA RTX A6000", 154.8e12), ("NVIDIA RTX 6000 Ada Generation", 364.2e12),
    ("NVIDIA A40", 149.7e12), ("NVIDIA RTX A4000", None)])
def test_peak_flops_by_the_names_torch_reports(name, peak):
    assert measure.peak_flops(name) == peak


def test_bf16_only_where_the_gpu_has_it_natively(monkeypatch):
    """A V100 or T4: torch says bf16 is supported, counting emulation; fp16 is the fast one."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: including_emulation)
    assert precision.amp_dtype(torch.device("cuda", 0), cpu_bf16=False) == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert precision.amp_dtype(torch.device("cuda", 0), cpu_bf16=False) == torch.bfloat16


def test_cpu_bf16_only_where_the_cpu_has_bf16_kernels(monkeypatch, caplog):
    """An AVX2-only CPU runs bf16 matmuls about 40x slower than fp32: fp32 with a warning."""
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert precision.amp_dtype(cpu, cpu_bf16=True) is None
    assert "no bf16 matmul instructions" in caplog.text
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.amp_dtype(cpu, cpu_bf16=True) == torch.bfloat16
    assert precision.amp_dtype(cpu, cpu_bf16=False) is None


@pytest.mark.parametrize("machine, avx512_bf16, amx, native", [
    ("x86_64", False, False, False), ("x86_64", True, False, True), ("x86_64", False, True, True),
    ("aarch64", False, False, True)])
def test_native_bf16_on_x86_needs_avx512_bf16_or_amx(monkeypatch, machine, avx512_bf16, amx,
                                                      native):
    """oneDNN says bf16 is supported on any AVX-512 CPU; without AVX512_BF16 or AMX it converts
    to fp32 on the fly (3.3x fp32's time per micro-batch on such a Xeon). On ARM its word stands."""
    monkeypatch.setattr(precision.platform, "machine", lambda: machine)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert precision.cpu_has_native_bf16() is native


def test_no_native_bf16_where_onednn_has_none(monkeypatch):
    monkeypatch.setattr(precision.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert precision.cpu_has_native_bf16() is False


class FakeNVML(types.ModuleType):
    """pynvml with one GPU, known by its UUID; `fails` names the calls that raise NVMLError."""

    class NVMLError(Exception):
        pass

    def __init__(self, fails=()):
        super().__init__("pynvml")
        self.fails, self.asked, self.energy = set(fails), [], 1000

    def _call(self, name, value):
        if name in self.fails:
            raise self.NVMLError(f"{name}: Not Supported")
        return value

    def nvmlInit(self):
        return self._call("init", None)

    def nvmlDeviceGetHandleByUUID(self, uuid):
        self.asked.append(uuid)
        return self._call("handle", "handle")

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        self.energy += 5000  # mJ
        return self._call("energy", self.energy)

    def nvmlDeviceGetUtilizationRates(self, handle):
        return self._call("util", types.SimpleNamespace(gpu=80))


def monitor_with(monkeypatch, nvml: FakeNVML) -> dict:
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setattr(measure, "device_uuid", lambda dev: "GPU-1234")
    with measure.GpuMonitor(torch.device("cuda", 1), every=0.01) as monitor:
        time.sleep(0.3)
    return monitor.summary()


def test_nvml_takes_the_device_by_its_uuid(monkeypatch):
    nvml = FakeNVML()
    figures = monitor_with(monkeypatch, nvml)
    assert nvml.asked == ["GPU-1234"]
    assert figures == {"gpu_util_pct": 80, "gpu_energy_j": 5.0}


def test_without_nvidia_ml_py_the_figures_are_blank_and_say_why(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    with caplog.at_level("WARNING", logger=measure.__name__):
        monitor = measure.GpuMonitor(torch.device("cuda", 0))
    assert monitor.summary() == {"gpu_util_pct": None, "gpu_energy_j": None}
    assert "pip install -e '.[gpu]'" in caplog.text


@pytest.mark.parametrize(("fails", "blank"), [
    (["init"], ["gpu_util_pct", "gpu_energy_j"]), (["handle"], ["gpu_util_pct", "gpu_energy_j"]),
    (["energy"], ["gpu_energy_j"]), (["util"], ["gpu_util_pct"])])
def test_an_nvml_error_only_blanks_its_figure(monkeypatch, fails, blank):
    figures = monitor_with(monkeypatch, FakeNVML(fails))
    assert [k for k, v in figures.items() if v is None] == blank


def test_the_bench_keeps_every_variant_on_one_gpu(tmp_path, monkeypatch):
    from peftsum.tools.bench.__main__ import one_gpu

    monkeypatch.setenv("PEFTSUM_GPU_LOCK_DIR", str(tmp_path))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    held = one_gpu()
    assert held.ids == ["0"] and os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    held.release()


def test_the_slurm_profile_keeps_each_gpu_job_on_one_node():
    import yaml
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command

    profile = Path(__file__).resolve().parents[1] / "profiles" / "slurm" / "config.yaml"
    rules = yaml.safe_load(profile.read_text())["set-resources"]
    gpu_rules = {name: res for name, res in rules.items() if res.get("gpu")}
    assert {"train", "evaluate"} <= gpu_rules.keys()
    params = {"run_uuid": "x", "slurm_logfile": "x.log", "comment_str": "x", "account": "",
              "partition": "", "workdir": "."}
    for name, res in gpu_rules.items():
        res = {**res, "gpu": 2}  # a data-parallel training
        job = types.SimpleNamespace(resources=types.SimpleNamespace(**res, get=res.get),
                                    threads=8)
        assert "--nodes=1" in get_submit_command(job, params), name


ROOT = Path(__file__).resolve().parents[1]
SLURM_PROFILE = ROOT / "profiles" / "slurm"


def gpu_rules() -> set[str]:
    """The rules of workflow/rules that declare a gpu resource, and those `use rule` derives
    from them."""
    import re

    text = "\n".join(p.read_text() for p in sorted((ROOT / "workflow" / "rules").glob("*.smk")))
    blocks = re.split(r"^(?=(?:rule|checkpoint|use rule) )", text, flags=re.MULTILINE)
    found = {m[1] for b in blocks if (m := re.match(r"(?:rule|checkpoint) (\w+):", b))
             and re.search(r"^\s+gpu=", b, re.MULTILINE)}
    derived = [re.match(r"use rule (\w+) as (\w+)", b) for b in blocks]
    return found | {m[2] for m in derived if m and m[1] in found}


def test_the_slurm_profile_sizes_every_gpu_rule():
    import yaml

    rules = gpu_rules()
    assert {"train", "train_point", "train_size", "evaluate", "evaluate_point"} <= rules
    profile = yaml.safe_load((SLURM_PROFILE / "config.yaml").read_text())["set-resources"]
    for rule in rules:
        assert {"gpu", "nodes", "cpus_per_gpu", "mem_mb", "runtime"} <= profile.get(rule, {}).keys(), rule


def test_a_dry_run_with_the_placeholder_partition_stops_with_one_line(tmp_path):
    command = [sys.executable, "-m", "snakemake", "-n", "--snakefile", str(ROOT / "Snakefile"),
               "--profile", str(SLURM_PROFILE), "--directory", str(tmp_path),
               "--configfile", str(ROOT / "tests" / "smoke.yaml")]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode != 0
    reason = [line for line in (done.stdout + done.stderr).splitlines() if "EDIT-partition" in line]
    assert len(reason) == 1 and "slurm_partition (default-resources)" in reason[0]
    assert "sinfo -s" in reason[0] and not (tmp_path / "results").exists()


def test_a_rules_own_placeholder_partition_is_named_and_a_real_one_passes():
    from snakemake.resources import Resources

    from peftsum.runtime.cluster import placeholder_partition

    def settings(default, train):
        return types.SimpleNamespace(
            default_resources=Resources.from_mapping({"slurm_partition": default}),
            overwrite_resources={"train": Resources.from_mapping({"slurm_partition": train})})

    assert placeholder_partition(settings("gpu", "gpu")) is None
    assert "set-resources of train" in placeholder_partition(settings("gpu", "EDIT-partition"))


def test_gpu_check_without_cuda_stops_at_once_with_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "peftsum.tools.gpucheck", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode != 0
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0]
    assert not (tmp_path / "out").exists()


def test_gpu_check_table_reads_the_training_figures(tmp_path):
    from peftsum.tools import gpucheck

    results = Path("results") / gpucheck.SMOKE_EXPERIMENT
    run_dir = tmp_path / results / "train" / "lora" / "seed0"
    run_dir.mkdir(parents=True)
    figures = {"device": "NVIDIA H100 80GB HBM3", "precision": "bfloat16", "gpu_count": 1,
               "tokens_per_s": 51234.5, "mfu": 0.21, "peak_gpu_mb": 1900.0, "gpu_energy_j": 812.0,
               "gpu_util_pct": 88.0}
    (run_dir / "run.json").write_text(json.dumps({"name": "lora", "seed": 0,
                                                  "resources": figures}))
    logs = tmp_path / "logs" / gpucheck.SMOKE_EXPERIMENT / "train"
    logs.mkdir(parents=True)
    (logs / "lora_seed0.log").write_text("... leased GPU 1 (...)\n")
    rows = gpucheck.training_figures(tmp_path)
    assert rows == [{"run": f"{results}/train/lora/seed0", "leased_gpu": "1", **figures}]
    assert f"| {results}/train/lora/seed0 | 1 | NVIDIA H100 80GB HBM3 | bfloat16 | 1 | 5.12e+04 |" \
        in gpucheck.table(rows)


# The demo's kinds on a GPT-2 whose vocabulary is small enough that the blocks' FLOPs weigh as
# much as the LM head's: a formula wrong on either part misses by far more than the tolerance.
FLOP_KINDS = [{"kind": "prompt_tuning", "n_tokens": 6, "init": "random"},
              {"kind": "lora", "r": 4, "dropout": 0.1},
              {"kind": "last_layers", "n_blocks": 1, "final_norm": True},
              {"kind": "last_layers", "n_blocks": 0}, {"kind": "full"}]


def _counted(fn) -> int:
    """FLOPs of fn() by torch's FLOP counter, attention scores left out as the formula leaves
    them out: the attention modules' batched products (sdpa, or bmm where it runs as math)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    counts = counter.get_flop_counts()
    scores = sum(n for module, ops in counts.items() if module.endswith(".attn")
                 for op, n in ops.items() if "bmm" in str(op) or "scaled_dot_product" in str(op))
    return sum(counts["Global"].values()) - scores


@pytest.mark.parametrize("spec", FLOP_KINDS, ids=[f"{s['kind']}-{len(s)}" for s in FLOP_KINDS])
def test_the_flop_formula_counts_what_one_training_step_computes(tokenizer, spec):
    from transformers import GPT2Config, GPT2LMHeadModel

    from peftsum.config import TrainingConfig
    from peftsum.evaluation.generate import loss_sums
    from peftsum.methods import from_config
    from peftsum.training.loop import Trainer, flops_of

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=512, n_embd=64, n_layer=6, n_head=2,
                                       n_positions=128))
    # 4 rows of 24 tokens, a 16-token source and an 8-token summary: no padding
    examples = [{"input_ids": torch.randint(1, 500, (24,)).tolist(), "source_len": 16}
                for _ in range(8)]
    method = from_config("m", {**spec, "lr": 1e-3})
    model, _ = method.wrap(model, tokenizer)
    cfg = TrainingConfig.from_dict({"batch_size": 4, "grad_accum": 2, "max_steps": 1,
                                    "eval_every": 100, "attention": "sdpa", "patience": None})
    trainer = Trainer(model, tokenizer, method, cfg, 0, examples, examples[:1],
                      torch.device("cpu"))
    fit = _counted(trainer.fit)
    validation = _counted(lambda: loss_sums(trainer.model, trainer.val_set, 4, 0, trainer.dev))
    formula = flops_of(trainer)
    assert trainer.state["logit_tokens"] == 8 * 9  # from the position before the first summary token on
    assert formula["total"] == pytest.approx(fit - validation, rel=0.03)


def test_a_checkpoint_of_a_two_gpu_run_restores_its_rng_with_one_gpu(monkeypatch):
    """Written where two GPUs were visible, resumed where one is: the current device's state
    is restored, and no GPU that is not there is asked for one."""
    from peftsum.training import checkpoint

    restored = []

    def set_rng_state(state, device="cuda"):
        index = torch.device(device).index if not isinstance(device, int) else device
        if index is not None and index >= 1:
            raise IndexError(f"no CUDA device {index}: one is visible")
        restored.append(state)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": torch.tensor([7]))
    monkeypatch.setattr(torch.cuda, "set_rng_state", set_rng_state)
    monkeypatch.setattr(torch.cuda.random, "set_rng_state", set_rng_state)
    written = checkpoint.rng_state()
    assert [t.tolist() for t in written["cuda"]] == [[7]]  # this rank's device only
    two_gpus = {**written, "cuda": [torch.tensor([1]), torch.tensor([2])]}
    checkpoint.set_rng_state(two_gpus)
    assert [t.tolist() for t in restored] == [[1]]


def test_gpu_check_rehearses_every_step_on_the_cpu(tmp_path):
    """The real run's steps and code path at shrunk shapes: unit checks, every demo method's
    training, generation, precision (fp32, bf16, forced fp16 with loss scaling) and DDP over two
    processes against one (gloo)."""
    done = subprocess.run([sys.executable, "-m", "peftsum.tools.gpucheck", "--rehearse", "--out",
                           str(tmp_path)], capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads((tmp_path / "gpu-check.json").read_text())
    steps = {s["step"]: s for s in result["steps"]}
    assert list(steps) == ["unit", "train", "generate", "precision", "ddp"]
    assert all(s["ok"] for s in steps.values())
    unit = steps["unit"]["figures"]
    assert unit["greedy_with_ending_rows"] == {"rows_end_apart": True, "equal": True}
    trained = {r["method"] for r in steps["train"]["figures"]["runs"]}
    assert trained == {"prompt_tuning", "lora", "last_layers", "full"}
    assert [r["precision"] for r in steps["precision"]["figures"]["runs"]] == [
        "float32", "bfloat16", "float16"]
    assert steps["precision"]["figures"]["runs"][2]["loss_scale"] > 0  # fp16 scales its loss
    ddp = steps["ddp"]["figures"]
    assert [r["world_size"] for r in ddp["runs"]] == [1, 2] and ddp["loss_max_rel_gap"] < 1e-5
    assert steps["generate"]["figures"]["tokens_per_s"] > 0
    assert "| train lora 2 x 2 x 24-48 |" in (tmp_path / "gpu-check.md").read_text()


def test_gpu_check_records_a_step_that_runs_out_of_time_and_goes_on(tmp_path, monkeypatch):
    from peftsum.tools import gpucheck

    monkeypatch.setattr(gpucheck, "TIMEOUTS", {"unit": 0.1, "ddp": 0.1})
    result = gpucheck.check(tmp_path, 0, True, {})
    assert [(s["step"], s["status"]) for s in result["steps"]] == [
        ("unit", "timed out after 0 s"), ("ddp", "timed out after 0 s")]
    written = json.loads((tmp_path / "gpu-check.json").read_text())
    assert [s["step"] for s in written["steps"]] == ["unit", "ddp"]


def test_a_checkpoint_waits_until_it_costs_at_most_its_share_of_the_training():
    from peftsum.training import checkpoint

    now = [0.0]
    pacer = checkpoint.Pacer(clock=lambda: now[0])
    assert pacer.due()  # the first: its cost is not known yet

    def save(seconds):
        now[0] += seconds

    pacer.write(lambda: save(2.0))  # a large trainable: 2 s to write
    now[0] += 2.0 / checkpoint.MAX_SHARE - 1  # training since then: not yet 20 x the write
    assert not pacer.due()
    now[0] += 1
    assert pacer.due()
    pacer.write(lambda: save(0.01))  # a small one is due again almost at once
    now[0] += 0.01 / checkpoint.MAX_SHARE
    assert pacer.due()
