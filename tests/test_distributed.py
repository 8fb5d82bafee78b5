"""Data-parallel training (relex.train.distributed) on CPU with gloo, two processes started by
torch alone (run_local): the same relex step as Ray Train's workers run.

Equivalence: 2 workers x batch b reach the weights of 1 worker x batch 2b after k steps within
ATOL (float32; the two runs sum the batch's gradients in a different order and pad their
batches to different lengths), on a backbone and head without dropout (dropout draws differ
between workers by design). Resume: a state written by 2 workers continues on 1 worker to the
weights the 2-worker run reaches.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from relex.config import TrialConfig
from relex.errors import RelexError

ATOL = 2e-5  # the weights move by about 1e-2 in these runs (checked below)
FAST = dict(tiny_hidden=32, tiny_layers=1, tiny_heads=2, eval_batch_size=128, epochs=1,
            lr=5e-3, max_length=80, warmup_ratio=0.0, num_threads=1, head_dropout=0.0,
            eval_every=3, max_steps=6)


@pytest.fixture(scope="module")
def split():
    from relex.data import read_dataset, stratified_split
    from relex.data.sample import SAMPLE_PATH

    return stratified_split(read_dataset(SAMPLE_PATH), 0.2, seed=0)


@pytest.fixture(scope="module")
def no_dropout_backbone(split, tmp_path_factory, session_cache):
    """relex/tiny at FAST's size, saved with its dropout switched off."""
    from relex.model.backbone import resolve_backbone

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RELEX_CACHE", str(session_cache))
        built = resolve_backbone("relex/tiny", corpus=split[0].frame["sentence"].tolist(),
                                 cfg=TrialConfig(**FAST))
    out = tmp_path_factory.mktemp("backbone") / "tiny-no-dropout"
    shutil.copytree(built, out)
    conf = json.loads((out / "config.json").read_text())
    conf.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (out / "config.json").write_text(json.dumps(conf))
    return str(out)


def train(split, out: Path, backbone: str, *, resume_from=None, on_evaluate=None, **overrides):
    """Train with cfg.workers processes (one: the plain fit); the final state's model weights."""
    from relex.train.distributed import WorkerRun, prepare_inputs, run_local
    from relex.train.fit import fit

    cfg = TrialConfig(**{**FAST, "backbone": backbone, **overrides})
    if cfg.workers == 1 and on_evaluate is None:
        fit(cfg, *split, out, state_dir=out / "state", resume_from=resume_from, progress=False)
    else:
        bb, cache = prepare_inputs(cfg, *split)
        job = WorkerRun(cfg, *split, str(out), state_dir=str(out / "state"), resume_from=resume_from,
                        features_cache=cache, backbone_path=bb, on_evaluate=on_evaluate)
        run_local(cfg.workers, job.fit)
    return weights(out / "state")


def weights(state: Path) -> dict[str, np.ndarray]:
    return {k: v for k, v in load_file(str(state / "tensors.safetensors")).items() if k.startswith("model/")}


def max_diff(a, b) -> float:
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


@pytest.fixture(scope="module")
def two_workers(split, no_dropout_backbone, tmp_path_factory):
    out = tmp_path_factory.mktemp("two")
    saver = KeepStateAt(3, str(out / "state-at-3"))
    return train(split, out / "run", no_dropout_backbone, workers=2, batch_size=8, on_evaluate=saver), out


class KeepStateAt:
    """The leader's on_evaluate: copy the state written at ``step`` (picklable for spawn)."""

    def __init__(self, step: int, dest: str):
        self.step, self.dest = step, dest

    def __call__(self, ev) -> None:
        if ev.step == self.step:
            shutil.copytree(ev.state, self.dest)


def test_two_workers_reach_one_workers_weights_with_twice_the_batch(split, no_dropout_backbone,
                                                                     two_workers, tmp_path):
    two, out = two_workers
    one = train(split, tmp_path / "one", no_dropout_backbone, batch_size=16)
    start = weights_at_start(split, no_dropout_backbone, tmp_path)
    assert max_diff(one, start) > 100 * ATOL  # the weights moved: the comparison means something
    assert max_diff(two, one) < ATOL
    history = [json.loads(line) for line in (out / "run" / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [3, 6]  # the leader alone evaluated and wrote
    summary = json.loads((out / "run" / "metrics.json").read_text())
    assert summary["examples_seen"] == 6 * 16  # global examples: both workers' shares
    # one worker with the per-worker batch takes other steps: the test can tell runs apart
    small = train(split, tmp_path / "small", no_dropout_backbone, batch_size=8)
    assert max_diff(two, small) > 100 * ATOL


def weights_at_start(split, backbone, tmp_path):
    from relex.train.fit import prepare, save_state

    run = prepare(TrialConfig(**{**FAST, "backbone": backbone, "batch_size": 16}), *split,
                  tmp_path / "start", backbone_path=backbone)
    return weights(save_state(run, tmp_path / "start" / "state"))


def test_a_two_worker_state_resumes_on_one_worker(split, no_dropout_backbone, two_workers, tmp_path):
    two, out = two_workers
    state = out / "state-at-3"
    meta = json.loads((state / "state.json").read_text())
    assert meta["objects"]["position"]["step"] == 3
    resumed = train(split, tmp_path / "resumed", no_dropout_backbone, resume_from=str(state),
                    workers=1, global_batch_size=16)
    assert max_diff(resumed, two) < ATOL
    # the batch must stay the same: a state of 16 examples per batch does not resume with 8
    with pytest.raises(RelexError, match="--global-batch-size 16"):
        train(split, tmp_path / "bad", no_dropout_backbone, resume_from=str(state), workers=1,
              batch_size=8)


def test_shards_cover_the_batch_once_and_weigh_it_whole():
    from relex.train.distributed import shard

    idx = np.arange(7)
    parts = [shard(idx, r, 3) for r in range(3)]
    assert sorted(np.concatenate([p for p, _ in parts]).tolist()) == idx.tolist()
    assert sum(s for _, s in parts) == pytest.approx(3.0)  # shares x world: the mean of the world
    # fewer rows than workers: the idle worker repeats a row with no weight
    rows, share = shard(np.array([5]), 1, 2)
    assert rows.tolist() == [5] and share == 0.0


def test_global_batch_size_must_divide_between_workers():
    with pytest.raises(RelexError, match="global_batch_size=10 is invalid: must divide evenly"):
        TrialConfig(workers=4, global_batch_size=10).validate()
    assert TrialConfig(workers=4, batch_size=8).global_batch() == 32
    assert TrialConfig(workers=4, global_batch_size=32, batch_size=3).worker_batch() == 8


@pytest.mark.parametrize("extra, expected", [
    (["--logger", "tensorboard"], "--logger is not available with --workers > 1"),
    (["--resume", "STATE"], "the state was saved with a different configuration ("),
])
def test_relex_train_workers_refuses_before_any_worker_starts(two_workers, tmp_path, capsys,
                                                              monkeypatch, extra, expected):
    """One line, exit 2, before Ray: what cannot run is said before workers are launched."""
    import relex.train.workers as workers
    from relex.cli import main

    def no_ray(*a, **k):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(workers, "start_ray", no_ray)
    _, out = two_workers
    argv = ["train", "--workers", "2", "--batch-size", "4", "--out", str(tmp_path / "o"),
            "--tiny-hidden", "32", "--tiny-layers", "1", "--max-length", "80", "--quiet",
            *[str(out / "state-at-3") if a == "STATE" else a for a in extra]]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and expected in err, err
