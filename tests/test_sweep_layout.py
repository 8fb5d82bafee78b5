"""The sweep directory's one description (relex.sweep.layout): old sweeps still read, damaged
files are one clear error, and the trial markers do what the runner and callback rely on."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pytest

from relex.errors import RelexError
from relex.sweep.layout import ENTRIES, SweepDir, latest_sweep, write_table


def _old_sweep(root):
    """A sweep written before job.json, labels.json, valid_index.parquet, history.parquet and the
    mean_ap / lineage / config_id columns: trials.parquet alone, two trials."""
    d = root / "old"
    d.mkdir()
    write_table(d / "trials.parquet", pa.table({
        "trial_id": ["t000", "t001"], "status": ["TERMINATED", "ERROR"], "seed": [1, 2],
        "lr": [1e-4, 3e-4], "micro_f1": [61.5, None], "auprc": [70.0, None]}))
    return d


def test_an_old_sweep_reads_with_the_files_it_lacks_empty(tmp_path):
    sweep = SweepDir(_old_sweep(tmp_path)).require_results()
    assert sweep.job() == {} and sweep.labels() == {}
    assert sweep.valid_index() is None
    assert sweep.history().empty and "micro_f1" in sweep.history().columns
    assert [r["trial_id"] for r in sweep.trial_rows()] == ["t000", "t001"]
    assert sweep.probs("t000") is None


def test_an_old_sweep_goes_through_the_leaderboard_and_the_report_loader(tmp_path):
    from relex.analysis.sweep_results import load_sweep
    from relex.analysis.leaderboard import plain_text
    from relex.leaderboard import load_rows

    d = _old_sweep(tmp_path)
    res = load_sweep(d)
    assert list(res.scored["trial_id"]) == ["t000"]
    assert res.valid is None and "valid_index.parquet" in res.valid_note
    text = plain_text(load_rows(d))
    first, second = text.splitlines()[1:3]
    assert first.startswith("1") and "61.50" in first and "t000" in first
    assert second.startswith("-") and "t001" in second and "ERROR" in second


def test_missing_and_damaged_results_are_one_clear_error(tmp_path):
    with pytest.raises(RelexError, match="no such sweep directory"):
        SweepDir(tmp_path / "nowhere").require_results()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RelexError, match="no trials.parquet"):
        SweepDir(empty).require_results()
    (empty / "trials.parquet").write_bytes(b"not parquet")
    with pytest.raises(RelexError, match=r"trials\.parquet: cannot read"):
        SweepDir(empty).trial_rows()
    with pytest.raises(RelexError, match=r"trials\.parquet: cannot read"):
        SweepDir(empty).trials()


def test_probabilities_come_from_the_directory_before_a_recorded_path(tmp_path):
    sweep = SweepDir(tmp_path / "s")
    elsewhere = SweepDir(tmp_path / "cluster").write_probs("t000", np.full((2, 3), 0.5))
    assert sweep.probs("t000", str(elsewhere)).tolist() == [[0.5] * 3] * 2  # only the recorded one
    sweep.write_probs("t000", np.full((2, 3), 0.25))
    got = sweep.probs("t000", str(elsewhere))
    assert got.dtype == np.float32 and got.tolist() == [[0.25] * 3] * 2
    (sweep.probs_file("t001")).write_bytes(b"garbage")
    with pytest.raises(RelexError, match=r"t001\.npy: cannot read validation probabilities"):
        sweep.probs("t001")


def test_trial_markers_written_read_and_reopened(tmp_path):
    trial = SweepDir(tmp_path).trial("t003")
    trial.path.mkdir(parents=True)
    assert trial.error() is None and trial.summary() == {} and trial.attempts() == 0
    trial.write_error("ValueError: lr must be positive")
    trial.mark_final("ERROR")
    assert trial.error() == "ValueError: lr must be positive" and trial.is_final()
    trial.reopen()
    assert trial.error() is None and not trial.is_final()
    trial.write_summary({"trial_id": "t003", "micro_f1": 55.0})
    assert trial.summary()["micro_f1"] == 55.0


def test_every_path_of_a_sweep_is_an_entry_the_runner_may_clear(tmp_path):
    sweep = SweepDir(tmp_path)
    named = [sweep.job_file, sweep.labels_file, sweep.valid_index_file, sweep.folds_file,
             sweep.trials_file, sweep.history_file, sweep.results_dir, sweep.asha_state_file, sweep.asha_decisions_dir, sweep.usage_file,
             sweep.lease_file, sweep.valid_probs_dir, sweep.oof_dir, sweep.trials_dir, sweep.ray_dir,
             sweep.cache_dir, sweep.study_file, *(sweep.tracker_dir(t) for t in ("tensorboard", "mlflow", "wandb"))]
    assert {p.name for p in named} == ENTRIES
    assert sweep.probs_file("t1").parent == sweep.valid_probs_dir
    assert sweep.trial("t1").path.parent == sweep.trials_dir
    assert sweep.fragment("t1").parent == sweep.results_dir


def test_latest_sweep_is_the_most_recently_updated(tmp_path):
    with pytest.raises(RelexError, match="no sweep results found"):
        latest_sweep(tmp_path)
    a, b = _old_sweep(tmp_path), tmp_path / "newer"
    b.mkdir()
    (b / "trials.parquet").write_bytes((a / "trials.parquet").read_bytes())
    os.utime(a / "trials.parquet", (1_000_000, 1_000_000))
    assert latest_sweep(tmp_path) == b
