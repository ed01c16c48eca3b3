"""envs/*.yaml (for snakemake --sdm conda) pin exactly what pyproject.toml pins."""

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PINS = dict(re.match(r"([\w.-]+)==(\S+)", p).groups() for p in
            PROJECT["dependencies"] + PROJECT["optional-dependencies"]["torch"])
RUNTIME = {name for name in PINS if not name.startswith("snakemake")}  # the jobs run without them


def env_pins(name: str) -> dict[str, str]:
    env = yaml.safe_load((ROOT / "envs" / name).read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return dict(re.match(r"([\w.-]+)==(\S+)", p).groups() for p in pip if "==" in p)


@pytest.mark.parametrize("name", ["torch.yaml", "report.yaml"])
def test_env_pins_agree_with_pyproject(name):
    for package, version in env_pins(name).items():
        assert PINS.get(package) == version, f"{name}: {package}=={version}, pyproject: {PINS.get(package)}"


def test_torch_env_has_every_runtime_dependency():
    assert set(env_pins("torch.yaml")) == RUNTIME


def test_report_env_has_no_torch():
    assert "torch" not in env_pins("report.yaml") and set(env_pins("report.yaml")) <= RUNTIME
