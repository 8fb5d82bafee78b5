"""A sweep's own bookkeeping at scale, without Ray: the results are written in O(n) (rows are
counted, not timed), fragments and compactions lose nothing at any crash point and read back as
written, and the live table at 1,000 trials shows the counts, the best and the running trials
and redraws only after a change."""

from __future__ import annotations

import io
import os
import re

import pytest

from relex.analysis.leaderboard import live_table, plain_text
from relex.sweep import callback as callback_mod
from relex.sweep import layout
from relex.sweep import results as results_mod
from relex.sweep.callback import SweepCallback
from relex.sweep.job import load_job
from relex.sweep.layout import SweepDir
from relex.sweep.results import ResultsWriter, Tables
from relex.data.sample import SAMPLE_PATH

EVALS = 3  # evaluations per stub trial
AT_ONCE = 8  # trials running at once


class FakeTrial:
    def __init__(self, tid):
        self.trial_id = "ray_" + tid
        self.config = {"trial": tid}  # as Tune carries a grid trial


def _job(tmp_path, n):
    p = tmp_path / f"job{n}.py"
    lrs = [round(1e-5 * (i + 1), 8) for i in range(n)]
    p.write_text("from relex.sweep import Sweep, grid\n"
                 f"sweep = Sweep(name='scale', train={str(SAMPLE_PATH)!r},\n"
                 f"  space=dict(lr=grid({lrs!r})), asha=dict(grace_period=100))\n")
    return load_job(p)


def _result(it, f1):
    return {"training_iteration": it, "micro_f1": f1, "auprc": 50.0, "accuracy": 60.0,
            "val_loss": 1.0, "train_loss": 2.0, "lr": 1e-4, "step": 10 * it, "epoch": 0.5 * it,
            "is_best": True, "best_micro_f1": f1, "best_auprc": 50.0, "best_accuracy": 60.0,
            "best_val_loss": 1.0, "best_step": 10 * it, "best_epoch": 0.5 * it, "attempt": 1,
            "elapsed_s": 3.0 * it, "node": "10.0.0.2", "node_id": "n1", "gpu": "0"}


def _score(tid: str, it: int) -> float:
    return float((int(tid[1:]) * 37) % 100) + it


def _stub_sweep(cb: SweepCallback, trial_ids: list[str]) -> None:
    """The callback's events of a sweep that runs AT_ONCE trials at a time, each reporting
    EVALS evaluations, interleaved as Tune delivers them."""
    for start in range(0, len(trial_ids), AT_ONCE):
        batch = [FakeTrial(t) for t in trial_ids[start:start + AT_ONCE]]
        for t in batch:
            cb.on_trial_start(0, [], t)
        for it in range(1, EVALS + 1):
            for t in batch:
                tid = t.config["trial"]
                cb.on_trial_result(0, [], t, _result(it, _score(tid, it)))
        for t in batch:
            cb.on_trial_complete(0, [], t)
    cb.on_experiment_end([])


class WriteLog:
    """Every file the results writer writes, with its rows: the compacted Parquet files and the
    fragments (a trial's row and its evaluations)."""

    def __init__(self, monkeypatch):
        self.writes: list[tuple[str, int]] = []
        real_table, real_fragment = results_mod.write_table, SweepDir.write_fragment

        def table(path, table):
            self.writes.append((path.name, table.num_rows))
            real_table(path, table)

        def fragment(sweep, trial_id, row, history):
            self.writes.append(("fragment", (row is not None) + len(history)))
            real_fragment(sweep, trial_id, row, history)

        monkeypatch.setattr(results_mod, "write_table", table)
        monkeypatch.setattr(SweepDir, "write_fragment", fragment)

    def rows(self) -> int:
        return sum(n for _, n in self.writes)

    def count(self, name: str) -> int:
        return sum(1 for w, _ in self.writes if w == name)


def _rows_written(tmp_path, monkeypatch, n: int) -> tuple[WriteLog, SweepDir]:
    job = _job(tmp_path, n)
    sweep_dir = tmp_path / f"sw{n}"
    log = WriteLog(monkeypatch)
    cb = SweepCallback(job, sweep_dir, ResultsWriter(sweep_dir), None, console=None)
    _stub_sweep(cb, [t.trial_id for t in job.trials])
    monkeypatch.undo()
    return log, SweepDir(sweep_dir)


def test_results_are_written_in_linear_rows_not_quadratic(tmp_path, monkeypatch):
    small, _ = _rows_written(tmp_path, monkeypatch, 100)
    big, sweep = _rows_written(tmp_path, monkeypatch, 200)
    # rows a trial's fragments take at most: its row as it starts (flushed with another trial's
    # result), at each of its EVALS evaluations and at its end, and its evaluations so far each
    # time (1 + 2 + 3, then 3)
    per_trial = (EVALS + 2) + EVALS * (EVALS + 1) // 2 + EVALS
    fragments = sum(n for name, n in big.writes if name == "fragment")
    assert fragments <= per_trial * 200
    assert big.rows() <= 3 * fragments  # compactions write at most about twice the fragments
    # twice the trials, about twice the rows (rewriting the files whole at every flush: ~4x)
    assert 1.8 <= big.rows() / small.rows() <= 2.3
    # the compacted files are rewritten on a doubling schedule: a handful of times, not per flush
    assert big.count("trials.parquet") <= 12 and big.count("history.parquet") <= 12
    # the end compacts everything: no fragment left, every trial and evaluation there
    assert sweep.fragments() == {}
    rows = sweep.trial_rows()
    assert len(rows) == 200 and {r["status"] for r in rows} == {"TERMINATED"}
    assert len(sweep.history_rows()) == 200 * EVALS
    assert {r["trial_id"]: r["micro_f1"] for r in rows} == {
        r["trial_id"]: _score(r["trial_id"], EVALS) for r in rows}


def _row(tid, status="RUNNING", **kw):
    return {"trial_id": tid, "status": status, **kw}


def _hist(tid, it, f1):
    return {"trial_id": tid, "iteration": it, "step": it, "micro_f1": f1}


def test_readers_overlay_fragments_on_the_compacted_files_last_write_wins(tmp_path):
    w = ResultsWriter(tmp_path / "sw")
    sweep = w.sweep
    w.set_trial(_row("t000", micro_f1=1.0))
    w.add_history(_hist("t000", 1, 1.0))
    w.flush()  # nothing compacted yet: this one compacts
    assert sweep.trials_file.exists() and sweep.fragments() == {}
    w.set_trial(_row("t000", "TERMINATED", micro_f1=2.0))
    w.add_history(_hist("t000", 2, 2.0))
    w.flush()  # one fragment, one compacted row: it stays a fragment
    assert list(sweep.fragments()) == ["t000"]
    # the compacted file still says RUNNING; readers see the fragment's row
    assert [r["status"] for r in layout.read_rows(sweep.trials_file)] == ["RUNNING"]
    assert [(r["status"], r["micro_f1"]) for r in sweep.trial_rows()] == [("TERMINATED", 2.0)]
    assert [(h["iteration"], h["micro_f1"]) for h in sweep.history_rows()] == [(1, 1.0), (2, 2.0)]
    assert list(sweep.trials()["status"]) == ["TERMINATED"]
    assert list(sweep.history()["iteration"]) == [1, 2]
    # a replayed evaluation replaces the earlier one; other trials are untouched
    w.add_history(_hist("t000", 2, 5.0))
    w.set_trial(_row("t001", micro_f1=0.5))
    w.flush()
    assert [(h["iteration"], h["micro_f1"]) for h in sweep.history_rows()] == [(1, 1.0), (2, 5.0)]
    assert [r["trial_id"] for r in sweep.trial_rows()] == ["t000", "t001"]
    # a resumed driver starts from what is on disk, fragments included
    again = ResultsWriter(sweep.path)
    assert again.trials == {r["trial_id"]: r for r in sweep.trial_rows()}
    assert again.finished() == {"t000"} and [h["micro_f1"] for h in again.history_rows("t000")] == [1.0, 5.0]
    again.compact()
    assert sweep.fragments() == {}
    assert sweep.trial_rows() == list(again.trials.values())
    assert sweep.has_results() and layout.latest_sweep(tmp_path) == sweep.path


@pytest.mark.parametrize("fail_at", ["history.parquet", "unlink"])
def test_a_crash_inside_a_compaction_loses_nothing(tmp_path, monkeypatch, fail_at):
    """Killed while compacting: after trials.parquet is replaced but before history.parquet is,
    or after both but before the absorbed fragments are deleted."""
    w = ResultsWriter(tmp_path / "sw")
    for i in range(3):
        w.set_trial(_row(f"t00{i}", "TERMINATED", micro_f1=float(i)))
        w.add_history(_hist(f"t00{i}", 1, float(i)))
        w.flush()
    w.set_trial(_row("t000", "TERMINATED", micro_f1=9.0))
    w.add_history(_hist("t000", 2, 9.0))
    w.flush()  # a fragment over the compacted rows
    expected_trials, expected_history = w.sweep.trial_rows(), w.sweep.history_rows()
    assert any(r["micro_f1"] == 9.0 for r in expected_trials)

    class Killed(BaseException):
        pass

    real_write, real_unlink = results_mod.write_table, type(w.sweep.path).unlink

    def write(path, table):
        if fail_at == "history.parquet" and path.name == fail_at:
            raise Killed
        real_write(path, table)

    def unlink(path, missing_ok=False):
        if fail_at == "unlink" and path.parent == w.sweep.results_dir:
            raise Killed
        real_unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(results_mod, "write_table", write)
    monkeypatch.setattr(type(w.sweep.path), "unlink", unlink)
    with pytest.raises(Killed):
        w.compact()
    monkeypatch.undo()
    assert w.sweep.trial_rows() == expected_trials
    assert w.sweep.history_rows() == expected_history
    resumed = ResultsWriter(w.sweep.path)
    assert list(resumed.trials.values()) == expected_trials
    resumed.compact()
    assert w.sweep.fragments() == {}
    assert layout.read_rows(w.sweep.trials_file) == expected_trials
    assert layout.read_rows(w.sweep.history_file) == expected_history


def test_a_reader_that_meets_a_compaction_reads_again(tmp_path, monkeypatch):
    """Another process (``relex leaderboard`` on a running sweep) lists a fragment, then the
    driver compacts and deletes it before the reader opens it: the read starts over."""
    w = ResultsWriter(tmp_path / "sw")
    w.set_trial(_row("t000", micro_f1=1.0))
    w.flush()
    w.set_trial(_row("t000", "TERMINATED", micro_f1=2.0))
    w.flush()
    assert list(w.sweep.fragments()) == ["t000"]
    real = layout._read_fragment
    compacted = []

    def read(path):
        if not compacted:
            compacted.append(path)
            w.compact()  # the fragment is absorbed and deleted under the reader
        return real(path)

    monkeypatch.setattr(layout, "_read_fragment", read)
    assert [(r["status"], r["micro_f1"]) for r in w.sweep.trial_rows()] == [("TERMINATED", 2.0)]
    assert compacted and not compacted[0].exists()


# ----------------------------------------------------------------------------- live table
def _thousand_rows():
    rows = []
    for i in range(1000):
        tid = f"t{i:04d}"
        if i < 700:
            status = "TERMINATED"
        elif i < 760:
            status = "STOPPED_EARLY"
        elif i < 772:
            status = "ERROR"
        elif i < 872:
            status = "RUNNING"
        else:
            status = "PENDING"
        f1 = None if status in ("ERROR", "PENDING") else float((i * 7919) % 1000) / 10
        rows.append({"trial_id": tid, "status": status, "micro_f1": f1, "lr": 1e-5 * (1 + i % 13),
                     "backbone": "relex/tiny", "seed": 42, "wall_s": 10.0 + i % 50})
    return rows


def _text(renderable, width=250):
    from rich.console import Console

    console = Console(file=io.StringIO(), width=width, record=True, force_terminal=False)
    console.print(renderable)
    return console.export_text()


def test_the_live_table_at_a_thousand_trials_shows_counts_best_and_running():
    rows = _thousand_rows()
    text = _text(live_table(rows, name="big", total=1200, top=20, running=10))
    assert ("big: 772/1200 trials finished (700 terminated, 60 stopped early, 12 error) · "
            "100 running · 328 waiting") in text
    body = [[c.strip() for c in ln.strip("│ ").split("│")] for ln in text.splitlines()
            if re.match(r"^│\s*(\d+|-)\s*│\s*t\d{4}\b", ln)]
    assert len(body) == 30  # the best 20, then 10 running
    ranked = sorted((r for r in rows if r["micro_f1"] is not None), key=lambda r: (-r["micro_f1"], r["trial_id"]))
    places = {r["trial_id"]: i for i, r in enumerate(ranked, 1)}
    shown = [(int(cells[0]), cells[1]) for cells in body]
    assert [t for _, t in shown[:20]] == [r["trial_id"] for r in ranked[:20]]
    running_below = [r["trial_id"] for r in ranked[20:] if r["status"] == "RUNNING"][:10]
    assert [t for _, t in shown[20:]] == running_below
    assert all(rank == places[t] for rank, t in shown)  # ranks among all trials, not the shown
    assert all("RUNNING" in cells for cells in body[20:])
    words = " ".join(text.split())  # the caption wraps
    assert "best 20 and 10 of the running shown; 970 more (relex leaderboard lists all)" in words
    assert "all shown: backbone=relex/tiny" in words


def test_the_live_table_redraws_only_after_a_change(tmp_path, monkeypatch):
    from rich.console import Console

    monkeypatch.setattr(callback_mod, "REDRAW_S", 3600.0)  # only the explicit redraws below
    drawn = []

    def counting(rows, **kw):
        drawn.append(len(rows))
        return live_table(rows, **kw)

    job = _job(tmp_path, 30)
    sweep_dir = tmp_path / "sw"
    out = io.StringIO()
    cb = SweepCallback(job, sweep_dir, ResultsWriter(sweep_dir), None,
                       console=Console(file=out, force_terminal=True, width=250),
                       tables=Tables(live=counting, plain=plain_text))
    cb.setup()
    assert drawn == [0]
    cb.redraw_if_changed()
    assert drawn == [0]  # nothing changed: no redraw
    trials = [FakeTrial(t.trial_id) for t in job.trials[:5]]
    for t in trials:  # many results between two redraws cost one redraw
        cb.on_trial_start(0, [], t)
        cb.on_trial_result(0, [], t, _result(1, 10.0))
    assert drawn == [0]  # results never draw on the driver's thread
    cb.redraw_if_changed()
    cb.redraw_if_changed()
    assert drawn == [0, 5]
    cb.on_experiment_end([])
    assert drawn == [0, 5, 5]  # the final state, drawn once as the sweep ends
    assert "scale: 0/30 trials finished · 5 running · 25 waiting" in out.getvalue()


# ---------------------------------------------------------------------------------- report
def test_the_report_of_a_large_sweep_lists_the_best_configurations_and_checks_the_best_trials(
        tmp_path, monkeypatch):
    """At a thousand trials the report summarises: the configurations table keeps the best
    TOP_CONFIGS_LISTED (a note counts the rest), and ties are looked for in the best
    TOP_HONESTY trials only. The limits are
    shrunk here so that twelve configurations stand for a thousand."""
    from synthetic_sweep import make_sweep

    from relex import metrics as M
    from relex.analysis import report as R

    monkeypatch.setattr(R, "TOP_CONFIGS_LISTED", 5)
    monkeypatch.setattr(R, "TOP_HONESTY", 4)
    d = make_sweep(tmp_path, axes={"lr": [1e-5 * (i + 1) for i in range(12)]}, seeds=[1],
                   effect=lambda c: 1e5 * c["lr"])
    looked_at = []
    real = M.has_ties

    def has_ties(probs):
        looked_at.append(probs)
        return real(probs)

    monkeypatch.setattr(M, "has_ties", has_ties)
    doc = R.build_report(d)
    configs = next(s for s in doc.sections if s.anchor == "configs")
    table = next(b for b in configs.blocks if hasattr(b, "rows"))
    assert len(table.rows) == 5 and table.rows[0][1] == "lr=0.00012"  # the best first
    assert any(getattr(b, "text", "").startswith("The best 5 of 12 configurations;") for b in configs.blocks)
    honesty = next(s for s in doc.sections if s.anchor == "honesty")
    texts = [getattr(b, "text", "") for b in honesty.blocks]
    assert "(4 trials with saved probabilities checked)" in " ".join(texts)
    assert "The 4 best trials with saved probabilities were checked, of 12" in " ".join(texts)
    # the best 4 were looked at for ties (an AUPRC pass only where one is found), no other
    sweep = SweepDir(d)
    best = sorted(sweep.trial_rows(), key=lambda r: -r["micro_f1"])[:4]
    assert len(looked_at) == 4
    assert all((p == sweep.probs(r["trial_id"])).all() for p, r in zip(looked_at, best))


def test_the_effects_plot_of_an_axis_with_many_values_shows_the_largest_in_grid_order(
        tmp_path, monkeypatch):
    """A hundred values of one axis would make a forest plot no one can read: the plot keeps
    the TOP_EFFECTS_PLOTTED largest effects by micro-F1 in grid order, the table lists all."""
    pytest.importorskip("matplotlib")
    from synthetic_sweep import make_sweep

    from relex.analysis import plots as P
    from relex.analysis import report as R

    monkeypatch.setattr(R, "TOP_EFFECTS_PLOTTED", 4)
    lrs = [1e-5 * (i + 1) for i in range(12)]
    large = {3: 5.0, 7: -6.0, 9: 4.0, 11: -3.0}  # lr / 1e-5 -> its effect; the rest: none
    d = make_sweep(tmp_path, axes={"lr": lrs}, seeds=[1, 2, 3], noise=0.05,
                   effect=lambda c: large.get(round(c["lr"] * 1e5), 0.0))
    plotted = []
    real = P.effects
    monkeypatch.setattr(P, "effects", lambda rows, titles: plotted.extend(rows) or real(rows, titles))
    doc = R.build_report(d, plots=True)
    effects = next(s for s in doc.sections if s.anchor == "effects")
    table = next(b for b in effects.blocks if hasattr(b, "rows"))
    assert len(table.rows) == 11  # every value against the reference
    assert [label for label, _ in plotted] == [
        f"lr: {R.fmt_value(v)} vs {R.fmt_value(lrs[0])}" for v in (3e-5, 7e-5, 9e-5, 1.1e-4)]
    figure = next(b for b in effects.blocks if b.__class__.__name__ == "Figure")
    assert "The 4 largest of 11 effects by micro-F1; the table lists all." in figure.caption


def test_ties_are_found_in_any_class_column():
    import numpy as np

    from relex import metrics as M

    probs = np.array([[0.1, 0.9], [0.2, 0.8], [0.3, 0.7]])
    assert not M.has_ties(probs)
    probs[2, 1] = 0.8  # a tie in the second column only
    assert M.has_ties(probs)


# ------------------------------------------------------------------------------------ ASHA
def _asha_sweep(tmp_path, n: int, monkeypatch) -> tuple[list[tuple[str, int]], "Rungs"]:
    """n trials reaching rungs 1 and 2 (reduction factor 2); the ASHA files written, with
    their sizes."""
    from relex.sweep import asha

    written = []
    real = asha.atomic_write_text

    def counted(path, text):
        written.append((path.name, len(text)))
        real(path, text)

    monkeypatch.setattr(asha, "atomic_write_text", counted)
    rungs = asha.Rungs(grace_period=1, reduction_factor=2, path=tmp_path / f"a{n}" / "asha_state.json")
    for i in range(n):
        for it in (1, 2):
            if rungs.decide(f"t{i:04d}", it, float((i * 37) % 100)) == asha.STOP:
                break
    rungs.compact()
    monkeypatch.undo()
    return written, rungs


def test_asha_state_is_written_in_linear_bytes_and_reloads_whole(tmp_path, monkeypatch):
    from relex.sweep.asha import Rungs

    small, _ = _asha_sweep(tmp_path, 100, monkeypatch)
    big, rungs = _asha_sweep(tmp_path, 200, monkeypatch)
    total = lambda w: sum(n for _, n in w)  # noqa: E731
    # twice the trials, about twice the bytes (the whole state at every decision: ~4x)
    assert total(big) / total(small) < 2.5
    assert sum(name == "asha_state.json" for name, _ in big) <= 12  # a doubling schedule
    assert not list(rungs.decisions.iterdir())  # compact() left no decision file
    again = Rungs(grace_period=1, reduction_factor=2, path=rungs.path)
    assert (again.records, again.stopped) == (rungs.records, rungs.stopped)


def test_asha_decisions_since_the_state_survive_a_crash_and_are_not_doubled(tmp_path, monkeypatch):
    from relex.sweep import asha

    path = tmp_path / "asha_state.json"
    rungs = asha.Rungs(grace_period=1, reduction_factor=2, path=path)
    for i in range(6):  # compacted after the 1st and 3rd: the last three stay files
        rungs.decide(f"t{i}", 1, float(i % 3))
    assert list(rungs.decisions.iterdir())  # decisions beside the state, not yet folded in
    # killed as it reloads: the state and the decision files since read back as decided
    resumed = asha.Rungs(grace_period=1, reduction_factor=2, path=path)
    assert (resumed.records, resumed.stopped) == (rungs.records, rungs.stopped)
    assert resumed.decide("t3", 1, 99.0) == rungs.decide("t3", 1, 99.0)  # a replay: the recorded decision

    class Killed(BaseException):
        pass

    real_unlink = type(path).unlink

    def unlink(p, missing_ok=False):
        raise Killed  # after the state is written, before the absorbed files go

    monkeypatch.setattr(type(path), "unlink", unlink)
    with pytest.raises(Killed):
        rungs.compact()
    monkeypatch.setattr(type(path), "unlink", real_unlink)
    again = asha.Rungs(grace_period=1, reduction_factor=2, path=path)
    assert again.records == rungs.records and again.stopped == rungs.stopped  # none twice
    assert [r[0] for r in again.records["1"]] == [f"t{i}" for i in range(6)]  # arrival order kept


def test_a_grid_sweeps_tuner_carries_trial_ids_and_each_trial_finds_its_spec(tmp_path, monkeypatch):
    """Tune deep-copies a grid_search's whole list once per trial (O(n²) at start-up and on
    resume, for whole specs or ids alike): a grid sweep's ids reach Tune one per trial through a
    queue, and each trial looks its spec up in Prepared."""
    from ray import tune

    from relex.sweep import runner
    from relex.sweep.specs import tune_trial_id, tune_trial_spec
    from relex.sweep.trial import Prepared

    job = _job(tmp_path, 40)
    sweep = SweepDir(tmp_path / "sweep")
    sweep.path.mkdir()
    made = {}

    class RecordingTuner:
        def __init__(self, trainable, *, param_space, tune_config, **kwargs):
            made["space"], made["config"] = param_space, tune_config

    def handed_out() -> list:
        alg, out = made["config"].search_alg, []
        assert made["space"] == {} and made["config"].num_samples == -1  # until the queue ends
        alg.set_search_properties(None, None, {})
        while (s := alg.suggest(f"ray{len(out)}")) != alg.FINISHED:
            out.append(s)
        return out

    monkeypatch.setattr(tune, "Tuner", RecordingTuner)
    runner._tuner(job, sweep.path, None, None, None, concurrent=None)
    assert handed_out() == [{"trial": t.trial_id} for t in job.trials]  # ids only, in order
    # a resume is a new Tune run over the trials without a final result, whatever Tune recorded
    for t in job.trials[:25:2]:
        sweep.trial(t.trial_id).mark_final("TERMINATED")
    runner._tuner(job, sweep.path, None, None, None, concurrent=None)
    assert handed_out() == [{"trial": t.trial_id} for i, t in enumerate(job.trials)
                            if i >= 25 or i % 2]

    prepared = runner._prepare(job, sweep, Prepared(), None)
    for t in job.trials:
        config = {"trial": t.trial_id}  # what Tune hands the trial
        assert tune_trial_spec(config, prepared.specs) == t.spec()
        assert tune_trial_id(config) == t.trial_id
    # a searched trial, and a trial of a sweep written before, carry the whole spec
    whole = {"trial": job.trials[3].spec()}
    assert tune_trial_spec(whole, {}) == job.trials[3].spec()
    assert tune_trial_id(whole) == job.trials[3].trial_id


def test_tune_starts_without_its_default_loggers_and_tags_callbacks_by_name(monkeypatch):
    """Tune's default loggers (CSV, JSON, TensorBoard per trial: three more writes of every result,
    and torch imported in the driver) are off; Ray's usage tag of the callbacks is counted by
    class name, as Ray counts it, without importing every tracker integration."""
    import importlib

    from ray.air._internal import usage
    from ray.tune import Callback
    from ray.tune.logger import CSVLoggerCallback, LoggerCallback

    from relex.sweep import runner

    monkeypatch.delenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", raising=False)
    rays_own = importlib.reload(usage)._count_callbacks

    class Mine(Callback):
        pass

    class MyLogger(LoggerCallback):
        pass

    callbacks = [Mine(), Mine(), MyLogger(), CSVLoggerCallback(), object()]
    runner._lighter_tune_start()
    assert os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] == "1"
    assert usage._count_callbacks is runner._count_callbacks_by_name
    assert runner._count_callbacks_by_name(callbacks) == dict(rays_own(callbacks)) == {
        "CustomCallback": 2, "CustomLoggerCallback": 1, "CSVLoggerCallback": 1}
