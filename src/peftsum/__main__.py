"""python -m peftsum <stage> ...: the stages as commands, for shell rules and torchrun."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from peftsum import distributed, stages
from peftsum.errors import UserError
from peftsum.io import write_atomic


def _train(args: argparse.Namespace) -> None:
    stages.train(json.loads(Path(args.config).read_text()), args.method, args.seed, args.model,
                 args.data, args.out, args.checkpoint_dir)


def _read_articles(source: str) -> tuple[list[str], list[str] | None]:
    """Articles and their ids: a .jsonl file (field 'article'), else the whole text is one."""
    if source == "-":
        return [sys.stdin.read()], None
    path = Path(source)
    if not path.is_file():
        raise UserError(f"--input: no file {path}")
    if path.suffix != ".jsonl":
        return [path.read_text()], None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if any("article" not in r for r in rows):
        raise UserError(f"{path}: every line needs an 'article' field")
    return [r["article"] for r in rows], [str(r.get("id", i)) for i, r in enumerate(rows)]


def _summarize(args: argparse.Namespace) -> None:
    from peftsum import restore

    model, tokenizer, run = restore.load_run(args.run, args.model)
    if args.export:
        logging.getLogger("peftsum").info("exported %s", restore.export(model, tokenizer, run,
                                                                       args.export))
        if args.input is None:
            return
    articles, ids = _read_articles(args.input or "-")
    cfg = restore.decoding(run, max_new_tokens=args.max_new_tokens, num_beams=args.num_beams,
                           no_repeat_ngram_size=args.no_repeat_ngram_size,
                           batch_size=args.batch_size)
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
    from peftsum.io import read_jsonl

    lengths = [len(e["input_ids"]) for e in read_jsonl(args.data)]
    n, size = len(lengths), args.batch_size
    print(f"{args.data}: {n} examples, batch {size}: pad share "
          f"random order {padding_share(lengths, random_batches(n, size, 0)):.1%}, "
          f"length-grouped {padding_share(lengths, length_grouped_batches(lengths, size, 0)):.1%}, "
          f"padded to {args.width} {padding_share(lengths, random_batches(n, size, 0), args.width):.1%}")


def _timings(args: argparse.Namespace) -> None:
    from peftsum import timings

    print(timings.table(timings.read(Path(args.benchmarks)), args.wall))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m peftsum")
    sub = p.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train one method with one seed (torchrun-ready)")
    train.add_argument("--config", required=True, help="resolved config as JSON")
    train.add_argument("--method", required=True)
    train.add_argument("--seed", type=int, required=True)
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
    summ.add_argument("--run", required=True, help="results/train/<method>/seed<seed>")
    summ.add_argument("--input", default=None, help="text file, .jsonl file or - (default: -)")
    summ.add_argument("--output", default=None, help="output file (default: stdout)")
    summ.add_argument("--model", default=None, help="base model folder (default: the run's)")
    summ.add_argument("--max-new-tokens", type=int, default=None)
    summ.add_argument("--num-beams", type=int, default=None)
    summ.add_argument("--no-repeat-ngram-size", type=int, default=None)
    summ.add_argument("--batch-size", type=int, default=None)
    summ.add_argument("--export", default=None, metavar="DIR",
                      help="also export: the PEFT kinds as a PEFT adapter folder, last layers "
                           "and BitFit as a model")
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
