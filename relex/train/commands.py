"""``relex train`` (``relex evaluate`` / ``predict`` / ``export`` live in :mod:`relex.inference`).

``relex train`` has one flag per :class:`~relex.config.TrialConfig` field (dashes for
underscores; ``--erpe/--no-erpe`` for booleans), generated from the dataclass with the help text
each field carries, so a new config field is a new flag with no other change. Values are validated by ``TrialConfig.from_dict``:
a bad value is one line and exit code 2. With no data flags it trains the tiny local backbone on
the bundled sample, offline.

Heavy imports (torch, transformers) happen inside the run function only.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from relex.cli_args import one_line_errors, warn_skipped
from relex.config import CHOICES, TrialConfig
from relex.data.split import DEFAULT_SPLIT_SEED, DEFAULT_VALID_FRACTION
from relex.errors import RelexError
from relex.io_utils import check_output
from relex.tracking import LOGGERS, RunLoggers, check_loggers


def _field_type(f: dataclasses.Field) -> str:
    return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))


def add_config_args(p: argparse.ArgumentParser, cls: type = TrialConfig,
                    title: str = "trial configuration (every TrialConfig field)") -> None:
    """One flag per field of the config dataclass ``cls``; unset flags keep its default."""
    g = p.add_argument_group(title)
    defaults = cls()
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        typ = _field_type(f)
        default = getattr(defaults, f.name)
        help_text = f.metadata["help"]
        if typ == "bool":
            g.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                           help=f"{help_text} (default: {'on' if default else 'off'})")
            continue
        if f.name in CHOICES:
            choices = CHOICES[f.name]
            metavar = "{" + ",".join(choices) + "}"
            help_text += f"; one of: {', '.join(choices)}"
        else:
            metavar = {"int": "N", "float": "X"}.get(typ, "NAME")
        # values stay strings here; TrialConfig.from_dict converts and validates them, so a bad
        # value is one clear line naming the flag
        g.add_argument(flag, dest=f.name, metavar=metavar, default=argparse.SUPPRESS,
                       help=f"{help_text} (default: {default})")


def config_from_args(args: argparse.Namespace, cls: type = TrialConfig, where: str = "relex train"):
    """The ``cls`` config of the flags given (over ``--config JSON`` where the command has it)."""
    given = {name: getattr(args, name) for name in cls.field_names() if hasattr(args, name)}
    base: dict[str, Any] = {}
    if getattr(args, "config", None):
        path = Path(args.config)
        if not path.is_file():
            raise RelexError(f"--config {path}: file not found")
        base = cls.from_json(path.read_text(encoding="utf-8"), where=str(path)).to_dict()
    try:
        return cls.from_dict({**base, **given}, where=where)
    except RelexError as e:
        # name the flag the way the user typed it
        msg = str(e)
        for name in given:
            msg = msg.replace(f"{where}: {name}=", f"{where}: --{name.replace('_', '-')}=")
        raise RelexError(msg) from None


# ----------------------------------------------------------------------------- train
def add_train_args(p: argparse.ArgumentParser) -> None:
    p.usage = "relex train [--train FILE] [--valid FILE | --valid-fraction F] --out DIR [options]"
    one_line_errors(p)
    d = p.add_argument_group("data and output")
    d.add_argument("--train", metavar="FILE", default=None,
                   help="training file: KLUE JSON, boostcamp CSV, JSONL or Parquet "
                        "(default: the bundled sample)")
    v = d.add_mutually_exclusive_group()
    v.add_argument("--valid", metavar="FILE", default=None, help="validation file")
    v.add_argument("--valid-fraction", metavar="F", type=str, default=None,
                   help="hold out this stratified fraction of --train for validation "
                        f"(default: {DEFAULT_VALID_FRACTION:g}, as a sweep's valid)")
    d.add_argument("--split-seed", metavar="N", type=int, default=DEFAULT_SPLIT_SEED,
                   help=f"seed of that split (default: {DEFAULT_SPLIT_SEED}, as a sweep's split_seed; "
                        "--seed does not move it, so a configuration validates on the same rows "
                        "here and in a sweep)")
    d.add_argument("--out", metavar="DIR", required=True,
                   help="output directory: best/ (checkpoint), history.jsonl, metrics.json")
    d.add_argument("--labels", metavar="FILE", default=None,
                   help="relation_list.json fixing the label set and its order (default: the labels in --train)")
    d.add_argument("--skip-bad-rows", action="store_true", help="drop invalid rows instead of stopping")
    d.add_argument("--config", metavar="JSON", default=None,
                   help="a TrialConfig JSON file (e.g. a checkpoint's config.json); flags override it")
    d.add_argument("--save-state", action="store_true",
                   help="write a resumable training state to OUT/state every --checkpoint-every "
                        "evaluations (it refers to OUT/best rather than copying it); with "
                        "--workers > 1 a lost worker continues from it")
    d.add_argument("--resume", metavar="STATE", default=None,
                   help="continue exactly from a saved training state directory (e.g. OUT/state)")
    d.add_argument("--quiet", action="store_true", help="no progress output")
    d.add_argument("--logger", action="append", choices=LOGGERS, default=None, metavar="NAME",
                   help="log every evaluation to a tracker: tensorboard, mlflow or wandb (repeat for "
                        "several; each needs its extra, e.g. pip install 'relex[mlflow]')")
    add_config_args(p)


def _fraction(text: str | None) -> float:
    if text is None:
        return DEFAULT_VALID_FRACTION
    try:
        f = float(text)
    except ValueError:
        raise RelexError(f"--valid-fraction {text!r}: expected a number between 0 and 1") from None
    if not (0 < f < 1):
        raise RelexError(f"--valid-fraction {text!r}: must be between 0 and 1 (exclusive)")
    return f


def train(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if args.logger and cfg.workers > 1:  # whatever trackers are installed: said first
        raise RelexError("--logger is not available with --workers > 1 yet; log a one-worker run, "
                         "or read OUT/history.jsonl")
    loggers = check_loggers(args.logger, where="--logger")
    fraction = _fraction(args.valid_fraction)
    out = check_output(args.out, "--out", is_dir=True)

    from relex.data import read_dataset, stratified_split
    from relex.data.sample import SAMPLE_PATH
    from relex.model.backbone import resolve_backbone

    backbone_path = None
    if not cfg.backbone.startswith("relex/"):
        # fail at once on a backbone that cannot be loaded, before reading any data
        backbone_path = resolve_backbone(cfg.backbone, cfg=cfg)

    train_path = Path(args.train) if args.train else Path(SAMPLE_PATH)
    labels = args.labels
    neg = cfg.negative_label
    train_ds = read_dataset(train_path, labels=labels, negative=neg, skip_bad_rows=args.skip_bad_rows)
    warn_skipped(train_ds)
    cfg = klue_default_backbone(cfg, args, train_ds)
    if args.valid:
        valid_ds = read_dataset(Path(args.valid), labels=train_ds.labels, negative=neg,
                                skip_bad_rows=args.skip_bad_rows)
        warn_skipped(valid_ds)
        how = f"validation file {args.valid}"
    else:
        train_ds, valid_ds = stratified_split(train_ds, fraction, seed=args.split_seed)
        how = f"stratified {fraction:g} split of {train_path}, split seed {args.split_seed}"

    from relex.train.fit import fit

    if backbone_path is None:  # the embedded backbone's tokenizer is trained on the training split
        backbone_path = resolve_backbone(cfg.backbone, corpus=train_ds.frame["sentence"].tolist(), cfg=cfg)
    progress = False if args.quiet else None
    if not args.quiet:
        print(f"relex train: {len(train_ds)} training / {len(valid_ds)} validation examples ({how}); "
              f"backbone {cfg.backbone}", file=sys.stderr)
    t0 = time.perf_counter()
    if cfg.workers > 1:
        summary = _train_on_workers(args, cfg, train_ds, valid_ds, out, backbone_path, progress)
    else:
        with RunLoggers(loggers, out, cfg, run_name=out.resolve().name) as trackers:
            res = fit(cfg, train_ds, valid_ds, out, progress=progress, resume_from=args.resume,
                      state_dir=out / "state" if args.save_state else None, backbone_path=backbone_path,
                      on_evaluate=lambda ev: trackers.log(ev.step, {**ev.metrics, "epoch": ev.epoch}))
        summary = res.summary()
    _print_summary(summary, time.perf_counter() - t0, out)
    return 0


def klue_default_backbone(cfg: TrialConfig, args: argparse.Namespace, train_ds) -> TrialConfig:
    """On KLUE-RE data, with no backbone chosen (flag or --config), the shipped relex/tiny-klue:
    it has read KLUE-RE's sentences, so it starts ahead of relex/tiny trained from scratch."""
    from relex.data.corpus import is_klue_re
    from relex.model.tiny import PRETRAINED

    if hasattr(args, "backbone") or getattr(args, "config", None) or not is_klue_re(train_ds):
        return cfg
    if not getattr(args, "quiet", False):
        print(f"relex train: KLUE-RE data: backbone {PRETRAINED} (pretrained on KLUE-RE's sentences; "
              "--backbone relex/tiny trains from scratch)", file=sys.stderr)
    return cfg.replace(backbone=PRETRAINED)


def _print_summary(s: dict[str, Any], wall: float, out: Path) -> None:
    print(f"micro_f1  {s['micro_f1']:.2f}")
    print(f"auprc     {s['auprc']:.2f}")
    print(f"mean_ap   {s['mean_ap']:.2f}")
    print(f"accuracy  {s['accuracy']:.2f}")
    print(f"best step {s['best_step']} (epoch {s['best_epoch']:.2f}) of {s['steps']} steps; stop: {s['stop_reason']}")
    print(f"wall time {wall:.1f}s, {s['examples_per_s']:.1f} training examples/s ({s['device']}, amp {s['amp']})")
    print(f"checkpoint {s['best_dir']}")
    print(f"history   {out / 'history.jsonl'}, summary {out / 'metrics.json'}")


def _train_on_workers(args: argparse.Namespace, cfg: TrialConfig, train_ds, valid_ds, out: Path,
                      backbone_path, progress) -> dict[str, Any]:
    """``--workers N``: one run on N Ray Train workers (this machine's Ray, or RAY_ADDRESS's);
    the leader writes OUT as one worker would. Its summary (metrics.json)."""
    import json

    from relex.train.distributed import WorkerRun, prepare_inputs
    from relex.train.fit import check_state
    from relex.train.workers import RayTrainReport, start_ray, train_on_ray

    if args.resume:
        check_state(Path(args.resume), cfg, train_ds, valid_ds)  # before any worker starts
    backbone_path, cache = prepare_inputs(cfg, train_ds, valid_ds, backbone_path=backbone_path)
    out.mkdir(parents=True, exist_ok=True)
    report = RayTrainReport(base=str(out))
    job = WorkerRun(cfg, train_ds, valid_ds, str(out.resolve()),
                    state_dir=str((out / "state").resolve()) if args.save_state else None,
                    resume_from=str(Path(args.resume).resolve()) if args.resume else None,
                    features_cache=cache, backbone_path=backbone_path, progress=progress,
                    on_evaluate=report.on_evaluate, after_evaluation=report.after_evaluation)
    owns_ray, gpus = start_ray(quiet=args.quiet)
    try:
        train_on_ray(job, base=str(out), storage=out / "ray-train", gpu_per_worker=1 if gpus else 0,
                     states_root=job.state_dir)
    finally:
        if owns_ray:
            import ray

            ray.shutdown()
    return json.loads((out / "metrics.json").read_text(encoding="utf-8"))
