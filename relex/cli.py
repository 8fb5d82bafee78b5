"""The `relex` command: data check|fix|stats, train, pretrain, evaluate, predict, export, sweep, leaderboard, report, ensemble.

Each subcommand lives beside the code it drives (``relex.data.commands``,
``relex.train.commands``, ``relex.inference``, ``relex.sweep.commands``, ``relex.leaderboard``,
``relex.analysis.commands``);
this module only wires them up and turns :class:`~relex.errors.RelexError` into one clear line
and exit code 2.
Heavy imports (torch, ray) happen inside the subcommands, so ``relex --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from relex import __version__
from relex.errors import RelexError

# (subcommand path, module, add-arguments function, run function ("module:function" when it
# lives elsewhere), help)
COMMANDS = [
    (("data", "check"), "relex.data.commands", "add_check_args", "check",
     "validate a data file: rows, labels and their counts, bad rows"),
    (("data", "fix"), "relex.data.commands", "add_fix_args", "fix",
     "repair what is fixable in a data file (quotes, spans, invisible characters, labels)"),
    (("data", "stats"), "relex.analysis.commands", "add_stats_args", "stats",
     "statistics per label: entity type pairs, entity distance, sentence length, top entities"),
    (("train",), "relex.train.commands", "add_train_args", "train",
     "train one model (every technique is a flag)"),
    (("pretrain",), "relex.train.pretrain_commands", "add_pretrain_args", "pretrain",
     "task-adaptive masked-LM pretraining of a backbone on a corpus (--backbone DIR for train)"),
    (("evaluate",), "relex.inference", "add_evaluate_args", "evaluate",
     "evaluate a checkpoint, run directory or ensemble on a labelled file"),
    (("predict",), "relex.inference", "add_predict_args", "predict",
     "write a submission file (id, pred_label, probs) for a data file"),
    (("export",), "relex.inference", "add_export_args", "export",
     "export a checkpoint as one ONNX graph for serving"),
    (("sweep",), "relex.sweep.commands", "add_sweep_args", "relex.leaderboard:sweep",
     "run a job file's sweep on Ray Tune with ASHA and a live leaderboard"),
    (("leaderboard",), "relex.leaderboard", "add_leaderboard_args", "leaderboard",
     "show a sweep's results, ranked by micro-F1"),
    (("report",), "relex.analysis.commands", "add_report_args", "report",
     "what a sweep concluded: effects with confidence intervals, errors, learning curves, cost"),
    (("ensemble",), "relex.analysis.ensemble_cli", "add_ensemble_args", "ensemble",
     "choose an ensemble of a sweep's trials, fit decisions, report honest scores"),
]


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one line (it already does) and never a traceback."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="relex", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"relex {__version__}")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    groups: dict[str, argparse._SubParsersAction] = {}
    for path, module, add_fn, run_fn, help_text in COMMANDS:
        if len(path) == 2:
            if path[0] not in groups:
                grp = subs.add_parser(path[0], help=f"{path[0]} tools")
                groups[path[0]] = grp.add_subparsers(dest="subcommand", metavar="SUBCOMMAND",
                                                     parser_class=_Parser)
                grp.set_defaults(_group=grp)
            p = groups[path[0]].add_parser(path[1], help=help_text, description=help_text)
        else:
            p = subs.add_parser(path[0], help=help_text, description=help_text)
        mod = importlib.import_module(module)
        getattr(mod, add_fn)(p)
        p.set_defaults(_run=(module, run_fn))
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "_run"):
        (getattr(args, "_group", None) or parser).print_help(sys.stderr)
        return 2
    module, run_fn = args._run
    if ":" in run_fn:
        module, run_fn = run_fn.split(":")
    try:
        rc = getattr(importlib.import_module(module), run_fn)(args)
    except RelexError as e:
        print(f"relex: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("relex: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `relex ... | head`: the reader left; not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as e:
        if e.filename is None:  # not about a path of the user's: a bug, with its traceback
            raise
        # a path that became unwritable (or vanished) after the pre-flight checks, e.g. a shared
        # file system unmounted mid-sweep; every write is atomic, so what was written is whole
        print(f"relex: error: {e.filename}: {e.strerror or e}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
