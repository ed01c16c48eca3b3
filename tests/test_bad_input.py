"""Bad input and faults: a one-line error naming the key, file or line; nothing destroyed."""

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
    from peftsum.io import atomic_dir

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
