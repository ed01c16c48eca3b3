from pathlib import Path

import pytest

from peftsum import config, methods
from peftsum.errors import UserError

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
