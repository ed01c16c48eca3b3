"""The peftsum command as a user meets it: --help, --version, and summarize's input."""

import io
import json
import logging
import os
import re
import warnings

import pytest

from peftsum import __version__, stages
from peftsum.__main__ import USER_VERBS, main, parser

HIDDEN = ("train", "padding")  # the workflow's verbs


def test_help_lists_only_the_user_verbs_and_describes_the_tool(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = capsys.readouterr().out
    assert parser().description.split()[0] in shown
    for verb in USER_VERBS.strip("{}").split(","):
        assert f"    {verb} " in shown
    assert "SUPPRESS" not in shown
    for verb in HIDDEN:
        assert not re.search(rf"\b{verb}\b", shown)
        assert parser().parse_args([verb, *REQUIRED[verb]]).command == verb  # still callable


REQUIRED = {"train": ["--settings", "s", "--model", "m", "--data", "d", "--out", "o"],
            "padding": ["--data", "d"]}


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"peftsum {__version__}"


def run_without_base_model(tmp_path):
    """A run folder whose run.json reads, but whose base model is missing: loading it fails."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({
        "name": "lora", "method": {"kind": "lora"}, "template": {},
        "base_model": {"dir": str(tmp_path / "nowhere"), "name": "x", "weights_sha256": "0"}}))
    return run


def test_summarize_without_input_is_a_one_line_error_not_a_wait(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin.read", lambda: pytest.fail("read standard input"))
    with pytest.raises(SystemExit) as done:
        main(["summarize", "--run", str(run_without_base_model(tmp_path))])
    err = capsys.readouterr().err
    assert done.value.code == 1 and "--input -" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_summarize_checks_the_run_before_reading_standard_input(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin.read", lambda: pytest.fail("read standard input"))
    with pytest.raises(SystemExit) as done:
        main(["summarize", "--run", str(tmp_path / "no_run"), "--input", "-"])
    err = capsys.readouterr().err
    assert done.value.code == 1 and "no_run" in err and len(err.strip().splitlines()) == 1


def test_summarize_announces_the_slow_load_on_standard_error(tmp_path, capsys):
    run = run_without_base_model(tmp_path)
    (tmp_path / "article.txt").write_text("An article.")
    with pytest.raises(SystemExit):
        main(["summarize", "--run", str(run), "--input", str(tmp_path / "article.txt")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert f"loading the run {run}" in lines[0] and "base model" in lines[-1]


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("terminal", [True, False])
def test_summarize_asks_for_the_article_only_at_a_terminal(tmp_path, capsys, monkeypatch,
                                                           terminal):
    monkeypatch.setattr("sys.stdin", (Terminal if terminal else io.StringIO)("An article."))
    with pytest.raises(SystemExit):
        main(["summarize", "--run", str(run_without_base_model(tmp_path)), "--input", "-"])
    first = capsys.readouterr().err.splitlines()[0]
    assert ("Ctrl-D" in first) == terminal


def test_a_workflow_job_keeps_its_info_and_progress_off_the_shared_console(tmp_path, capsys,
                                                                            monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        stages.setup_logging(tmp_path / "job.log")
        logging.getLogger("peftsum.test").info("step row")
        logging.getLogger("peftsum.test").warning("careful")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("a library's deprecation", FutureWarning, stacklevel=1)
        for handler in root.handlers:
            handler.flush()
    finally:
        logging.captureWarnings(False)
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    err = capsys.readouterr().err
    assert "careful" in err and "step row" not in err and "deprecation" not in err
    log = (tmp_path / "job.log").read_text()
    assert "step row" in log and "a library's deprecation" in log
    assert os.environ["TQDM_DISABLE"] == "1"
