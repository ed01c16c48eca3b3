"""Per-stage time of a workflow run, from its Snakemake benchmark files."""

import pytest

from peftsum.errors import UserError
from peftsum.tools import timings

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _bench(root, stage, job, seconds, rss="100.5", cpu="3.0"):
    path = root / stage / f"{job}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:01\t{rss}\t1\t1\t1\t0\t0\t50\t{cpu}\n")


def test_seconds_are_summed_per_stage_slowest_first(tmp_path):
    _bench(tmp_path, "train", "lora_seed0", 100.0)
    _bench(tmp_path, "train", "prompt_tuning_seed0", 50.0, rss="NA", cpu="NA")
    _bench(tmp_path, "split", "split", 2.5)
    rows = timings.read(tmp_path)
    assert [(r["stage"], r["job"]) for r in rows] == [
        ("split", "split"), ("train", "lora_seed0"), ("train", "prompt_tuning_seed0")]
    assert rows[2]["max_rss_mb"] is None and rows[1]["max_rss_mb"] == 100.5
    assert timings.per_stage(rows) == [{"stage": "train", "jobs": 2, "seconds": 150.0},
                                      {"stage": "split", "jobs": 1, "seconds": 2.5}]
    text = timings.table(rows, wall_s=200)
    assert "| train | 2 | 150.0 | 98% |" in text and "wall time 200 s" in text


def test_no_benchmark_files_is_a_one_line_error(tmp_path):
    with pytest.raises(UserError, match="no benchmark files"):
        timings.read(tmp_path)


@pytest.mark.slow
def test_every_stage_of_the_smoke_run_left_a_benchmark(smoke_workflow):
    stages = {t["stage"] for t in timings.per_stage(timings.read(smoke_workflow / "benchmarks", "smoke"))}
    assert stages == {"download_model", "download_data", "split", "tokenize", "train", "evaluate",
                     "aggregate", "render_report"}
