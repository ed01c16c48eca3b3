"""The peftsum command: the user's verbs (summarize, export, timings) and, hidden from --help,
the stage verbs that shell rules and torchrun call."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from peftsum import __version__, paths, records, stages
from peftsum.errors import UserError
from peftsum.files import write_atomic

log = logging.getLogger("peftsum")


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
        if sys.stdin.isatty():  # else a user who meant a file name would wait for nothing
            log.info("reading the article from standard input: end it with Ctrl-D")
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
    """Every input and option is checked, and the input read, before transformers is imported
    (seconds); that import with the model's loading, then generation, are each announced on
    standard error, where a user would otherwise wait in silence."""
    records.read_run(paths.run_json(Path(args.run)))  # a wrong --run before any typing
    _check_output(args.output)
    if args.input is None:
        raise UserError("summarize: give --input FILE (text or .jsonl), or --input - to read "
                        "the article from standard input")
    articles, ids = _read_articles(args.input)
    log.info("loading the run %s and its base model", args.run)
    from peftsum.evaluation import restore

    restore.read_run(args.run)
    cfg = restore.decoding(args.run, max_new_tokens=args.max_new_tokens, num_beams=args.num_beams,
                           no_repeat_ngram_size=args.no_repeat_ngram_size,
                           batch_size=args.batch_size)
    model, tokenizer, run = restore.load_run(args.run, args.model)
    log.info("summarizing %d article(s), up to %d new tokens each", len(articles),
             cfg.max_new_tokens)
    summaries = restore.summarize(model, tokenizer, run, articles, cfg)
    if ids is None:
        text = "\n\n".join(summaries) + "\n"
    else:
        text = "".join(json.dumps({"id": i, "summary": s}) + "\n" for i, s in zip(ids, summaries))
    if args.output:
        write_atomic(args.output, text)
    else:
        sys.stdout.write(text)


def _export(args: argparse.Namespace) -> None:
    from peftsum.evaluation import restore

    how = restore.export_run(Path(args.run), Path(args.dir), args.model, args.force)
    print(f"exported {args.run} to {args.dir}; load it with {how}")


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

    print(timings.table(timings.read(Path(args.benchmarks), args.experiment), args.wall))


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


USER_VERBS = "{summarize,export,timings}"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="peftsum", description="Use the runs that the peftsum workflow trained: summarize "
        "text with one, export one for transformers and PEFT, or see where a workflow's time "
        "went. The workflow itself runs with snakemake (README).")
    p.add_argument("--version", action="version", version=f"peftsum {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar=USER_VERBS)
    _add_summarize(sub)
    _add_export(sub)
    times = sub.add_parser("timings", help="where a workflow run's time went, per job and stage, "
                                           "from its benchmarks/ files")
    times.add_argument("--benchmarks", default="benchmarks")
    times.add_argument("--experiment", default=None,
                       help="the experiment's jobs and the shared downloads (default: the folders "
                            "directly under --benchmarks)")
    times.add_argument("--wall", type=float, default=None, help="the run's wall time in seconds")
    times.set_defaults(func=_timings, log=None)
    _add_stage_verbs(sub)
    return p


def _add_summarize(sub) -> None:
    summ = sub.add_parser("summarize", help="summarize text with a trained run",
                          description="Load a run's trained weights on its base model and "
                          "summarize a text file (one article), standard input (-), or a JSONL "
                          "file ('article' field), with the decoding the run was evaluated with.")
    summ.add_argument("--run", required=True, help="results/<experiment>/train/<method>/seed<seed>")
    summ.add_argument("--input", default=None, help="text file, .jsonl file, or - for standard "
                                                    "input")
    summ.add_argument("--output", default=None, help="output file (default: standard output)")
    summ.add_argument("--model", default=None, help="base model folder (default: the run's)")
    summ.add_argument("--max-new-tokens", type=_at_least(1), default=None)
    summ.add_argument("--num-beams", type=_at_least(1), default=None)
    summ.add_argument("--no-repeat-ngram-size", type=_at_least(0), default=None)
    summ.add_argument("--batch-size", type=_at_least(1), default=None)
    summ.set_defaults(func=_summarize, log=None)


def _add_export(sub) -> None:
    export = sub.add_parser(
        "export", help="export a trained run for transformers and PEFT",
        description="Write a trained run where plain transformers and PEFT load it: PEFT's kinds "
        "and prompt tuning as a PEFT adapter folder naming its base model (hub id and revision, "
        "else the folder's absolute path), the others as a save_pretrained model; each with its "
        "tokenizer, prompt template and a model card (README.md) with its test metrics.")
    export.add_argument("run", metavar="RUN", help="results/<experiment>/train/<method>/seed<seed>")
    export.add_argument("dir", metavar="DIR", help="a new or empty folder")
    export.add_argument("--model", default=None, help="base model folder (default: the run's)")
    export.add_argument("--force", action="store_true",
                        help="write into a non-empty DIR (never under resources/)")
    export.set_defaults(func=_export, log=None)


def _add_stage_verbs(sub) -> None:
    """Verbs the workflow calls, kept out of --help: argparse lists only subcommands given a
    help text (help=SUPPRESS would print "==SUPPRESS==" before Python 3.13), and USER_VERBS
    replaces the list of choices."""
    train = sub.add_parser("train")
    train.add_argument("--settings", required=True,
                       help="JSON: name, method (kind and hyperparameters), training, seed")
    train.add_argument("--model", required=True, help="materialised model folder")
    train.add_argument("--data", required=True, help="tokenized data folder")
    train.add_argument("--out", required=True, help="run folder")
    train.add_argument("--checkpoint-dir", default=None, help="resumable checkpoint folder")
    train.add_argument("--log", default=None, help="log file (rank 0)")
    train.set_defaults(func=_train)
    pad = sub.add_parser("padding", description="pad-token share of random, length-grouped and fixed-width "
                                     "batches of a tokenized split")
    pad.add_argument("--data", required=True, help="e.g. results/<experiment>/data/tokenized/train.jsonl")
    pad.add_argument("--batch-size", type=int, default=8)
    pad.add_argument("--width", type=int, default=512, help="the fixed width to compare with")
    pad.set_defaults(func=_padding, log=None)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    from peftsum.runtime import distributed  # imports torch: not for --help or --version

    with stages.guarded(args.log if distributed.is_main() else None):
        if not distributed.is_main():
            logging.getLogger().setLevel(logging.WARNING)  # only rank 0 logs
        args.func(args)


if __name__ == "__main__":
    main()
