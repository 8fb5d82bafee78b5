"""``relex sweep JOB.py``: run a job file's sweep on Ray Tune (or print its plan)."""

from __future__ import annotations

import argparse
import sys

from relex.errors import RelexError
from relex.sweep.layout import DEFAULT_STORAGE
from relex.sweep.space import format_float


def add_sweep_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("job", metavar="JOB.py", help="a job file defining `sweep = Sweep(...)`")
    p.add_argument("--name", help="the sweep's name (default: the job's name)")
    p.add_argument("--storage", default=str(DEFAULT_STORAGE), metavar="DIR",
                   help="where sweeps are stored (default: artifacts); results go to DIR/NAME. "
                        "On a cluster: a path every node sees (e.g. an EFS mount)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted sweep: finished trials are kept, unfinished "
                        "ones continue from their last checkpoint")
    p.add_argument("--retry-errors", action="store_true",
                   help="with --resume: run the trials that ended in ERROR again, from their "
                        "last checkpoint; finished trials are left alone")
    p.add_argument("--overwrite", action="store_true",
                   help="delete an existing sweep of the same name and start again")
    p.add_argument("--address", metavar="ADDR",
                   help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the trials and resources; start nothing")
    p.add_argument("--gpus-per-trial", type=float, default=None, metavar="N",
                   help="GPUs per trial; a fraction packs trials onto a GPU (0.25: four per GPU) "
                        "(default: the job's, else 1 if the cluster has GPUs)")
    p.add_argument("--cpus-per-trial", type=float, default=None, metavar="N",
                   help="CPUs per trial (default: the job's, else 1)")
    p.add_argument("--skip-bad-rows", action="store_true",
                   help="drop invalid data rows in pre-flight (counted per file in job.json), "
                        "as Sweep(skip_bad_rows=True) does")


def _value(v) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        return format_float(v)
    return str(v)


PLAN_ROWS = 12  # a sampled sweep's plan shows this many trials


def _search_line(job) -> str:
    space = ", ".join(f"{k}={job.space[k]!r}" for k in job.sampled)
    per = f"{job.num_samples} per grid point" if len(job.points) > 1 else str(job.num_samples)
    return (f"search: {job.search} (seed {job.search_seed}), {per} sampled configuration(s) x "
            f"{len(job.seeds)} seed(s); {space}")


def _plan_rows(job) -> tuple[list[str], list[list[str]]]:
    """The trials of the plan; a TPE sweep's first suggestions (its trials come while it runs)."""
    header = ["trial", *job.axes]
    if not job.searched:
        return header, [[t.trial_id, *[_value(t.varying[a]) for a in job.axes]] for t in job.trials]
    from relex.sweep.search import config_id, first_suggestions

    shown = [a for a in job.axes if a in job.sampled]
    return (["suggestion", *shown],
            [[config_id(0, i, len(job.points)), *[_value(p[a]) for a in shown]]
             for i, p in enumerate(first_suggestions(job, 3))])


def print_plan(job, args, console) -> None:
    from rich.table import Table

    res = {"gpu": args.gpus_per_trial if args.gpus_per_trial is not None else job.resources["gpu"],
           "cpu": args.cpus_per_trial if args.cpus_per_trial is not None else job.resources["cpu"]}
    gpu = "1 if the cluster has GPUs, else 0" if res["gpu"] is None else f"{res['gpu']:g}"
    if res["gpu"] is not None and 0 < res["gpu"] < 1:
        gpu += f" (up to {int(1 / res['gpu'] + 1e-9)} trials share a GPU)"
    cpu = "1" if res["cpu"] is None else f"{res['cpu']:g}"
    fixed_keys = [k for k, v in job.space.items() if k not in job.axes]
    name = args.name or job.name
    lines = [
        f"sweep {name}: {job.total} trials  ->  {args.storage}/{name}",
        f"data: train {job.train}; valid "
        + (f"{job.valid:g} of train (stratified, seed {job.split_seed})" if isinstance(job.valid, float)
           else str(job.valid)),
        f"resources per trial: GPU {gpu}, CPU {cpu}"
        + (f"; at most {job.max_concurrent} at once" if job.max_concurrent else ""),
        f"ASHA: metric {job.asha['metric']} ({job.asha['mode']}), grace period "
        f"{job.asha['grace_period']}, reduction factor {job.asha['reduction_factor']:g}, max_t "
        + (str(job.asha["max_t"]) if job.asha["max_t"] else "none")
        + f"; retries per trial {job.max_failures}",
    ]
    if job.skip_bad_rows:
        lines[1] += "; bad rows skipped"
    if job.loggers:
        lines.append(f"loggers: {', '.join(job.loggers)}")
    if job.sampled:
        lines.append(_search_line(job))
    if fixed_keys:
        cfg0 = job.feature_configs()[0]
        lines.append("fixed: " + ", ".join(f"{k}={_value(getattr(cfg0, k))}" for k in fixed_keys))
    for m in job.missing_files:
        lines.append(f"note: data file not found: {m} (a real run stops here)")
    header, rows = _plan_rows(job)
    if len(rows) > PLAN_ROWS and job.sampled:
        lines.append(f"the first {PLAN_ROWS} of {len(rows)} trials:")
        rows = rows[:PLAN_ROWS]
    elif job.searched:
        lines.append(f"TPE's first {len(rows)} suggestions (random draws until it has results; "
                     "later ones follow the results):")
    for ln in lines:
        console.print(ln, markup=False, highlight=False)
    if console.is_terminal:
        table = Table(header_style="bold", pad_edge=False)
        for h in header:
            table.add_column(h, no_wrap=True)
        for r in rows:
            table.add_row(*r)
        console.print(table)
    else:
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for r in [header, *rows]:
            sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")


def sweep(args: argparse.Namespace, *, tables=None) -> int:
    """``relex sweep``; ``tables`` (a :class:`relex.sweep.results.Tables`) draws the leaderboard
    (``relex.leaderboard.sweep`` passes its own)."""
    from rich.console import Console

    from relex.sweep.job import check_gpus_per_trial, load_job

    console = Console(highlight=False, soft_wrap=not sys.stdout.isatty())
    for flag in ("gpus_per_trial", "cpus_per_trial"):
        v = getattr(args, flag)
        if v is not None and (v < 0 or (flag == "cpus_per_trial" and v == 0)):
            raise RelexError(f"--{flag.replace('_', '-')} {v:g} is invalid")
    if args.gpus_per_trial is not None:
        check_gpus_per_trial(args.gpus_per_trial, "--gpus-per-trial")
    if args.resume and args.overwrite:
        raise RelexError("--resume and --overwrite contradict each other")
    job = load_job(args.job, check_files=not args.dry_run)
    if args.skip_bad_rows:
        job.skip_bad_rows = True
    if args.dry_run:
        print_plan(job, args, console)
        return 0

    from relex.sweep.results import SCORED
    from relex.sweep.runner import print_summary, run

    outcome = run(job, storage=args.storage, name=args.name, resume=args.resume,
                  overwrite=args.overwrite, retry_errors=args.retry_errors, address=args.address,
                  gpus=args.gpus_per_trial, cpus=args.cpus_per_trial, console=console,
                  tables=tables)
    print_summary(outcome, console, tables=tables)
    ok = sum(outcome.counts.get(s, 0) for s in SCORED)
    return 0 if ok and not outcome.unfinished else 1
