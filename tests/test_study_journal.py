"""The study journal of a TPE sweep (no Ray started): an ask is one append and one fsync, the
file stays Optuna's format, and a kill that cut an append short loses and repeats nothing."""

from __future__ import annotations

import json

import pytest

from relex.data.sample import SAMPLE_PATH
from relex.sweep.job import load_job

optuna = pytest.importorskip("optuna")

AXES = ("lr", "warmup_ratio", "weight_decay")


def _job(tmp_path, num_samples=4):
    p = tmp_path / "job.py"
    p.write_text("from relex.sweep import Sweep, loguniform, uniform\n"
                 f"sweep = Sweep(name='j', train={str(SAMPLE_PATH)!r}, search='tpe', search_seed=5,\n"
                 f"  num_samples={num_samples}, space=dict(lr=loguniform(1e-5, 1e-3),\n"
                 "    warmup_ratio=uniform(0.0, 0.3, q=0.05), weight_decay=uniform(0.0, 0.1)))\n")
    return load_job(p)


def _searcher(job, sweep_dir, rows=None):
    from relex.sweep.search import _searcher_class

    return _searcher_class()(job, sweep_dir, rows or {})


def _score(spec):
    return 50.0 + 1e4 * spec["config"]["lr"]


def _optuna_trials(sweep_dir):
    """The study as Optuna's own journal reader sees it."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(sweep_dir / "study.journal")))
    return optuna.load_study(study_name="point-0", storage=storage).trials


def test_an_ask_is_one_fsynced_append_that_optuna_reads_back(tmp_path, monkeypatch):
    import relex.sweep.journal as journal

    fsyncs = []
    real_fsync = journal.os.fsync
    monkeypatch.setattr(journal.os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd)))
    job = _job(tmp_path)
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    searcher = _searcher(job, sweep_dir)
    specs = []
    for i in range(4):  # three random start-up draws, then TPE (its joint draw is one more line)
        before = len(fsyncs)
        specs.append(searcher.suggest(f"ray-{i}")["trial"])
        assert len(fsyncs) == before + 1
        searcher.on_trial_complete(f"ray-{i}", {searcher.metric: _score(specs[-1])})
        assert len(fsyncs) == before + 2
    assert searcher.suggest("ray-4") == searcher.FINISHED
    trials = _optuna_trials(sweep_dir)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    for t, spec in zip(trials, specs):
        assert spec["trial_id"] == f"s{t.number:03d}" and t.value == pytest.approx(_score(spec))
        assert t.params["lr"] == spec["config"]["lr"] and set(t.params) == set(AXES)


def _lines_of_last_ask(path):
    """(byte offset where each line starts, index of the line that created the last trial)."""
    data = path.read_bytes()
    starts, at = [], 0
    for line in data.splitlines(keepends=True):
        starts.append(at)
        at += len(line)
    ops = [json.loads(x) for x in data.splitlines()]
    created = max(i for i, op in enumerate(ops) if "datetime_start" in op and "study_id" in op)
    return starts, created


@pytest.mark.parametrize("cut", ["mid_line", "between_lines"])
def test_a_kill_that_cut_an_ask_short_loses_and_repeats_nothing(tmp_path, cut):
    job = _job(tmp_path)
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    first = _searcher(job, sweep_dir)
    s000 = first.suggest("ray-0")["trial"]
    first.on_trial_complete("ray-0", {first.metric: _score(s000)})
    first.suggest("ray-1")  # then the kill: as if this append had stopped inside its second line
    path = sweep_dir / "study.journal"
    starts, created = _lines_of_last_ask(path)
    end = starts[created + 2] - (7 if cut == "mid_line" else 0)
    with open(path, "r+b") as f:
        f.truncate(end)

    rows = {"s000": {"trial_id": "s000", "status": "TERMINATED", "micro_f1": _score(s000)}}
    resumed = _searcher(job, sweep_dir, rows)
    specs = []
    while (s := resumed.suggest(f"ray-{len(specs) + 1}")) != resumed.FINISHED:
        specs.append(s["trial"])
        resumed.on_trial_complete(f"ray-{len(specs)}", {resumed.metric: _score(specs[-1])})
    # the cut suggestion never reached Ray: it is handed out once, whole, then the rest up to 4
    assert [s["trial_id"] for s in specs] == ["s001", "s002", "s003"]
    assert path.read_bytes().endswith(b"\n")
    trials = _optuna_trials(sweep_dir)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    assert all(set(t.params) == set(AXES) for t in trials)
    assert trials[0].value == pytest.approx(_score(s000))
    for t, spec in zip(trials[1:], specs):
        assert t.params["lr"] == spec["config"]["lr"] and 1e-5 <= t.params["lr"] <= 1e-3
        assert spec["config"]["warmup_ratio"] in (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
        assert spec["config"]["warmup_ratio"] == pytest.approx(t.params["warmup_ratio"])
    assert len({tuple(t.params.values()) for t in trials}) == 4
