import json

import pytest
import torch

from peftsum.data import models
from peftsum.errors import UserError

RANDOM = {"name": "r", "source": "random",
          "random": {"n_layer": 1, "n_head": 2, "n_embd": 16, "n_positions": 64, "seed": 3}}


def test_random_model_is_seeded_and_uses_the_gpt2_tokenizer(tmp_path):
    info = models.materialise(RANDOM, tmp_path / "a")
    models.materialise(RANDOM, tmp_path / "b")
    a, tok = models.load(tmp_path / "a")
    b, _ = models.load(tmp_path / "b")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert tok("Hello world, summarize this.")["input_ids"] == [15496, 995, 11, 35743, 428, 13]
    assert tok.eos_token_id == 50256 and tok.pad_token_id == 50256
    assert info["context_length"] == 64 and info["n_params"] == models.count_parameters(a)


def test_local_source_copies_a_saved_model(tmp_path):
    models.materialise(RANDOM, tmp_path / "a")
    info = models.materialise({"name": "l", "source": "local", "path": str(tmp_path / "a")},
                              tmp_path / "l")
    a, _ = models.load(tmp_path / "a")
    b, _ = models.load(tmp_path / "l")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert json.loads((tmp_path / "l" / "model_info.json").read_text())["path"] == info["path"]


def test_local_source_without_a_model_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="not a save_pretrained folder"):
        models.materialise({"name": "l", "source": "local", "path": str(tmp_path)}, tmp_path / "l")
    assert not (tmp_path / "l").exists()


def test_loading_a_folder_that_was_never_materialised_fails_clearly(tmp_path):
    with pytest.raises(UserError, match="not a materialised model"):
        models.load(tmp_path)
