"""Job files: loading, validation (one line, exit 2, before Ray), grid expansion, dry runs,
resources, the bundled jobs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from relex.cli import main
from relex.config import TrialConfig
from relex.data.sample import SAMPLE_PATH
from relex.errors import RelexError
from relex.sweep.job import load_job
from relex.sweep.runner import decide_resources

ROOT = Path(__file__).resolve().parents[1]
HEAD = "from relex.sweep import Sweep, grid\n"


def _job(tmp_path, body, name="job.py"):
    p = tmp_path / name
    p.write_text(HEAD + body, encoding="utf-8")
    return p


@pytest.fixture
def no_ray(monkeypatch):
    """Fail the test if a sweep gets as far as pre-flight or Ray."""
    import relex.sweep.runner as runner

    def boom(*a, **k):
        raise AssertionError("pre-flight/Ray reached")

    monkeypatch.setattr(runner, "preflight", boom)
    monkeypatch.setattr(runner, "start_ray", boom)


def test_grid_expansion_order_ids_and_fixed_values(tmp_path):
    p = _job(tmp_path, f"sweep = Sweep(name='g', train={str(SAMPLE_PATH)!r}, valid=0.2,\n"
                       "  space=dict(head=grid(['cls', 'marker']), erpe=grid([False, True]), lr=3e-5,\n"
                       "             fgm=grid([0.5])), seeds=[1, 2])\n")
    job = load_job(p)
    assert [t.trial_id for t in job.trials] == [f"t{i:03d}" for i in range(8)]
    got = [(t.config.head, t.config.erpe, t.config.seed) for t in job.trials]
    assert got == [(h, e, s) for h in ("cls", "marker") for e in (False, True) for s in (1, 2)]
    assert all(t.config.lr == 3e-5 and t.config.fgm == 0.5 for t in job.trials)
    assert job.axes == ["head", "erpe", "seed"]  # a one-value axis does not vary
    assert job.trials[5].varying == {"head": "marker", "erpe": False, "seed": 2}
    assert all(isinstance(t.config, TrialConfig) for t in job.trials)
    assert job.valid == 0.2 and job.train == SAMPLE_PATH
    resolved = json.loads(json.dumps(job.resolved()))
    assert resolved["trials"][3]["config"]["erpe"] is True


def test_paths_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "t.json").write_text("[]")
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    p = _job(jobs, "sweep = Sweep(name='p', train='data/t.json', valid='data/t.json')\n")
    monkeypatch.chdir(tmp_path)
    job = load_job("jobs/job.py")
    assert job.train == tmp_path / "data" / "t.json" and job.valid == job.train
    monkeypatch.chdir(jobs)
    with pytest.raises(RelexError, match="data file not found"):
        load_job(p)


@pytest.mark.parametrize("body,expected", [
    ("sweep = Sweep(name='x',\n  train='a.json' valid=0.1)\n", "job.py:4: syntax error"),
    ("sweep = Sweep(name='x', train=TRAIN, space=dict(hed=grid(['cls'])))\n",
     "unknown config key 'hed' (did you mean 'head'?)"),
    ("sweep = Sweep(name='x', trian=TRAIN)\n", "unknown argument 'trian' (did you mean 'train'?)"),
    ("sweep = Sweep(name='x', train=TRAIN, space=dict(lr=grid([3e-5, 5.0])))\n",
     "trial t001: lr=5.0 is invalid"),
    ("sweep = Sweep(name='x', train=TRAIN, space=dict(head='mlp'))\n", "head='mlp' is invalid"),
    ("sweep = Sweep(name='x', train='missing.json')\n", "data file not found"),
    ("swep = Sweep(name='x', train=TRAIN)\n", "no `sweep` object"),
    ("sweep = 3\n", "`sweep` is a int"),
    ("\nx = 1 / 0\n", "job.py:4: ZeroDivisionError: division by zero"),
    ("sweep = Sweep(name='x', train=TRAIN, asha=dict(grace=1))\n",
     "unknown key 'grace' (did you mean 'grace_period'?)"),
    ("sweep = Sweep(name='x', train=TRAIN, asha=dict(metric='f1'))\n", "metric='f1' is invalid"),
    ("sweep = Sweep(name='x', train=TRAIN, resources=dict(gpus=1))\n", "did you mean 'gpu'"),
    ("sweep = Sweep(name='x', train=TRAIN, valid=1.5)\n", "fraction must be in (0, 1)"),
    ("sweep = Sweep(name='x', train=TRAIN, space=dict(seed=grid([1, 2])))\n", "seeds=[...]"),
    ("sweep = Sweep(name='x', train=TRAIN, space=dict(head=grid([])))\n", "at least one value"),
    ("sweep = Sweep(name='x', train=TRAIN, space=dict(head=grid(['cls', 'cls'])))\n",
     "same config"),
    ("sweep = Sweep(name='a b', train=TRAIN)\n", "name='a b' is invalid"),
    ("sweep = Sweep(name='x', train=TRAIN, keep_checkpoints=-1)\n", "keep_checkpoints"),
    ("sweep = Sweep(name='x', train=TRAIN, keep_checkpoint=3)\n", "did you mean 'keep_checkpoints'"),
])
def test_bad_job_files_fail_in_one_line_with_exit_2_before_ray(tmp_path, capsys, no_ray, body, expected):
    p = _job(tmp_path, f"TRAIN = {str(SAMPLE_PATH)!r}\n" + body)
    assert main(["sweep", str(p), "--storage", str(tmp_path / "art")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"relex: error: {p}") and len(err.strip().splitlines()) == 1
    assert expected in err, err
    assert not (tmp_path / "art").exists()


def test_missing_job_file(tmp_path, capsys, no_ray):
    assert main(["sweep", str(tmp_path / "nope.py")]) == 2
    assert "job file not found" in capsys.readouterr().err


def test_dry_run_prints_trials_and_resources_without_ray(tmp_path, capsys, no_ray):
    p = _job(tmp_path, f"sweep = Sweep(name='d', train={str(SAMPLE_PATH)!r},\n"
                       "  space=dict(head=grid(['cls', 'marker']), rdrop=grid([0.0, 2.0]), epochs=2),\n"
                       "  resources=dict(cpu=2), max_concurrent=3)\n")
    assert main(["sweep", str(p), "--dry-run", "--gpus-per-trial", "0"]) == 0
    out = capsys.readouterr().out
    assert "sweep d: 4 trials" in out
    assert "GPU 0, CPU 2; at most 3 at once" in out
    lines = out.splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.split()[:3] == ["trial", "head", "rdrop"])
    assert [ln.split() for ln in lines[i + 1:i + 5]] == [
        ["t000", "cls", "0"], ["t001", "cls", "2"], ["t002", "marker", "0"], ["t003", "marker", "2"]]
    assert "fixed: epochs=2" in out


def test_ablation_dry_run_works_without_data_or_hub(tmp_path, capsys, monkeypatch, no_ray):
    import relex.model.backbone as backbone

    monkeypatch.setattr(backbone, "resolve_backbone",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("resolved")))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RELEX_DATA", raising=False)
    assert main(["sweep", str(ROOT / "jobs" / "ablation.py"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "sweep ablation: 384 trials" in out and "GPU 1, CPU 4" in out
    assert "note: data file not found" in out and "data/klue-re/klue-re-v1.1_train.json" in out
    job = load_job(ROOT / "jobs" / "ablation.py", check_files=False)
    assert {t.config.backbone for t in job.trials} == {
        "klue/roberta-base", "klue/bert-base", "monologg/koelectra-base-v3-discriminator"}
    assert job.axes == ["backbone", "head", "erpe", "fgm", "rdrop", "llrd", "hnm", "loss"]
    assert job.valid == 0.1 and job.resources == {"gpu": 1, "cpu": 4}
    assert job.asha["metric"] == "micro_f1"
    monkeypatch.setenv("RELEX_DATA", "/somewhere/klue")
    assert str(load_job(ROOT / "jobs" / "ablation.py", check_files=False).train) == \
        "/somewhere/klue/klue-re-v1.1_train.json"


def test_smoke_job_shape():
    job = load_job(ROOT / "jobs" / "smoke.py")
    assert job.train == SAMPLE_PATH
    assert len(job.trials) >= 6
    assert job.resources == {"gpu": 0, "cpu": 1} and job.max_concurrent == 2
    assert all(t.config.backbone == "relex/tiny" for t in job.trials)


def test_resources_flags_job_and_defaults(tmp_path):
    job = load_job(_job(tmp_path, f"sweep = Sweep(name='r', train={str(SAMPLE_PATH)!r})\n"))
    # default: one GPU per trial where there are GPUs, CPU only where there are none
    assert decide_resources(job, {"CPU": 8, "GPU": 2}) == {"cpu": 1, "gpu": 1}
    assert decide_resources(job, {"CPU": 8}) == {"cpu": 1, "gpu": 0}
    assert decide_resources(job, {"CPU": 8, "GPU": 2}, gpus=0, cpus=3) == {"cpu": 3, "gpu": 0}
    job2 = load_job(_job(tmp_path, f"sweep = Sweep(name='r', train={str(SAMPLE_PATH)!r},"
                                   " resources=dict(gpu=1, cpu=4))\n", "j2.py"))
    assert decide_resources(job2, {"CPU": 16, "GPU": 4}) == {"cpu": 4, "gpu": 1}
    # an explicit GPU request on a cluster whose GPU nodes are not up yet waits for the
    # autoscaler; on a local machine without GPUs it is an error
    assert decide_resources(job2, {"CPU": 4}, local=False) == {"cpu": 4, "gpu": 1}
    with pytest.raises(RelexError, match="--gpus-per-trial 0"):
        decide_resources(job2, {"CPU": 4}, local=True)
    assert decide_resources(job2, {"CPU": 4}, gpus=0, local=True) == {"cpu": 4, "gpu": 0}
    with pytest.raises(RelexError, match="--cpus-per-trial"):
        decide_resources(job2, {"CPU": 2}, gpus=0, local=True)
    # a fraction packs trials onto one GPU; above one only whole GPUs make sense
    assert decide_resources(job2, {"CPU": 16, "GPU": 1}, gpus=0.25) == {"cpu": 4, "gpu": 0.25}
    with pytest.raises(RelexError, match="gpu=1.5 is invalid.*fraction below 1"):
        decide_resources(job2, {"CPU": 16, "GPU": 4}, gpus=1.5)


def test_dry_run_shows_how_many_trials_share_a_gpu(tmp_path, capsys, no_ray):
    p = _job(tmp_path, f"sweep = Sweep(name='g', train={str(SAMPLE_PATH)!r}, resources=dict(gpu=0.5))\n")
    assert main(["sweep", str(p), "--dry-run"]) == 0
    assert "GPU 0.5 (up to 2 trials share a GPU), CPU 1" in capsys.readouterr().out
    assert main(["sweep", str(p), "--dry-run", "--gpus-per-trial", "0.25"]) == 0
    assert "GPU 0.25 (up to 4 trials share a GPU)" in capsys.readouterr().out
    # 1.5 GPUs is refused before anything runs, from the flag or from the job file alike
    assert main(["sweep", str(p), "--dry-run", "--gpus-per-trial", "1.5"]) == 2
    bad = _job(tmp_path, f"sweep = Sweep(name='g', train={str(SAMPLE_PATH)!r}, resources=dict(gpu=1.5))\n")
    assert main(["sweep", str(bad), "--dry-run"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "relex: error: --gpus-per-trial: gpu=1.5 is invalid: use a whole number of GPUs or a fraction "
        "below 1 (0.5, 0.25: that many trials share one GPU)",
        f"relex: error: {bad}: resources: gpu=1.5 is invalid: use a whole number of GPUs or a "
        "fraction below 1 (0.5, 0.25: that many trials share one GPU)"]


def test_bad_flags(tmp_path, capsys, no_ray):
    p = _job(tmp_path, f"sweep = Sweep(name='f', train={str(SAMPLE_PATH)!r})\n")
    assert main(["sweep", str(p), "--cpus-per-trial", "0"]) == 2
    assert main(["sweep", str(p), "--resume", "--overwrite"]) == 2
    assert main(["sweep", str(p), "--address", "ray://head:10001"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(e.startswith("relex: error:") for e in err)
    assert "ray job submit" in err[2]


def test_backbone_that_cannot_load_is_one_error_before_ray(tmp_path, capsys, monkeypatch):
    import relex.sweep.runner as runner

    monkeypatch.setattr(runner, "start_ray", lambda *a, **k: (_ for _ in ()).throw(AssertionError("Ray")))
    missing = tmp_path / "models" / "no-such-model"
    p = _job(tmp_path, f"sweep = Sweep(name='bb', train={str(SAMPLE_PATH)!r},\n"
                       f"  space=dict(backbone={str(missing)!r}, head=grid(['cls', 'marker'])))\n")
    assert main(["sweep", str(p), "--storage", str(tmp_path / "art")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot load backbone" in err[0] and "no-such-model" in err[0]
    # nothing was started: the same command may run again once the backbone is fixed
    assert not (tmp_path / "art" / "bb" / "ray").exists()
    assert not (tmp_path / "art" / "bb" / "trials.parquet").exists()


def test_sweep_never_empties_a_directory_it_did_not_write(tmp_path, capsys, no_ray):
    p = _job(tmp_path, f"sweep = Sweep(name='f', train={str(SAMPLE_PATH)!r})\n")
    assert main(["sweep", str(p), "--storage", str(tmp_path / "st"), "--name", "../escape"]) == 2
    assert "--name '../escape'" in capsys.readouterr().err
    data = tmp_path / "st" / "data"
    data.mkdir(parents=True)
    (data / "precious.csv").write_text("keep me")
    assert main(["sweep", str(p), "--storage", str(tmp_path / "st"), "--name", "data"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a relex sweep" in err[0] and "precious.csv" in err[0]
    assert (data / "precious.csv").read_text() == "keep me"


def test_resume_refuses_changed_data_settings(tmp_path):
    import json

    from relex.errors import RelexError
    from relex.sweep.layout import JOB_FILE
    from relex.sweep.runner import _check_same_job

    first = load_job(_job(tmp_path, f"sweep = Sweep(name='r', train={str(SAMPLE_PATH)!r}, valid=0.2)\n"))
    sweep_dir = tmp_path / "r"
    sweep_dir.mkdir()
    (sweep_dir / JOB_FILE).write_text(json.dumps(first.resolved()))
    _check_same_job(first, sweep_dir)  # the same job resumes
    other = load_job(_job(tmp_path, f"sweep = Sweep(name='r', train={str(SAMPLE_PATH)!r}, valid=0.3)\n",
                          name="other.py"))
    with pytest.raises(RelexError, match=r"data settings \(valid\) differ"):
        _check_same_job(other, sweep_dir)


# ------------------------------------------------------------------ folds and stages
def test_fold_sweep_expands_every_configuration_per_fold(tmp_path):
    p = _job(tmp_path, f"sweep = Sweep(name='k', train={str(SAMPLE_PATH)!r}, folds=3, fold_seed=5,\n"
                       "  space=dict(head=grid(['cls', 'marker'])))\n")
    job = load_job(p)
    assert [t.trial_id for t in job.trials] == ["t000-f0", "t000-f1", "t000-f2", "t001-f0", "t001-f1", "t001-f2"]
    assert [t.fold for t in job.trials] == [0, 1, 2] * 2
    assert {t.config_id for t in job.trials} == {"t000", "t001"}
    assert job.valid is None and job.folds == 3 and job.fold_seed == 5
    resolved = job.resolved()
    assert resolved["folds"] == 3 and resolved["trials"][4] == {
        "trial_id": "t001-f1", "config": job.trials[4].config.to_dict(), "config_id": "t001", "fold": 1}
    # a plain sweep's job.json keeps its earlier shape (resumes of older sweeps still match)
    plain = load_job(_job(tmp_path, f"sweep = Sweep(name='p', train={str(SAMPLE_PATH)!r})\n"))
    assert "folds" not in plain.resolved() and set(plain.resolved()["trials"][0]) == {"trial_id", "config"}
    assert plain.valid == 0.1


@pytest.mark.parametrize("body, expected", [
    ("folds=5, valid=0.2", "a fold sweep validates each fold on the rows it holds out"),
    ("folds=1", "folds=1 is invalid"),
    ("folds=3, asha=dict(grace_period=2)", "a fold sweep stops no trial early"),
    ("base='no/such/sweep'", "is not a sweep with results"),
    ("base='.', top=0", "top=0 is invalid"),
])
def test_bad_fold_and_stage_settings(tmp_path, body, expected):
    p = _job(tmp_path, f"sweep = Sweep(name='x', train={str(SAMPLE_PATH)!r}, {body})\n")
    with pytest.raises(RelexError, match=re.escape(expected)):
        load_job(p)


def test_fold_assignment_is_stratified_and_covers_every_row_once():
    from relex.data.split import fold_assignment

    y = np.repeat(np.arange(4), [50, 20, 9, 1])
    a = fold_assignment(y, 5, seed=3)
    assert a.shape == y.shape and set(a) == {0, 1, 2, 3, 4}
    for label, n in zip(range(4), (50, 20, 9, 1)):
        per_fold = np.bincount(a[y == label], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1 and per_fold.sum() == n
    assert (fold_assignment(y, 5, seed=3) == a).all() and (fold_assignment(y, 5, seed=4) != a).any()


def test_staged_sweep_from_a_finished_sweep_without_ray(tmp_path):
    """The base's configurations are ranked by their mean over seeds; the new grid runs around
    the top ones and inherits the base's data settings."""
    from relex.sweep.results import TRIALS_SCHEMA, to_table, write_table
    from relex.sweep.layout import JOB_FILE

    base = load_job(_job(tmp_path, f"sweep = Sweep(name='stage1', train={str(SAMPLE_PATH)!r}, valid=0.25,\n"
                                   "  split_seed=9, seeds=[1, 2], space=dict(head=grid(['cls', 'marker', 'rbert'])))\n"))
    bdir = tmp_path / "art" / "stage1"
    bdir.mkdir(parents=True)
    (bdir / JOB_FILE).write_text(json.dumps(base.resolved()))
    # head=cls: 50, 70 (mean 60); marker: 65, 64 (64.5); rbert: 80, error (80)
    scores = {"t000": 50.0, "t001": 70.0, "t002": 65.0, "t003": 64.0, "t004": 80.0, "t005": None}
    rows = [{"trial_id": t, "status": "ERROR" if v is None else "TERMINATED", "micro_f1": v}
            for t, v in scores.items()]
    write_table(bdir / "trials.parquet", to_table(rows, TRIALS_SCHEMA))
    p = tmp_path / "stage2.py"
    p.write_text("from relex.sweep import Sweep, grid\n"
                 f"sweep = Sweep(name='stage2', base={str(bdir)!r}, top=2, "
                 "space=dict(lr=grid([1e-3, 2e-3])))\n")
    job = load_job(p)
    assert [(t.lineage, t.config.head, t.config.lr) for t in job.trials] == [
        ("stage1/t004", "rbert", 1e-3), ("stage1/t004", "rbert", 2e-3),
        ("stage1/t002", "marker", 1e-3), ("stage1/t002", "marker", 2e-3)]
    assert job.valid == 0.25 and job.split_seed == 9 and job.train == SAMPLE_PATH
    assert job.resolved()["trials"][0]["lineage"] == "stage1/t004"


def test_kfold_and_stage2_job_files(tmp_path, monkeypatch, capsys):
    job = load_job(ROOT / "jobs" / "kfold.py")
    assert job.folds == 5 and len(job.trials) == 10 and {t.config_id for t in job.trials} == {"t000", "t001"}
    # the stage-2 job needs a finished smoke sweep under artifacts/: stand one in
    from relex.sweep.results import TRIALS_SCHEMA, to_table, write_table
    from relex.sweep.layout import JOB_FILE

    monkeypatch.chdir(tmp_path)
    rc = main(["sweep", str(ROOT / "jobs" / "smoke_stage2.py"), "--dry-run"])
    assert rc == 2 and "artifacts/smoke" in capsys.readouterr().err  # no base yet: one clear line
    smoke = load_job(ROOT / "jobs" / "smoke.py")
    base = tmp_path / "artifacts" / "smoke"
    base.mkdir(parents=True)
    (base / JOB_FILE).write_text(json.dumps(smoke.resolved()))
    rows = [{"trial_id": t.trial_id, "status": "TERMINATED", "micro_f1": float(i)} for i, t in enumerate(smoke.trials)]
    write_table(base / "trials.parquet", to_table(rows, TRIALS_SCHEMA))
    stage2 = load_job(ROOT / "jobs" / "smoke_stage2.py")
    assert len(stage2.trials) == 8 and stage2.train == SAMPLE_PATH and stage2.valid == 0.2
    best = smoke.trials[-1].trial_id  # the highest micro_f1 above
    assert stage2.trials[0].lineage == f"smoke/{best}"
