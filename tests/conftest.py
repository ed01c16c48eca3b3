import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from filelock import FileLock
from transformers import GPT2Config, GPT2LMHeadModel

from peftsum import config as peftsum_config
from peftsum import methods, stages
from peftsum.data.models import gpt2_tokenizer


@pytest.fixture(autouse=True, scope="session")
def cpu_precision_in_tests(tmp_path_factory):
    """cpu_bf16: auto resolves to fp32 in tests whatever the CPU (a probe that finds both
    precisions equally fast), its cache outside the repository. Session-wide, so that module
    fixtures that train see it too."""
    from peftsum.runtime import precision

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(precision, "CACHE_DIR", tmp_path_factory.mktemp("precision"))
        patch.setattr(precision, "probe_seconds", lambda: {
            w: {"bf16_s": 1.0, "fp32_s": 1.0} for w in precision.WORKLOADS})
        precision._cached_speeds.cache_clear()
        yield


@pytest.fixture(scope="session")
def tokenizer():
    tok = gpt2_tokenizer()
    tok.pad_token = tok.eos_token
    return tok


def gpt2(**sizes) -> GPT2LMHeadModel:
    """A seeded random GPT-2 (GPT-2 small when no sizes are given)."""
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(**sizes))


@pytest.fixture
def tiny_gpt2():
    return gpt2(n_layer=2, n_head=2, n_embd=32, n_positions=128)


ROOT = Path(__file__).resolve().parents[1]
# Where a workflow on tests/smoke.yaml (or a copy of it) writes its results and logs.
SMOKE_EXPERIMENT = peftsum_config.load(ROOT / "tests" / "smoke.yaml")["experiment"]
SMOKE_RESULTS = Path("results") / SMOKE_EXPERIMENT
SMOKE_LOGS = Path("logs") / SMOKE_EXPERIMENT


def pytest_configure(config):
    # Under pytest-xdist each worker takes one of the machine's cores: two workers of torch's
    # default two threads each would fight over 2 cores.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def smoke_files(tmp_path_factory):
    """The smoke config's model and tokenized data, built once through the package API."""
    root = tmp_path_factory.mktemp("smoke")
    config = peftsum_config.load(ROOT / "tests" / "smoke.yaml")
    stages.download_model(peftsum_config.model_identity(config["model"]), root / "model")
    stages.download_data(peftsum_config.data_identity(config["data"]), root / "source")
    stages.split(root / "source", root / "split", config["data"]["sizes"], config["data"]["seed"])
    reserved = methods.reserved_positions(methods.all_from_config(config))
    stages.tokenize(root / "model", root / "split", root / "tokenized",
                    peftsum_config.TemplateConfig.from_dict(config["template"]), reserved)
    return root, config


@pytest.fixture
def smoke(smoke_files):
    """The smoke folder and a copy of its config, which a test may change for itself."""
    root, config = smoke_files
    return root, copy.deepcopy(config)


def snakemake(workdir: Path, configfile: Path, *args: str,
              env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the workflow in workdir (results/, logs/ ... land there), offline; env: extra
    environment variables."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})}
    # Targets first: --configfile takes several values and would swallow them.
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
               "--cores", "2", *args, "--directory", str(workdir), "--configfile", str(configfile)]
    return subprocess.run(command, check=False, capture_output=True, text=True, env=env,
                          timeout=900)


@pytest.fixture(scope="session")
def smoke_workflow(tmp_path_factory):
    """The whole workflow on the smoke config, run once for every test that reads its results.

    Under pytest-xdist a session fixture runs in every worker: the workflow's folder lies beside
    the workers' own, and the first worker to need it runs it while the others wait."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    workdir, finished = shared / "smoke-workflow", shared / "smoke-workflow.done"
    with FileLock(str(shared / "smoke-workflow.lock")):
        if not finished.exists():
            done = snakemake(workdir, ROOT / "tests" / "smoke.yaml")
            assert done.returncode == 0, done.stderr[-3000:]
            finished.touch()
    return workdir


def two_examples(tokenizer) -> list[dict]:
    """Two tiny article -> summary examples, tokenized as the template does (loss on summary)."""
    examples = []
    for article, summary in [("The cat sat on the mat all day long.", " A cat sat."),
                             ("Stocks rose sharply on Monday after the news.", " Stocks rose.")]:
        source = tokenizer(article + "\nTL;DR:")["input_ids"]
        examples.append({"input_ids": source + tokenizer(summary)["input_ids"] + [50256],
                         "source_len": len(source)})
    return examples
