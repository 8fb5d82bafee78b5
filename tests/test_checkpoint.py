"""Checkpoints and training states: complete, pickle-free, loadable, exact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from relex.config import TrialConfig
from relex.errors import RelexError

# a quick run on the bundled sample: the tiniest encoder, a few optimizer steps
FAST = dict(tiny_hidden=32, tiny_layers=1, tiny_heads=2, batch_size=16, eval_batch_size=64,
            lr=2e-3, epochs=1, max_steps=6, eval_every=3, max_length=96, warmup_ratio=0.0)

PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


@pytest.fixture(scope="module")
def sample_split():
    from relex.data import read_dataset, stratified_split
    from relex.data.sample import SAMPLE_PATH

    ds = read_dataset(SAMPLE_PATH)
    return stratified_split(ds, 0.25, seed=0)


@pytest.fixture(scope="module")
def trained(sample_split, tmp_path_factory, session_cache):
    from relex.train.fit import fit

    train_ds, valid_ds = sample_split
    out = tmp_path_factory.mktemp("ckpt-run")
    states = {}

    def hook(ev):
        import shutil

        states[ev.step] = shutil.copytree(ev.state, out / f"state-{ev.step}")

    cfg = TrialConfig(**FAST, erpe=True, head="rbert")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RELEX_CACHE", str(session_cache))
        res = fit(cfg, train_ds, valid_ds, out, progress=False, on_evaluate=hook, state_dir=out / "state")
    return cfg, res, out, states


def test_checkpoint_files_and_no_pickle(trained):
    cfg, res, out, states = trained
    best = res.best_dir
    assert best == out / "best"
    for name in ("model.safetensors", "config.json", "labels.json", "tokenizer", "encoder/config.json",
                 "encoder/model.safetensors", "checkpoint.json"):
        assert (best / name).exists(), name
    for root in [best, *states.values()]:
        for f in Path(root).rglob("*"):
            if f.is_file():
                assert f.suffix not in (".bin", ".pt", ".pth", ".pkl", ".pickle"), f
                assert not f.read_bytes()[:2] in PICKLE_MAGIC, f
    saved = TrialConfig.from_json((best / "config.json").read_text())
    assert saved == cfg
    labels = json.loads((best / "labels.json").read_text())
    assert labels["names"] == list(res.label_names) and labels["negative"] == "no_relation"
    info = json.loads((best / "checkpoint.json").read_text())
    assert info["step"] == res.best_step and info["metrics"]["micro_f1"] == res.best_metrics["micro_f1"]
    # no temporary directories left behind by the atomic writes
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_load_round_trip_is_exact(trained, sample_split):
    from relex import metrics as M
    from relex.data.features import featurize
    from relex.train import checkpoint as ckpt
    from relex.train.predict import predict_probs

    cfg, res, out, _ = trained
    model, tokenizer, cfg2, labels = ckpt.load(res.best_dir)
    assert cfg2 == cfg and tuple(labels.names) == res.label_names
    assert not model.training
    feats = featurize(sample_split[1], tokenizer, cfg2.marker, cfg2.max_length)
    probs = predict_probs(model, feats, batch_size=cfg2.eval_batch_size)
    np.testing.assert_array_equal(probs, res.valid_probs)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-9)
    m = M.compute(sample_split[1].label_ids(), probs, labels.names, labels.negative, per_class=False)
    for k in ("micro_f1", "auprc", "accuracy"):
        assert m[k] == res.best_metrics[k]
    # the batch size changes nothing but the padding: same predictions
    probs_small = predict_probs(model, feats, batch_size=5)
    np.testing.assert_allclose(probs_small, probs, atol=1e-5)
    assert (probs_small.argmax(1) == probs.argmax(1)).all()


def test_evaluate_reproduces_the_score_its_run_reported(sample_split, tmp_path, capsys, monkeypatch,
                                                        cpu_bf16):
    """One precision rule: the run trains in what amp=auto picks on its CPU (bf16 where it is
    native) and scores its validation in float32; `relex evaluate` of the best checkpoint (float32
    too), on a CPU with native bf16 or without, gives back exactly the probabilities and the best
    scores the run reported."""
    import relex
    from test_train_cli import cli, write_klue_json

    from relex.train.amp import NATIVE_BF16_ENV
    from relex.train.fit import fit

    train_ds, valid_ds = sample_split
    cfg = TrialConfig(**{**FAST, "max_steps": 3, "eval_every": 3, "num_threads": 1})
    res = fit(cfg, train_ds, valid_ds, tmp_path / "run", progress=False)
    assert res.amp == ("bf16" if cpu_bf16 else "off")
    valid_file = write_klue_json(valid_ds, tmp_path / "valid.json")
    for evaluating_cpu_has_bf16 in ("1", "0"):
        monkeypatch.setenv(NATIVE_BF16_ENV, evaluating_cpu_has_bf16)
        probs = relex.load(tmp_path / "run").predict_proba(valid_ds)
        np.testing.assert_array_equal(probs, res.valid_probs)
        rc, out, err = cli(["evaluate", tmp_path / "run", valid_file, "--json"], capsys)
        assert rc == 0, err
        scores = json.loads(out)
        assert scores["n"] == len(valid_ds)
        for k in ("micro_f1", "auprc", "accuracy"):
            assert scores[k] == res.best_metrics[k], k


def test_a_bf16_trained_checkpoint_predicts_where_there_is_no_bf16(sample_split, tmp_path, monkeypatch):
    """--amp bf16 is a training setting: its checkpoint loads and predicts (in float32, the
    probabilities its run validated with) on a device that refuses bf16."""
    import relex
    from relex.train import amp as amp_mod
    from relex.train.fit import fit

    train_ds, valid_ds = sample_split
    cfg = TrialConfig(**{**FAST, "max_steps": 3, "eval_every": 3, "num_threads": 1, "amp": "bf16"})
    res = fit(cfg, train_ds, valid_ds, tmp_path / "run", progress=False)
    assert res.amp == "bf16"
    real = amp_mod.resolve

    def without_bf16(requested, device):
        if requested == "bf16":
            raise RelexError("amp=bf16: this GPU does not support bfloat16; use --amp fp16 or auto")
        return real(requested, device)

    monkeypatch.setattr(amp_mod, "resolve", without_bf16)
    model = relex.load(tmp_path / "run")
    assert model.config.amp == "bf16"
    np.testing.assert_array_equal(model.predict_proba(valid_ds), res.valid_probs)
    with pytest.raises(RelexError, match="does not support bfloat16"):
        relex.load(tmp_path / "run", amp="bf16")  # asked for at inference: refused at once


def test_encoder_loads_with_transformers(trained):
    from transformers import AutoModel

    from relex.train import checkpoint as ckpt

    _, res, _, _ = trained
    model, _, _, _ = ckpt.load(res.best_dir)
    enc = AutoModel.from_pretrained(str(res.best_dir / "encoder"))
    theirs = enc.state_dict()
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(theirs[k], v), k


def test_load_rejects_incomplete_checkpoint(trained, tmp_path):
    import shutil

    from relex.train import checkpoint as ckpt

    _, res, _, _ = trained
    with pytest.raises(RelexError, match="checkpoint directory not found"):
        ckpt.load(tmp_path / "nope")
    broken = tmp_path / "broken"
    shutil.copytree(res.best_dir, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(RelexError, match="missing model.safetensors"):
        ckpt.load(broken)
    # a head file from another model does not silently load
    shutil.copytree(res.best_dir, tmp_path / "other")
    from safetensors.torch import load_file, save_file

    head = load_file(str(tmp_path / "other" / "model.safetensors"))
    head.pop(sorted(head)[0])
    save_file(head, str(tmp_path / "other" / "model.safetensors"))
    with pytest.raises(RelexError, match="missing tensors"):
        ckpt.load(tmp_path / "other")


def test_save_replaces_atomically(trained, tmp_path):
    from relex.train import checkpoint as ckpt

    cfg, res, _, _ = trained
    model, tokenizer, cfg2, labels = ckpt.load(res.best_dir)
    target = tmp_path / "ck"
    ckpt.save(target, model, tokenizer, cfg2, labels, info={"step": 1})
    (target / "stale.txt").write_text("old")
    ckpt.save(target, model, tokenizer, cfg2, labels, info={"step": 2})
    assert not (target / "stale.txt").exists()  # replaced whole
    assert ckpt.read_info(target)["step"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]


def test_training_state_contents(trained):
    from relex.train import state as state_io

    cfg, res, out, states = trained
    assert sorted(states) == [h["step"] for h in res.history]
    last = states[max(states)]
    # lean: two files, the best checkpoint referred to by path, not copied
    assert sorted(p.name for p in last.iterdir()) == [state_io.STATE, state_io.TENSORS]
    doc = json.loads((last / state_io.STATE).read_text())
    assert doc["meta"]["config"] == cfg.to_dict() and doc["meta"]["best_dir"] == str(res.best_dir.resolve())
    assert doc["objects"]["position"]["step"] == res.steps
    assert sorted(doc["objects"]) == ["model", "optimizer", "position", "random", "scaler", "scheduler",
                                      "technique.erpe", "technique.llrd", "technique.losses"]
    from safetensors.torch import load_file

    tensors = load_file(str(last / state_io.TENSORS))
    assert any(k.endswith("/exp_avg") for k in tensors) and any(k.endswith("/exp_avg_sq") for k in tensors)
    assert any(k.startswith("model/encoder.") for k in tensors)


# ----------------------------------------------------------------------------- other versions
def evaluate_json(checkpoint, data, capsys) -> dict:
    from relex.cli import main

    assert main(["evaluate", str(checkpoint), str(data), "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    return {k: out[k] for k in ("micro_f1", "auprc", "accuracy")}, captured.err


@pytest.fixture(scope="module")
def valid_file(sample_split, tmp_path_factory):
    from test_train_cli import write_klue_json

    return write_klue_json(sample_split[1], tmp_path_factory.mktemp("valid") / "valid.json")


def test_unknown_training_key_loads_with_one_warning_and_same_metrics(trained, valid_file, tmp_path, capsys):
    import shutil

    _, res, _, _ = trained
    expected, _ = evaluate_json(res.best_dir, valid_file, capsys)
    future = shutil.copytree(res.best_dir, tmp_path / "future")
    config = json.loads((future / "config.json").read_text())
    config.update(swa_start=3, lookahead_k=5)  # training options of a later version
    (future / "config.json").write_text(json.dumps(config))
    got, err = evaluate_json(future, valid_file, capsys)
    assert got == expected
    assert err.strip().splitlines() == [
        f"relex: warning: {future}: ignoring training settings this relex version does not know: "
        "lookahead_k, swa_start"]


def test_unknown_model_key_or_newer_format_fails_in_one_line(trained, tmp_path):
    import shutil

    from relex.train import checkpoint as ckpt

    _, res, _, _ = trained
    other = shutil.copytree(res.best_dir, tmp_path / "other")
    info = json.loads((other / "checkpoint.json").read_text())
    info["model"]["head_pooling"] = "attention"
    (other / "checkpoint.json").write_text(json.dumps(info))
    with pytest.raises(RelexError, match="model setting 'head_pooling' is unknown") as e:
        ckpt.load(other)
    assert "\n" not in str(e.value)
    info["version"] = 3
    (other / "checkpoint.json").write_text(json.dumps(info))
    with pytest.raises(RelexError, match="format 3 is newer.*upgrade relex"):
        ckpt.load(other)


def test_format_1_checkpoint_loads_and_evaluates_the_same(trained, valid_file, tmp_path, capsys):
    import shutil

    _, res, _, _ = trained
    expected, _ = evaluate_json(res.best_dir, valid_file, capsys)
    old = shutil.copytree(res.best_dir, tmp_path / "old")
    # format 1: no model part in checkpoint.json, the whole flat config (of that time) in config.json
    info = json.loads((old / "checkpoint.json").read_text())
    del info["model"]
    info["version"] = 1
    (old / "checkpoint.json").write_text(json.dumps(info))
    config = json.loads((old / "config.json").read_text())
    for key in ("ema", "awp", "checkpoint_every"):  # fields format 1 did not have
        config.pop(key)
    (old / "config.json").write_text(json.dumps(config))
    got, err = evaluate_json(old, valid_file, capsys)
    assert got == expected and err == ""


def test_resume_rejects_other_config(trained, sample_split, tmp_path):
    from relex.train.fit import fit

    cfg, res, out, states = trained
    first = states[min(states)]
    with pytest.raises(RelexError, match="different configuration"):
        fit(cfg.replace(lr=1e-4), *sample_split, tmp_path / "x", resume_from=first, progress=False)
    with pytest.raises(RelexError, match="not a relex training state"):
        fit(cfg, *sample_split, tmp_path / "y", resume_from=tmp_path, progress=False)
