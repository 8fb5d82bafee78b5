"""``relex pretrain``: task-adaptive masked-language-model pretraining (relex.train.pretrain).

One flag per :class:`~relex.config.PretrainConfig` field, generated like ``relex train``'s.
Heavy imports (torch, transformers) happen inside the run function only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from relex.config import PretrainConfig
from relex.errors import RelexError
from relex.tracking import LOGGERS, PRETRAIN_METRICS, RunLoggers, check_loggers
from relex.cli_args import one_line_errors
from relex.train.commands import add_config_args, config_from_args

WHERE = "relex pretrain"


def add_pretrain_args(p: argparse.ArgumentParser) -> None:
    p.usage = "relex pretrain --corpus FILE [FILE ...] --out DIR [--backbone NAME|DIR] [options]"
    one_line_errors(p)
    d = p.add_argument_group("corpus and output")
    d.add_argument("--corpus", metavar="FILE", nargs="+", required=True,
                   help="files to read sentences from: any data file relex reads (labelled or not) "
                        "and plain text (.txt, one sentence per line); sentences are de-duplicated")
    d.add_argument("--out", metavar="DIR", required=True,
                   help="output: a save_pretrained directory (--backbone DIR in relex train and "
                        "sweeps), relex_pretrain.json, history.jsonl, state/")
    d.add_argument("--resume", action="store_true",
                   help="continue exactly from OUT/state (same settings and corpus)")
    d.add_argument("--skip-bad-rows", action="store_true",
                   help="drop invalid rows of relation files instead of stopping")
    d.add_argument("--quiet", action="store_true", help="no progress output")
    d.add_argument("--logger", action="append", choices=LOGGERS, default=None, metavar="NAME",
                   help="log every evaluation (held-out MLM loss and masked-token accuracy) to a "
                        "tracker: tensorboard, mlflow or wandb (repeatable)")
    add_config_args(p, PretrainConfig, "pretraining configuration (every PretrainConfig field)")


def pretrain(args: argparse.Namespace) -> int:
    cfg = config_from_args(args, PretrainConfig, WHERE)
    loggers = check_loggers(args.logger, where="--logger")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise RelexError(f"--out {out}: exists and is not a directory")
    from relex.data.corpus import read_corpus

    corpus = read_corpus(args.corpus, skip_bad_rows=args.skip_bad_rows)
    if not args.quiet:
        print(f"{WHERE}: {corpus.describe()}; backbone {cfg.backbone}", file=sys.stderr)

    from relex.train.pretrain import pretrain as run_pretrain

    with RunLoggers(loggers, out, cfg, run_name=out.resolve().name, metrics=PRETRAIN_METRICS) as trackers:
        info = run_pretrain(cfg, corpus, out, resume=args.resume, progress=False if args.quiet else None,
                            on_evaluate=lambda m: trackers.log(m["step"], m))
    held = info["held_out"]
    print(f"mlm_loss      {held['mlm_loss']:.4f}")
    print(f"mlm_accuracy  {held['mlm_accuracy']:.2f}")
    print(f"steps         {info['steps']} ({info['epochs']:.2f} epochs), {info['tokens']} tokens")
    print(f"wall time     {info['wall_s']:.1f}s, {info['tokens_per_s']:,.0f} tokens/s "
          f"({info['device']}, amp {info['amp']})")
    print(f"backbone      {out}  (use: relex train --backbone {out})")
    return 0
