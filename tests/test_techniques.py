"""What each technique changes in training, observed through the real step (relex.train.step).

Every test builds a run with ``relex.train.fit.prepare`` on the bundled sample (the tiniest
encoder) and calls ``train_step`` — the function ``fit`` calls — never a copy of it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from relex.config import TrialConfig

TINY = dict(tiny_hidden=32, tiny_layers=1, tiny_heads=2, batch_size=16, eval_batch_size=128,
            lr=5e-3, max_length=80, warmup_ratio=0.0, num_threads=1, epochs=2)


@pytest.fixture(scope="module")
def split():
    from relex.data import read_dataset, stratified_split
    from relex.data.sample import SAMPLE_PATH

    return stratified_split(read_dataset(SAMPLE_PATH), 0.2, seed=0)


def make_run(split, tmp_path, **overrides):
    from relex.train.fit import prepare

    return prepare(TrialConfig(**{**TINY, **overrides}), *split, tmp_path, device="cpu")


def first_batch(run, n=1):
    from relex.train.fit import epoch_batches, example_weights, micro_batch

    weights = example_weights(run)
    return [micro_batch(run, idx, weights) for idx in epoch_batches(run, 0)[:n]]


class Spy:
    """Records every forward of the model (the input_ids shape) and what the optimizer sees."""

    def __init__(self, run):
        self.shapes: list[tuple[int, ...]] = []
        self.at_optimizer: dict[str, torch.Tensor] = {}
        self.grads: dict[str, torch.Tensor] = {}
        self.outputs: list[torch.Tensor] = []
        run.model.register_forward_pre_hook(lambda m, args: self.shapes.append(tuple(args[0]["input_ids"].shape)))
        run.model.register_forward_hook(lambda m, args, out: self.outputs.append(out.detach()))
        real_step = run.scaler.step

        def step(optimizer, *a, **kw):
            for name, p in run.model.named_parameters():
                self.at_optimizer[name] = p.detach().clone()
                if p.grad is not None:
                    self.grads[name] = p.grad.detach().clone()
            return real_step(optimizer, *a, **kw)

        run.scaler.step = step


def weights_of(run) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in run.model.named_parameters()}


def step_with_spy(split, tmp_path, **overrides):
    from relex.train.step import train_step

    run = make_run(split, tmp_path, **overrides)
    spy = Spy(run)
    before = weights_of(run)
    torch.manual_seed(0)
    loss = train_step(run, first_batch(run))
    return run, spy, before, loss


@pytest.fixture(scope="module")
def plain(split, tmp_path_factory):
    return step_with_spy(split, tmp_path_factory.mktemp("plain"))


def test_techniques_are_found_and_switched_by_their_field(split, tmp_path):
    from relex.train.techniques import all_techniques

    modules = sorted(c.__module__.rsplit(".", 1)[1] for c in all_techniques())
    assert modules == ["awp", "ema", "erpe", "fgm", "hnm", "llrd", "losses", "rdrop"]
    assert sorted(make_run(split, tmp_path / "a").techniques) == ["llrd", "losses"]
    on = make_run(split, tmp_path / "b", fgm=0.1, awp=0.01, rdrop=1.0, ema=0.9, hnm=0.2, erpe=True)
    assert sorted(on.techniques) == modules


def test_plain_step_is_one_forward_and_moves_the_weights(plain):
    run, spy, before, loss = plain
    assert len(spy.shapes) == 1 and math.isfinite(float(loss))
    changed = [n for n, w in weights_of(run).items() if not torch.equal(w, before[n])]
    assert len(changed) > 0.9 * len(before)
    assert run.pos.step == 0  # the step function does not count: fit does


def test_fgm_two_passes_and_restored_embeddings(split, tmp_path, plain):
    run, spy, before, _ = step_with_spy(split, tmp_path, fgm=1.0)
    emb = "encoder.embeddings.word_embeddings.weight"
    assert len(spy.shapes) == 2 and spy.shapes[0] == spy.shapes[1]  # normal + adversarial
    # the optimizer saw the original embeddings (restored bit for bit after the attack) ...
    assert torch.equal(spy.at_optimizer[emb], before[emb])
    # ... and gradients that include the adversarial pass
    assert not torch.equal(spy.grads[emb], plain[1].grads[emb])


def test_awp_two_passes_and_every_matrix_restored(split, tmp_path, plain):
    run, spy, before, _ = step_with_spy(split, tmp_path, awp=0.05)
    assert len(spy.shapes) == 2
    for name, w in spy.at_optimizer.items():
        assert torch.equal(w, before[name]), name
    head = [n for n in spy.grads if n.startswith("head.") and n.endswith("weight")][0]
    assert not torch.equal(spy.grads[head], plain[1].grads[head])


def test_rdrop_one_forward_of_the_doubled_batch(split, tmp_path, plain):
    run, spy, before, loss = step_with_spy(split, tmp_path, rdrop=1.0)
    rows = plain[1].shapes[0][0]
    assert spy.shapes == [(2 * rows, plain[1].shapes[0][1])]
    # the loss is the mean task loss of the two halves plus α (1.0) times their symmetric KL
    first, second = spy.outputs[0][:rows].float(), spy.outputs[0][rows:].float()
    labels = first_batch(run)[0][0]["labels"]
    ce = torch.nn.functional.cross_entropy
    task = 0.5 * (ce(first, labels) + ce(second, labels))
    p, q = first.log_softmax(-1), second.log_softmax(-1)
    kl = 0.5 * ((p.exp() * (p - q)).sum(-1) + (q.exp() * (q - p)).sum(-1)).mean()
    assert float(kl) > 0  # dropout drew different masks for the two copies
    assert float(loss) == pytest.approx(float(task + kl), rel=1e-5)


def test_erpe_batches_carry_distances_and_change_the_output(split, tmp_path):
    run = make_run(split, tmp_path, erpe=True, erpe_clip=4)
    batch, _ = first_batch(run)[0]
    assert batch["subj_dist"].shape == batch["input_ids"].shape
    assert int(batch["subj_dist"].max()) <= 8 and int(batch["subj_dist"].min()) >= 0
    run.model.eval()
    with torch.no_grad():
        a = run.model(batch)
        run.model.erpe.subj.weight.add_(1.0)
        b = run.model(batch)
    assert not torch.allclose(a, b)


def test_llrd_decays_the_rates_of_lower_layers(split, tmp_path):
    run = make_run(split, tmp_path, llrd=0.5, tiny_layers=2)
    rates = {g["name"].split("/")[0]: g["lr"] for g in run.optimizer.param_groups}
    lr = TINY["lr"]
    assert rates["head"] == lr and rates["layer_2"] == lr
    assert rates["layer_1"] == pytest.approx(lr * 0.5) and rates["embeddings"] == pytest.approx(lr * 0.25)


def test_loss_seam_builds_the_configured_loss(split, tmp_path):
    run = make_run(split, tmp_path, loss="focal", focal_gamma=1.5, class_balanced=0.9)
    assert run.loss_fn.kind == "focal" and run.loss_fn.gamma == 1.5
    assert run.loss_fn.class_weights is not None


@pytest.mark.parametrize("mode", ["weight", "resample"])
def test_hnm_changes_the_next_epoch(split, tmp_path, mode):
    from relex.train.fit import epoch_batches, example_weights

    run = make_run(split, tmp_path, hnm=0.3, hnm_mode=mode, hnm_weight=4.0)
    base = make_run(split, tmp_path / "base")
    assert example_weights(run) is None  # nothing mined before the first epoch ends
    run.techniques["hnm"].end_of_epoch(run)
    hard = run.techniques["hnm"].miner.hard
    negatives = np.flatnonzero(run.train_labels == run.labels.negative_id)
    assert len(hard) == math.ceil(0.3 * len(negatives)) and set(hard) <= set(negatives)
    weights = example_weights(run)
    if mode == "weight":
        assert set(np.flatnonzero(weights.numpy() == 4.0)) == set(hard)
        assert (weights.numpy()[np.setdiff1d(np.arange(len(weights)), hard)] == 1.0).all()
    else:
        assert weights is None
        drawn = np.concatenate(epoch_batches(run, 1))
        plain = np.concatenate(epoch_batches(base, 1))
        assert len(drawn) == len(plain)
        # hard negatives are drawn about 4x as often as under uniform sampling
        assert np.isin(drawn, hard).sum() > 2 * np.isin(plain, hard).sum()


def test_ema_evaluates_the_average_not_the_raw_weights(split, tmp_path):
    from relex.train.step import train_step

    run = make_run(split, tmp_path, ema=0.5)
    ema = run.techniques["ema"]
    start = weights_of(run)
    train_step(run, first_batch(run))
    raw = weights_of(run)
    with ema.evaluation_weights(run):
        inside = weights_of(run)
    for name in raw:
        # one update: a = 0.5·θ0 + 0.5·θ1
        torch.testing.assert_close(inside[name], 0.5 * start[name] + 0.5 * raw[name], rtol=0, atol=1e-6)
    moved = [n for n in raw if not torch.equal(raw[n], start[n])]
    assert moved and all(not torch.equal(inside[n], raw[n]) for n in moved)
    after = weights_of(run)
    assert all(torch.equal(after[n], raw[n]) for n in raw)  # swapped back exactly


def test_ema_checkpoint_holds_the_averaged_weights(split, tmp_path):
    from safetensors.torch import load_file

    from relex.train.fit import fit

    res = fit(TrialConfig(**{**TINY, "ema": 0.9, "max_steps": 3, "eval_every": 3}), *split,
              tmp_path / "o", progress=False)
    saved = load_file(str(res.best_dir / "model.safetensors"))
    raw = fit(TrialConfig(**{**TINY, "max_steps": 3, "eval_every": 3}), *split, tmp_path / "p",
              progress=False)
    plain = load_file(str(raw.best_dir / "model.safetensors"))
    # same raw trajectory; the EMA run saved something else: the average
    assert res.history[0]["train_loss"] == raw.history[0]["train_loss"]
    assert any(not torch.equal(saved[k], plain[k]) for k in plain)
