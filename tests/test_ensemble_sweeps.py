"""Sweep → ensemble → predict on CPU, for real, over the tiny backbone: a plain sweep and a
second stage grown from it in 5-fold cross-validation (the bundled sample), and a sweep on a
KLUE-RE slice, in one local Ray instance. The sweeps are small and shared by the tests."""

from __future__ import annotations

import ast
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_train_cli import cli, write_klue_json, write_test_csv  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# one evaluation per 18 steps: a plain trial evaluates twice (2 epochs), a fold or staged trial once
SPACE = ("backbone='relex/tiny', tiny_hidden=32, tiny_layers=1, tiny_heads=2, max_length=80, "
         "batch_size=32, eval_every=18, warmup_ratio=0.0, eval_batch_size=128, "
         "num_threads=1, amp='off', lr=5e-3")
RUN = "resources=dict(gpu=0, cpu=1), max_concurrent=2"


def _job(path: Path, body: str) -> Path:
    path.write_text("from relex.sweep import Sweep, grid\n" + body, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def ray_session(session_cache):
    """One local Ray instance for every sweep of this module (starting Ray costs seconds)."""
    import ray

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RELEX_CACHE", str(session_cache))
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        # Ray keeps its auth token for the whole process: a token-auth session here would leave
        # later in-process sweeps on test_sweep_ray's cluster (auth disabled) with every trial's
        # actor cancelled, so every in-process Ray of the suite runs with the same mode
        mp.setenv("RAY_AUTH_MODE", "disabled")
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield
        finally:
            ray.shutdown()


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory, ray_session):
    """Two small sweeps shared by the tests: a plain one (head × seed, a validation file), then
    a second stage from it: its best configuration with ERPE on, in 5-fold cross-validation on
    the whole sample (a staged sweep and a fold sweep in one run)."""
    from relex.data import read_dataset, stratified_split
    from relex.data.sample import SAMPLE_PATH
    from relex.sweep.job import load_job
    from relex.sweep.runner import run

    d = tmp_path_factory.mktemp("ens")
    full = read_dataset(SAMPLE_PATH)
    train_ds, valid_ds = stratified_split(full, 0.2, seed=3)
    files = {"train": write_klue_json(train_ds, d / "train.json"),
             "valid": write_klue_json(valid_ds, d / "valid.json"),
             "test_csv": write_test_csv(valid_ds, d / "test.csv"), "valid_ds": valid_ds, "full": full}
    jobs = {
        "plain": _job(d / "plain.py", f"sweep = Sweep(name='plain', train={str(files['train'])!r}, "
                      f"valid={str(files['valid'])!r}, seeds=[1, 2], space=dict(head=grid(['cls', 'marker']), "
                      f"epochs=2, {SPACE}), asha=dict(grace_period=10), {RUN})\n"),
        "kfold": _job(d / "kfold.py", f"sweep = Sweep(name='kfold', base={str(d / 'art' / 'plain')!r}, top=1, "
                      f"train={str(SAMPLE_PATH)!r}, folds=5, fold_seed=7, "
                      f"space=dict(erpe=grid([True]), epochs=1), {RUN})\n"),
    }
    # the second stage loads its base: after plain
    outcomes = {name: run(load_job(jobs[name]), storage=d / "art", live=False) for name in jobs}
    return {"dir": d, "files": files, "jobs": jobs, "outcomes": outcomes,
            **{name: d / "art" / name for name in jobs}}


def _read_submission(path: Path, names):
    sub = pd.read_csv(path)
    assert list(sub.columns) == ["id", "pred_label", "probs"]
    probs = np.array([ast.literal_eval(p) for p in sub["probs"]])
    assert probs.shape == (len(sub), len(names))
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert [names[i] for i in probs.argmax(1)] == sub["pred_label"].tolist()
    return sub, probs


# --------------------------------------------------------------------------- plain sweep
def test_ensemble_scores_honestly_and_predicts(sweeps, capsys, tmp_path):
    assert sweeps["outcomes"]["plain"].counts == {"TERMINATED": 4}
    ens_dir = tmp_path / "ens"
    rc, out, err = cli(["ensemble", sweeps["plain"], "--out", ens_dir], capsys)
    assert rc == 0, err
    data = json.loads((ens_dir / "ensemble.json").read_text())
    sc, sel = data["scores"], data["selection"]
    assert sc["rows"] == len(sweeps["files"]["valid_ds"])
    # greedy starts from the best single trial and keeps its best bag: never worse in-sample
    assert sc["ensemble_in_sample"]["micro_f1"] >= sc["best_single_in_sample"]["micro_f1"]
    # the honest (cross-fitted) numbers are the ones printed first, for both
    assert "honest scores" in out
    assert f"ensemble{sc['ensemble']['micro_f1']:>23.2f}" in out
    assert f"best single trial{sc['best_single']['micro_f1']:>14.2f}" in out
    for key in ("ensemble", "best_single"):
        assert 0 <= sc[key]["micro_f1"] <= 100 and 0 < sc[key]["auprc"] <= 100
    assert sum(m["weight"] for m in data["members"]) == pytest.approx(1.0)
    assert {m["name"] for m in data["members"]} == set(sel["units"])
    assert [r["stage"] for r in data["decisions"]["report"]] == [
        "none", "temperature", "type_constraint", "no_relation_bias"]

    names = data["label_names"]
    # the plain average of the members reproduces the saved validation probabilities
    rc, out, err = cli(["evaluate", ens_dir, sweeps["files"]["valid"], "--no-decisions", "--json"], capsys)
    assert rc == 0, err
    assert json.loads(out)["micro_f1"] == pytest.approx(sc["ensemble_in_sample"]["micro_f1"], abs=1e-6)
    assert "decisions applied: none" in err

    sub_path = tmp_path / "submission.csv"
    rc, _, err = cli(["predict", ens_dir, sweeps["files"]["test_csv"], "--output", sub_path], capsys)
    assert rc == 0, err
    assert "decisions applied: temperature" in err and "no_relation bias" in err
    sub, probs = _read_submission(sub_path, names)
    assert sub["id"].astype(str).tolist() == sweeps["files"]["valid_ds"].frame["id"].astype(str).tolist()
    # the type constraint: no mass on a label never seen with the row's entity-type pair
    train = pd.DataFrame(json.loads(Path(sweeps["files"]["train"]).read_text()))
    seen = {(r["subject_entity"]["type"], r["object_entity"]["type"], r["label"]) for _, r in train.iterrows()}
    for (s, o), row in zip(sweeps["files"]["valid_ds"].frame[["subj_type", "obj_type"]].itertuples(index=False), probs):
        for j, name in enumerate(names):
            if name != "no_relation" and (s, o, name) not in seen and any(k[:2] == (s, o) for k in seen):
                assert row[j] == 0.0


def test_top_k_and_auprc_selection_and_switches(sweeps, capsys, tmp_path):
    rc, out, err = cli(["ensemble", sweeps["plain"], "--out", tmp_path / "top", "--top", "3", "--metric",
                        "auprc", "--no-bias", "--no-temperature"], capsys)
    assert rc == 0, err
    data = json.loads((tmp_path / "top" / "ensemble.json").read_text())
    assert len(data["members"]) == 3 and all(m["weight"] == pytest.approx(1 / 3) for m in data["members"])
    d = data["decisions"]
    assert d["temperature"] is None and d["no_relation_bias"] is None and d["type_pairs"]
    rows = pq.read_table(sweeps["plain"] / "trials.parquet").to_pandas()
    # ranked by the AUPRC of the saved validation probabilities (the best-F1 checkpoint's)
    from relex import metrics as M

    y = np.array([data["label_names"].index(v) for v in
                  pq.read_table(sweeps["plain"] / "valid_index.parquet").column("label").to_pylist()])
    by_auprc = sorted(rows["trial_id"], key=lambda t: -M.auprc(y, np.load(sweeps["plain"] / "valid_probs" / f"{t}.npy"))[0])
    assert {m["name"] for m in data["members"]} == set(by_auprc[:3])

    rc, out, err = cli(["ensemble", sweeps["plain"], "--out", tmp_path / "greedy", "--select", "greedy",
                        "--rounds", "3", "--seed", "1", "--no-type-constraint"], capsys)
    assert rc == 0, err
    data = json.loads((tmp_path / "greedy" / "ensemble.json").read_text())
    assert data["selection"]["rounds"] == 3 and data["selection"]["seed"] == 1
    assert data["decisions"]["type_pairs"] is None and "type-pair" not in out
    # a bag of at most 3 picks: weights are multiples of 1/3 or 1/2 or 1
    assert all(any(abs(m["weight"] * n - round(m["weight"] * n)) < 1e-9 for n in (1, 2, 3))
               for m in data["members"])


def test_label_order_mismatch_and_deleted_member_are_clear_errors(sweeps, capsys, tmp_path):
    ens_dir = tmp_path / "ens"
    assert cli(["ensemble", sweeps["plain"], "--out", ens_dir, "--top", "2"], capsys)[0] == 0
    data = json.loads((ens_dir / "ensemble.json").read_text())
    bad = tmp_path / "reordered"
    bad.mkdir()
    (bad / "ensemble.json").write_text(json.dumps({**data, "label_names": data["label_names"][::-1]}))
    rc, _, err = cli(["predict", bad, sweeps["files"]["test_csv"], "--output", tmp_path / "p.csv"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "different label order" in err and data["members"][0]["name"] in err
    assert not (tmp_path / "p.csv").exists()

    # a member's checkpoint deleted: the error names the member (a copy of it is deleted here,
    # the sweep's own checkpoints stay for the other tests)
    victim = data["members"][1]
    doomed = tmp_path / "doomed"
    shutil.copytree(victim["checkpoint"], doomed)
    moved = tmp_path / "ens2"
    shutil.copytree(ens_dir, moved)
    edited = {**data, "members": [data["members"][0], {**victim, "checkpoint": str(doomed),
                                                        "checkpoint_relative": "../doomed"}]}
    (moved / "ensemble.json").write_text(json.dumps(edited))
    assert cli(["evaluate", moved, sweeps["files"]["valid"], "--json"], capsys)[0] == 0
    shutil.rmtree(doomed)
    rc, _, err = cli(["evaluate", moved, sweeps["files"]["valid"]], capsys)
    assert rc == 2 and f"member {victim['name']}" in err and "checkpoint directory not found" in err

    # flags that only mean something for an ensemble
    ckpt = data["members"][0]["checkpoint"]
    rc, _, err = cli(["predict", ckpt, sweeps["files"]["test_csv"], "--output", tmp_path / "q.csv",
                      "--label-shift"], capsys)
    assert rc == 2 and "has no fitted decisions" in err


def test_ensemble_says_which_checkpoints_the_sweep_dropped_and_why(sweeps, capsys, tmp_path):
    """A trial whose best checkpoint retention deleted is left out with the sweep's reason."""
    from relex.sweep.results import ResultsWriter

    copy = tmp_path / "plain"
    shutil.copytree(sweeps["plain"], copy)
    writer = ResultsWriter(copy)
    victim = sorted(writer.trials)[0]
    writer.set_trial({"trial_id": victim, "checkpoint": str(copy / "trials" / victim / "gone"),
                      "checkpoint_dropped": "keep_checkpoints=3: ranked 4 by micro_f1"})
    writer.flush()
    rc, out, err = cli(["ensemble", copy, "--out", tmp_path / "ens", "--top", "2"], capsys)
    assert rc == 0, err
    assert (f"note: {victim}: the sweep dropped its best checkpoint (keep_checkpoints=3: ranked 4 "
            "by micro_f1); left out") in out
    members = json.loads((tmp_path / "ens" / "ensemble.json").read_text())["members"]
    assert victim not in {m["name"] for m in members}


def test_label_shift_is_opt_in_and_reported(sweeps, capsys, tmp_path):
    ens_dir = tmp_path / "ens"
    assert cli(["ensemble", sweeps["plain"], "--out", ens_dir, "--top", "2"], capsys)[0] == 0
    rc, _, err = cli(["predict", ens_dir, sweeps["files"]["test_csv"], "--output", tmp_path / "a.csv"], capsys)
    assert rc == 0 and "label-shift" not in err
    rc, _, err = cli(["predict", ens_dir, sweeps["files"]["test_csv"], "--output", tmp_path / "b.csv",
                      "--label-shift"], capsys)
    assert rc == 0 and "label-shift EM (" in err
    ece = json.loads((ens_dir / "ensemble.json").read_text())["decisions"]["validation_ece"]
    assert ("calibration error (ECE)" in err) == (ece > 0.05)


# ----------------------------------------------------------------------------- fold sweep
def test_fold_sweep_out_of_fold_rows_and_fold_ensemble(sweeps, capsys, tmp_path):
    kdir = sweeps["kfold"]
    rows = pq.read_table(kdir / "trials.parquet").to_pandas().sort_values("trial_id")
    assert rows["trial_id"].tolist() == [f"t000-f{k}" for k in range(5)]
    assert set(rows["status"]) == {"TERMINATED"} and rows["fold"].tolist() == list(range(5))
    assert set(rows["config_id"]) == {"t000"}
    index = pq.read_table(kdir / "folds.parquet").to_pandas()
    full = sweeps["files"]["full"]
    assert index["id"].tolist() == full.frame["id"].astype(str).tolist()
    assert sorted(index["fold"].unique()) == [0, 1, 2, 3, 4]
    # stratified: every fold has about a fifth of each label
    counts = index.groupby(["label", "fold"]).size().unstack(fill_value=0)
    assert (counts.max(axis=1) - counts.min(axis=1)).max() <= 1
    oof = np.load(kdir / "oof_probs" / "t000.npy")
    assert oof.shape == (len(full), len(full.labels))
    np.testing.assert_allclose(oof.sum(1), 1.0, atol=1e-5)  # every row filled
    for k in range(5):  # ... by the fold that held it out, and by nothing else
        np.testing.assert_array_equal(oof[index["fold"].to_numpy() == k],
                                      np.load(kdir / "valid_probs" / f"t000-f{k}.npy"))

    rc, out, err = cli(["leaderboard", kdir, "--format", "csv"], capsys)
    assert rc == 0
    board = pd.read_csv(__import__("io").StringIO(out))
    assert board["trial_id"].tolist() == ["t000"] and board["folds"].tolist() == ["5/5"]
    assert board["micro_f1"][0] == pytest.approx(rows["micro_f1"].mean())
    assert board["micro_f1_sd"][0] == pytest.approx(rows["micro_f1"].std(ddof=1))

    ens_dir = tmp_path / "folds"
    rc, out, err = cli(["ensemble", kdir, "--out", ens_dir, "--config", "t000"], capsys)
    assert rc == 0, err
    data = json.loads((ens_dir / "ensemble.json").read_text())
    assert sorted((m["fold"], m["weight"]) for m in data["members"]) == [(k, pytest.approx(0.2)) for k in range(5)]
    assert data["scores"]["rows"] == len(full) and "out-of-fold" in out
    sub_path = tmp_path / "sub.csv"
    rc, _, err = cli(["predict", ens_dir, sweeps["files"]["test_csv"], "--output", sub_path], capsys)
    assert rc == 0, err
    _read_submission(sub_path, data["label_names"])


# --------------------------------------------------------------------------- staged sweep
def test_staged_sweep_grows_from_the_base_best_configuration(sweeps, capsys):
    from relex.data.sample import SAMPLE_PATH

    base = pq.read_table(sweeps["plain"] / "trials.parquet").to_pandas()
    means = base.groupby("head")["micro_f1"].mean()  # configurations differ in head; seeds merged
    best_head = means.sort_values(ascending=False, kind="stable").index[0]
    staged = pq.read_table(sweeps["kfold"] / "trials.parquet").to_pandas()
    assert set(staged["status"]) == {"TERMINATED"} and staged["erpe"].all()
    [lineage] = set(staged["lineage"])
    assert lineage.startswith("plain/")
    grew_from = base[base["trial_id"] == lineage.split("/")[1]].iloc[0]
    assert grew_from["head"] == best_head and set(staged["head"]) == {best_head}
    assert set(staged["seed"]) == {42}  # the new sweep's seeds, the base's other settings
    assert set(staged["tiny_hidden"]) == {32} and set(staged["epochs"]) == {1}
    job = json.loads((sweeps["kfold"] / "job.json").read_text())
    assert job["train"] == str(SAMPLE_PATH) and job["base"] == str(sweeps["plain"]) and job["top"] == 1
    rc, out, _ = cli(["leaderboard", sweeps["kfold"], "--format", "markdown"], capsys)
    assert rc == 0 and "| from |" in out and lineage in out
    rc, out, err = cli(["report", sweeps["kfold"], "--format", "markdown", "--examples", "0"], capsys)
    assert rc == 0, err
    assert f"| staged from | {sweeps['plain']}, its 1 best configuration: {lineage} |" in out
    configs = out[out.index("## Configurations"):out.index("## ", out.index("## Configurations") + 3)]
    assert "| rank | from | configuration |" in configs and f"| 1 | {lineage} |" in configs


# ----------------------------------------------------------------------- a KLUE-RE slice
def test_klue_slice_sweep_ensemble_and_submission(shared_data, tmp_path, capsys, ray_session):
    """The same flow on real KLUE-RE rows (a stratified slice, KLUE's 30-label order)."""
    from relex.data import read_dataset, stratified_split
    from relex.sweep.job import load_job
    from relex.sweep.runner import run

    labels = shared_data / "klue-re" / "relation_list.json"
    full = read_dataset(shared_data / "klue-re" / "klue-re-v1.1_train.json", labels=labels)
    _, part = stratified_split(full, 500 / len(full), seed=0)
    train_ds, valid_ds = stratified_split(part, 0.3, seed=0)
    train = write_klue_json(train_ds, tmp_path / "train.json")
    valid = write_klue_json(valid_ds, tmp_path / "valid.json")
    test = write_klue_json(valid_ds, tmp_path / "test.json", with_labels=False)
    job = _job(tmp_path / "klue.py", f"sweep = Sweep(name='klue', train={str(train)!r}, valid={str(valid)!r}, "
               f"labels={str(labels)!r}, space=dict(head=grid(['cls', 'marker']), epochs=1, {SPACE}), "
               f"asha=dict(grace_period=10), {RUN})\n")
    outcome = run(load_job(job), storage=tmp_path / "art", live=False)
    assert outcome.counts == {"TERMINATED": 2}
    rc, out, err = cli(["ensemble", tmp_path / "art" / "klue", "--out", tmp_path / "ens"], capsys)
    assert rc == 0, err
    data = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    assert data["label_names"] == json.loads(labels.read_text())["relations"]  # KLUE's order kept
    rc, _, err = cli(["predict", tmp_path / "ens", test, "--output", tmp_path / "sub.csv"], capsys)
    assert rc == 0, err
    sub, _ = _read_submission(tmp_path / "sub.csv", data["label_names"])
    assert len(sub) == len(valid_ds)
