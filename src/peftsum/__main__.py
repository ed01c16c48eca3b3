"""python -m peftsum <stage> ...: the stages as commands, for shell rules and torchrun."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from peftsum import stages
from peftsum.errors import UserError
from peftsum.files import write_atomic
from peftsum.runtime import distributed


def _train(args: argparse.Namespace) -> None:
    from peftsum import methods
    from peftsum.config import TrainingConfig

    settings = json.loads(Path(args.settings).read_text())
    stages.train(methods.from_config(settings["name"], settings["method"]),
                 TrainingConfig.from_dict(settings["training"]), settings["seed"], args.model,
                 args.data, args.out, args.checkpoint_dir)


def _read_jsonl_articles(path: Path) -> tuple[list[str], list[str]]:
    from peftsum.data.sources import jsonl_objects

    articles, ids = [], []
    for number, row in jsonl_objects(path):
        if not isinstance(row.get("article"), str) or not row["article"].strip():
            raise UserError(f"{path}:{number}: needs an 'article' field with text")
        articles.append(row["article"])
        ids.append(str(row.get("id", len(ids))))
    return articles, ids


def _read_articles(source: str) -> tuple[list[str], list[str] | None]:
    """Articles and their ids: a .jsonl file (field 'article'), else the whole text is one."""
    from peftsum.data.sources import utf8_lines

    if source == "-":
        articles, ids = [sys.stdin.read()], None
    else:
        path = Path(source)
        if not path.is_file():
            raise UserError(f"--input: no file {path}")
        if path.suffix == ".jsonl":
            articles, ids = _read_jsonl_articles(path)
        else:
            articles, ids = ["".join(line for _, line in utf8_lines(path))], None
    if not articles or not all(a.strip() for a in articles):
        raise UserError(f"--input {source}: no article to summarize (the input is empty)")
    return articles, ids


def _check_output(output: str | None) -> None:
    if output and Path(output).is_dir():
        raise UserError(f"--output {output}: is a folder; give a file name")


def _summarize(args: argparse.Namespace) -> None:
    """Every input and option is checked before the model loads."""
    from peftsum.evaluation import restore

    run = restore.read_run(args.run)
    if args.export:
        restore.check_export(args.run, run, args.model, args.export, args.force)
    _check_output(args.output)
    articles, ids = (None, None) if args.export and args.input is None else _read_articles(
        args.input or "-")
    cfg = restore.decoding(args.run, max_new_tokens=args.max_new_tokens, num_beams=args.num_beams,
                           no_repeat_ngram_size=args.no_repeat_ngram_size,
                           batch_size=args.batch_size)
    model, tokenizer, run = restore.load_run(args.run, args.model)
    if args.export:
        logging.getLogger("peftsum").info("exported %s", restore.export(model, tokenizer, run,
                                                                       args.export))
    if articles is None:
        return
    summaries = restore.summarize(model, tokenizer, run, articles, cfg)
    if ids is None:
        text = "\n\n".join(summaries) + "\n"
    else:
        text = "".join(json.dumps({"id": i, "summary": s}) + "\n" for i, s in zip(ids, summaries))
    if args.output:
        write_atomic(args.output, text)
    else:
        sys.stdout.write(text)


def _padding(args: argparse.Namespace) -> None:
    from peftsum.data.batches import length_grouped_batches, padding_share, random_batches
    from peftsum.files import read_jsonl

    lengths = [len(e["input_ids"]) for e in read_jsonl(args.data)]
    n, size = len(lengths), args.batch_size
    print(f"{args.data}: {n} examples, batch {size}: pad share "
          f"random order {padding_share(lengths, random_batches(n, size, 0)):.1%}, "
          f"length-grouped {padding_share(lengths, length_grouped_batches(lengths, size, 0)):.1%}, "
          f"padded to {args.width} {padding_share(lengths, random_batches(n, size, 0), args.width):.1%}")


def _timings(args: argparse.Namespace) -> None:
    from peftsum.tools import timings

    print(timings.table(timings.read(Path(args.benchmarks)), args.wall))


def _at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}")
        return value
    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m peftsum")
    sub = p.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train one method with one seed (torchrun-ready)")
    train.add_argument("--settings", required=True,
                       help="JSON: name, method (kind and hyperparameters), training, seed")
    train.add_argument("--model", required=True, help="materialised model folder")
    train.add_argument("--data", required=True, help="tokenized data folder")
    train.add_argument("--out", required=True, help="run folder")
    train.add_argument("--checkpoint-dir", default=None, help="resumable checkpoint folder")
    train.add_argument("--log", default=None, help="log file (rank 0)")
    train.set_defaults(func=_train)

    summ = sub.add_parser("summarize", help="summarize text with a trained run",
                          description="Load a run's trained weights on its base model and "
                          "summarize a text file (one article), stdin, or a JSONL file "
                          "('article' field), with the decoding the run was evaluated with.")
    summ.add_argument("--run", required=True, help="results/<experiment>/train/<method>/seed<seed>")
    summ.add_argument("--input", default=None, help="text file, .jsonl file or - (default: -)")
    summ.add_argument("--output", default=None, help="output file (default: stdout)")
    summ.add_argument("--model", default=None, help="base model folder (default: the run's)")
    summ.add_argument("--max-new-tokens", type=_at_least(1), default=None)
    summ.add_argument("--num-beams", type=_at_least(1), default=None)
    summ.add_argument("--no-repeat-ngram-size", type=_at_least(0), default=None)
    summ.add_argument("--batch-size", type=_at_least(1), default=None)
    summ.add_argument("--export", default=None, metavar="DIR",
                      help="also export: the PEFT kinds as a PEFT adapter folder, last layers "
                           "and BitFit as a model (DIR must be empty or new)")
    summ.add_argument("--force", action="store_true",
                      help="let --export write into a non-empty DIR (never under resources/)")
    summ.set_defaults(func=_summarize, log=None)

    pad = sub.add_parser("padding", help="pad-token share of random, length-grouped and fixed-width "
                                         "batches of a tokenized split")
    pad.add_argument("--data", required=True, help="e.g. results/data/tokenized/train.jsonl")
    pad.add_argument("--batch-size", type=int, default=8)
    pad.add_argument("--width", type=int, default=512, help="the fixed width to compare with")
    pad.set_defaults(func=_padding, log=None)
    times = sub.add_parser("timings", help="where a workflow run's time went, per job and stage, "
                                           "from its benchmarks/ files")
    times.add_argument("--benchmarks", default="benchmarks")
    times.add_argument("--wall", type=float, default=None, help="the run's wall time in seconds")
    times.set_defaults(func=_timings, log=None)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    with stages.guarded(args.log if distributed.is_main() else None):
        if not distributed.is_main():
            logging.getLogger().setLevel(logging.WARNING)  # only rank 0 logs
        args.func(args)


if __name__ == "__main__":
    main()
