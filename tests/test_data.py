import copy
import csv
import json
import random

import pytest

from peftsum.config import TemplateConfig
from peftsum.data import batches, sources, split, tokenize
from peftsum.data.models import package_file
from peftsum.data.tokenize import IGNORE_INDEX, make_labels
from peftsum.errors import UserError
from peftsum.files import read_jsonl


def _source_cfg(tmp_path, source="csv", **extra):
    return {"name": "t", "source": source, "path": str(tmp_path),
            "columns": {"id": "id", "article": "article", "highlights": "highlights"}, **extra}


def _write_csv(path, rows, columns=("id", "article", "highlights")):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _rows(prefix, n):
    return [{"id": f"{prefix}{i}", "article": f"{prefix} article {i}.", "highlights": f"sum {i}"}
            for i in range(n)]


def test_csv_source_reads_kaggle_layout(tmp_path):
    for s in sources.SPLITS:
        _write_csv(tmp_path / f"{s}.csv", _rows(s, 3))
    counts = sources.materialise(_source_cfg(tmp_path), tmp_path / "out")
    assert counts == {"train": 3, "validation": 3, "test": 3}
    assert read_jsonl(tmp_path / "out" / "test.jsonl")[0] == {
        "id": "test0", "article": "test article 0.", "highlights": "sum 0"}


def test_csv_missing_column_is_named(tmp_path):
    _write_csv(tmp_path / "train.csv", [{"id": 1, "article": "a"}], columns=("id", "article"))
    with pytest.raises(UserError, match=r"train\.csv: missing column 'highlights'"):
        list(sources.read_split(_source_cfg(tmp_path), "train"))


def test_jsonl_source_maps_column_names(tmp_path):
    (tmp_path / "train.jsonl").write_text(json.dumps({"key": "k", "doc": "d", "summ": "s"}) + "\n")
    cfg = _source_cfg(tmp_path, "jsonl")
    cfg["columns"] = {"id": "key", "article": "doc", "highlights": "summ"}
    assert list(sources.read_split(cfg, "train")) == [{"id": "k", "article": "d", "highlights": "s"}]


def test_aclsum_source_joins_three_summary_sentences():
    rows = list(sources.read_split({"source": "aclsum"}, "validation"))
    lines = package_file("aclsum", "dataset/val.jsonl").read_text().strip().splitlines()
    assert len(rows) == len(lines)
    assert all(len(r["highlights"].split("\n")) == 3 and r["article"] for r in rows)


def _write_source(folder, train, validation, test):
    for name, rows in zip(sources.SPLITS, (train, validation, test)):
        folder.mkdir(exist_ok=True)
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_split_drops_empty_duplicates_and_held_out_articles(tmp_path):
    test, validation = _rows("test", 3), _rows("val", 2)
    train = _rows("train", 4) + [{"id": "e", "article": " ", "highlights": "x"},
                                 dict(_rows("train", 1)[0], id="dup"), dict(test[0], id="leak"),
                                 dict(validation[1], id="seen")]
    _write_source(tmp_path / "src", train, validation + [dict(test[1], id="vleak")], test)
    stats = split.run(tmp_path / "src", tmp_path / "out", {"train": None}, seed=0)
    assert stats["dropped"]["train"] == {"empty": 1, "duplicate": 1, "in_validation": 1,
                                         "in_test": 1}
    assert stats["dropped"]["validation"] == {"empty": 0, "duplicate": 0, "in_test": 1}
    kept = {r["id"] for r in read_jsonl(tmp_path / "out" / "train.jsonl")}
    assert kept == {"train0", "train1", "train2", "train3"}


def test_split_sample_is_seeded_and_sized(tmp_path):
    _write_source(tmp_path / "src", _rows("train", 50), _rows("val", 10), _rows("test", 10))
    sizes = {"train": 7, "validation": 3, "test": 2}
    ids = []
    for out in ("a", "b"):
        split.run(tmp_path / "src", tmp_path / out, sizes, seed=3)
        ids.append([r["id"] for r in read_jsonl(tmp_path / out / "train.jsonl")])
    assert ids[0] == ids[1] and len(ids[0]) == 7
    split.run(tmp_path / "src", tmp_path / "c", sizes, seed=4)
    assert [r["id"] for r in read_jsonl(tmp_path / "c" / "train.jsonl")] != ids[0]


def test_split_larger_than_source_fails_before_writing(tmp_path):
    _write_source(tmp_path / "src", _rows("train", 5), _rows("val", 5), _rows("test", 5))
    with pytest.raises(UserError, match=r"data\.sizes\.test = 9 is larger than the 5"):
        split.run(tmp_path / "src", tmp_path / "out", {"test": 9}, seed=0)
    assert not (tmp_path / "out").exists()


def test_split_with_no_rows_left_fails(tmp_path):
    empty = [{"id": "1", "article": "", "highlights": "x"}]
    _write_source(tmp_path / "src", _rows("train", 2), empty, _rows("test", 2))
    with pytest.raises(UserError, match="no rows left in the validation split"):
        split.run(tmp_path / "src", tmp_path / "out", {}, seed=0)


def test_labels_mask_everything_but_summary_and_eos(tokenizer):
    template = TemplateConfig.from_dict({"max_length": 64, "max_target_tokens": 16})
    encoder = tokenize.Encoder(tokenizer, template, tokenize.source_budget(template, 1024, 4))
    (row,) = encoder.encode(["The cat sat on the mat."], ["A cat sat."])
    ids, n = row["input_ids"], row["source_len"]
    labels = make_labels(ids, n)
    assert tokenizer.decode(ids[:n]) == "The cat sat on the mat.\nTL;DR:"
    assert all(label == IGNORE_INDEX for label in labels[:n])
    assert labels[n:] == ids[n:]
    assert tokenizer.decode(labels[n:-1]) == " A cat sat." and labels[-1] == tokenizer.eos_token_id


def test_long_article_is_truncated_to_fit_soft_prompt_and_target(tokenizer):
    template = TemplateConfig.from_dict({"max_length": 64, "max_target_tokens": 16})
    budget = tokenize.source_budget(template, context=1024, reserved=8)
    encoder = tokenize.Encoder(tokenizer, template, budget)
    (row,) = encoder.encode(["word " * 500], ["summary " * 100])
    assert 8 + len(row["input_ids"]) <= 64
    assert len(row["input_ids"]) - row["source_len"] == 16  # target truncated, EOS kept
    assert row["input_ids"][-1] == tokenizer.eos_token_id
    assert tokenizer.decode(row["input_ids"][: row["source_len"]]).endswith("\nTL;DR:")


def test_length_grouping_cuts_padding_and_keeps_every_example():
    lengths = [random.Random(i).randint(10, 500) for i in range(400)]
    grouped = batches.length_grouped_batches(lengths, 8, seed=0)
    assert sorted(i for b in grouped for i in b) == list(range(400))
    shuffled = batches.random_batches(400, 8, seed=0)
    assert batches.padding_share(lengths, grouped) < batches.padding_share(lengths, shuffled) / 3
    assert grouped != batches.length_grouped_batches(lengths, 8, seed=1)  # order still random


CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture
def chat_tokenizer(tokenizer):
    chat = copy.deepcopy(tokenizer)
    chat.chat_template = CHATML
    return chat


def test_chat_template_source_is_what_apply_chat_template_gives(chat_tokenizer):
    template = TemplateConfig.from_dict({"max_length": 256, "max_target_tokens": 16})
    chat = tokenize.chat_template(chat_tokenizer, template, "Summarize this.")
    encoder = tokenize.Encoder(chat_tokenizer, chat, tokenize.source_budget(template, 1024, 0))
    article = "The cat sat on the mat. It was warm."
    (row,) = encoder.encode([article], ["A cat sat."])
    expected = chat_tokenizer.apply_chat_template(
        [{"role": "user", "content": f"Summarize this.\n\n{article}"}],
        tokenize=False, add_generation_prompt=True)
    # The same text; token boundaries around the article may differ, as with any template.
    assert chat_tokenizer.decode(row["input_ids"][: row["source_len"]]) == expected
    assert chat_tokenizer.decode(row["input_ids"][row["source_len"]:-1]) == "A cat sat."


def test_chat_template_truncates_the_article_only(chat_tokenizer):
    template = TemplateConfig.from_dict({"max_length": 64, "max_target_tokens": 16})
    chat = tokenize.chat_template(chat_tokenizer, template, "Summarize this.")
    budget = tokenize.source_budget(template, 1024, reserved=8)
    (row,) = tokenize.Encoder(chat_tokenizer, chat, budget).encode(["word " * 500], ["s"])
    assert row["source_len"] == budget
    source = chat_tokenizer.decode(row["input_ids"][: row["source_len"]])
    assert source.startswith("<|im_start|>user\nSummarize this.\n\nword word")
    assert source.endswith(" word<|im_end|>\n<|im_start|>assistant\n")


def test_chat_baseline_without_chat_template_says_so(tokenizer):
    with pytest.raises(UserError, match="zero_shot_chat"):
        tokenize.chat_template(tokenizer, TemplateConfig.from_dict({}), "Summarize.")
