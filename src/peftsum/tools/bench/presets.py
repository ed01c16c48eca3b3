"""What each bench preset runs on: model, data, methods and sizes, and the job built from them.

The CPU presets take the demo's model, template, methods and batch settings from
config/demo.yaml, and GPT-2's from config/config.yaml (with a randomly initialised GPT-2 small,
since the hub cannot be reached offline): the bench measures the settings the workflow runs.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from peftsum import config as peftsum_config
from peftsum import methods
from peftsum.config import TemplateConfig
from peftsum.data import models
from peftsum.data.sources import read_split
from peftsum.data.tokenize import Encoder, source_budget
from peftsum.errors import UserError
from peftsum.files import read_jsonl

GPT2_SMALL = {"n_layer": 12, "n_head": 12, "n_embd": 768, "n_positions": 1024, "seed": 0}


@dataclass(frozen=True)
class Preset:
    name: str
    model: dict  # a config's model section, as peftsum.data.models.materialise reads it
    data: str  # "aclsum", or "cnndm" (the sample of real CNN/DailyMail test pairs)
    template: dict
    methods: dict  # method name -> spec, as in a config's methods section
    batch_size: int
    grad_accum: int
    steps: int  # optimizer steps per training variant; the first is warm-up, not timed
    n_probe: int  # held-out examples whose loss after the last step every variant reports
    n_test: int | None  # examples generated for; None: the whole test split
    gen_batch_size: int
    max_new_tokens: int
    cpu_bf16: bool  # bf16 autocast on CPU (on a GPU, bf16 or fp16 whatever this says)
    matmul_size: int  # side of the square matmul timed for the device's peak
    attention: str = "sdpa"  # our loop's training.attention (the others: transformers' default)


def _config(config_dir: Path, name: str) -> dict:
    return peftsum_config.load(Path(config_dir) / name)


def _tiny(config_dir: Path) -> Preset:
    """Seconds, not minutes: the tests run the whole bench on it. fp32 and no dropout, so that
    the variants' losses agree to rounding and a real disagreement shows."""
    return Preset(
        name="tiny",
        model={"name": "tiny-gpt2", "source": "random",
               "random": {"n_layer": 2, "n_head": 2, "n_embd": 64, "n_positions": 512, "seed": 0}},
        data="aclsum", template={"max_length": 160, "max_target_tokens": 48},
        methods={"prompt_tuning": {"kind": "prompt_tuning", "n_tokens": 8, "lr": 0.03},
                 "lora": {"kind": "lora", "dropout": 0.0, "lr": 0.001},
                 "last_layers": {"kind": "last_layers", "n_blocks": 1, "final_norm": True,
                                 "lr": 0.001}},
        batch_size=2, grad_accum=2, steps=3, n_probe=4, n_test=8, gen_batch_size=4,
        max_new_tokens=16, cpu_bf16=False, matmul_size=1024)


def _tiny_kinds(config_dir: Path) -> Preset:
    """The tiny preset with the PEFT kinds beyond the first four, one small instance each."""
    kinds = {"dora": {"kind": "lora", "use_dora": True, "dropout": 0.0, "lr": 0.001},
             "bitfit": {"kind": "bitfit", "lr": 0.001},
             "ia3": {"kind": "ia3", "lr": 0.01},
             "prefix_tuning": {"kind": "prefix_tuning", "num_virtual_tokens": 8, "lr": 0.01},
             "p_tuning": {"kind": "p_tuning", "num_virtual_tokens": 8, "encoder_hidden_size": 32,
                          "lr": 0.01},
             "adalora": {"kind": "adalora", "init_r": 4, "target_r": 2, "total_step": 3,
                         "dropout": 0.0, "orth_reg_weight": 0.0, "lr": 0.001},
             "vera": {"kind": "peft", "config": "VeraConfig",
                      "kwargs": {"r": 16, "target_modules": ["c_attn"]}, "lr": 0.01}}
    return dataclasses.replace(_tiny(config_dir), name="tiny-kinds", methods=kinds)


def _cpu_methods(config_dir: Path) -> Preset:
    """config/methods.yaml's every family on the demo's model and data."""
    return dataclasses.replace(_cpu_demo(config_dir), name="cpu-methods",
                               methods=_config(config_dir, "methods.yaml")["methods"])


def _cpu_demo(config_dir: Path) -> Preset:
    demo = _config(config_dir, "demo.yaml")
    training, evaluation = demo["training"], demo["evaluation"]
    return Preset(
        name="cpu-demo", model=demo["model"], data="aclsum", template=demo["template"],
        methods=demo["methods"], batch_size=training["batch_size"],
        grad_accum=training["grad_accum"], steps=5, n_probe=16, n_test=None,
        gen_batch_size=evaluation["batch_size"], max_new_tokens=evaluation["max_new_tokens"],
        cpu_bf16=training["cpu_bf16"], matmul_size=4096, attention=training["attention"])


def _gpt2(config_dir: Path, name: str, template: dict, **sizes) -> Preset:
    """GPT-2 small's shape, template and methods from config/config.yaml, randomly initialised."""
    full = _config(config_dir, "config.yaml")
    model = {"name": "random-gpt2-small", "source": "random", "random": GPT2_SMALL}
    return Preset(name=name, model=model, data="cnndm", methods=full["methods"],
                  template={**full["template"], **template}, **sizes)


def _cpu_gpt2_cnndm(config_dir: Path) -> Preset:
    return _gpt2(config_dir, "cpu-gpt2-cnndm", template={}, batch_size=4, grad_accum=1, steps=4, n_probe=8,
                 n_test=16, gen_batch_size=16, max_new_tokens=64, cpu_bf16=True,
                 matmul_size=4096)


def _gpu_gpt2(config_dir: Path) -> Preset:
    return _gpt2(config_dir, "gpu-gpt2", template={"max_length": 640, "max_target_tokens": 128},
                 batch_size=32, grad_accum=1, steps=20, n_probe=64, n_test=None,
                 gen_batch_size=32, max_new_tokens=128, cpu_bf16=True, matmul_size=8192)


PRESETS = {"tiny": _tiny, "tiny-kinds": _tiny_kinds, "cpu-demo": _cpu_demo,
           "cpu-methods": _cpu_methods, "cpu-gpt2-cnndm": _cpu_gpt2_cnndm, "gpu-gpt2": _gpu_gpt2}


def preset(name: str, config_dir: Path, **overrides) -> Preset:
    """A preset, with the command line's overrides (None: keep the preset's value)."""
    chosen = PRESETS[name](Path(config_dir))
    return dataclasses.replace(chosen, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class Job:
    """Everything a variant needs, so that a fresh process can run it alone."""

    preset: Preset
    model_dir: str
    methods: dict
    train: list[dict]  # the training pool cycled to steps x batch_size x grad_accum examples
    probe: list[dict]
    test_texts: list[str]  # the test sources as text, for pipeline()
    test: list[dict]  # the same sources, tokenized as pipeline() tokenizes them
    threads: int
    seed: int = 0

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def load(cls, path: Path) -> Job:
        values = json.loads(Path(path).read_text())
        return cls(**{**values, "preset": Preset(**values["preset"])})


def _pairs(preset: Preset, cnndm: Path) -> dict[str, list[dict]]:
    """Train pool, probe and test pairs (id, article, highlights)."""
    if preset.data == "aclsum":
        test = list(read_split({"source": "aclsum"}, "test"))
        return {"train": list(read_split({"source": "aclsum"}, "train")),
                "probe": list(read_split({"source": "aclsum"}, "validation"))[:preset.n_probe],
                "test": test[:preset.n_test]}
    if not Path(cnndm).is_file():
        raise UserError(f"preset {preset.name} needs the CNN/DailyMail sample {cnndm} "
                        "(--cnndm); without it, run the cpu-demo preset")
    rows = read_jsonl(cnndm)  # test-split pairs: measured for speed here, never trained for results
    n_test = preset.n_test or len(rows) // 2
    held_out = n_test + preset.n_probe
    if held_out >= len(rows):
        raise UserError(f"{cnndm}: {len(rows)} pairs, {held_out} needed for probe and test")
    return {"train": rows[:-held_out], "probe": rows[-held_out:-n_test], "test": rows[-n_test:]}


def _encode(encoder: Encoder, pairs: list[dict]) -> list[dict]:
    rows = encoder.encode([p["article"] for p in pairs], [p["highlights"] for p in pairs])
    return [{"input_ids": r["input_ids"], "source_len": r["source_len"]} for r in rows]


def model_dir(preset: Preset, models_dir: Path) -> Path:
    """The materialised model: reused when there (the demo leaves it), written once otherwise."""
    folder = Path(models_dir) / preset.model["name"]
    if not (folder / "model_info.json").is_file():
        models.materialise(preset.model, folder)
    return folder


def job(preset: Preset, models_dir: Path, cnndm: Path, method_names: list[str],
        threads: int) -> Job:
    unknown = sorted(set(method_names) - set(preset.methods))
    if unknown:
        raise UserError(f"--methods: {unknown[0]!r} is not a method of preset {preset.name} "
                        f"({', '.join(preset.methods)})")
    specs = {name: preset.methods[name] for name in method_names}
    pairs = _pairs(preset, cnndm)  # before the model: a missing data file fails at once
    folder = model_dir(preset, models_dir)
    tokenizer = models.load_tokenizer(folder)
    template = TemplateConfig.from_dict(preset.template)
    # Every method's examples leave room for the longest soft prompt, as in the workflow.
    reserved = methods.reserved_positions([methods.from_config(n, s) for n, s in specs.items()])
    budget = source_budget(template, models.model_info(folder)["context_length"], reserved)
    encoder = Encoder(tokenizer, template, budget)
    pool = _encode(encoder, pairs["train"])
    n_train = preset.steps * preset.batch_size * preset.grad_accum  # full micro-batches only
    # pipeline() takes text: give it the encoded source, and generate() the same text tokenized
    # the way pipeline() tokenizes it, so that both decode from identical token ids.
    texts = [tokenizer.decode(e["input_ids"][:e["source_len"]])
             for e in _encode(encoder, pairs["test"])]
    test = [{"input_ids": ids, "source_len": len(ids)} for ids in tokenizer(texts)["input_ids"]]
    return Job(preset=preset, model_dir=str(folder), methods=specs,
               train=[pool[i % len(pool)] for i in range(n_train)],
               probe=_encode(encoder, pairs["probe"]), test_texts=texts, test=test,
               threads=threads)
