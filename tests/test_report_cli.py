"""`relex report`, `relex leaderboard --by-config` and `relex data stats` from the command line:
every flag, on data where it matters, and the errors."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pandas as pd
import pytest
from synthetic_sweep import make_sweep

from relex.analysis.errors import analyse, marked_segments
from relex.cli import main
from relex.data.sample import SAMPLE_PATH

SAMPLE = str(SAMPLE_PATH)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """fgm +3; head null; every seed-1 cls trial stopped at evaluation 2."""
    return make_sweep(tmp_path_factory.mktemp("cli"), axes={"fgm": [0.0, 1.0], "head": ["cls", "marker"]},
                      seeds=[1, 2, 3], effect=lambda c: 3.0 * c["fgm"],
                      stop=lambda c, s: 2 if (c["head"] == "cls" and s == 1) else None)


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def test_report_table_has_every_section(sweep, capsys):
    rc, out, err = run(capsys, "report", sweep)
    assert rc == 0, err
    for title in ("Summary", "Configurations (seeds grouped)", "Effects of each axis",
                  "Errors of the best configuration", "Learning curves",
                  "Metric honesty: AUPRC and ties", "Cost"):
        assert title in out
    assert "clear effect" in out and "fgm=1 vs 0: +3." in out
    assert "CI includes 0" in out  # the null head axis
    assert not any(ch in out for ch in "\x1b")  # no colour codes off a terminal


def test_report_markdown_effects_and_budget(sweep, capsys):
    rc, out, _ = run(capsys, "report", sweep, "--format", "markdown")
    assert rc == 0
    effects = _section(out, "Effects of each axis")
    fgm = next(ln for ln in effects.splitlines() if ln.startswith("| fgm |"))
    cells = [c.strip() for c in fgm.strip("|").split("|")]
    assert cells[1] == "1 vs 0" and cells[2] == "6"  # 2 heads x 3 seeds, compared at equal budget
    est = float(cells[3].split()[0])
    assert est == pytest.approx(3.0, abs=0.8) and cells[-1] == "better"
    assert "compared at the evaluations both reached" in effects

    rc, out, _ = run(capsys, "report", sweep, "--format", "markdown", "--budget", "finished")
    effects = _section(out, "Effects of each axis")
    fgm = next(ln for ln in effects.splitlines() if ln.startswith("| fgm |"))
    assert [c.strip() for c in fgm.strip("|").split("|")][2] == "5"  # the seed-1 cls pair is out
    assert "only pairs whose trials both ran to the end" in effects
    assert "fgm=1: 1 pair(s) excluded by the budget rule" in effects


def test_report_examples_and_curves_flags(sweep, capsys):
    rc, out, _ = run(capsys, "report", sweep, "--format", "markdown", "--examples", "2", "--curves", "3")
    errors = _section(out, "Errors of the best configuration")
    fp = [ln for ln in errors.splitlines() if ln.startswith("- ")]
    assert len(fp) == 4  # 2 false positives + 2 false negatives
    assert all("**[S:" in ln and "**[O:" in ln for ln in errors.split("\n- ")[1:])
    curves = _section(out, "Learning curves")
    assert len([ln for ln in curves.splitlines() if ln.startswith("| t0")]) == 3
    rc, out, _ = run(capsys, "report", sweep, "--format", "markdown", "--curves", "0", "--examples", "0")
    assert "## Learning curves" not in out
    assert not [ln for ln in _section(out, "Errors of the best configuration").splitlines()
                if ln.startswith("- ")]


def test_report_html_file(sweep, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the plots need the report extra: pip install -e '.[report]'")
    page = tmp_path / "sub" / "r.html"
    rc, out, err = run(capsys, "report", sweep, "--html", page, "--format", "markdown")
    assert rc == 0 and f"wrote {page}" in err
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and 'class="subj"' in text
    assert text.count("data:image/png;base64,") == 6
    assert not list(page.parent.glob(".*.tmp"))  # written through a temporary name


def test_report_reads_an_older_sweep_without_sentences(sweep, tmp_path, capsys):
    """valid_index.parquet without text columns: sentences come from the job's data file,
    checked id by id; a data file that no longer matches is said, not guessed."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(sweep, old)
    index = pd.read_parquet(old / "valid_index.parquet")[["row", "id", "label"]]
    index.to_parquet(old / "valid_index.parquet")
    rc, out, _ = run(capsys, "report", old, "--format", "markdown", "--examples", "1")
    assert rc == 0 and "**[S:" in out and "By subject→object type pair" in out
    job = json.loads((old / "job.json").read_text())
    job["split_seed"] = 5  # a different split: ids no longer line up
    (old / "job.json").write_text(json.dumps(job))
    rc, out, _ = run(capsys, "report", old, "--format", "markdown", "--examples", "1")
    assert rc == 0 and "no longer matches" in out and "**[S:" not in out


@pytest.mark.parametrize("argv, message", [
    (["report", "{tmp}/nope"], "no such sweep directory"),
    (["report", "{sweep}", "--html", "{tmp}"], "is a directory"),
    (["report", "{sweep}", "--examples", "-1"], "must be 0 or more"),
    (["report", "{tmp}/empty"], "no trials.parquet"),
    (["data", "stats", "{tmp}/missing.json"], "not found"),
    (["data", "stats", SAMPLE, "--top", "0"], "must be at least 1"),
])
def test_errors_are_one_line_exit_2(sweep, tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    argv = [a.format(tmp=tmp_path, sweep=sweep) for a in argv]
    rc, out, err = run(capsys, *argv)
    assert rc == 2 and err.startswith("relex: error:") and message in err
    assert len(err.strip().splitlines()) == 1 and out == ""


# ----------------------------------------------------------------------- error analysis
def test_error_analysis_counts_and_orders():
    labels = ["no_relation", "a", "b"]
    gold = np.array([0, 0, 0, 1, 1, 2, 2])
    probs = np.array([[0.9, 0.05, 0.05],   # right
                      [0.2, 0.7, 0.1],     # FP a (0.7)
                      [0.3, 0.1, 0.6],     # FP b (0.6)
                      [0.8, 0.1, 0.1],     # FN (0.8)
                      [0.1, 0.8, 0.1],     # right
                      [0.55, 0.05, 0.4],   # FN (0.55)
                      [0.1, 0.6, 0.3]])    # b confused as a
    rows = pd.DataFrame({"id": [f"r{i}" for i in range(7)], "sentence": ["김철수는 한국대학교 교수다."] * 7,
                         "subj_start": 0, "subj_end": 2, "obj_start": 5, "obj_end": 9,
                         "subj_type": ["PER"] * 4 + ["ORG"] * 3, "obj_type": "ORG",
                         "source": ["wiki"] * 5 + ["news"] * 2, "label": [labels[g] for g in gold]})
    a = analyse(gold, probs, labels, "no_relation", rows, examples=5)
    assert [e.id for e in a.false_positives] == ["r1", "r2"]  # most confident first
    assert [e.id for e in a.false_negatives] == ["r3", "r5"]
    assert a.false_negatives[0].confidence == pytest.approx(0.8)
    assert a.confusion.tolist() == [[1, 1, 1], [1, 1, 0], [1, 1, 0]]
    top = [(c.gold, c.predicted, c.count) for c in a.top_confusions]
    assert len(top) == 5 and all(n == 1 for *_, n in top)
    pairs = a.by_type_pair.set_index("group")
    assert pairs.at["PER→ORG", "rows"] == 4 and pairs.at["ORG→ORG", "relations"] == 3
    # PER→ORG rows 0..3: TP 0, FP 2 (r1, r2), FN 1 (r3) -> F1 0
    assert pairs.at["PER→ORG", "micro_f1"] == 0.0
    assert set(a.by_source["group"]) == {"wiki", "news"}
    assert a.metrics["per_class"]["a"]["support"] == 2


def test_marked_segments_cut_at_entity_spans():
    row = {"sentence": "김철수는 한국대학교 교수다.", "subj_start": 0, "subj_end": 2, "obj_start": 5,
           "obj_end": 9}
    assert marked_segments(row) == [("김철수", "subj"), ("는 ", None), ("한국대학교", "obj"),
                                    (" 교수다.", None)]
    row = {**row, "subj_start": 5, "subj_end": 9, "obj_start": 0, "obj_end": 2}  # object first
    assert [r for _, r in marked_segments(row)] == ["obj", None, "subj", None]


# ------------------------------------------------------------------- leaderboard --by-config
def test_leaderboard_by_config(sweep, capsys):
    rc, out, _ = run(capsys, "leaderboard", sweep, "--by-config", "--format", "csv")
    assert rc == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 4 and [r["rank"] for r in rows] == ["1", "2", "3", "4"]
    means = [float(r["micro_f1_mean"]) for r in rows]
    assert means == sorted(means, reverse=True)
    trials = pd.read_parquet(sweep / "trials.parquet")
    top = trials[trials["trial_id"].isin(rows[0]["trial_ids"].split())]
    assert float(rows[0]["micro_f1_mean"]) == pytest.approx(top["micro_f1"].mean())
    assert float(rows[0]["micro_f1_sd"]) == pytest.approx(top["micro_f1"].std(ddof=1))
    assert rows[0]["n"] == "3" and rows[0]["seeds"] == "1 2 3" and rows[0]["verdict"] == "top"
    assert rows[0]["fgm"] == "1.0" and "seed" not in rows[0]
    assert {r["verdict"] for r in rows[1:]} <= {"within noise", "below"}

    rc, out, _ = run(capsys, "leaderboard", sweep, "--by-config", "--format", "markdown", "--top", "2")
    lines = out.strip().splitlines()
    assert "| n | micro-F1 | ± sd | 95% CI |" in lines[0] and len([ln for ln in lines if ln.startswith("| ")]) == 3
    rc, out, _ = run(capsys, "leaderboard", sweep, "--by-config")
    assert out.splitlines()[1].split()[0] == "1" and "top" in out.splitlines()[1]


def test_leaderboard_shows_mean_ap_beside_auprc(sweep, capsys):
    rc, out, _ = run(capsys, "leaderboard", sweep, "--format", "markdown")
    assert "| AUPRC | mean AP |" in out.splitlines()[0]


# ------------------------------------------------------------------------- data stats
def test_data_stats_tables_match_the_data(capsys):
    from relex.data.io import read_dataset
    from relex.data.stats import compute, entity_distance

    ds = read_dataset(SAMPLE)
    f = ds.frame
    rc, out, _ = run(capsys, "data", "stats", SAMPLE, "--format", "markdown", "--top", "2")
    assert rc == 0
    assert f"| no_relation | {int((f['label'] == 'no_relation').sum())} |" in out
    st = compute(ds, top=2)
    emp = f[f["label"] == "per:employee_of"]
    assert st.type_pairs.loc["per:employee_of"].sum() == len(emp)
    d = st.distance.set_index("label").loc["per:employee_of"]
    assert d["mean"] == pytest.approx(entity_distance(emp).mean())
    lengths = st.length.set_index("label").loc["per:title"]
    assert lengths["max"] == f[f["label"] == "per:title"]["sentence"].str.len().max()
    top = st.top_entities[(st.top_entities["label"] == "per:title") & (st.top_entities["role"] == "object")]
    want = f[f["label"] == "per:title"]["obj_word"].value_counts().head(2)
    assert list(top["word"]) == list(want.index) and len(top) == 2
    row = next(ln for ln in out.splitlines() if ln.startswith("| per:title |") and "(" in ln)
    assert all(w in row for w in want.index)


def test_entity_distance_counts_characters_between_spans():
    from relex.data.stats import entity_distance

    f = pd.DataFrame({"subj_start": [0, 10, 0], "subj_end": [2, 12, 4],
                      "obj_start": [5, 0, 3], "obj_end": [6, 3, 8]})
    assert entity_distance(f).tolist() == [2, 6, 0]  # gap after, gap before, overlap


def test_data_stats_skip_bad_rows_labels_and_negative(tmp_path, capsys):
    rows = json.loads(SAMPLE_PATH.read_text(encoding="utf-8"))[:40]
    rows[3]["subject_entity"]["end_idx"] += 50  # outside the sentence
    for r in rows:
        if r["label"] == "no_relation":
            r["label"] = "관계없음"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    rc, out, err = run(capsys, "data", "stats", bad)
    assert rc == 2 and "row 4" in err
    rc, out, err = run(capsys, "data", "stats", bad, "--skip-bad-rows", "--negative-label", "관계없음",
                       "--format", "markdown")
    assert rc == 0 and "skipped 1 bad row" in err and "| 관계없음 |" in out
    names = sorted({r["label"] for r in rows}, reverse=True)
    labels = tmp_path / "relation_list.json"
    labels.write_text(json.dumps({"relations": names}, ensure_ascii=False), encoding="utf-8")
    rc, out, _ = run(capsys, "data", "stats", bad, "--skip-bad-rows", "--labels", labels,
                     "--negative-label", "관계없음", "--format", "markdown")
    table = _section(out, "Labels").splitlines()
    shown = [ln.split("|")[1].strip() for ln in table if ln.startswith("| ") and "rows" not in ln]
    assert shown == [n for n in names if n in shown] and len(shown) == len(names)  # file order


# ---------------------------------------------------------------------------- staged sweeps
@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """A second stage grown from two base configurations that differ in head (not an axis of
    this stage): marker +2 (from stage1/t001), fgm +3; 3 seeds."""
    return make_sweep(tmp_path_factory.mktemp("staged"), axes={"fgm": [0.0, 1.0], "head": ["cls", "marker"]},
                      seeds=[1, 2, 3], effect=lambda c: 3.0 * c["fgm"] + 2.0 * (c["head"] == "marker"),
                      lineage=lambda c: {"marker": "stage1/t001", "cls": "stage1/t003"}[c["head"]],
                      name="stage2", job_fields={"axes": ["fgm", "seed"], "base": "artifacts/stage1", "top": 2})


def _md_table(text: str, first_header: str) -> list[dict[str, str]]:
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"| {first_header} |"))
    head = [c.strip() for c in lines[start].strip("|").split("|")]
    body = []
    for ln in lines[start + 2:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        if len(cells) != len(head):
            break
        body.append(dict(zip(head, cells)))
    return body


def test_report_shows_lineage_of_a_staged_sweep(staged, sweep, capsys):
    rc, out, err = run(capsys, "report", staged, "--format", "markdown")
    assert rc == 0, err
    summary = _section(out, "Summary")
    assert "| staged from | artifacts/stage1, its 2 best configurations: stage1/t003, stage1/t001 |" in summary
    assert "| best configuration | fgm=1 (grew from stage1/t001) |" in summary
    # this stage's axis alone names two configurations alike: the from column tells them apart
    configs = _md_table(_section(out, "Configurations (seeds grouped)"), "rank")
    assert [(r["from"], r["configuration"]) for r in configs] == [
        ("stage1/t001", "fgm=1"), ("stage1/t003", "fgm=1"), ("stage1/t001", "fgm=0"), ("stage1/t003", "fgm=0")]
    # pairs stay within a base configuration: 2 bases x 3 seeds, none lost to a clash of keys
    fgm = _md_table(_section(out, "Effects of each axis"), "axis")[0]
    low, high = (float(x) for x in fgm["Δ micro-F1 [95% CI]"].split("[")[1].rstrip("]").split(","))
    assert fgm["pairs"] == "6" and low < 3.0 < high  # the true effect
    trials = pd.read_parquet(staged / "trials.parquet").set_index("trial_id")
    curves = _md_table(_section(out, "Learning curves"), "trial")
    assert curves and all(r["from"] == trials.loc[r["trial"], "lineage"] for r in curves)
    assert f"seed {trials.loc[curves[0]['trial'], 'seed']}, grew from stage1/t001)" in _section(
        out, "Errors of the best configuration")

    rc, out, _ = run(capsys, "leaderboard", staged, "--by-config", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["lineage"], r["head"], r["fgm"]) for r in rows] == [
        ("stage1/t001", "marker", "1.0"), ("stage1/t003", "cls", "1.0"),
        ("stage1/t001", "marker", "0.0"), ("stage1/t003", "cls", "0.0")]
    rc, out, _ = run(capsys, "leaderboard", staged, "--by-config", "--format", "markdown")
    assert [r["from"] for r in _md_table(out, "rank")] == [r["lineage"] for r in rows]

    # a sweep that is not staged has no from column anywhere
    rc, out, _ = run(capsys, "report", sweep, "--format", "markdown")
    assert rc == 0 and "| from |" not in out and "staged from" not in out
    rc, out, _ = run(capsys, "leaderboard", sweep, "--by-config", "--format", "csv")
    assert "lineage" not in out.splitlines()[0]
