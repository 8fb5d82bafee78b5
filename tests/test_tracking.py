"""Tracker logging with the real libraries: TensorBoard, MLflow (local file store) and W&B
(offline), for `relex train --logger` and for a sweep's Ray Tune callbacks.

Each tracker's files are read back with its own reader (TensorBoard's EventAccumulator, an
MlflowClient on the file store, W&B's protobuf records of the offline run file) and compared
with relex's own history: the same metric names, steps and values everywhere, and every
TrialConfig field as a hyper-parameter. A tracker that is not installed skips its test.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from relex.config import TrialConfig
from relex.data.sample import SAMPLE_PATH
from relex.tracking import METRICS

FAST = ["--tiny-hidden", "32", "--tiny-layers", "1", "--max-length", "80", "--batch-size", "32",
        "--lr", "5e-3", "--warmup-ratio", "0", "--num-threads", "1", "--epochs", "1", "--eval-every", "7",
        "--quiet"]
NEEDS = "the {0} extra is not installed: pip install -e '.[{0}]'"


@pytest.fixture
def tracker_env(tmp_path, monkeypatch):
    """W&B offline with its settings in tmp; MLflow's default store (no server from the environment)."""
    for k in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "WANDB_PROJECT", "WANDB_DIR"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for k in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(k, str(tmp_path / "wandb-home" / k.lower()))


# ----------------------------------------------------------------------------- readers
def tensorboard_run(logdir: Path) -> tuple[dict[str, list[tuple[int, float]]], dict[str, object]]:
    """Scalars by tag [(step, value)] and the HParams of one run directory."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    scalars = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
    hparams: dict[str, object] = {}
    for content in acc.PluginTagToContent("hparams").values():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        if data.HasField("session_start_info"):
            for k, v in data.session_start_info.hparams.items():
                hparams[k] = getattr(v, v.WhichOneof("kind"))
    return scalars, hparams


def mlflow_runs(store: Path, experiment: str):
    """{run name: (params, {metric: [(step, value)]}, status)} of an experiment in a file store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store.absolute().as_uri())  # a link stays a link
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r} in {store}"
    out = {}
    for run in client.search_runs([exp.experiment_id]):
        metrics = {k: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, k))
                   for k in run.data.metrics}
        out[run.info.run_name] = (run.data.params, metrics, run.info.status)
    return out


def _wandb_log_records(path: Path):
    """The records of a W&B run file: a LevelDB-style log (32 KiB blocks, 7-byte record headers)
    after W&B's 7-byte file header; each record is one of wandb's own protobuf Records."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, partial = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        payload, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:
            yield payload
        elif kind == 2:
            partial = payload
        elif kind == 3:
            partial += payload
        elif kind == 4:
            yield partial + payload


def wandb_run(run_dir: Path) -> tuple[dict[str, object], list[dict[str, object]], int]:
    """(config, history rows, exit code) of the one offline run under ``run_dir``."""
    from wandb.proto import wandb_internal_pb2 as pb

    files = sorted(run_dir.glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    config, history, exit_code = {}, [], None
    for raw in _wandb_log_records(files[0]):
        rec = pb.Record()
        rec.ParseFromString(raw)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            config.update({u.key or "/".join(u.nested_key): json.loads(u.value_json)
                           for u in rec.run.config.update})
        elif kind == "config":
            config.update({u.key or "/".join(u.nested_key): json.loads(u.value_json)
                           for u in rec.config.update})
        elif kind == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                            for i in rec.history.item})
        elif kind == "exit":
            exit_code = rec.exit.exit_code
    return config, history, exit_code


def expected_series(history: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """relex's own per-evaluation record as {metric: [(step, value)]}."""
    out = {m: [] for m in METRICS}
    for h in history:
        for m in METRICS:
            out[m].append((int(h["step"]), float(h[m])))
    return out


def check_tensorboard(logdir: Path, cfg: TrialConfig, want: dict) -> None:
    scalars, hparams = tensorboard_run(logdir)
    for m, series in want.items():
        got = scalars[m]
        assert [s for s, _ in got] == [s for s, _ in series], m
        assert [v for _, v in got] == pytest.approx([v for _, v in series], rel=1e-6, abs=1e-6), m
    assert set(hparams) == set(TrialConfig.field_names())
    assert hparams["lr"] == pytest.approx(cfg.lr) and hparams["marker"] == cfg.marker


def check_mlflow(run, cfg: TrialConfig, want: dict) -> None:
    params, metrics, status = run
    assert params == {k: str(v) for k, v in cfg.to_dict().items()}
    for m, series in want.items():
        assert metrics[m] == series, m  # float64 in the store: exactly relex's values
    assert status == "FINISHED"


def check_wandb(run_dir: Path, cfg: TrialConfig, want: dict) -> None:
    config, history, exit_code = wandb_run(run_dir)
    assert {k: config[k] for k in TrialConfig.field_names()} == cfg.to_dict()
    assert exit_code == 0
    for m, series in want.items():
        assert [(int(h["_step"]), h[m]) for h in history if m in h] == series, m


# ----------------------------------------------------------------------------- one run
def test_train_logs_every_evaluation_to_each_tracker(tmp_path, tracker_env, capsys):
    pytest.importorskip("tensorboard", reason=NEEDS.format("tensorboard"))
    pytest.importorskip("mlflow", reason=NEEDS.format("mlflow"))
    pytest.importorskip("wandb", reason=NEEDS.format("wandb"))
    from relex.cli import main

    out = tmp_path / "run"
    rc = main(["train", "--out", str(out), *FAST, "--logger", "tensorboard", "--logger", "mlflow",
               "--logger", "wandb"])
    assert rc == 0, capsys.readouterr().err
    history = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [7, 14, 20]
    cfg = TrialConfig.from_json((out / "best" / "config.json").read_text())
    want = expected_series(history)

    check_tensorboard(out / "tensorboard", cfg, want)
    runs = mlflow_runs(out / "mlruns", "relex")
    assert list(runs) == ["run"]
    check_mlflow(runs["run"], cfg, want)
    check_wandb(out / "wandb", cfg, want)


def test_mlflow_store_under_a_directory_named_artifacts(tmp_path, tracker_env, capsys, monkeypatch):
    """relex's default output lives under artifacts/, a name MLflow's file store refuses above a
    run; the run is logged anyway, in OUT/mlruns, reached through relex's link."""
    pytest.importorskip("mlflow", reason=NEEDS.format("mlflow"))
    from relex.cli import main
    from relex.tracking import file_store_path

    monkeypatch.setenv("RELEX_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "artifacts" / "run"
    rc = main(["train", "--out", str(out), *FAST, "--logger", "mlflow"])
    assert rc == 0, capsys.readouterr().err
    history = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    cfg = TrialConfig.from_json((out / "best" / "config.json").read_text())
    store = out / "mlruns"
    assert [p.name for p in store.iterdir() if p.is_dir() and p.name != ".trash"]  # the runs stay in OUT
    link = file_store_path(store)
    assert link != store and "artifacts" not in link.parts and link.resolve() == store.resolve()
    runs = mlflow_runs(link, "relex")
    assert list(runs) == ["run"]
    check_mlflow(runs["run"], cfg, expected_series(history))


def test_logger_flag_errors_are_one_line(tmp_path, capsys, monkeypatch):
    import importlib.util

    from relex.cli import main

    def run(*argv):
        try:
            rc = main(["train", "--out", str(tmp_path / "o"), *argv])
        except SystemExit as e:
            rc = e.code
        return rc, capsys.readouterr().err.strip()

    rc, err = run("--logger", "tensorbord")
    assert rc == 2 and len(err.splitlines()) == 1 and "invalid choice: 'tensorbord'" in err
    # a tracker that is not installed (as after `pip install relex` without its extra)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    rc, err = run("--logger", "mlflow")
    assert rc == 2
    assert err == "relex: error: --logger: logger 'mlflow' needs mlflow: pip install 'relex[mlflow]'"
    assert not (tmp_path / "o").exists()  # nothing started


def test_job_file_loggers_are_validated(tmp_path):
    from relex.errors import RelexError
    from relex.sweep.job import load_job

    def job(loggers: str) -> Path:
        p = tmp_path / "job.py"
        p.write_text("from relex.sweep import Sweep\n"
                     f"sweep = Sweep(name='j', train={str(SAMPLE_PATH)!r}, loggers={loggers})\n")
        return p

    with pytest.raises(RelexError, match=r"loggers: unknown logger 'mlfow' \(did you mean 'mlflow'\?\)"):
        load_job(job("['mlfow']"))
    with pytest.raises(RelexError, match="loggers must be a list"):
        load_job(job("'wandb'"))
    assert load_job(job("[]")).loggers == ()


# ----------------------------------------------------------------------------- a sweep
SWEEP_JOB = '''
from relex.sweep import Sweep, grid
sweep = Sweep(
    name="tracked", train={data!r}, valid=0.25,
    space=dict(lr=grid([3e-3, 1e-3]), tiny_hidden=32, tiny_layers=1, tiny_heads=2, max_length=64,
               batch_size=16, epochs=5, max_steps=12, eval_every=4, warmup_ratio=0.0, num_threads=1,
               amp="off"),
    asha=dict(grace_period=10), resources=dict(gpu=0, cpu=1), max_concurrent=2,
    loggers=["tensorboard", "mlflow", "wandb"],
)
'''


@pytest.mark.ray
@pytest.mark.slow
def test_sweep_logs_each_trial_through_ray_tune_callbacks(tmp_path, tracker_env, monkeypatch):
    pytest.importorskip("tensorboard", reason=NEEDS.format("tensorboard"))
    pytest.importorskip("mlflow", reason=NEEDS.format("mlflow"))
    pytest.importorskip("wandb", reason=NEEDS.format("wandb"))
    import pyarrow.parquet as pq

    from relex.sweep.job import load_job
    from relex.sweep.runner import run

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    data = json.loads(Path(SAMPLE_PATH).read_text(encoding="utf-8"))[::3]
    (tmp_path / "data.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "job.py").write_text(SWEEP_JOB.format(data=str(tmp_path / "data.json")))
    job = load_job(tmp_path / "job.py")
    assert job.loggers == ("tensorboard", "mlflow", "wandb")
    outcome = run(job, storage=tmp_path / "art", live=False, num_cpus=2)
    assert outcome.counts == {"TERMINATED": 2}

    sweep_dir = outcome.sweep_dir
    history = pq.read_table(sweep_dir / "history.parquet").to_pylist()
    runs = mlflow_runs(sweep_dir / "mlruns", "tracked")
    assert sorted(runs) == ["t000", "t001"]
    for t in job.trials:
        rows = sorted((r for r in history if r["trial_id"] == t.trial_id), key=lambda r: r["step"])
        assert [r["step"] for r in rows] == [4, 8, 12]
        want = expected_series(rows)
        check_tensorboard(sweep_dir / "tensorboard" / t.trial_id, t.config, want)
        check_mlflow(runs[t.trial_id], t.config, want)
        check_wandb(sweep_dir / "wandb" / t.trial_id / "wandb", t.config, want)


def test_a_tracker_the_user_has_not_set_up_is_one_line(tmp_path, monkeypatch):
    """W&B online without an API key (a fresh machine): one line, exit 2, no traceback. In a
    fresh process: wandb keeps the settings of earlier runs in the process that made them."""
    pytest.importorskip("wandb", reason=NEEDS.format("wandb"))
    import os
    import subprocess
    import sys

    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(home), NETRC=str(home / "netrc"),
               PYTHONPATH=str(Path(__file__).resolve().parents[1]),
               **{k: str(home / k.lower()) for k in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR")})
    proc = subprocess.run([sys.executable, "-m", "relex.cli", "train", "--out", str(tmp_path / "o"),
                           *FAST, "--logger", "wandb"], env=env, capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert err == ["relex: error: --logger: wandb has no API key here (WANDB_API_KEY, `wandb login`'s "
                   "netrc entry or its settings file): set one, or set WANDB_MODE=offline to log "
                   "locally and `wandb sync` later"]
    assert not (tmp_path / "o").exists()  # refused before anything started

    # a sweep refuses the same way before its pre-flight, and leaves no sweep directory
    job = tmp_path / "job.py"
    job.write_text("from relex.sweep import Sweep\n"
                   f"sweep = Sweep(name='j', train={str(SAMPLE_PATH)!r}, loggers=['wandb'])\n")
    proc = subprocess.run([sys.executable, "-m", "relex.cli", "sweep", str(job), "--storage",
                           str(tmp_path / "art")], env=env, capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"relex: error: {job}: loggers: wandb has no API key here (WANDB_API_KEY, `wandb login`'s "
        "netrc entry or its settings file): set one, or set WANDB_MODE=offline to log locally and "
        "`wandb sync` later"]
    assert not (tmp_path / "art").exists()

    # with the key where `wandb login` puts it (a netrc entry of W&B's host), the check passes
    from relex.tracking import wandb_can_log

    (home / "netrc").parent.mkdir(parents=True, exist_ok=True)
    (home / "netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "0" * 40 + "\n")
    for k in [k for k in os.environ if k.startswith("WANDB_")]:
        monkeypatch.delenv(k)
    for k in ("HOME", "NETRC", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(k, env[k])
    assert wandb_can_log()
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")  # another host: no key for it
    assert not wandb_can_log()
