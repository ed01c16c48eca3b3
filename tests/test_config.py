import dataclasses
from pathlib import Path

import pytest

from peftsum import config, methods
from peftsum.errors import UserError
from peftsum.training import sweep

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", ["config/config.yaml", "config/demo.yaml", "tests/smoke.yaml"])
def test_shipped_configs_validate(path):
    cfg = config.load(ROOT / path)
    assert methods.all_from_config(cfg)


def test_defaults_fill_every_section():
    cfg = config.validate({})
    assert cfg["model"]["id"] == "openai-community/gpt2"
    assert cfg["data"]["sizes"] == {"train": 21000, "validation": 6000, "test": 3000}
    assert cfg["template"]["suffix"] == "\nTL;DR:"
    assert set(cfg["methods"]) == {"prompt_tuning", "lora", "last_layers"}


SECTION_CLASSES = [c for c in vars(config).values()
                   if dataclasses.is_dataclass(c) and hasattr(c, "SECTION")]


@pytest.mark.parametrize("cls", SECTION_CLASSES, ids=lambda c: c.__name__)
def test_a_section_dataclass_takes_its_defaults_from_the_schema_only(cls):
    """A literal default on a field would be a second declaration, free to drift from the
    schema's; a field the schema gives no default may default to None (unset)."""
    schema = config.load_schema()["properties"][cls.SECTION]["properties"]
    declared = config.section_defaults(cls.SECTION)
    for field in dataclasses.fields(cls):
        assert field.name in schema, f"{cls.__name__}.{field.name} is no key of the schema"
        if field.name in declared:
            assert field.default is dataclasses.MISSING, (
                f"{cls.__name__}.{field.name} repeats the schema's default")
        else:
            assert field.default is None, f"{cls.__name__}.{field.name} has no schema default"
    built = dataclasses.asdict(cls.from_dict({}))
    assert built == {k: declared.get(k) for k in built}


def test_threads_auto_shares_the_cores_and_a_count_is_kept():
    assert config.job_threads(3, 64, 1) == 3
    assert config.job_threads("auto", 2, 4) == 1
    assert config.job_threads("auto", 16, 4) == 4
    assert config.job_threads("auto", 64, 1) == config.AUTO_THREADS_CAP
    assert config.job_threads("auto", None, 4) == config.AUTO_THREADS_CAP  # a cluster's job
    for bad in (0, "many", 1.5):
        with pytest.raises(UserError, match="threads"):
            config.validate({"threads": bad})


def test_unknown_key_is_named():
    with pytest.raises(UserError, match="trainig"):
        config.validate({"trainig": {}})


def test_nested_unknown_key_is_named():
    with pytest.raises(UserError, match=r"'model'.*allowed keys"):
        config.validate({"model": {"sorce": "hf"}})


def test_wrong_type_names_the_key():
    with pytest.raises(UserError, match=r"training\.batch_size"):
        config.validate({"training": {"batch_size": "eight"}})


def test_method_hyperparameter_typo_is_named():
    cfg = config.validate({"methods": {"lora_r16": {"kind": "lora", "rank": 16}}})
    with pytest.raises(UserError, match=r"methods\.lora_r16: unknown key 'rank'"):
        methods.all_from_config(cfg)


def test_new_method_is_a_config_entry():
    cfg = config.validate({"methods": {"lora_r16": {"kind": "lora", "r": 16, "lr": 1e-4}}})
    (method,) = methods.all_from_config(cfg)
    assert (method.name, method.kind, method.params.r, method.params.lr) == ("lora_r16", "lora", 16, 1e-4)


# --- --config overrides: Snakemake leaves every nested value a string -------------------------

@pytest.mark.parametrize(("override", "typed"), [
    ({"training": {"epochs": "1"}}, {"training": {"epochs": 1}}),  # integer
    ({"training": {"weight_decay": "0.01"}}, {"training": {"weight_decay": 0.01}}),  # number
    ({"training": {"weight_decay": "1e-4"}}, {"training": {"weight_decay": 1e-4}}),  # YAML 1.1
    ({"training": {"cpu_bf16": "true"}}, {"training": {"cpu_bf16": True}}),  # boolean
    ({"training": {"max_steps": "null"}}, {"training": {"max_steps": None}}),  # null
    ({"training": {"max_steps": "7"}}, {"training": {"max_steps": 7}}),  # integer or null
    ({"training": {"attention": "eager"}}, {"training": {"attention": "eager"}}),  # enum
    ({"training": {"seeds": ["0", "1"]}}, {"training": {"seeds": [0, 1]}}),  # list items
    ({"data": {"sizes": {"train": "20"}}}, {"data": {"sizes": {"train": 20}}}),  # deeper
    ({"model": {"revision": "1234"}}, {"model": {"revision": "1234"}}),  # a string stays one
    ({"data": {"config_name": "3.0.0"}}, {"data": {"config_name": "3.0.0"}}),
    ({"experiment": 2024}, {"experiment": "2024"}),  # Snakemake's own int, where text is wanted
    ({"methods": {"m": {"kind": "lora", "r": "16", "lr": "2e-3", "use_dora": "true"},
                  "p": {"kind": "prompt_tuning", "n_tokens": "4", "init_text": "a cat"}}},
     {"methods": {"m": {"kind": "lora", "r": 16, "lr": 2e-3, "use_dora": True},
                  "p": {"kind": "prompt_tuning", "n_tokens": 4, "init_text": "a cat"}}}),
    ({"methods": {"m": {"kind": "lora", "sweep": {"lr": ["1e-3", "3e-3"]}}}},
     {"methods": {"m": {"kind": "lora", "sweep": {"lr": [1e-3, 3e-3]}}}}),
])
def test_nested_overrides_are_typed_as_in_a_config_file(override, typed):
    assert config.typed_overrides(override) == typed
    for name, spec in config.validate(typed)["methods"].items():  # as the workflow reads them
        base, lists = sweep.split_spec(name, spec)
        for point in sweep.points(lists).values() if lists else [{}]:
            assert methods.from_config(name, {**base, **point})


def test_an_override_of_the_wrong_type_names_the_key_and_no_false_hint():
    typed = config.typed_overrides({"training": {"epochs": "many"}})
    with pytest.raises(UserError, match=r"'training\.epochs': 'many' is not of type 'integer'$"):
        config.validate(typed)


def test_the_yaml_hint_is_given_only_where_a_dot_helps(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("training: {epochs: 1e3}\n")  # an integer key: a dot would not help
    with pytest.raises(UserError) as caught:
        config.load(path)
    assert "write it with a dot" not in str(caught.value)


def test_a_key_written_twice_is_refused_naming_the_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("methods:\n  lora: {kind: lora, lr: 0.001}\n  lora: {kind: lora, lr: 0.01}\n")
    with pytest.raises(UserError, match=rf"{path}, line 3: key 'lora' appears twice"):
        config.load(path)


@pytest.mark.parametrize(("train_sizes", "ok"), [([16, 32], True), ([40], False)])
def test_train_sizes_must_fit_the_training_split(train_sizes, ok):
    data = {"sizes": {"train": 32}, "train_sizes": train_sizes}
    if ok:
        assert config.validate({"data": data})
    else:
        with pytest.raises(UserError, match=r"data\.train_sizes 40 is larger than the training "
                                            r"split \(data\.sizes\.train = 32\)"):
            config.validate({"data": data})
