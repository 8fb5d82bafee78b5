"""Run a loaded job on Ray Tune: pre-flight, resources, the Tuner, resume.

Order of work (every user mistake fails before Ray starts):

1. the job file is loaded and expanded (:func:`relex.sweep.job.load_job`);
2. pre-flight on the driver: data read and validated once (the validation split made once, the
   same for every trial), every backbone resolved once (one ``RelexError`` if one cannot load),
   features built once into ``<sweep_dir>/cache`` so trials find them there;
3. Ray is started (or joined: ``--address``, ``RAY_ADDRESS``), resources per trial decided;
4. a ``Tuner`` with relex's persistent ASHA, the results callback and one grid point per trial
   still to run. ``--resume`` is a new Tune run in the same experiment directory over the trials
   without a final result, each continuing from its last evaluation the driver recorded
   (:func:`relex.sweep.trial.continue_from`): relex's own records say what finished, not Tune's
   experiment snapshot, which lags the trials by seconds and costs O(n) to restore.

Storage: the sweep directory is ``<storage>/<name>``: relex's results (``trials.parquet``,
``history.parquet``, ``job.json``, ``asha_state.json``, ``valid_probs/``, ``trials/<id>/``
with each trial's best checkpoint) and, in ``ray/``, Ray Tune's experiment directory (its state
and each trial's latest resumable checkpoint). The two are kept apart because on resume Tune
copies every ``.json`` of its experiment directory to a staging area and later writes the copies
back, which would roll relex's files back. It must be a POSIX path every node sees (a local
disk for one machine, a shared mount such as EFS/NFS for a cluster).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from relex.errors import RelexError
from relex.io_utils import check_output, probe_write, read_json
from relex.sweep.folds import SweepData, assemble_oof, read_sweep_data, write_fold_index
from relex.sweep.job import _NAME_RE, Sweep, check_gpus_per_trial
from relex.sweep.layout import CACHE_DIR, DEFAULT_STORAGE, ENTRIES, LEASE_FILE, TRIALS_FILE, SweepDir
from relex.sweep.lease import Lease
from relex.sweep.results import ERROR, FINISHED, NOT_STARTED, PAUSED, PENDING, Tables
from relex.sweep.specs import grid_search_alg, tune_trial_id
from relex.sweep.trial import Prepared, backbone_key


def _is_lease_file(name: str) -> bool:
    """The lease and the heartbeat's temporary files (``.driver.lease.*.tmp``)."""
    return name == LEASE_FILE or name.startswith(f".{LEASE_FILE}.")


@dataclass
class SweepOutcome:
    sweep_dir: Path
    counts: dict[str, int]
    rows: list[dict[str, Any]]
    total: int = 0
    job_path: Path | None = None

    @property
    def unfinished(self) -> int:
        done = sum(n for s, n in self.counts.items() if s in FINISHED)
        return max(self.total - done, 0)


# ------------------------------------------------------------------------- resources
def decide_resources(job: Sweep, cluster: dict[str, float], *, gpus: float | None = None,
                     cpus: float | None = None, local: bool = True) -> dict[str, float]:
    """Per-trial resources: flags beat the job file, the job file beats the defaults.

    Default: one GPU per trial when the cluster has GPUs, otherwise CPU only; 1 CPU per trial.
    An explicit GPU request is kept on a cluster that has none yet (an autoscaler may add GPU
    nodes), except on a local Ray instance relex started itself, where it could never run.
    """
    have_gpu = float(cluster.get("GPU", 0) or 0)
    gpu = gpus if gpus is not None else job.resources.get("gpu")
    explicit = gpu is not None
    if gpu is None:
        gpu = 1 if have_gpu >= 1 else 0
    cpu = cpus if cpus is not None else job.resources.get("cpu")
    if cpu is None:
        cpu = 1
    if gpu < 0 or cpu <= 0:
        raise RelexError(f"resources per trial: gpu={gpu}, cpu={cpu} are invalid")
    check_gpus_per_trial(gpu, "resources per trial")
    if explicit and gpu > 0 and have_gpu < gpu and local:
        raise RelexError(f"each trial asks for {gpu:g} GPU but this machine has {have_gpu:g}; "
                         "pass --gpus-per-trial 0 to run on CPU")
    have_cpu = float(cluster.get("CPU", 0) or 0)
    if local and cpu > have_cpu:
        raise RelexError(f"each trial asks for {cpu:g} CPUs but this machine has {have_cpu:g}; "
                         "pass --cpus-per-trial")
    return {"cpu": cpu, "gpu": gpu}


# ------------------------------------------------------------------------- workers per trial
# A trial of several workers is a Ray Train run: Tune holds only a token slot for the trial
# itself (the driver of the run: no CPU, which the workers may need to the last one; Tune refuses
# an empty request), and Ray Train reserves the workers' placement group (N bundles of the
# per-worker resources) when the trial starts.
DRIVER_SLOT = {"cpu": 0, "gpu": 0, "memory": 2**20}


def trial_resources(job: Sweep, res: dict[str, float]) -> dict[str, float]:
    """What one trial holds in all: its workers' resources."""
    n = job.workers_per_trial
    return {"cpu": res["cpu"] * n, "gpu": res["gpu"] * n}


def check_workers_fit(job: Sweep, res: dict[str, float], cluster: dict[str, float], local: bool) -> None:
    """On a Ray relex started here, a trial's workers must fit on the machine."""
    total = trial_resources(job, res)
    for key, have in (("gpu", float(cluster.get("GPU", 0) or 0)), ("cpu", float(cluster.get("CPU", 0) or 0))):
        if local and total[key] > have:
            raise RelexError(f"each trial's {job.workers_per_trial} workers ask for {total[key]:g} "
                             f"{key.upper()}s in all but this machine has {have:g}; lower "
                             f"workers_per_trial or the per-worker resources")


def tune_resources(job: Sweep, res: dict[str, float]) -> dict[str, float]:
    """What Tune reserves per trial: the trial itself, or the driver of its Ray Train run."""
    if job.workers_per_trial == 1:
        return {"cpu": res["cpu"], "gpu": res["gpu"]}
    return dict(DRIVER_SLOT)


def concurrent_trials(job: Sweep, res: dict[str, float], cluster: dict[str, float],
                      local: bool) -> int | None:
    """Trials at once: the job's limit; with several workers per trial on a Ray relex started
    here, at most as many as the machine holds whole (Tune does not see the workers' resources;
    on a cluster, waiting placement groups are what asks the autoscaler for nodes)."""
    cap = job.max_concurrent or None
    if job.workers_per_trial == 1 or not local:
        return cap
    total = trial_resources(job, res)
    fits = min(int(float(cluster.get(key.upper(), 0) or 0) // total[key])
               for key in ("cpu", "gpu") if total[key] > 0)
    return max(1, min(cap or fits, fits))


# ------------------------------------------------------------------------- pre-flight
def preflight(job: Sweep, sweep_dir: Path, *, console=None) -> tuple[Prepared, SweepData]:
    """Read the data, resolve backbones and build features once, on the driver: what the trials
    get, and the data read (for the sweep's index files)."""
    from relex.model.backbone import resolve_backbone
    from relex.train.inputs import tokenizer_and_features

    def say(msg: str) -> None:
        if console is not None:
            console.print(msg, markup=False, highlight=False)

    say(f"reading {job.train}")
    data = read_sweep_data(str(job.train), job.valid, str(job.labels) if job.labels else None,
                           job.negative_label, job.split_seed, job.folds, job.fold_seed,
                           skip_bad_rows=job.skip_bad_rows)
    full, train, valid = data.full, data.train, data.valid
    for file, n in data.skipped.items():
        if n:
            say(f"skipped {n} bad row{'s' if n > 1 else ''} of {file} (skip_bad_rows)")
    splits = data.splits or [(train, valid)]
    if any(len(tr) == 0 or len(va) == 0 for tr, va in splits):
        raise RelexError(f"{job.path}: the training or validation set is empty")
    if job.folds:
        say(f"data: {len(full)} examples in {job.folds} stratified folds (seed {job.fold_seed}), "
            f"{len(full.labels)} labels")
    else:
        say(f"data: {len(train)} train / {len(valid)} validation examples, {len(full.labels)} labels")

    cache = SweepDir(sweep_dir).cache_dir
    corpus = list(train.frame["sentence"])
    backbones: dict[str, str] = {}
    feats_cache = cache / "features"
    built: set[tuple] = set()
    for cfg in job.feature_configs():
        key = backbone_key(cfg)
        if key not in backbones:
            say(f"backbone {cfg.backbone}")
            backbones[key] = resolve_backbone(cfg.backbone, corpus=corpus, cfg=cfg,
                                              cache_dir=cache / "backbones")
        if (key, cfg.marker, cfg.max_length) in built:
            continue
        built.add((key, cfg.marker, cfg.max_length))
        say(f"features {cfg.marker}, max_length {cfg.max_length}")
        # the trainer's own tokenizer → features sequence: trials find exactly these in the cache
        for tr, va in splits:
            tokenizer_and_features(cfg, tr, va, backbones[key], feats_cache)
    prepared = Prepared(sweep_dir=str(sweep_dir), train=train, valid=valid, splits=data.splits,
                        backbones=backbones, features_cache=str(feats_cache),
                        before_trial=job.before_trial, skipped_bad_rows=data.skipped)
    return prepared, data


def write_valid_index(sweep_dir: Path, valid) -> None:
    """What the rows and columns of ``valid_probs/<trial_id>.npy`` are: ``valid_index.parquet``
    (row, then the validation set's normalized columns in order: id, sentence, entities, label,
    source — what error analysis shows) and ``labels.json`` (column order)."""
    import pyarrow as pa

    from relex.sweep.results import index_columns

    sweep = SweepDir(sweep_dir)
    sweep.write_valid_index(pa.table(index_columns(valid.frame)))
    sweep.write_labels(valid.labels)


# ------------------------------------------------------------------------------- Ray
def check_address(address: str | None) -> None:
    target = address or os.environ.get("RAY_ADDRESS") or ""
    if target.startswith("ray://"):
        # Through Ray Client the Tune driver would run on the cluster, away from relex's
        # scheduler state and results callback.
        raise RelexError(f"Ray Client addresses ({target}) are not supported for sweeps; submit "
                         "the sweep as a Ray job instead: ray job submit --address "
                         "http://HEAD:8265 --working-dir . -- relex sweep JOB.py")


def start_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """Connect to (or start) Ray; True when this call started it (and must shut it down)."""
    import ray

    from relex.train.workers import init_ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "configure_logging": True, "logging_level": "WARNING"}
    try:
        if address:
            ray.init(address=address, **kwargs)
        elif os.environ.get("RAY_ADDRESS"):
            ray.init(**kwargs)
        else:
            # a Ray of our own, never one that happens to run on this machine: a sweep must not
            # attach to (and die with) another cluster started by `ray start`
            init_ray(address="local", num_cpus=num_cpus, **kwargs)  # retried once when late
    except Exception as e:  # Ray raises a bare Exception when its node misses the start-up wait
        ray.shutdown()  # whatever half of a local Ray came up goes with this call
        where = address or os.environ.get("RAY_ADDRESS") or "local"
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise RelexError(f"cannot start or reach Ray ({where}): {first}") from None
    return True


def make_budget(job: Sweep, sweep_dir: Path, res: dict[str, float]):
    """The sweep's budget and usage meter: GPU-hours when trials take GPUs, else CPU-hours."""
    from relex.sweep.budget import Budget

    resource = "GPU" if res["gpu"] > 0 else "CPU"
    return Budget(sweep_dir, per_trial=res["gpu"] if resource == "GPU" else res["cpu"],
                  resource=resource, **job.budget)


def mark_unfinished(job: Sweep, writer, reason: str, console) -> None:
    """After a budget ended the sweep: trials never started (or cut off before their first
    evaluation) are NOT_STARTED, those stopped at a checkpoint PAUSED; --resume runs both."""
    counts = {NOT_STARTED: 0, PAUSED: 0}
    # a searched sweep knows the trials it suggested: those have rows
    known = ([(t.trial_id, t.config.to_dict()) for t in job.trials] if not job.searched
             else [(tid, {}) for tid in writer.trials])
    for tid, config in known:
        row = writer.trials.get(tid, {})
        if row.get("status") in FINISHED:
            continue
        status = PAUSED if row.get("evaluations") else NOT_STARTED
        counts[status] += 1
        writer.set_trial({"trial_id": tid, **config, "status": status})
    writer.compact()  # the sweep ends here
    if console is not None:
        console.print(f"{reason}: {counts[PAUSED]} trial(s) paused at a checkpoint, "
                      f"{counts[NOT_STARTED]} not started", markup=False, highlight=False)


def reopen_errored(sweep_dir: Path, writer) -> list[str]:
    """Make the ERROR trials of a sweep runnable again (``--retry-errors``): their rows go back
    to PENDING and their final/error markers are dropped, so the trial function runs them and
    the callback records their new outcome; finished trials are left as they are."""
    retried = [r["trial_id"] for r in writer.trial_rows() if r.get("status") == ERROR]
    for tid in retried:
        SweepDir(sweep_dir).trial(tid).reopen()
        writer.set_trial({"trial_id": tid, "status": PENDING, "error": None, "ended_at": None})
    writer.flush()
    return retried


def storage_lost(sweep_dir: Path) -> str | None:
    """Why the sweep directory cannot be written any more (its file system unmounted, made
    read-only, ...), as the one line that ends the sweep; None while it can."""
    try:
        probe_write(sweep_dir)
    except OSError as e:
        return (f"{sweep_dir}: the sweep's storage can no longer be written ({e.strerror or e}); "
                "what was written before is whole there; continue with --resume once it is back")
    return None


def ray_session_dir() -> str | None:
    """The session directory of the Ray this process is connected to (its processes name it)."""
    import ray

    try:
        return ray._private.worker._global_node.get_session_dir_path()
    except AttributeError:
        return None


def trial_name(trial) -> str:
    return tune_trial_id(trial.config)


def _check_same_job(job: Sweep, sweep_dir: Path) -> None:
    path = SweepDir(sweep_dir).job_file
    if not path.exists():
        return
    old = read_json(path)
    new = job.resolved()
    if old.get("trials") != new["trials"]:
        raise RelexError(f"{sweep_dir}: the job's trials differ from those the sweep started with; "
                         "resume with the same job file, or start a new sweep with --name")
    if old.get("search") != new.get("search"):
        raise RelexError(f"{sweep_dir}: the job's sampled space or search settings differ from "
                         "the sweep's; resume with the same job file")
    if old.get("asha") != new["asha"]:
        raise RelexError(f"{sweep_dir}: the job's ASHA settings differ from the sweep's; "
                         "resume with the same job file")
    changed = [k for k in ("train", "valid", "labels", "negative_label", "split_seed", "folds",
                           "fold_seed", "base", "top") if old.get(k) != new.get(k)]
    if old.get("skip_bad_rows", False) != new["skip_bad_rows"]:
        changed.append("skip_bad_rows")
    if changed:
        raise RelexError(f"{sweep_dir}: the job's data settings ({', '.join(changed)}) differ from "
                         "those the sweep started with; resume with the same data, or start a new "
                         "sweep with --name")


def run(job: Sweep, *, storage: str | os.PathLike = DEFAULT_STORAGE, name: str | None = None,
        resume: bool = False, overwrite: bool = False, retry_errors: bool = False,
        address: str | None = None, gpus: float | None = None, cpus: float | None = None,
        console=None,
        live: bool | None = None, num_cpus: int | None = None, tables: Tables | None = None,
        trainable: Callable | None = None, prepared: Prepared | None = None) -> SweepOutcome:
    """Run (or resume) a sweep. ``tables`` draws the live results table (without: a line per
    finished trial). ``trainable``/``prepared`` replace the trial function and the pre-flight
    (a lightweight trainable for scheduling tests); everything else is the same."""
    check_address(address)
    name = name or job.name
    if not _NAME_RE.match(name):
        raise RelexError(f"--name {name!r}: a sweep name is letters, digits, '_', '.' and '-', "
                         "starting with a letter or digit")
    # an unmounted shared file system must not become a local directory of the same name
    check_output(storage, "--storage", is_dir=True, create_parents=False)
    storage = Path(os.path.abspath(Path(storage).expanduser()))
    sweep_dir = storage / name
    if retry_errors and not resume:
        raise RelexError("--retry-errors re-runs the failed trials of an earlier sweep; use it "
                         "with --resume")
    if resume and not sweep_dir.is_dir():
        raise _no_sweep_to_resume(sweep_dir)
    lease = Lease(sweep_dir).acquire()  # one driver per sweep, before anything is touched
    try:
        if lease.took_over and console is not None:
            console.print(f"taking over the sweep from a driver that is gone ({lease.took_over})",
                          markup=False, highlight=False)
        return _run_leased(job, sweep_dir, lease, resume=resume, overwrite=overwrite,
                           retry_errors=retry_errors, address=address, gpus=gpus, cpus=cpus,
                           console=console, live=live, num_cpus=num_cpus, tables=tables,
                           trainable=trainable,
                           prepared=prepared)
    finally:
        lease.release()


def _no_sweep_to_resume(sweep_dir: Path) -> RelexError:
    return RelexError(f"{sweep_dir}: no sweep to resume here (run without --resume to start it)")


def _clear_sweep_dir(sweep_dir: Path, *, keep_cache: bool) -> None:
    """Empty a sweep directory for a fresh start; the lease (ours) stays."""
    for p in sweep_dir.iterdir():
        if _is_lease_file(p.name) or (keep_cache and p.name == CACHE_DIR):
            continue
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()


def _run_leased(job: Sweep, sweep_dir: Path, lease: Lease, *, resume: bool, overwrite: bool,
                retry_errors: bool, address: str | None, gpus: float | None,
                cpus: float | None, console, live: bool | None, num_cpus: int | None,
                tables: Tables | None,
                trainable: Callable | None, prepared: Prepared | None) -> SweepOutcome:
    sweep = SweepDir(sweep_dir)
    _claim_dir(sweep, resume=resume, overwrite=overwrite)
    if resume:
        _check_same_job(job, sweep_dir)
    prepared = _prepare(job, sweep, prepared, console)

    import ray

    from relex.sweep.watchdog import Watchdog

    local = not (address or os.environ.get("RAY_ADDRESS")) and not ray.is_initialized()
    owns_ray = start_ray(address, num_cpus)
    # a Ray of our own must not outlive this driver, however it ends (a cluster we only
    # joined is not ours to end)
    watchdog = Watchdog.start(ray_session_dir(), lease) if owns_ray and local else None
    try:
        cluster = ray.cluster_resources()
        res = decide_resources(job, cluster, gpus=gpus, cpus=cpus, local=local)
        check_workers_fit(job, res, cluster, local)
        if job.workers_per_trial > 1:
            prepared = replace(prepared, worker_resources=res, worker_failures=job.max_failures)
        if console is not None:
            console.print(f"sweep {sweep.name}: {job.total} trials, {res['gpu']:g} GPU + "
                          f"{res['cpu']:g} CPU per " + ("trial" if job.workers_per_trial == 1 else
                          f"worker, {job.workers_per_trial} workers per trial")
                          + (f", at most {job.max_concurrent} at once" if job.max_concurrent else "")
                          + f" -> {sweep_dir}", markup=False, highlight=False)
        return _tune(job, sweep, res, prepared, retry_errors=retry_errors,
                     console=console, live=live, tables=tables, trainable=trainable,
                     concurrent=concurrent_trials(job, res, cluster, local))
    finally:
        if owns_ray:
            ray.shutdown()
        if watchdog is not None:
            watchdog.stop()


def _concurrency(job: Sweep, cluster: dict[str, float], res: dict[str, float]) -> int:
    """Trials a searcher lets run at once: the job's max_concurrent, else what fits the
    cluster now (a searcher that never waits for results would only draw at random)."""
    if job.max_concurrent:
        return job.max_concurrent
    fits = [float(cluster.get(k, 0) or 0) // res[r] for k, r in (("CPU", "cpu"), ("GPU", "gpu"))
            if res[r] > 0]
    return max(1, int(min(fits))) if fits else 1


def _searched_tuner(job: Sweep, sweep_dir: Path, wrapped, scheduler, callback, writer,
                    concurrency: int):
    """A TPE sweep's Tuner. Started or resumed alike: the searcher rebuilds its state from the
    study journal and the recorded rows (see relex.sweep.search), so a resume is a new Tune run
    in the same experiment directory rather than Tuner.restore, whose searcher restore is a
    stale pickle."""
    from ray import tune

    from relex.sweep.search import make_search_alg

    search_alg = make_search_alg(job, sweep_dir, writer.trials, concurrency)
    return tune.Tuner(
        wrapped, param_space={},
        tune_config=tune.TuneConfig(
            search_alg=search_alg, scheduler=scheduler, num_samples=-1,
            reuse_actors=job.reuse_actors, trial_name_creator=trial_name,
            trial_dirname_creator=trial_name),
        run_config=_run_config(job, sweep_dir, callback))


def _claim_dir(sweep: SweepDir, *, resume: bool, overwrite: bool) -> None:
    """Check the sweep directory fits the request (resume one that started; start fresh only
    over --overwrite or an earlier failed start) and clear it for a fresh start."""
    started_before = sweep.ray_started()
    if resume and not started_before:
        raise _no_sweep_to_resume(sweep.path)
    if resume:
        return
    if started_before or sweep.has_results():
        if not overwrite:
            raise RelexError(f"{sweep.path} already holds a sweep; pass --resume to continue it, "
                             "--overwrite to start it again, or --name for a new one")
        _clear_sweep_dir(sweep.path, keep_cache=False)
        return
    # an earlier start that failed in pre-flight: keep its cache, drop the rest; a directory
    # holding anything relex does not write there is not ours to empty
    foreign = sorted(p.name for p in sweep.path.iterdir()
                     if p.name not in ENTRIES and not _is_lease_file(p.name))
    if foreign:
        raise RelexError(f"{sweep.path} exists and is not a relex sweep (it holds "
                         f"{', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); "
                         "choose another --name or --storage")
    _clear_sweep_dir(sweep.path, keep_cache=True)


def _prepare(job: Sweep, sweep: SweepDir, prepared: Prepared | None, console) -> Prepared:
    """The pre-flight (unless the caller brings its own), the index files and job.json."""
    if prepared is None:
        prepared, data = preflight(job, sweep.path, console=console)
        if job.folds:
            write_fold_index(sweep.path, data)
            sweep.write_labels(data.full.labels)
        else:
            write_valid_index(sweep.path, data.valid)
    prepared = replace(prepared, sweep_dir=str(sweep.path), specs=job.specs())
    resolved = job.resolved()
    if prepared.skipped_bad_rows:  # bad rows dropped per data file (skip_bad_rows)
        resolved["skipped_bad_rows"] = prepared.skipped_bad_rows
    sweep.write_job(resolved)
    return prepared


def _tune(job: Sweep, sweep: SweepDir, res: dict[str, float], prepared: Prepared, *,
          retry_errors: bool, console, live: bool | None, tables: Tables | None,
          trainable: Callable | None, concurrent: int | None) -> SweepOutcome:
    """Run the trials still to run on Ray Tune and record how they ended; at most
    ``concurrent`` at once (:func:`concurrent_trials`)."""
    from ray import tune

    from relex.sweep.asha import make_scheduler
    from relex.sweep.callback import SweepCallback, register_callback
    from relex.sweep.results import ResultsWriter
    from relex.sweep.trial import run_trial

    scheduler = make_scheduler(job.asha, sweep.asha_state_file, early_stop=not job.folds)
    scheduler.budget = make_budget(job, sweep.path, trial_resources(job, res))
    writer = ResultsWriter(sweep.path)
    if retry_errors:
        retried = reopen_errored(sweep.path, writer)
        if console is not None:
            console.print(f"retrying {len(retried)} failed trial(s): {', '.join(retried) or '-'}",
                          markup=False, highlight=False)
    prepared = replace(prepared, recorded=writer.last_recorded())
    callback = SweepCallback(job, sweep.path, writer, scheduler.rungs, console=console, live=live,
                             tables=tables)
    register_callback(callback)
    wrapped = tune.with_resources(tune.with_parameters(trainable or run_trial, prepared=prepared),
                                  tune_resources(job, res))
    if job.searched:
        import ray

        cap = _concurrency(job, ray.cluster_resources(), res)
        tuner = _searched_tuner(job, sweep.path, wrapped, scheduler, callback, writer,
                                min(cap, concurrent) if concurrent else cap)
    else:
        tuner = _tuner(job, sweep.path, wrapped, scheduler, callback, concurrent=concurrent)
    _fit_quietly(tuner, callback, sweep.path)
    if scheduler.budget.reason:
        mark_unfinished(job, writer, scheduler.budget.reason, console)
    rows = writer.trial_rows()
    if job.folds:
        oof = assemble_oof(sweep.path, rows)
        if console is not None and oof:
            console.print(f"out-of-fold probabilities of {len(oof)} configurations in "
                          f"{sweep.oof_dir}", markup=False, highlight=False)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return SweepOutcome(sweep.path, counts, rows, total=job.total, job_path=job.path)


def unfinished_trials(job: Sweep, sweep_dir: Path) -> list:
    """The job's trials whose final result is not recorded yet (the driver writes ``final.json``
    after the row; ``--retry-errors`` removes it from the failed ones)."""
    sweep = SweepDir(sweep_dir)
    return [t for t in job.trials if not sweep.trial(t.trial_id).is_final()]


def _tuner(job: Sweep, sweep_dir: Path, trainable, scheduler, callback, *, concurrent: int | None):
    """The Tuner over the trials still to run (a start, or a resume); None when none is left."""
    from ray import tune

    pending = unfinished_trials(job, sweep_dir)
    if not pending:
        return None
    queue = grid_search_alg(t.trial_id for t in pending)  # specs: Prepared.specs
    return tune.Tuner(
        trainable, param_space={},
        tune_config=tune.TuneConfig(
            search_alg=queue, num_samples=-1, scheduler=scheduler, max_concurrent_trials=concurrent,
            # a stopped trial's actor must end: the Ray Train run it owns ends with it
            reuse_actors=job.reuse_actors and job.workers_per_trial == 1,
            trial_name_creator=trial_name, trial_dirname_creator=trial_name),
        run_config=_run_config(job, sweep_dir, callback))


def _run_config(job: Sweep, sweep_dir: Path, callback):
    from ray import tune

    return tune.RunConfig(
        name=SweepDir(sweep_dir).ray_dir.name, storage_path=str(sweep_dir),
        failure_config=tune.FailureConfig(max_failures=job.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        callbacks=[callback, *_tracker_callbacks(job, sweep_dir, sweep_dir.name)], verbose=0)


def _fit_quietly(tuner, callback, sweep_dir: Path) -> None:
    """``tuner.fit()`` (None: no trial left to run) with Tune's own console output off: its config
    box and tracebacks of failed trials would tear through the live leaderboard. The callback
    reports every trial, and each failed trial's full traceback stays in
    <sweep_dir>/ray/<trial_id>/error.txt."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # A trial whose fit returned before a killed driver recorded its end runs again on resume
    # from its last recorded state; when that is its last evaluation's, fit has nothing left to
    # train and the trial ends without a result, which Tune's strict metric check takes for a
    # trial that forgot to report and fails the whole sweep on. relex's trials report the ASHA
    # metric at every evaluation (the job check names it).
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    _lighter_tune_start()
    tune_log = logging.getLogger("ray.tune")
    level = tune_log.level
    tune_log.setLevel(logging.CRITICAL)
    lost = None
    try:
        if tuner is not None:
            tuner.fit()
    except Exception:
        lost = storage_lost(sweep_dir)
        if lost is None:
            raise
    finally:
        tune_log.setLevel(level)
        callback.stop_live()
        if lost is None:
            callback.compact()
    if lost is not None:
        raise RelexError(lost)


# Ray's tracker callbacks, counted by name in its usage tag (ray.air._internal.usage)
_RAY_CALLBACK_NAMES = frozenset({"WandbLoggerCallback", "MLflowLoggerCallback", "CometLoggerCallback",
                                 "AimLoggerCallback", "CSVLoggerCallback", "JsonLoggerCallback",
                                 "TBXLoggerCallback"})


def _lighter_tune_start() -> None:
    """Two costs of Tune's start-up that buy a relex sweep nothing (3–5 s of a driver's start on
    two idle cores, and more under load):

    * Tune's default loggers write every result of every trial three times more (CSV, JSON and
      TensorBoard files in ``ray/<trial>/``; relex records the results itself, and its own
      trackers are explicit) and import tensorboardX, and with it torch, in the driver;
    * Ray's usage tag of the callbacks a run uses imports every tracker integration it knows
      (mlflow, wandb, comet, aim) to count them: the same tag counted by class name.
    """
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    from ray.air._internal import usage

    if hasattr(usage, "_count_callbacks"):
        usage._count_callbacks = _count_callbacks_by_name


def _count_callbacks_by_name(callbacks) -> dict[str, int]:
    from ray.tune import Callback
    from ray.tune.logger import LoggerCallback

    counts: dict[str, int] = {}
    for cb in callbacks or []:
        if not isinstance(cb, Callback):
            continue
        name = type(cb).__name__
        if name not in _RAY_CALLBACK_NAMES:
            name = "CustomLoggerCallback" if isinstance(cb, LoggerCallback) else "CustomCallback"
        counts[name] = counts.get(name, 0) + 1
    return counts


def _tracker_callbacks(job: Sweep, sweep_dir: Path, name: str) -> list:
    if not job.loggers:
        return []
    from relex.sweep.tracking import callbacks

    return callbacks(job.loggers, sweep_dir, name, job.specs())


def print_summary(outcome: SweepOutcome, console, *, tables: Tables | None = None) -> None:
    """The closing lines of a sweep; with ``tables`` and no terminal (where the live table stays
    on screen), the results table as plain text first."""
    if tables is not None and not console.is_terminal:
        sys.stdout.write(tables.plain(outcome.rows))
    parts = [f"{n} {s.lower().replace('_', ' ')}" for s, n in sorted(outcome.counts.items())
             if s in FINISHED]
    if outcome.unfinished:
        parts.append(f"{outcome.unfinished} unfinished")
    console.print(f"{outcome.total} trials: {', '.join(parts) or 'none finished'}; results in "
                  f"{outcome.sweep_dir}/{TRIALS_FILE}", markup=False, highlight=False)
    if outcome.unfinished:
        console.print(f"the sweep stopped early; continue it with: relex sweep {outcome.job_path} "
                      f"--storage {outcome.sweep_dir.parent} --name {outcome.sweep_dir.name} --resume",
                      markup=False, highlight=False)
