"""The bench: the whole comparison on the tiny preset, a variant alone in its own process, and the
figures' arithmetic. On the tiny preset (fp32, no dropout) the variants must train exactly the
same thing and decode exactly the same text; speed is reported there, not asserted."""

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from peftsum.errors import UserError
from peftsum.tools.bench import presets, report
from peftsum.tools.bench.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The whole tiny bench, in this process, and what it printed."""
    root = tmp_path_factory.mktemp("bench")
    argv = ["--preset", "tiny", "--in-process", "--models-dir", str(root / "models"),
            "--config-dir", str(CONFIG), "--out", str(root / "bench.json"), "--profile"]
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        results = main(argv)
    return results, printed.getvalue(), root


def test_prints_the_tables_and_writes_the_same_figures(tiny):
    results, printed, root = tiny
    for heading in ("method / variant", "match vs pipeline_one", "MFU = ", "target"):
        assert heading in printed
    assert json.loads((root / "bench.json").read_text())["training"] == results["training"]
    assert results["environment"]["threads"] >= 1 and results["peak"]["flops"] > 0


def test_the_profile_lists_each_methods_top_operators(tiny):
    results, printed, _ = tiny
    assert [p["method"] for p in results["profiles"]] == list(results["training"])
    for profile in results["profiles"]:
        assert f"our loop's last step ({profile['method']})" in printed
        ops = [op["op"] for op in profile["top_ops"]]
        assert "aten::mm" in ops or "aten::addmm" in ops, (profile["method"], ops)


def test_every_training_variant_trains_the_same_thing(tiny):
    results, _, _ = tiny
    assert set(results["training"]) == {"prompt_tuning", "lora", "last_layers"}
    for method, variants in results["training"].items():
        assert set(variants) == {"ours", "hf_trainer", "pad_to_max"}
        assert variants["ours"]["ran_plan"], f"{method}: our loop ran other micro-batches"
        for name, row in variants.items():
            assert row["steps"] == 3 and row["same_lr_schedule"], (method, name)
            # fp32, same batches, same init: equal to rounding, or the speed ratio means nothing.
            assert row["loss_gap"] < 1e-4 and row["train_loss_gap"] < 1e-4, (method, name, row)
            assert row["loss_agrees"]
    assert results["training"]["prompt_tuning"]["hf_trainer"]["same_prompt_init"] is True


def test_ratios_and_mfu_follow_from_the_timings(tiny):
    results, _, _ = tiny
    for variants in results["training"].values():
        ours = variants["ours"]
        assert ours["speedup_of_ours"] == 1.0
        for row in variants.values():
            assert row["speedup_of_ours"] == pytest.approx(ours["tokens_per_s"]
                                                           / row["tokens_per_s"])
            assert row["mfu"] == pytest.approx(row["flops_per_s"] / results["peak"]["flops"])
            # Counting the head on summary tokens only can only lower the FLOPs.
            assert 0 < row["mfu_needed"] < row["mfu"]
    assert all(isinstance(t["met"], bool) for t in results["targets"])


def test_greedy_generation_matches_pipeline_exactly(tiny):
    results, _, _ = tiny
    gen = results["generation"]
    assert set(gen) == {"ours", "pipeline_one", "pipeline_batched"}
    for name, row in gen.items():
        assert 0.0 <= row["match_rate"] <= 1.0 and row["examples"] == 8
        assert row["match_rate"] == 1.0, name
    assert gen["ours"]["speedup_of_ours"] == 1.0
    assert gen["pipeline_one"]["speedup_of_ours"] == pytest.approx(
        gen["pipeline_one"]["seconds"] / gen["ours"]["seconds"])


def test_a_variant_alone_in_a_process_reports_its_peak_memory(tiny, tmp_path):
    _, _, root = tiny
    job = presets.job(presets.preset("tiny", CONFIG), root / "models", tmp_path / "none",
                      ["lora"], threads=1)
    job.save(tmp_path / "job.json")
    done = subprocess.run([sys.executable, "-m", "peftsum.tools.bench", "--variant", "generate/ours",
                           "--job", str(tmp_path / "job.json"), "--result",
                           str(tmp_path / "result.json"), "--threads", "1"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["peak_rss_mb"] > 100 and len(result["texts"]) == 8


def _raw(ends, losses, probe):
    return {"step_end_s": ends, "train_loss": losses, "probe_loss": probe, "lr": [1.0, 0.5, 0.0],
            "flops_per_token": 100, "head_flops_per_token": 40}


def test_throughput_leaves_out_the_warm_up_step_and_a_loss_gap_voids_agreement():
    steps = [{"real": 1000, "target": 100}, {"real": 300, "target": 30},
             {"real": 300, "target": 30}]
    raw = {"lora": {"ours": [_raw([9.0, 10.0, 11.0], [3.0, 2.9, 2.8], 2.5)],
                    "hf_trainer": [_raw([1.0, 4.0, 7.0], [3.0, 2.9, 2.8], 2.6)]}}
    rows = report.training(raw, steps, peak=1000.0, tolerance=0.02)["lora"]
    assert rows["ours"]["tokens_per_s"] == pytest.approx(300.0)  # 300 tokens in each 1 s step
    assert rows["hf_trainer"]["tokens_per_s"] == pytest.approx(100.0)
    assert rows["hf_trainer"]["speedup_of_ours"] == pytest.approx(3.0)
    assert rows["ours"]["mfu"] == pytest.approx(100 * 300 / 1000)
    assert rows["ours"]["mfu_needed"] == pytest.approx((60 * 300 + 40 * 30) / 1000)
    assert not rows["hf_trainer"]["loss_agrees"]  # 4% apart after the last step
    target = report.targets({"lora": rows}, None)[0]
    assert not target["met"]  # 3x faster, but not the same training: the comparison is void


def test_a_step_or_a_round_slowed_by_another_process_does_not_move_the_rate():
    steps = [{"real": 100, "target": 10}] * 4
    slowed = _raw([5.0, 6.0, 16.0, 17.0], [3.0] * 4, 2.5)  # steps of 1 s, 10 s, 1 s
    busy_round = _raw([5.0, 10.0, 15.0, 20.0], [3.0] * 4, 2.5)
    row = report.training({"lora": {"ours": [busy_round, slowed]}}, steps, peak=1.0,
                          tolerance=0.02)["lora"]["ours"]
    assert row["tokens_per_s"] == pytest.approx(100.0)
    assert row["tokens_per_s_overall"] == pytest.approx(300 / 12)
    assert row["repeats"] == 2 and row["repeat_tokens_per_s"] == pytest.approx([20.0, 100.0])


def test_presets_take_the_workflow_settings_and_the_gpu_sizes():
    demo = presets.preset("cpu-demo", CONFIG)
    assert demo.model["name"] == "smollm2-135m-instruct" and demo.cpu_bf16
    training = yaml.safe_load((CONFIG / "demo.yaml").read_text())["training"]
    assert (demo.batch_size, demo.grad_accum) == (training["batch_size"], training["grad_accum"])
    gpu = presets.preset("gpu-gpt2", CONFIG)
    assert gpu.batch_size == 32 and gpu.template["max_length"] == 512 + 128
    assert gpu.template["max_target_tokens"] == 128
    assert presets.preset("tiny", CONFIG, steps=5).steps == 5


def test_the_cnndm_preset_says_when_its_data_is_missing(tmp_path):
    with pytest.raises(UserError, match="CNN/DailyMail sample"):
        presets.job(presets.preset("cpu-gpt2-cnndm", CONFIG), tmp_path, tmp_path / "absent.jsonl",
                    ["lora"], threads=1)
