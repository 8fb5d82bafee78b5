"""Budgets: durations, GPU-hour accounting across attempts and runs, when a sweep winds down,
the leaderboard's footer, and the job file's checks."""

from __future__ import annotations

import signal

import pytest

from relex.errors import RelexError
from relex.sweep import budget as budget_mod
from relex.sweep.budget import Budget, parse_duration, usage_line


def test_durations():
    assert parse_duration("2h", "j") == 7200
    assert parse_duration("90m", "j") == 5400
    assert parse_duration("1.5h", "j") == 5400
    assert parse_duration("45s", "j") == 45 and parse_duration("45", "j") == 45
    assert parse_duration(30, "j") == 30 and parse_duration(None, "j") is None
    for bad in ("2 hours", "-1h", "0", True, "h"):
        with pytest.raises(RelexError, match="time_budget"):
            parse_duration(bad, "job.py")


def test_gpu_hours_count_each_attempts_time_once_and_persist(tmp_path):
    b = Budget(tmp_path, per_trial=2, resource="GPU", cost_per_gpu_hour=3.0)
    b.add_report("t0", 1, 900)    # 15 min on 2 GPUs
    b.add_report("t0", 1, 1800)   # 15 min more (elapsed is cumulative within an attempt)
    b.add_report("t0", 2, 900)    # a restart: its elapsed starts again
    b.add_report("t1", 1, 1800)
    assert b.hours == pytest.approx(2 * (0.25 + 0.25 + 0.25 + 0.5))
    again = Budget(tmp_path, per_trial=2, resource="GPU")  # a resumed sweep keeps counting
    assert again.hours == pytest.approx(b.hours)
    assert usage_line(tmp_path) == "compute: 2.50 GPU-hours, cost 7.50 at 3 per GPU-hour"
    cpu = Budget(tmp_path, per_trial=1, resource="CPU")
    cpu.add_report("t0", 1, 3600)
    assert usage_line(tmp_path) == "compute: 1.00 CPU-hours"  # no price for CPU time
    assert usage_line(tmp_path / "none") is None


def test_time_budget_of_one_run():
    now = [1000.0]
    b = Budget("/nonexistent", per_trial=1, resource="GPU", time_budget_s=60, clock=lambda: now[0])
    assert b.exhausted() is None
    now[0] += 60
    assert b.exhausted() == "time budget of 1m00s reached"


def test_wind_down_waits_for_running_trials_to_reach_a_checkpoint(tmp_path, monkeypatch):
    sent = []
    monkeypatch.setattr(budget_mod.os, "kill", lambda pid, sig: sent.append(sig))
    b = Budget(tmp_path, per_trial=1, resource="GPU", gpu_hours=1.0)
    b.on_report("t0", {"attempt": 1, "elapsed_s": 1800})
    assert b.exhausted() is None
    b.on_report("t0", {"attempt": 1, "elapsed_s": 3600})  # t0's report uses the budget up
    assert b.exhausted().startswith("budget of 1 GPU-hours reached")
    b.wind_down(["t0", "t1"])  # t0 is at a checkpoint now; t1 must reach its next one
    assert sent == []
    b.wind_down(["t0", "t1", "t2"])  # a trial started meanwhile is not waited for
    assert sent == []
    b.on_report("t1", {"attempt": 1, "elapsed_s": 60})
    b.wind_down(["t0", "t1", "t2"])
    assert sent == [signal.SIGUSR1]
    b.wind_down([])
    assert sent == [signal.SIGUSR1]  # once


def test_job_file_budget_settings(tmp_path):
    from relex.data.sample import SAMPLE_PATH
    from relex.sweep.job import load_job

    job = tmp_path / "j.py"
    job.write_text("from relex.sweep import Sweep\n"
                   f"sweep = Sweep(name='b', train={str(SAMPLE_PATH)!r}, time_budget='2h',\n"
                   "              gpu_hours=12.5, cost_per_gpu_hour=1.21)\n")
    loaded = load_job(job)
    assert loaded.budget == {"time_budget_s": 7200.0, "gpu_hours": 12.5, "cost_per_gpu_hour": 1.21}
    assert loaded.resolved()["budget"] == loaded.budget
    job.write_text(job.read_text().replace("gpu_hours=12.5", "gpu_hours=-1"))
    with pytest.raises(RelexError, match="gpu_hours=-1 is invalid"):
        load_job(job)
