"""The CPU's precision: bf16 only where a short probe finds it faster, cached per machine."""

import json
from pathlib import Path

import pytest
import torch

from peftsum.runtime import precision, provenance

CPU = torch.device("cpu")
REAL_PROBE = precision.probe_seconds  # before conftest's fixture replaces it


@pytest.fixture
def probe(monkeypatch, tmp_path):
    """The probe's answer, (bf16 seconds, fp32 seconds) for training and, unless given, the
    same for generation; counts how often it ran."""
    calls = []

    def answer(bf16_s, fp32_s, generate=None):
        def probe_seconds():
            calls.append(1)
            return {"train": {"bf16_s": bf16_s, "fp32_s": fp32_s},
                    "generate": dict(zip(("bf16_s", "fp32_s"), generate or (bf16_s, fp32_s)))}
        monkeypatch.setattr(precision, "probe_seconds", probe_seconds)
        precision._cached_speeds.cache_clear()
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision, "CACHE_DIR", tmp_path / "precision")  # this test's own
    answer.calls = calls
    yield answer
    precision._cached_speeds.cache_clear()  # later tests get the suite's fp32 answer again


@pytest.mark.parametrize("bf16_s, fp32_s, dtype", [(0.5, 1.0, torch.bfloat16),
                                                    (1.0, 0.6, None), (1.0, 1.05, None)])
def test_auto_takes_bf16_only_where_measured_faster(probe, bf16_s, fp32_s, dtype):
    probe(bf16_s, fp32_s)
    assert precision.amp_dtype(CPU, "auto") == dtype
    choice = precision.cpu_choice("auto")
    assert choice["dtype"] == str(dtype or torch.float32).removeprefix("torch.")
    assert choice["train"] == {"bf16_s": bf16_s, "fp32_s": fp32_s}


def test_generation_has_its_own_answer(probe):
    """Decoding's small matmuls can be slower in bf16 where training's are faster."""
    probe(0.5, 1.0, generate=(1.6, 1.0))
    assert precision.amp_dtype(CPU, "auto", "train") == torch.bfloat16
    assert precision.amp_dtype(CPU, "auto", "generate") is None


def test_the_measurement_is_cached_per_machine_torch_and_threads(probe, monkeypatch):
    probe(0.5, 1.0)
    first = precision.cpu_speeds()
    precision._cached_speeds.cache_clear()  # a new job: only the file is left
    assert precision.cpu_speeds() == first and len(probe.calls) == 1
    path = Path(first["cache"])
    saved = json.loads(path.read_text())
    assert saved["cpu_model"] == provenance.cpu_model() and saved["torch"] == torch.__version__
    path.write_text(json.dumps({"bf16_s": 1.0, "fp32_s": 1.0}))  # an older probe's format
    precision._cached_speeds.cache_clear()
    assert precision.cpu_speeds() == first and len(probe.calls) == 2
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        assert precision.cpu_speeds()["threads"] == threads + 1 and len(probe.calls) == 3
    finally:
        torch.set_num_threads(threads)


def test_the_config_forces_either_and_emulated_bf16_is_never_chosen(probe, monkeypatch):
    probe(0.5, 1.0)
    assert precision.amp_dtype(CPU, False) is None
    probe(1.0, 0.5)
    assert precision.amp_dtype(CPU, True) == torch.bfloat16
    assert probe.calls == []  # forced: nothing measured
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    probe(0.5, 1.0)
    assert precision.amp_dtype(CPU, "auto") is None and precision.amp_dtype(CPU, True) is None


def test_provenance_records_the_choice_and_why(probe):
    probe(0.5, 1.0)
    recorded = provenance.record("hash", "auto")["cpu_precision"]
    assert recorded["dtype"] == "bfloat16" and "2.00x" in recorded["reason"]
    assert provenance.record("hash")["cpu_precision"] is None


def test_provenance_records_the_threads_the_run_computed_with():
    """The count `--config threads=` needs to reproduce a CPU run's last digits."""
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            assert provenance.record("hash")["cpu_threads"] == threads
    finally:
        torch.set_num_threads(before)


def test_the_real_probe_times_both_precisions_for_each_workload():
    seconds = REAL_PROBE()
    assert set(seconds) == set(precision.WORKLOADS)
    assert all(s > 0 for times in seconds.values() for s in times.values())
