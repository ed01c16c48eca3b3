"""Bad input and faults: a one-line error naming the key, file or line; nothing destroyed."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from peftsum import config, methods
from peftsum.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


# --- names that become folders ----------------------------------------------------------------

@pytest.mark.parametrize("name", ["..", ".", ".hidden", "a/b", "../models"])
@pytest.mark.parametrize("section", ["model", "data"])
def test_folder_names_are_single_safe_components(section, name):
    with pytest.raises(UserError, match=rf"{section}\.name"):
        config.validate({section: {"name": name}})


def test_folder_name_check_does_not_rely_on_the_schema():
    with pytest.raises(UserError, match=r"model\.name must be one folder name"):
        config.safe_folder_name("..", "model.name")


def test_atomic_dir_never_replaces_a_parent_folder(tmp_path):
    from peftsum.files import atomic_dir

    keep = tmp_path / "resources" / "models" / "gpt2"
    keep.mkdir(parents=True)
    with pytest.raises(ValueError, match="refusing to replace"), atomic_dir(
            tmp_path / "resources" / "models" / ".."):
        pass
    assert keep.is_dir()


# --- method hyperparameters, checked when the config is read ----------------------------------

@pytest.mark.parametrize(("spec", "message"), [
    ({"kind": "lora", "r": "eight"}, "config: methods.m.r must be an integer >= 1, got 'eight'"),
    ({"kind": "lora", "r": 0}, "config: methods.m.r must be an integer >= 1, got 0"),
    ({"kind": "lora", "r": True}, "config: methods.m.r must be an integer >= 1, got True"),
    ({"kind": "lora", "lr": -1}, "config: methods.m.lr must be a number > 0, got -1"),
    ({"kind": "full", "lr": "fast"}, "config: methods.m.lr must be a number > 0, got 'fast'"),
    ({"kind": "lora", "dropout": 1.5}, "config: methods.m.dropout must be a number >= 0 and <= 1"),
    ({"kind": "lora", "target_modules": "c_attn"},
     "methods.m.target_modules must be a list of strings or null"),
    ({"kind": "prompt_tuning", "n_tokens": 0}, "methods.m.n_tokens must be an integer >= 1, got 0"),
    ({"kind": "prompt_tuning", "init_text": 3}, "methods.m.init_text must be a string, got 3"),
    ({"kind": "last_layers", "n_blocks": -1}, "methods.m.n_blocks must be an integer >= 0"),
    ({"kind": "last_layers", "final_norm": "yes"}, "methods.m.final_norm must be true or false"),
])
def test_method_hyperparameters_are_type_and_range_checked(spec, message):
    with pytest.raises(UserError) as caught:
        methods.from_config("m", spec)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_yaml_string_number_is_read_as_a_float(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("methods:\n  lora: {kind: lora, lr: 1e-4, r: 4}\n")  # YAML 1.1: '1e-4' string
    cfg = config.load(path)
    assert cfg["methods"]["lora"]["lr"] == "1e-4"
    (method,) = methods.all_from_config(cfg)
    assert method.params.lr == 1e-4 and isinstance(method.params.lr, float)


def test_ranges_follow_a_subclass_that_only_changes_the_default():
    from dataclasses import dataclass

    from peftsum.methods.common import MethodParams, check_params

    @dataclass(frozen=True)
    class Params(MethodParams):
        lr: float = 1e-3

    with pytest.raises(UserError, match=r"x\.lr must be a number > 0"):
        check_params(Params, {"lr": 0}, "x")
    assert check_params(Params, {"lr": 2}, "x") == {"lr": 2.0}


def test_config_check_imports_no_torch():
    code = ("import sys; import peftsum.config as c, peftsum.methods as m; "
            "m.all_from_config(c.load(sys.argv[1])); "
            "print([k for k in ('torch', 'transformers', 'peft') if k in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code, str(ROOT / "tests" / "smoke.yaml")],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# --- a trained run: what defines its weights is checked on restore ----------------------------

@pytest.fixture(scope="module")
def trained(smoke_files, tmp_path_factory):
    """A two-step LoRA run on the smoke model, materialised under resources/models/ as in the
    workflow (copied with its mtimes)."""
    import shutil

    from peftsum import stages

    root, cfg = smoke_files
    work = tmp_path_factory.mktemp("trained")
    model_dir = work / "resources" / "models" / "tiny-gpt2"
    shutil.copytree(root / "model", model_dir)
    cfg = {**cfg, "training": {**cfg["training"], "max_steps": 2, "eval_every": 2}}
    stages.train(*lora_and_training(cfg), 0, model_dir, root / "tokenized", work / "run")
    return work


def lora_and_training(cfg: dict) -> tuple:
    """What the train rule passes for the config's lora entry: its Method and TrainingConfig."""
    return (methods.from_config("lora", cfg["methods"]["lora"]),
            config.TrainingConfig.from_dict(config.training_params(cfg["training"])))


def _copy_run(trained, tmp_path, **changes) -> Path:
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(trained / "run", run_dir)
    run = json.loads((run_dir / "run.json").read_text())
    for section, values in changes.items():
        run[section] = {**run[section], **values}
    (run_dir / "run.json").write_text(json.dumps(run))
    return run_dir


def test_untouched_run_restores(trained, tmp_path):
    from peftsum.evaluation import restore

    model, _, run = restore.load_run(_copy_run(trained, tmp_path))
    assert run.method["alpha"] == 32 and model is not None


@pytest.mark.parametrize(("changes", "key"), [
    ({"method": {"alpha": 256}}, "method.alpha = 32, not 256"),
    ({"method": {"r": 4}}, "method.r = 8, not 4"),
    ({"template": {"suffix": "\nSummary:"}}, 'template.suffix = "\\nTL;DR:", not "\\nSummary:"'),
])
def test_edited_run_record_is_refused_naming_the_key(trained, tmp_path, changes, key):
    from peftsum.evaluation import restore

    with pytest.raises(UserError) as caught:
        restore.load_run(_copy_run(trained, tmp_path, **changes))
    assert key in str(caught.value) and "trainable.safetensors was trained with" in str(caught.value)


@pytest.mark.parametrize(("key", "message"), [
    ("reserved_positions", "reserved_positions = {was}, not {now}"),
    ("context_length", "base_model.context_length = {now}, but"),
])
def test_edited_truncation_in_run_record_is_refused(trained, tmp_path, key, message):
    """Both decide how summarize cuts an article: an edited one would return other summaries."""
    from peftsum.evaluation import restore

    run_dir = _copy_run(trained, tmp_path)
    run = json.loads((run_dir / "run.json").read_text())
    section = run["base_model"] if key == "context_length" else run
    was = section[key]
    section[key] = now = was + 100
    (run_dir / "run.json").write_text(json.dumps(run))
    with pytest.raises(UserError, match=re.escape(message.format(was=was, now=now))):
        restore.load_run(run_dir)


def test_a_run_folder_copied_elsewhere_decodes_with_the_defaults(tmp_path):
    from peftsum.evaluation import restore

    assert restore.evaluation_of(Path("/copied-run")) is None  # was IndexError: 2
    assert restore.decoding(Path("/copied-run"), num_beams=2) == config.EvalConfig.from_dict(
        {"num_beams": 2})
    layout = tmp_path / "results" / "x" / "train" / "lora" / "seed0"
    assert restore.evaluation_of(layout) == (
        tmp_path / "results" / "x" / "eval" / "lora" / "seed0" / "metrics.json")


def test_changed_base_weights_are_refused(trained, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from peftsum.data import models
    from peftsum.evaluation import restore

    base = tmp_path / "resources" / "models" / "tiny-gpt2"
    shutil.copytree(trained / "resources" / "models" / "tiny-gpt2", base)
    (base / "model_info.json").touch()
    models.load(base)  # model_info.json touched, weights untouched: still accepted
    weights = base / "model.safetensors"
    state = load_file(weights)
    name = next(iter(state))
    state[name] = state[name] + torch.ones_like(state[name])
    save_file(state, weights, metadata={"format": "pt"})
    with pytest.raises(UserError, match="its weights changed since they were materialised"):
        restore.load_run(_copy_run(trained, tmp_path), base)


def _cli(capsys, verb):
    """python -m peftsum VERB ..., in this process: a call giving (exit status, stderr)."""
    from peftsum.__main__ import main

    def call(*args):
        capsys.readouterr()
        try:
            main([verb, *map(str, args)])
            status = 0
        except SystemExit as exit_:
            status = exit_.code
        return status, capsys.readouterr().err
    return call


@pytest.fixture
def summarize(capsys):
    return _cli(capsys, "summarize")


def _one_line_error(done, needle):
    status, err = done
    assert status != 0
    assert needle in err, err[-2000:]
    assert "Traceback" not in err, err[-2000:]


@pytest.fixture
def export(capsys):
    return _cli(capsys, "export")


def test_export_refuses_a_non_empty_folder_and_resources(trained, tmp_path, export):
    run_dir = _copy_run(trained, tmp_path)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    _one_line_error(export(run_dir, busy), "the folder is not empty")
    assert (busy / "notes.txt").read_text() == "mine"
    base = trained / "resources" / "models" / "tiny-gpt2"
    before = {p.name: p.stat().st_mtime_ns for p in base.iterdir()}
    for target in (base, trained / "resources" / "new"):
        _one_line_error(export(run_dir, target, "--force"), "refusing to write into")
    assert {p.name: p.stat().st_mtime_ns for p in base.iterdir()} == before
    status, err = export(run_dir, busy, "--force")
    assert status == 0, err[-2000:]
    assert (busy / "adapter_config.json").exists() and (busy / "notes.txt").exists()


def test_export_through_a_link_to_the_base_model_is_refused(trained, tmp_path, export):
    run_dir = _copy_run(trained, tmp_path)
    base = trained / "resources" / "models" / "tiny-gpt2"
    before = {p.name: p.stat().st_mtime_ns for p in base.iterdir()}
    link = tmp_path / "link"
    link.symlink_to(base)
    _one_line_error(export(run_dir, link, "--force"), "refusing to write into")
    assert {p.name: p.stat().st_mtime_ns for p in base.iterdir()} == before


# --- summarize: inputs and options checked before the model loads -----------------------------

@pytest.fixture
def unloadable_run(tmp_path):
    """A run record whose base model does not exist: any error but that one came first."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({
        "name": "lora", "method": {"kind": "lora"}, "template": {}, "decoding": {},
        "base_model": {"dir": str(tmp_path / "nowhere"), "name": "x", "weights_sha256": "0"}}))
    return run_dir


@pytest.mark.parametrize("option", ["--num-beams", "--batch-size", "--max-new-tokens"])
def test_summarize_rejects_zero_options(unloadable_run, tmp_path, option, summarize):
    (tmp_path / "a.txt").write_text("An article.")
    _one_line_error(summarize("--run", unloadable_run, "--input", tmp_path / "a.txt", option, 0),
                    f"argument {option}: must be an integer >= 1, got '0'")


@pytest.mark.parametrize(("content", "needle"), [
    ("", "no article to summarize"),
    ("  \n\n", "no article to summarize"),
])
def test_summarize_rejects_empty_input(unloadable_run, tmp_path, content, needle, summarize):
    for name in ("a.txt", "a.jsonl"):
        (tmp_path / name).write_text(content)
        _one_line_error(summarize("--run", unloadable_run, "--input", tmp_path / name), needle)


def test_summarize_rejects_a_folder_as_output(unloadable_run, tmp_path, summarize):
    (tmp_path / "a.txt").write_text("An article.")
    _one_line_error(summarize("--run", unloadable_run, "--input", tmp_path / "a.txt", "--output",
                              tmp_path), "is a folder; give a file name")


@pytest.mark.parametrize(("content", "needle"), [
    (b'{"article": "one"}\n{"article": "two"\n', "a.jsonl:2: not valid JSON"),
    (b'{"article": "one"}\n["two"]\n', "a.jsonl:2: each line must be a JSON object, got list"),
    (b'{"article": "one"}\n\n{"article": "t\xffo"}\n', "a.jsonl:3: not UTF-8 text (byte 0xff"),
    (b'{"article": "one"}\n{"text": "two"}\n', "a.jsonl:2: needs an 'article' field"),
])
def test_summarize_input_errors_name_the_line(unloadable_run, tmp_path, content, needle, summarize):
    (tmp_path / "a.jsonl").write_bytes(content)
    _one_line_error(summarize("--run", unloadable_run, "--input", tmp_path / "a.jsonl"), needle)


def test_summarize_text_input_that_is_not_utf8_names_the_line(unloadable_run, tmp_path, summarize):
    (tmp_path / "a.txt").write_bytes("first line\nsecond \xe9 line\n".encode("latin-1"))
    _one_line_error(summarize("--run", unloadable_run, "--input", tmp_path / "a.txt"),
                    "a.txt:2: not UTF-8 text (byte 0xe9 at column 8)")


# --- readers: file and line in every error ---------------------------------------------------

def _source(tmp_path, source):
    return {"name": "t", "source": source, "path": str(tmp_path),
            "columns": {"id": "id", "article": "article", "highlights": "highlights"}}


@pytest.mark.parametrize(("content", "needle"), [
    (b'{"id": 1, "article": "a", "highlights": "h"}\n{"id": 2, "article": \n',
     "train.jsonl:2: not valid JSON"),
    (b'{"id": 1, "article": "a", "highlights": "h"}\n\n[1, 2]\n',
     "train.jsonl:3: each line must be a JSON object, got list"),
    (b'{"id": 1, "article": "caf\xe9", "highlights": "h"}\n', "train.jsonl:1: not UTF-8 text"),
    (b'{"id": 1, "article": ["a"], "highlights": "h"}\n', "train.jsonl:1: 'article' must be text"),
    (b'{"id": 1, "highlights": "h"}\n', "train.jsonl:1: no column 'article'"),
])
def test_jsonl_source_errors_name_file_and_line(tmp_path, content, needle):
    from peftsum.data import sources

    (tmp_path / "train.jsonl").write_bytes(content)
    with pytest.raises(UserError, match=needle):
        list(sources.read_split(_source(tmp_path, "jsonl"), "train"))


def test_csv_source_reads_fields_over_128_kb(tmp_path):
    from peftsum.data import sources

    article = "word " * 60_000  # 300 KB: over Python's default csv field limit
    (tmp_path / "train.csv").write_text(f"id,article,highlights\n1,{article},short\n")
    (row,) = sources.read_split(_source(tmp_path, "csv"), "train")
    assert row["article"] == article


def test_csv_source_errors_name_file_and_line(tmp_path):
    from peftsum.data import sources

    (tmp_path / "train.csv").write_bytes(b"id,article,highlights\n1,ok,h\n2,caf\xe9,h\n")
    with pytest.raises(UserError, match=r"train\.csv:3: not UTF-8 text \(byte 0xe9 at column 6\)"):
        list(sources.read_split(_source(tmp_path, "csv"), "train"))
    (tmp_path / "train.csv").write_bytes(b'id,article,highlights\n1,ok,h\n2,"unclosed,h\n')
    with pytest.raises(UserError, match=r"train\.csv:3: not valid CSV \(unexpected end of data"):
        list(sources.read_split(_source(tmp_path, "csv"), "train"))


@pytest.mark.parametrize(("content", "needle"), [
    (b'{"model_type": "gpt2",\n  "n_layer": }\n', r"config\.json:2: not valid JSON"),
    (b'{"model_type": "gpt\xff"}', r"config\.json: not UTF-8 text"),
    (b'[1]', r"config\.json: a model config is a JSON object with a 'model_type' key"),
    (b'{"model_type": "gpt2", "n_layer": "two", "n_embd": 32, "n_head": 2}',
     r"config\.json has a value of the wrong type \(.*'n_layer'"),
])
def test_local_model_with_unreadable_config_names_the_file(tmp_path, content, needle):
    from peftsum.data import models

    (tmp_path / "config.json").write_bytes(content)
    with pytest.raises(UserError, match=needle):
        models.materialise({"name": "m", "source": "local", "path": str(tmp_path)},
                           tmp_path / "out")


def test_package_file_stays_inside_its_package():
    from peftsum.data.models import package_file

    with pytest.raises(UserError, match="is not a file inside package 'aclsum'"):
        package_file("aclsum", "../../../../etc/passwd")


# --- split and tokenize -----------------------------------------------------------------------

def test_duplicate_ids_are_caught_in_split(tmp_path):
    from peftsum.data import split
    from peftsum.files import write_jsonl

    for name in ("train", "validation", "test"):
        write_jsonl(tmp_path / f"{name}.jsonl", [
            {"id": f"{name}{i}", "article": f"{name} article {i}", "highlights": "h"}
            for i in range(4)])
    write_jsonl(tmp_path / "test.jsonl", [{"id": "x", "article": "one", "highlights": "h"},
                                          {"id": "y", "article": "two", "highlights": "h"},
                                          {"id": "x", "article": "three", "highlights": "h"}])
    sizes = {"train": None, "validation": None, "test": None}
    with pytest.raises(UserError, match=r"test\.jsonl: id 'x' appears twice \(lines 1 and 3\)"):
        split.run(tmp_path, tmp_path / "out", sizes, 0)
    assert not (tmp_path / "out").exists()


def test_template_that_leaves_no_room_for_the_article_stops_at_tokenize(tokenizer):
    from peftsum.config import TemplateConfig
    from peftsum.data import tokenize

    template = TemplateConfig.from_dict({"prefix": "Read this. " * 200, "max_length": 512,
                                         "max_target_tokens": 64})
    budget = tokenize.source_budget(template, 512, 8)
    with pytest.raises(UserError, match=rf"take \d+ of the {budget} source tokens.*shorten them"):
        tokenize.Encoder(tokenizer, template, budget)
    short = TemplateConfig.from_dict({"prefix": "Read this. " * 140, "max_length": 512,
                                      "max_target_tokens": 64})
    with pytest.raises(UserError, match="fewer than 16"):  # the stage wants room for an article
        tokenize.run(tokenizer, 512, Path("unused"), Path("unused"), short, 8)


# --- checkpoints ------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["garbage", "junk", "truncated"])
def test_corrupt_checkpoint_is_moved_aside_and_the_run_starts_afresh(tmp_path, caplog, damage):
    import torch

    from peftsum.training import checkpoint

    checkpoint.save(tmp_path, {"fingerprint": "f", "step": 3, "weights": {"w": torch.ones(1000)}})
    path = tmp_path / checkpoint.FILE
    data = path.read_bytes()
    damaged = {"garbage": b"\x00not a checkpoint", "junk": b"junk", "truncated": data[:len(data) // 2]}
    path.write_bytes(damaged[damage])
    assert checkpoint.load(tmp_path, "f") is None
    assert not path.exists()
    (aside,) = tmp_path.glob("checkpoint.pt.corrupt-*")
    assert aside.stat().st_size > 0
    assert "this run starts afresh" in caplog.text


# --- faults: a job ends with Snakemake; one trainer per run -----------------------------------

_PARENT = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
time.sleep(300)
"""
_STAGE = """
import os, sys, time
from peftsum import stages
with stages.guarded(None):
    open(sys.argv[1] + ".tmp", "w").write(str(os.getpid()))
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    time.sleep(300)
"""


def _orphan_after_parent_killed(tmp_path, parent_name: str, wait_s: float) -> bool:
    """Start a stage under a parent process called parent_name, SIGKILL the parent; whether the
    stage still runs wait_s seconds later (it is then ended here)."""
    import os
    import signal
    import time

    from peftsum.runtime.lifeline import parent_of

    (tmp_path / parent_name).write_text(_PARENT)
    pid_file = tmp_path / "stage.pid"
    parent = subprocess.Popen([sys.executable, str(tmp_path / parent_name), _STAGE,
                               str(pid_file)])
    deadline = time.monotonic() + 120
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    stage = int(pid_file.read_text())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + wait_s
    while parent_of(stage) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = parent_of(stage) is not None
    if alive:
        os.kill(stage, signal.SIGKILL)
    return alive


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_a_stage_ends_when_snakemake_is_killed(tmp_path):
    assert not _orphan_after_parent_killed(tmp_path, "snakemake", wait_s=20)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_a_stage_started_by_hand_outlives_its_shell(tmp_path):
    assert _orphan_after_parent_killed(tmp_path, "launcher", wait_s=3)


def test_a_run_is_trained_by_one_process_at_a_time(tmp_path):
    from peftsum.training import lock

    busy = r"lora seed 0 is already being trained by process \d+"
    with lock.exclusive(tmp_path, "lora seed 0"), pytest.raises(UserError, match=busy), \
            lock.exclusive(tmp_path, "lora seed 0"):
        pass
    with lock.exclusive(tmp_path, "lora seed 0"):  # released: free again
        pass


def test_train_refuses_a_run_that_another_process_trains(smoke, tmp_path):
    from peftsum import stages
    from peftsum.training import lock

    root, cfg = smoke
    with lock.exclusive(tmp_path / "ckpt", "someone"), pytest.raises(
            UserError, match="lora seed 0 is already being trained"):
        stages.train(*lora_and_training(cfg), 0, root / "model", root / "tokenized",
                     tmp_path / "run", tmp_path / "ckpt")
    assert not (tmp_path / "run" / "run.json").exists()


def test_base_weights_are_hashed_again_only_when_their_size_or_mtime_changed(smoke, tmp_path,
                                                                              monkeypatch):
    import os
    import shutil

    from peftsum.data import models

    root, _ = smoke
    shutil.copytree(root / "model", tmp_path / "m")
    hashed = []
    real = models._sha256
    monkeypatch.setattr(models, "_sha256", lambda *paths: hashed.append(paths) or real(*paths))
    assert models.verify_weights(tmp_path / "m") and not hashed  # unchanged: the cheap check
    os.utime(tmp_path / "m" / "model.safetensors")
    assert models.verify_weights(tmp_path / "m") == models.model_info(root / "model")[
        "weights_sha256"] and len(hashed) == 1  # touched: hashed again, and still the same


def test_yaml_string_number_in_a_schema_section_says_how_to_write_it(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("training: {weight_decay: 1e-4}\n")
    with pytest.raises(UserError, match=r"training\.weight_decay.*write it with a dot"):
        config.load(path)


# --- evaluation files: the table's means and the per-article scores beside them ---------------

FIXTURE_EVAL = ROOT / "tests" / "fixtures" / "report" / "eval"


def _evaluations(tmp_path) -> list[Path]:
    """Copies of two fixture evaluations (a method and a baseline): their folders."""
    import shutil

    folders = []
    for name in ("lora/seed0", "zero_shot"):
        shutil.copytree(FIXTURE_EVAL / name, tmp_path / name)
        folders.append(tmp_path / name)
    return folders


def _aggregate(folders: list[Path], out: Path):
    from peftsum.analysis import aggregate

    outputs = {k: out / f"{k}.out" for k in ("tsv", "json", "by_method", "by_method_json",
                                            "significance", "significance_json")}
    return aggregate.run([f / "metrics.json" for f in folders], [], outputs,
                         [f / "predictions.jsonl" for f in folders], n_resamples=50)


def _edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_untouched_evaluations_aggregate(tmp_path):
    assert len(_aggregate(_evaluations(tmp_path), tmp_path)) == 2


@pytest.mark.parametrize(("damage", "message"), [
    # A hand-edited mean beside unchanged per-article scores.
    (lambda f: _edit_json(f / "metrics.json", rougeL=json.loads(
        (f / "metrics.json").read_text())["rougeL"] + 1.04), "rougeL = "),
    (lambda f: _edit_json(f / "metrics.json", rougeL=55), "rougeL = 55, but its articles'"),
    (lambda f: _edit_json(f / "metrics.json", rouge1=550), "rouge1 = 550 is not a ROUGE score"),
    (lambda f: (f / "metrics.json").write_text((f / "metrics.json").read_text()[:40]),
     "metrics.json is not valid JSON"),
    (lambda f: (f / "predictions.jsonl").write_text(
        (f / "predictions.jsonl").read_text()[:-30]), "predictions.jsonl:"),
    (lambda f: _edit_json(f / "metrics.json", n_test=99), "but {metrics} says n_test = 99"),
])
def test_damaged_evaluation_files_are_refused_naming_the_file(tmp_path, damage, message):
    folders = _evaluations(tmp_path)
    damage(folders[0])
    with pytest.raises(UserError) as caught:
        _aggregate(folders, tmp_path)
    text = str(caught.value)
    assert message.format(metrics=folders[0] / "metrics.json") in text
    assert str(folders[0]) in text and "\n" not in text


def test_a_missing_prediction_line_names_the_file_and_the_article(tmp_path):
    folders = _evaluations(tmp_path)
    lines = (folders[1] / "predictions.jsonl").read_text().splitlines()
    dropped = json.loads(lines[3])["id"]
    (folders[1] / "predictions.jsonl").write_text("\n".join(lines[:3] + lines[4:]) + "\n")
    with pytest.raises(UserError, match=re.escape(
            f"{folders[1] / 'predictions.jsonl'} lacks test article {dropped!r}")):
        _aggregate(folders, tmp_path)


# --- tracking: folders and addresses from the config and from run.json ------------------------

def test_a_forged_run_label_cannot_aim_the_tensorboard_removal_outside(tmp_path):
    pytest.importorskip("tensorboard", reason="needs the tracking extra")
    from peftsum.report import tracking

    victim = tmp_path / "results" / "smoke" / "train"
    victim.mkdir(parents=True)
    (victim / "keep.txt").write_text("mine")
    cfg = tracking.TrackingConfig(tensorboard=True)
    board = tmp_path / "results" / "smoke" / "tracking" / "tensorboard"
    for label in ("../../train/seed0", "../../train"):
        with pytest.raises(UserError, match="leads outside"):
            tracking.tracker(cfg, label, {}, board)
    assert (victim / "keep.txt").read_text() == "mine"


def test_an_mlflow_database_under_a_file_names_the_key(tmp_path):
    pytest.importorskip("mlflow", reason="needs the tracking extra")
    from peftsum.report import tracking

    (tmp_path / "a_file").write_text("")
    cfg = tracking.TrackingConfig(mlflow=True, mlflow_uri=f"sqlite:///{tmp_path}/a_file/m.db")
    with pytest.raises(UserError, match=r"tracking\.mlflow_uri sqlite:///.*cannot make its folder"):
        tracking.tracker(cfg, "lora/seed0", {}, tmp_path)


# --- a run folder that cannot take the results: refused before training -----------------------

@pytest.mark.parametrize("damage", ["read-only", "file in the way"])
def test_an_unwritable_run_folder_fails_before_training(smoke, tmp_path, monkeypatch, damage):
    import os

    from peftsum import stages
    from peftsum.training import loop

    if damage == "read-only" and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    root, cfg = smoke
    train = tmp_path / "results" / "smoke" / "train"
    if damage == "read-only":
        train.mkdir(parents=True)
        train.chmod(0o555)
    else:
        train.parent.mkdir(parents=True)
        train.write_text("")
    trained = []
    monkeypatch.setattr(loop, "run", lambda *args, **kwargs: trained.append(args))
    with pytest.raises(UserError, match="is not writable .*: nothing was trained"):
        stages.train(*lora_and_training(cfg), 0, root / "model", root / "tokenized",
                     train / "lora" / "seed0")
    assert not trained


# --- the same weights, the same bytes -----------------------------------------------------------

SAVE_ONE = """
import sys, torch
from peftsum.methods.common import save_trainable
model = torch.nn.Linear(3, 2)
torch.nn.init.ones_(model.weight)
torch.nn.init.zeros_(model.bias)
save_trainable(model, sys.argv[1], {"method": {"kind": "lora", "r": 8}, "template": {"a": 1},
                                    "base_weights_sha256": "0" * 64, "reserved_positions": 8})
"""


def test_identical_weights_save_to_identical_files(tmp_path):
    """safetensors orders its metadata keys differently in each process: without sorting, the
    same weights gave files with different sha256 sums (3 files, 4 keys: 1 chance in 576)."""
    import hashlib

    from safetensors import safe_open

    from peftsum.methods.common import check_metadata

    paths = [tmp_path / f"{i}.safetensors" for i in range(3)]
    for path in paths:
        subprocess.run([sys.executable, "-c", SAVE_ONE, str(path)], check=True)
    sums = {hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
    assert len(sums) == 1
    with safe_open(str(paths[0]), "pt") as f:
        assert f.get_tensor("weight").sum().item() == 6.0
    check_metadata(paths[0], {"reserved_positions": 8, "method": {"r": 8, "kind": "lora"}})
