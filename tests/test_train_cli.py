"""`relex train / evaluate / predict` end to end, in process, on the bundled sample."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from relex.config import TrialConfig

FAST_FLAGS = ["--tiny-hidden", "32", "--tiny-layers", "1", "--max-length", "80", "--batch-size", "32",
              "--lr", "5e-3", "--warmup-ratio", "0", "--num-threads", "1", "--eval-every", "9"]


def cli(argv, capsys):
    """Run ``relex ARGV`` in process: (exit code, stdout, stderr)."""
    from relex.cli import main

    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def write_klue_json(ds, path: Path, *, with_labels=True) -> Path:
    rows = []
    for r in ds.frame.itertuples(index=False):
        row = {
            "guid": r.id, "sentence": r.sentence,
            "subject_entity": {"word": r.subj_word, "start_idx": int(r.subj_start), "end_idx": int(r.subj_end),
                               "type": r.subj_type},
            "object_entity": {"word": r.obj_word, "start_idx": int(r.obj_start), "end_idx": int(r.obj_end),
                              "type": r.obj_type},
            "source": r.source,
        }
        if with_labels:
            row["label"] = r.label
        rows.append(row)
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


def write_test_csv(ds, path: Path) -> Path:
    """The competition's test format: dict-string entity columns, placeholder label 100."""
    frame = pd.DataFrame({
        "id": ds.frame["id"],
        "sentence": ds.frame["sentence"],
        "subject_entity": [str({"word": r.subj_word, "start_idx": int(r.subj_start), "end_idx": int(r.subj_end),
                                "type": r.subj_type}) for r in ds.frame.itertuples()],
        "object_entity": [str({"word": r.obj_word, "start_idx": int(r.obj_start), "end_idx": int(r.obj_end),
                               "type": r.obj_type}) for r in ds.frame.itertuples()],
        "label": 100,
        "source": ds.frame["source"],
    })
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from relex.data import read_dataset, stratified_split
    from relex.data.sample import SAMPLE_PATH

    ds = read_dataset(SAMPLE_PATH)
    train_ds, valid_ds = stratified_split(ds, 0.2, seed=1)
    d = tmp_path_factory.mktemp("data")
    return {
        "train": write_klue_json(train_ds, d / "train.json"),
        "valid": write_klue_json(valid_ds, d / "valid.json"),
        "test_json": write_klue_json(valid_ds, d / "test.json", with_labels=False),
        "test_csv": write_test_csv(valid_ds, d / "test.csv"),
        "valid_ds": valid_ds,
    }


@pytest.fixture(scope="module")
def trained(files, tmp_path_factory, session_cache):
    out = tmp_path_factory.mktemp("run") / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RELEX_CACHE", str(session_cache))
        from relex.cli import main

        rc = main(["train", "--train", str(files["train"]), "--valid", str(files["valid"]), "--out", str(out),
                   "--epochs", "2", "--quiet", *FAST_FLAGS])
    assert rc == 0
    return out


def test_train_writes_checkpoint_history_and_summary(trained):
    best = trained / "best"
    for name in ("model.safetensors", "config.json", "labels.json", "tokenizer", "encoder/config.json"):
        assert (best / name).exists(), name
    summary = json.loads((trained / "metrics.json").read_text())
    history = [json.loads(x) for x in (trained / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [9, 18, 27, 36]
    assert summary["micro_f1"] == max(h["micro_f1"] for h in history)
    cfg = TrialConfig.from_json((best / "config.json").read_text())
    assert (cfg.tiny_hidden, cfg.tiny_layers, cfg.batch_size, cfg.lr, cfg.eval_every) == (32, 1, 32, 5e-3, 9)
    assert cfg.epochs == 2 and cfg.marker == TrialConfig().marker  # unset flags keep the defaults


def test_evaluate_json_reproduces_training_metrics(trained, files, capsys):
    rc, out, err = cli(["evaluate", trained / "best", files["valid"], "--json"], capsys)
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1
    got = json.loads(lines[0])
    summary = json.loads((trained / "metrics.json").read_text())
    for k in ("micro_f1", "auprc", "mean_ap", "accuracy"):
        assert got[k] == summary[k], k  # exactly, not approximately
    assert got["n"] == len(files["valid_ds"])
    assert abs(got["auprc_tie_shift"]) < 5.0  # a trained model's probabilities barely tie


def test_evaluate_text_and_per_class(trained, files, capsys):
    rc, out, _ = cli(["evaluate", trained / "best", files["valid"], "--per-class"], capsys)
    assert rc == 0
    assert "micro_f1" in out and "auprc" in out and "mean_ap" in out and "accuracy" in out
    for name in files["valid_ds"].labels.names:
        assert name in out
    rc, out, _ = cli(["evaluate", trained / "best", files["valid"], "--json", "--per-class"], capsys)
    per = json.loads(out)["per_class"]
    assert set(per) == set(files["valid_ds"].labels.names)
    assert sum(r["support"] for r in per.values()) == len(files["valid_ds"])


def read_submission(path: Path, names):
    sub = pd.read_csv(path, dtype={"id": str})
    assert list(sub.columns) == ["id", "pred_label", "probs"]
    probs = np.array([ast.literal_eval(p) for p in sub["probs"]])
    assert probs.shape[1] == len(names)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    assert set(sub["pred_label"]) <= set(names)
    assert [names[i] for i in probs.argmax(axis=1)] == sub["pred_label"].tolist()
    return sub, probs


def test_predict_writes_a_submission(trained, files, tmp_path, capsys):
    names = json.loads((trained / "best" / "labels.json").read_text())["names"]
    outputs = {}
    for key in ("valid", "test_json", "test_csv"):
        dest = tmp_path / f"{key}.csv"
        rc, _, err = cli(["predict", trained / "best", files[key], "--output", dest], capsys)
        assert rc == 0, err
        sub, probs = read_submission(dest, names)
        assert len(sub) == len(files["valid_ds"])
        assert sub["id"].tolist() == files["valid_ds"].frame["id"].astype(str).tolist()
        outputs[key] = probs
    # an unlabelled file (no label key, or the competition's placeholder 100) gives the same
    # predictions as the labelled one
    np.testing.assert_array_equal(outputs["test_json"], outputs["valid"])
    np.testing.assert_array_equal(outputs["test_csv"], outputs["valid"])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # atomic write


def test_defaults_train_the_sample_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc, out, err = cli(["train", "--out", tmp_path / "run1", "--max-steps", "2", "--num-threads", "1",
                        "--max-length", "64"], capsys)
    assert rc == 0, err
    cfg = TrialConfig.from_json((tmp_path / "run1" / "best" / "config.json").read_text())
    assert cfg.backbone == "relex/tiny" and cfg.tiny_hidden == TrialConfig().tiny_hidden
    summary = json.loads((tmp_path / "run1" / "metrics.json").read_text())
    assert summary["steps"] == 2
    for word in ("micro_f1", "auprc", "accuracy", "best step", "wall time", "examples/s", "checkpoint"):
        assert word in out
    assert str(tmp_path / "run1" / "best") in out
    # a validation fraction is a stratified split of the sample (700 rows, 10% held out)
    assert "630 training / 70 validation" in err


def test_config_file_with_flag_overrides(trained, tmp_path, capsys):
    rc, _, err = cli(["train", "--config", trained / "best" / "config.json", "--max-steps", "1", "--quiet",
                      "--out", tmp_path / "o"], capsys)
    assert rc == 0, err
    cfg = TrialConfig.from_json((tmp_path / "o" / "best" / "config.json").read_text())
    assert cfg.max_steps == 1 and cfg.tiny_hidden == 32 and cfg.eval_every == 9


@pytest.mark.parametrize("argv, needle", [
    (["--marker", "foo"], "--marker='foo' is invalid: choose one of"),
    (["--lr", "abc"], "--lr='abc' is invalid"),
    (["--epochs", "0"], "--epochs=0 is invalid"),
    (["--valid", "x.json", "--valid-fraction", "0.2"], "not allowed with"),
    (["--valid-fraction", "1.5"], "--valid-fraction"),
    (["--backbone", "/no/such/backbone"], "cannot load backbone '/no/such/backbone'"),
    (["--backbone", "klue/roberta-base"], "cannot load backbone 'klue/roberta-base'"),
    (["--train", "/no/such/file.json"], "/no/such/file.json"),
])
def test_bad_train_arguments_exit_2_in_one_line(argv, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no locally cached hub models
    rc, out, err = cli(["train", "--out", tmp_path / "o", "--quiet", *argv], capsys)
    assert rc == 2
    assert len(err.strip().splitlines()) == 1, err
    assert needle in err and "error" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "best").exists()


def test_unknown_flag_exits_2(tmp_path, capsys):
    # reported by the top-level parser (relex.cli), which puts its one-line usage first
    rc, _, err = cli(["train", "--out", tmp_path / "o", "--bogus", "1"], capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "unrecognized arguments: --bogus" in lines[0]


def test_bad_evaluate_and_predict_arguments(trained, files, tmp_path, capsys):
    cases = [
        (["evaluate", tmp_path / "nope", files["valid"]], "checkpoint directory not found"),
        (["evaluate", trained / "best", files["valid"], "--batch-size", "0"], "must be at least 1"),
        (["evaluate", trained / "best", files["test_json"]], "label"),
        (["predict", trained / "best", files["valid"]], "--output"),
        (["predict", trained / "best", tmp_path / "missing.json", "--output", tmp_path / "p.csv"], "missing.json"),
    ]
    for argv, needle in cases:
        rc, _, err = cli(argv, capsys)
        assert rc == 2, argv
        assert len(err.strip().splitlines()) == 1, err
        assert needle in err, err


def test_help_lists_every_config_field_and_choices(capsys):
    from relex.config import HEADS, MARKER_STYLES

    rc, out, _ = cli(["train", "--help"], capsys)
    assert rc == 0
    for name in TrialConfig.field_names():
        assert "--" + name.replace("_", "-") in out, name
    assert "--no-erpe" in out and "--valid-fraction" in out and "--labels" in out
    assert "--skip-bad-rows" in out and "--negative-label" in out
    flat = " ".join(out.split())
    for choice in (*MARKER_STYLES, *HEADS):
        assert choice in flat
    # help text comes from the config field itself
    assert " ".join(TrialConfig.__dataclass_fields__["ema"].metadata["help"].split()) in flat


def test_save_state_and_resume_continue_an_interrupted_run(files, tmp_path, capsys, monkeypatch):
    import relex.train.fit as fit_module

    flags = ["--train", files["train"], "--valid", files["valid"], "--quiet", *FAST_FLAGS,
             "--max-steps", "6", "--eval-every", "2", "--checkpoint-every", "2", "--save-state"]
    rc, _, err = cli(["train", "--out", tmp_path / "full", *flags], capsys)
    assert rc == 0, err
    real, calls = fit_module.train_step, []

    def interrupted(run, micro_batches):
        calls.append(1)
        if len(calls) == 6:  # the machine goes away during step 6; the state of step 4 is there
            raise KeyboardInterrupt
        return real(run, micro_batches)

    monkeypatch.setattr(fit_module, "train_step", interrupted)
    rc, _, err = cli(["train", "--out", tmp_path / "cut", *flags], capsys)
    assert rc == 130 and "interrupted" in err
    monkeypatch.undo()
    state = tmp_path / "cut" / "state"
    assert json.loads((state / "state.json").read_text())["objects"]["position"]["step"] == 4
    rc, out, err = cli(["train", "--out", tmp_path / "cut", *flags, "--resume", state], capsys)
    assert rc == 0, err

    def history(run):
        return [{k: v for k, v in json.loads(line).items() if k != "wall_s"}
                for line in (tmp_path / run / "history.jsonl").read_text().splitlines()]

    assert [h["step"] for h in history("cut")] == [2, 4, 6] and history("cut") == history("full")
    for name in ("model.safetensors", "encoder/model.safetensors"):
        assert (tmp_path / "cut" / "best" / name).read_bytes() == (tmp_path / "full" / "best" / name).read_bytes()


SPLIT_JOB = '''
from relex.sweep import Sweep
sweep = Sweep(name="same-rows", train={train!r}, valid=0.25, seeds=[7], {split}
              space=dict(tiny_hidden=32, tiny_layers=1, tiny_heads=2, max_length=80, max_steps=1))
'''


@pytest.mark.parametrize("split_seed", [None, 3])
def test_train_and_a_sweep_trial_validate_on_the_same_rows(tmp_path, capsys, monkeypatch, split_seed):
    """One rule for the held-out split, a data setting seeded apart from the trial's seed:
    `relex train --valid-fraction F [--split-seed N]` and `Sweep(valid=F[, split_seed=N])` hold
    out the same rows for a configuration of seed 7 (it was the trial's seed in relex train)."""
    from relex.data.sample import SAMPLE_PATH
    from relex.sweep.job import load_job
    from relex.sweep.runner import preflight
    from relex.train import fit as fit_mod

    validated = []
    real_fit = fit_mod.fit

    def recording_fit(cfg, train_ds, valid_ds, out, **kw):
        validated.append(valid_ds.frame["id"].tolist())
        return real_fit(cfg, train_ds, valid_ds, out, **kw)

    monkeypatch.setattr(fit_mod, "fit", recording_fit)
    flags = ["--split-seed", str(split_seed)] if split_seed is not None else []
    rc, _, err = cli(["train", "--out", tmp_path / "run", "--valid-fraction", "0.25", "--seed", "7",
                      "--max-steps", "1", *FAST_FLAGS, *flags], capsys)
    assert rc == 0, err
    assert f"split seed {0 if split_seed is None else split_seed}" in err
    job_file = tmp_path / "job.py"
    job_file.write_text(SPLIT_JOB.format(
        train=str(SAMPLE_PATH), split="" if split_seed is None else f"split_seed={split_seed},"))
    job = load_job(job_file)
    assert job.trials[0].config.seed == 7
    prepared, _ = preflight(job, tmp_path / "sweep")
    trial_valid = prepared.split(None)[1].frame["id"].tolist()  # what the trial validates on
    assert validated == [trial_valid]
    default_rows = stratified_ids(SAMPLE_PATH, 0.25, 0)
    assert (trial_valid == default_rows) is (split_seed is None)


def stratified_ids(path, fraction, seed):
    from relex.data import read_dataset, stratified_split

    return stratified_split(read_dataset(path), fraction, seed)[1].frame["id"].tolist()
