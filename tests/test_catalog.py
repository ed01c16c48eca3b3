"""What the Snakemake workflow catalog expects: config/README.md covering every config file and
key group, a caption on every report() output, and .snakemake-workflow-catalog.yml."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from peftsum import config

ROOT = Path(__file__).resolve().parents[1]
RULES = sorted((ROOT / "workflow" / "rules").glob("*.smk"))


def test_config_readme_describes_every_file_and_key_group():
    readme = (ROOT / "config" / "README.md").read_text()
    for path in (ROOT / "config").glob("*.yaml"):
        assert f"`{path.name}`" in readme, path.name
    for group in config.load_schema()["properties"]:
        assert re.search(rf"^\| `{group}` \|", readme, re.MULTILINE), group


def report_calls(text: str) -> list[str]:
    """The argument text of each report(...) call (balanced parentheses)."""
    calls = []
    for match in re.finditer(r"\breport\(", text):
        depth, i = 1, match.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        calls.append(text[match.end():i - 1])
    return calls


def test_every_report_output_has_a_caption_file_and_a_category():
    calls = [(rules, call) for rules in RULES for call in report_calls(rules.read_text())]
    assert len(calls) >= 6  # three tables, the report, the explorer, the figures
    for rules, call in calls:
        caption = re.search(r'caption="([^"]+)"', call)
        assert caption, f"{rules.name}: report() without caption: {call.strip()[:60]}"
        assert (rules.parent / caption.group(1)).resolve().is_file(), caption.group(1)
        assert "category=" in call and "labels=" in call, call


def test_workflow_description_and_catalog_file():
    assert 'report: "workflow/report/workflow.rst"' in (ROOT / "Snakefile").read_text()
    assert (ROOT / "workflow" / "report" / "workflow.rst").is_file()
    catalog = yaml.safe_load((ROOT / ".snakemake-workflow-catalog.yml").read_text())["usage"]
    assert catalog["report"] is True
    assert set(catalog["software-stack-deployment"]) == {"conda", "apptainer", "apptainer+conda"}
    assert "--configfile config/demo.yaml" in catalog["mandatory-flags"]["desc"]
