"""`relex leaderboard`: ranking, formats, defaults and errors; the Parquet files it reads."""

from __future__ import annotations

import csv
import io
import os
import time

import pyarrow.parquet as pq
import pytest

from relex.cli import main
from relex.config import TrialConfig
from relex.analysis.leaderboard import TECHNIQUES, rank
from relex.sweep.layout import SweepDir
from relex.sweep.results import HISTORY_FILE, TRIALS_FILE, ResultsWriter


def _row(tid, status, f1, **cfg):
    c = TrialConfig.from_dict(cfg).to_dict()
    return {"trial_id": tid, "status": status, **c, "micro_f1": f1,
            "auprc": None if f1 is None else f1 / 2, "accuracy": 70.0, "val_loss": 1.0,
            "best_step": 10, "best_epoch": 1.0, "epochs_run": 2, "wall_s": 75.0, "node": "10.0.0.1",
            "gpu": "0", "error": "ValueError: boom" if status == "ERROR" else None,
            "checkpoint": f"/x/{tid}/run/best"}


@pytest.fixture
def sweep_dir(tmp_path):
    d = tmp_path / "artifacts" / "demo"
    w = ResultsWriter(d)
    w.set_trial(_row("t000", "TERMINATED", 41.5, head="cls"))
    w.set_trial(_row("t001", "STOPPED_EARLY", 12.25, head="marker", erpe=True, fgm=1.0))
    w.set_trial(_row("t002", "ERROR", None, head="rbert", loss="focal"))
    w.set_trial(_row("t003", "TERMINATED", 63.0, head="marker", rdrop=2.0, llrd=0.9, hnm=0.3))
    w.set_trial(_row("t004", "TERMINATED", float("nan"), head="cls"))  # never a real score
    for it in (1, 2):
        w.add_history({"trial_id": "t000", "iteration": it, "step": 5 * it, "epoch": 0.5 * it,
                       "micro_f1": 10.0 * it, "auprc": 1.0, "accuracy": 2.0, "val_loss": 3.0,
                       "lr": 1e-4, "train_loss": 0.5, "is_best": True})
    w.flush()
    return d


def test_parquet_columns(sweep_dir):
    trials = pq.read_table(sweep_dir / TRIALS_FILE)
    names = set(trials.column_names)
    assert {"trial_id", "status", "micro_f1", "auprc", "accuracy", "val_loss", "best_step",
            "best_epoch", "epochs_run", "wall_s", "node", "gpu", "error", "checkpoint"} <= names
    assert set(TrialConfig.field_names()) <= names
    assert trials.num_rows == 5
    assert str(trials.schema.field("erpe").type) == "bool"
    assert str(trials.schema.field("lr").type) == "double"
    assert str(trials.schema.field("batch_size").type) == "int64"
    hist = pq.read_table(sweep_dir / HISTORY_FILE)
    assert {"trial_id", "step", "epoch", "micro_f1", "auprc", "accuracy", "val_loss", "lr",
            "train_loss"} <= set(hist.column_names)
    assert hist.column("step").to_pylist() == [5, 10]


def test_writer_reload_replaces_replayed_rows(sweep_dir):
    w = ResultsWriter(sweep_dir)
    assert w.finished() == {"t000", "t001", "t002", "t003", "t004"}
    w.add_history({"trial_id": "t000", "iteration": 2, "step": 10, "micro_f1": 99.0})
    w.flush()
    hist = SweepDir(sweep_dir).history_rows()
    assert len(hist) == 2 and hist[1]["micro_f1"] == 99.0


def test_rank_orders_by_micro_f1_unscored_last(sweep_dir):
    rows = pq.read_table(sweep_dir / TRIALS_FILE).to_pylist()
    assert [r["trial_id"] for r in rank(rows)] == ["t003", "t000", "t001", "t002", "t004"]


def test_csv_format(sweep_dir, capsys):
    assert main(["leaderboard", str(sweep_dir), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["trial_id"] for r in rows] == ["t003", "t000", "t001", "t002", "t004"]
    assert [r["rank"] for r in rows] == ["1", "2", "3", "", ""]
    assert float(rows[0]["micro_f1"]) == 63.0 and rows[0]["rdrop"] == "2.0"
    assert rows[3]["status"] == "ERROR" and rows[3]["micro_f1"] == ""
    for col in ("backbone", *TECHNIQUES, "micro_f1", "auprc", "accuracy", "best_step", "status", "wall_s"):
        assert col in rows[0]


def test_markdown_and_top(sweep_dir, capsys):
    assert main(["leaderboard", str(sweep_dir), "--format", "markdown", "--top", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| rank | trial | backbone | marker | head | erpe | fgm | awp | rdrop | llrd | ema | hnm | loss |")
    assert "micro-F1" in lines[0] and "AUPRC" in lines[0]
    assert set(lines[1]) <= set("|-")
    assert len(lines) == 4  # header, rule, 2 rows
    assert lines[2].startswith("| 1 | t003 |") and "| 63.00 |" in lines[2]
    assert lines[3].startswith("| 2 | t000 |")


def test_table_off_a_terminal_is_plain(sweep_dir, capsys):
    assert main(["leaderboard", str(sweep_dir)]) == 0
    out = capsys.readouterr().out
    assert not any(ch in out for ch in "│┃━─╇\x1b")
    lines = out.strip().splitlines()
    assert lines[0].split()[:3] == ["rank", "trial", "backbone"]
    assert lines[1].split()[:2] == ["1", "t003"] and "63.00" in lines[1]
    assert "1m15s" in lines[1]
    assert "ERROR" in out and "STOPPED_EARLY" in out


def test_default_is_the_most_recent_sweep(tmp_path, monkeypatch, capsys, sweep_dir):
    other = tmp_path / "artifacts" / "older"
    w = ResultsWriter(other)
    w.set_trial(_row("t000", "TERMINATED", 1.0))
    w.flush()
    old = time.time() - 3600
    os.utime(other / TRIALS_FILE, (old, old))
    monkeypatch.chdir(tmp_path)
    assert main(["leaderboard", "--format", "csv"]) == 0
    assert "t003" in capsys.readouterr().out


@pytest.mark.parametrize("setup", ["missing", "empty_dir", "empty_table", "no_artifacts"])
def test_errors_are_one_line_exit_2(tmp_path, monkeypatch, capsys, setup):
    target = tmp_path / "sw"
    if setup == "empty_dir":
        target.mkdir()
    if setup == "empty_table":
        ResultsWriter(target).flush()
    argv = ["leaderboard", str(target)]
    if setup == "no_artifacts":
        monkeypatch.chdir(tmp_path)
        argv = ["leaderboard"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("relex: error:") and len(err.strip().splitlines()) == 1


def test_nan_never_shown_as_a_score(sweep_dir, capsys):
    assert main(["leaderboard", str(sweep_dir), "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "nan" not in out.lower()
    row = [ln for ln in out.splitlines() if "| t004 |" in ln][0]
    assert row.startswith("| - | t004 |")


def test_a_sweeps_own_axes_get_columns_of_their_own():
    from relex.analysis.leaderboard import columns, markdown

    rows = [_row("t000", "TERMINATED", 50.0, lr=1e-3, seed=1), _row("t001", "TERMINATED", 60.0, lr=3e-3, seed=1)]
    keys = [k for _, k, _ in columns(rows)]
    assert "lr" in keys and "seed" not in keys  # seed is the same in every row
    assert keys.index("loss") < keys.index("lr") < keys.index("micro_f1")
    table = markdown(rows).splitlines()
    assert "| lr |" in table[0]
    assert "| 0.003 |" in table[2] and "| 0.001 |" in table[3]


def test_checkpoint_column_says_which_trials_still_have_one(sweep_dir, tmp_path, capsys):
    from relex.analysis.leaderboard import plain_text

    rows = pq.read_table(sweep_dir / TRIALS_FILE).to_pylist()
    kept = tmp_path / "t003" / "best"
    kept.mkdir(parents=True)
    (kept / "model.safetensors").write_bytes(b"x")
    for r in rows:
        if r["trial_id"] == "t003":
            r["checkpoint"] = str(kept)
    lines = plain_text(rows).strip().splitlines()
    assert lines[0].split()[-1] == "ckpt"
    by_trial = {line.split()[1]: line.split()[-1] for line in lines[1:]}
    assert by_trial["t003"] == "yes"  # on disk
    assert by_trial["t000"] == "-"  # its directory (/x/t000/run/best) is gone
    # a checkpoint the sweep deleted says which limit took it; CSV has the whole reason
    for r in rows:
        if r["trial_id"] == "t000":
            r["checkpoint_dropped"] = "checkpoint_budget 50 GB: full, 49.6 GB held by better-ranked, running or failed trials"
    lines = plain_text(rows).strip().splitlines()
    assert "dropped (checkpoint_budget 50 GB)" in next(ln for ln in lines if " t000 " in ln)
    from relex.analysis.leaderboard import csv_text

    by_id = {r["trial_id"]: r for r in csv.DictReader(io.StringIO(csv_text(rows)))}
    assert by_id["t000"]["checkpoint_dropped"].endswith("running or failed trials")
    assert by_id["t003"]["checkpoint"] == str(kept) and by_id["t003"]["checkpoint_dropped"] == ""


def test_terminal_table_puts_shared_settings_in_its_caption():
    """On a terminal the columns are what tells the trials apart; settings every trial shares
    (here backbone, fgm, loss, ...) move to the caption, where they are still read. Markdown and
    CSV keep every column."""
    from rich.console import Console

    from relex.analysis.leaderboard import csv_text, rich_table

    rows = [_row("t000", "TERMINATED", 50.0, head="cls", lr=1e-3),
            _row("t001", "TERMINATED", 60.0, head="marker", lr=3e-3)]
    out = io.StringIO()
    Console(file=out, width=200, force_terminal=False).print(rich_table(rows, title="demo"))
    text = out.getvalue()
    header = next(line for line in text.splitlines() if "trial" in line)
    assert "head" in header and "lr" in header and "fgm" not in header and "backbone" not in header
    assert "all trials: backbone=relex/tiny" in text and "fgm=0" in text and "loss=ce" in text
    assert "head=" not in text.split("all trials:")[1]  # what differs is a column, not the caption
    assert "fgm" in next(csv.reader(io.StringIO(csv_text(rows))))  # CSV keeps every column
