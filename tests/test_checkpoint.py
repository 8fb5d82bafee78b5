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
    from relex.train import fit

    train_ds, valid_ds = sample_split
    out = tmp_path_factory.mktemp("ckpt-run")
    states = {}

    def hook(ev):
        states[ev.step] = ev.save_state(out / f"state-{ev.step}")

    cfg = TrialConfig(**FAST, erpe=True, head="rbert")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RELEX_CACHE", str(session_cache))
        res = fit(cfg, train_ds, valid_ds, out, progress=False, on_evaluate=hook)
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

    cfg, res, out, _ = trained
    model, tokenizer, cfg2, labels = ckpt.load(res.best_dir)
    assert cfg2 == cfg and tuple(labels.names) == res.label_names
    assert not model.training
    feats = featurize(sample_split[1], tokenizer, cfg2.marker, cfg2.max_length)
    probs = ckpt.predict_probs(model, feats, batch_size=cfg2.eval_batch_size)
    np.testing.assert_array_equal(probs, res.valid_probs)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-9)
    m = M.compute(sample_split[1].label_ids(), probs, labels.names, labels.negative, per_class=False)
    for k in ("micro_f1", "auprc", "accuracy"):
        assert m[k] == res.best_metrics[k]
    # the batch size changes nothing but the padding: same predictions
    probs_small = ckpt.predict_probs(model, feats, batch_size=5)
    np.testing.assert_allclose(probs_small, probs, atol=1e-5)
    assert (probs_small.argmax(1) == probs.argmax(1)).all()


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
    cfg, res, out, states = trained
    assert sorted(states) == [h["step"] for h in res.history]
    last = states[max(states)]
    state = json.loads((last / "state.json").read_text())
    assert state["step"] == res.steps and state["config"] == cfg.to_dict()
    assert state["best_metrics"] == res.best_metrics
    for name in ("model.safetensors", "optimizer.safetensors", "rng.safetensors", "best/model.safetensors"):
        assert (last / name).is_file(), name
    from safetensors.torch import load_file

    opt = load_file(str(last / "optimizer.safetensors"))
    assert any(k.endswith(".exp_avg") for k in opt) and any(k.endswith(".exp_avg_sq") for k in opt)


def test_resume_rejects_other_config(trained, sample_split, tmp_path):
    from relex.train import fit

    cfg, res, out, states = trained
    first = states[min(states)]
    with pytest.raises(RelexError, match="different configuration"):
        fit(cfg.replace(lr=1e-4), *sample_split, tmp_path / "x", resume_from=first, progress=False)
    with pytest.raises(RelexError, match="not a relex training state"):
        fit(cfg, *sample_split, tmp_path / "y", resume_from=tmp_path, progress=False)
