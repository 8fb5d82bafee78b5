"""Mixed precision: bf16 where it is native, probabilities in full precision, and the CUDA-only
paths (fp16 with a grad scaler, its skipped steps) exercised on the CPU where torch allows it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from relex.train import amp


@pytest.fixture(autouse=True)
def _fresh_probe(monkeypatch):
    """These tests are about the probe itself: without the suite's pin, with an empty cache."""
    monkeypatch.delenv(amp.NATIVE_BF16_ENV, raising=False)
    amp.probe_native_bf16.cache_clear()
    yield
    amp.probe_native_bf16.cache_clear()


def test_cpu_flags_read_the_kernel_report(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_tile\n\n"
                    "processor\t: 1\nflags\t\t: fpu\n")
    assert {"avx512_bf16", "amx_tile", "avx2"} <= amp.cpu_flags(info)
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n")
    assert "bf16" in amp.cpu_flags(arm)
    assert amp.cpu_flags(tmp_path / "absent") == frozenset()


@pytest.mark.parametrize("avx512_bf16, amx, native", [(True, False, True), (False, True, True), (False, False, False)])
def test_auto_picks_bf16_exactly_where_the_cpu_has_it(monkeypatch, avx512_bf16, amx, native):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert amp.native_bf16("cpu") is native
    assert amp.resolve("auto", "cpu").mode == ("bf16" if native else "off")
    # an explicit choice is honoured either way
    assert amp.resolve("bf16", "cpu").mode == "bf16" and amp.resolve("off", "cpu").mode == "off"


def test_without_torch_probes_the_kernel_flags_decide(monkeypatch):
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.setattr(amp, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16"}))
    assert amp.native_bf16("cpu") is True
    amp.probe_native_bf16.cache_clear()
    monkeypatch.setattr(amp, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert amp.native_bf16("cpu") is False  # AVX-512 without BF16 emulates it: stay in fp32


def test_this_machine_agrees_with_its_own_flags():
    """The one test of the real CPU: its probe and its kernel flags agree."""
    flags = amp.cpu_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo flags on this system")
    has = bool(flags & {"avx512_bf16", "amx_bf16"})
    assert amp.native_bf16("cpu") is has
    assert amp.resolve("auto", "cpu").mode == ("bf16" if has else "off")


def test_cuda_auto_follows_native_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for native, mode in ((True, "bf16"), (False, "fp16")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True, n=native: n)
        amp.probe_native_bf16.cache_clear()
        assert amp.resolve("auto", "cuda").mode == mode
    from relex.errors import RelexError

    with pytest.raises(RelexError, match="does not support bfloat16"):
        amp.resolve("bf16", "cuda")


@pytest.mark.parametrize("value, native", [("1", True), ("on", True), ("0", False), ("no", False)])
def test_the_environment_overrides_the_cpu_probe(monkeypatch, value, native):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: not native, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: not native, raising=False)
    monkeypatch.setenv(amp.NATIVE_BF16_ENV, value)
    assert amp.native_bf16("cpu") is native
    assert amp.resolve("auto", "cpu").mode == ("bf16" if native else "off")
    assert amp.probe_native_bf16("cpu") is not native  # the hardware's own answer is still there


def test_a_bad_override_is_one_line_naming_the_variable(monkeypatch):
    from relex.errors import RelexError

    monkeypatch.setenv(amp.NATIVE_BF16_ENV, "maybe")
    with pytest.raises(RelexError, match=r"^RELEX_NATIVE_BF16='maybe' is invalid: use 1 .* or 0"):
        amp.resolve("auto", "cpu")


def test_inference_is_float32_unless_asked_whatever_the_device(monkeypatch):
    """A GPU without bf16: inference never asks the checkpoint's training precision of it, and an
    --amp given at inference time is resolved (or refused) there like a training setting."""
    from relex.errors import RelexError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    monkeypatch.setenv(amp.NATIVE_BF16_ENV, "1")
    for device in ("cpu", "cuda"):
        assert amp.for_inference(None, device) == amp.Amp("off", device)
    assert amp.for_inference("auto", "cuda").mode == "fp16"
    assert amp.for_inference("auto", "cpu").mode == "bf16"
    with pytest.raises(RelexError, match="does not support bfloat16"):
        amp.for_inference("bf16", "cuda")


# ---------------------------------------------------------------------------- probabilities
class FixedLogits(torch.nn.Module):
    """A model whose logits are stored per row: what autocast does to them is all there is."""

    def __init__(self, logits: np.ndarray):
        super().__init__()
        self.table = torch.nn.Parameter(torch.from_numpy(logits))

    def forward(self, batch):
        # a matmul with the identity runs in bf16 under autocast, as a classifier's last layer does
        rows = self.table[batch["index"]]
        return rows @ torch.eye(rows.shape[1])


def test_probabilities_come_from_float_logits_whatever_the_amp_mode():
    """bf16 logits tie far more often than float32 ones, and tied scores change KLUE's AUPRC:
    evaluation converts logits to probabilities in float64, and takes the model's logits as
    float32 — the same path with AMP on and off."""
    from relex import metrics as M
    from relex.data import features as F
    from relex.train.predict import predict_probs, probs_from_logits

    rng = np.random.default_rng(0)
    n, c = 400, 5
    logits = rng.normal(0, 0.01, size=(n, c)).astype(np.float32) + np.linspace(0, 0.05, c, dtype=np.float32)
    labels = rng.integers(0, c, size=n)
    feats = F.Features(flat=np.zeros(n * 3, np.int32), starts=np.arange(n) * 3, lengths=np.full(n, 3, np.int32),
                       subj_pos=np.ones(n, np.int64), obj_pos=np.ones(n, np.int64),
                       subj_span=np.ones((n, 2), np.int64), obj_span=np.ones((n, 2), np.int64),
                       labels=labels, windowed=np.zeros(n, bool), ids=[str(i) for i in range(n)], pad_id=0,
                       style="entity_marker", max_length=8)
    names = [f"l{i}" for i in range(c)]
    off = predict_probs(FixedLogits(logits), feats, amp=amp.resolve("off", "cpu"))
    np.testing.assert_allclose(off, probs_from_logits(logits), rtol=0, atol=1e-12)
    on = predict_probs(FixedLogits(logits), feats, amp=amp.resolve("bf16", "cpu"))
    assert on.dtype == np.float64 and off.dtype == np.float64
    # the softmax itself never runs in bf16: on the same (bf16-rounded) logits both paths agree
    bf16_logits = torch.from_numpy(logits).bfloat16().float().numpy()
    np.testing.assert_allclose(on, probs_from_logits(bf16_logits), rtol=0, atol=1e-12)
    auprc = M.compute(labels, probs_from_logits(bf16_logits), names, "l0", per_class=False)["auprc"]
    assert M.compute(labels, on, names, "l0", per_class=False)["auprc"] == auprc
    # what the float path avoids: probabilities rounded to bf16 tie, and the AUPRC moves
    rounded = torch.from_numpy(off).bfloat16().double().numpy()
    assert len(np.unique(rounded[:, 1])) < len(np.unique(off[:, 1])) / 4
    exact = M.compute(labels, off, names, "l0", per_class=False)["auprc"]
    assert M.compute(labels, rounded, names, "l0", per_class=False)["auprc"] != exact


# ---------------------------------------------------------------------------- fp16 + GradScaler on CPU
def test_fp16_scaler_skips_an_overflowed_step_and_backs_off():
    """The fp16 path of CUDA, on the CPU: ``torch.amp.GradScaler("cpu")`` scales the loss, skips
    the optimizer step whose gradients overflowed, halves its scale, and steps again after."""
    a = amp.resolve("fp16", "cpu")
    scaler = a.scaler()
    assert scaler.is_enabled()
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))

    def step(poison: bool):
        opt.zero_grad()
        with a.autocast():
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        scaler.scale(loss).backward()
        if poison:  # an fp16 overflow: one gradient became inf
            model.weight.grad[0, 0] = float("inf")
        scaler.unscale_(opt)
        scaler.step(opt)
        scaler.update()

    scale0 = scaler.get_scale()
    before = [p.detach().clone() for p in model.parameters()]
    step(poison=True)
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters()))  # skipped
    assert scaler.get_scale() == scale0 / 2
    step(poison=False)
    assert not torch.equal(before[0], model.weight)  # the next finite step applies


class EmbedClassifier(torch.nn.Module):
    """The smallest model FGM can attack: word embeddings → mean → linear. It records the
    weights each forward saw, so a test can see what the attack did inside the step."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(20, 8)
        self.out = torch.nn.Linear(8, 3)
        self.seen: list[dict[str, torch.Tensor]] = []

    def word_embeddings(self):
        return self.emb

    def forward(self, batch):
        self.seen.append({k: v.detach().clone() for k, v in self.state_dict().items()})
        return self.out(self.emb(batch["input_ids"]).mean(1))


@pytest.mark.parametrize("technique", ["fgm", "awp"])
@pytest.mark.parametrize("overflow", [False, True])
@pytest.mark.filterwarnings("error::UserWarning")  # e.g. torch's "scheduler before optimizer"
def test_fp16_scaler_with_the_adversarial_second_backward(technique, overflow):
    """FGM and AWP under the fp16 grad scaler, through relex's own training step: the attack reads
    the SCALED gradients (its perturbation, g/‖g‖ times a size, does not depend on the scale), the
    adversarial loss is scaled and backpropagated again, the weights are restored exactly before
    the optimizer steps; after an overflow the attack and its second backward are skipped, and so
    is the optimizer step."""
    from types import SimpleNamespace

    from relex.train.step import train_step
    from relex.train.techniques.awp import AWPTechnique
    from relex.train.techniques.fgm import FGMTechnique

    torch.manual_seed(0)
    model = EmbedClassifier()
    cfg = SimpleNamespace(fgm=1.0 if technique == "fgm" else 0.0,
                          awp=0.01 if technique == "awp" else 0.0, grad_clip=1.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    run = SimpleNamespace(cfg=cfg, model=model, amp=amp.resolve("fp16", "cpu"), optimizer=opt,
                          scheduler=torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0),
                          loss_fn=lambda logits, labels, w: torch.nn.functional.cross_entropy(logits, labels))
    run.scaler = run.amp.scaler()
    run.forward = model  # the step's training forward (one worker: the model itself)
    cls = FGMTechnique if technique == "fgm" else AWPTechnique
    run.techniques = {technique: cls(cfg, run)}
    # FGM moves the embedding table by ε; AWP each weight matrix by γ·‖W‖
    probe, size = (("emb.weight", 1.0) if technique == "fgm"
                   else ("out.weight", 0.01 * torch.linalg.vector_norm(model.out.weight).item()))
    if overflow:  # an fp16 overflow in the first backward: one gradient becomes inf
        hook = model.emb.weight.register_hook(lambda g: g.index_put((torch.tensor([0]), torch.tensor([0])),
                                                                    torch.tensor(float("inf"))))
    batch = {"input_ids": torch.randint(0, 20, (6, 5)), "labels": torch.randint(0, 3, (6,))}
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    scale = run.scaler.get_scale()
    loss = train_step(run, [(batch, None)])

    assert torch.isfinite(loss)
    assert len(model.seen) == (1 if overflow else 2)  # the second forward only after an attack
    if not overflow:
        delta = model.seen[1][probe] - before[probe]
        assert torch.linalg.vector_norm(delta).item() == pytest.approx(size, rel=1e-3)
    after = model.state_dict()
    if overflow:  # skipped: not a bit moved (restored, then no optimizer step), scale halved
        hook.remove()
        assert all(torch.equal(before[k], after[k]) for k in before)
        assert run.scaler.get_scale() == scale / 2
        assert run.scheduler.last_epoch == 0  # a skipped step does not move the schedule
    else:
        assert not torch.equal(before["out.weight"], after["out.weight"])
        assert run.scaler.get_scale() == scale and run.scheduler.last_epoch == 1
        # restored before the step: the update is plain SGD on the summed, unscaled, clipped
        # gradients, never applied on top of the perturbation
        moved = {k: before[k] - after[k] for k in before}
        assert torch.linalg.vector_norm(torch.cat([m.flatten() for m in moved.values()])).item() \
            <= 0.5 * 1.0 + 1e-5


def test_cuda_generators_survive_a_saved_and_loaded_state(tmp_path, monkeypatch):
    """Resume on a GPU restores every CUDA generator: run on the CPU with torch.cuda's generator
    functions standing in for two devices."""
    from relex.train import state

    gens = [torch.ByteTensor(list(range(16))), torch.ByteTensor(list(range(16, 32)))]
    restored = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [g.clone() for g in gens])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: restored.update(cuda=list(states)))
    state.save(tmp_path / "s", {"rng": state.RandomState()})
    gens[0].zero_()  # the generators move on after the save
    state.load(tmp_path / "s", {"rng": state.RandomState()})
    assert [t.tolist() for t in restored["cuda"]] == [list(range(16)), list(range(16, 32))]
