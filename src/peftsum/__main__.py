"""python -m peftsum <stage> ...: the stages as commands, for shell rules and torchrun."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from peftsum import distributed, stages


def _train(args: argparse.Namespace) -> None:
    stages.train(json.loads(Path(args.config).read_text()), args.method, args.seed, args.model,
                 args.data, args.out, args.checkpoint_dir)


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
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    with stages.guarded(args.log if distributed.is_main() else None):
        if not distributed.is_main():
            logging.getLogger().setLevel(logging.WARNING)  # only rank 0 logs
        args.func(args)


if __name__ == "__main__":
    main()
