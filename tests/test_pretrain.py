"""`relex pretrain`: the corpus, the masking, exact resumption, and pretrain → train → predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from relex.config import PretrainConfig
from relex.data.corpus import read_corpus
from relex.data.sample import SAMPLE_PATH
from relex.errors import RelexError
from tests.test_train_cli import FAST_FLAGS, cli

# a tiny backbone that pretrains in a few seconds
TINY = dict(tiny_hidden=32, tiny_layers=1, tiny_heads=2, tiny_vocab=300, batch_size=16,
            max_length=64, num_threads=1)
TINY_FLAGS = ["--tiny-hidden", "32", "--tiny-layers", "1", "--tiny-vocab", "300", "--batch-size", "16",
              "--max-length", "64", "--num-threads", "1"]


@pytest.fixture(scope="module")
def corpus():
    return read_corpus([SAMPLE_PATH])


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


# ----------------------------------------------------------------------------- corpus
def test_corpus_merges_files_dedups_sentences_and_unions_their_spans(tmp_path):
    rows = json.loads(Path(SAMPLE_PATH).read_text(encoding="utf-8"))
    first = rows[0]
    text = tmp_path / "extra.txt"
    text.write_text(f"{first['sentence']}\n\n   \n새 문장이다.\n새 문장이다.\n", encoding="utf-8")
    c = read_corpus([SAMPLE_PATH, text])
    assert c.read == len(rows) + 5
    assert c.dropped_empty == 2
    distinct = {r["sentence"] for r in rows} | {"새 문장이다."}
    assert len(c) == len(distinct) and c.sentences == sorted(distinct)
    assert c.dropped_duplicates == c.read - c.dropped_empty - len(c)
    # every row's two entity spans are kept for its sentence; the plain-text line has none
    want = {(r["subject_entity"]["start_idx"], r["subject_entity"]["end_idx"]) for r in rows
            if r["sentence"] == first["sentence"]}
    want |= {(r["object_entity"]["start_idx"], r["object_entity"]["end_idx"]) for r in rows
             if r["sentence"] == first["sentence"]}
    assert set(c.spans[c.sentences.index(first["sentence"])]) == want
    assert c.spans[c.sentences.index("새 문장이다.")] == ()


@pytest.mark.parametrize("content, needle", [(None, "file not found"), ("\n \n", "no sentences"),
                                             (b"\xff\xfe\x00bad", "not UTF-8")])
def test_corpus_errors_name_the_file(tmp_path, content, needle):
    path = tmp_path / "c.txt"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(RelexError, match=needle) as e:
        read_corpus([path])
    assert str(path) in str(e.value) and "\n" not in str(e.value)


# ----------------------------------------------------------------------------- masking
@pytest.fixture(scope="module")
def tiny_run(corpus, tmp_path_factory):
    from relex.train.pretrain import prepare

    cfg = PretrainConfig(**TINY, steps=4, entity_masking=1.0, mlm_probability=1e-9)
    return prepare(cfg, corpus, tmp_path_factory.mktemp("p"), device="cpu")


def test_entity_masking_masks_exactly_the_entity_spans(tiny_run):
    from relex.train.pretrain import masked_batch

    run, enc = tiny_run, tiny_run.train
    idx = np.arange(12)
    batch = masked_batch(run, enc, idx)
    mask_id = run.tokenizer.mask_token_id
    for row, i in enumerate(idx):
        expected = sorted({int(t) for positions in enc.entity_tokens[i] for t in positions})
        assert expected, "every sample sentence has two entities"
        labelled = torch.nonzero(batch["labels"][row] != -100).flatten().tolist()
        assert labelled == expected  # the collator's own masking is off (probability ~0)
        assert (batch["input_ids"][row, expected] == mask_id).all()
        original = torch.tensor(enc.input_ids[i])
        assert torch.equal(batch["labels"][row, expected], original[expected])
        rest = [t for t in range(len(original)) if t not in expected]
        assert torch.equal(batch["input_ids"][row, rest], original[rest])


def test_entity_tokens_are_the_tokens_inside_the_character_span(tiny_run):
    from relex.train.pretrain import held_out_split

    run = tiny_run
    train_idx, _ = held_out_split(len(run.corpus), run.cfg.held_out, run.cfg.seed)
    for k in range(20):
        i = int(train_idx[k])
        text, spans = run.corpus.sentences[i], run.corpus.spans[i]
        offsets = run.train.offsets[k]
        special = run.train.special[k]
        for (start, end), positions in zip(spans, run.train.entity_tokens[k]):
            # the span's tokens: exactly those that overlap its characters (a token that runs on
            # past the entity, as 월에 for the entity 8월, is masked whole: it holds entity text)
            overlapping = [t for t, (a, b) in enumerate(offsets)
                           if not special[t] and a <= end and b > start]
            assert list(positions) == overlapping
            covered = {c for t in positions for c in range(*offsets[t])}
            assert {c for c in range(start, end + 1) if not text[c].isspace()} <= covered


def test_entity_masking_probability_zero_and_one():
    from relex.train.pretrain import mask_entity_spans

    ids = torch.arange(10).repeat(2, 1)
    spans = [[np.array([1, 2]), np.array([5])], [np.array([7, 8, 9])]]
    for p, want in ((0.0, []), (1.0, [[1, 2, 5], [7, 8, 9]])):
        inp, labels = ids.clone(), torch.full_like(ids, -100)
        mask_entity_spans(inp, labels, ids, spans, p, mask_id=99)
        got = [torch.nonzero(labels[r] != -100).flatten().tolist() for r in range(2)]
        assert got == (want or [[], []])
        assert ((inp == 99) == (labels != -100)).all()


def test_whole_word_masking_masks_all_pieces_of_a_word(corpus, tmp_path):
    from relex.train.pretrain import masked_batch, prepare

    run = prepare(PretrainConfig(**TINY, steps=2, whole_word=True, mlm_probability=0.3), corpus,
                  tmp_path, device="cpu")
    enc = run.train
    seen_multi_piece = 0
    batch = masked_batch(run, enc, np.arange(32))
    for row in range(32):
        offs = enc.offsets[row]
        masked = (batch["labels"][row] != -100).tolist()
        # pieces of one word: consecutive non-special tokens whose offsets touch
        for t in range(2, len(offs)):
            if offs[t][0] == offs[t - 1][1] and offs[t][1] > offs[t][0]:
                seen_multi_piece += 1
                assert masked[t] == masked[t - 1], f"row {row}: a word split by the mask at token {t}"
    assert seen_multi_piece > 0


# ----------------------------------------------------------------------------- resume
def test_resume_continues_exactly(corpus, tmp_path):
    from relex.train.pretrain import pretrain

    cfg = PretrainConfig(**TINY, steps=6, save_every=3, entity_masking=0.3, whole_word=True)
    whole = pretrain(cfg, corpus, tmp_path / "whole", progress=False, device="cpu")

    class Crash(Exception):
        pass

    def crash_at_3(m):
        if m["step"] == 3:
            raise Crash

    with pytest.raises(Crash):
        pretrain(cfg, corpus, tmp_path / "cut", progress=False, device="cpu", on_evaluate=crash_at_3)
    assert json.loads((tmp_path / "cut" / "relex_pretrain.json").read_text())["steps"] == 3
    resumed = pretrain(cfg, corpus, tmp_path / "cut", resume=True, progress=False, device="cpu")
    assert resumed["steps"] == whole["steps"] == 6
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "cut")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["held_out"] == whole["held_out"]
    assert resumed["tokens"] == whole["tokens"]


def test_resume_refuses_another_configuration_or_no_state(corpus, tmp_path):
    from relex.train.pretrain import pretrain

    cfg = PretrainConfig(**TINY, steps=2, save_every=1)
    pretrain(cfg, corpus, tmp_path / "a", progress=False, device="cpu")
    with pytest.raises(RelexError, match="different configuration.*lr"):
        pretrain(cfg.replace(lr=0.01), corpus, tmp_path / "a", resume=True, progress=False, device="cpu")
    with pytest.raises(RelexError, match="no pretraining state"):
        pretrain(cfg, corpus, tmp_path / "b", resume=True, progress=False, device="cpu")


# ----------------------------------------------------------------------------- end to end
def test_pretrain_then_train_then_predict(tmp_path, capsys):
    out = tmp_path / "tapt"
    rc, stdout, err = cli(["pretrain", "--corpus", SAMPLE_PATH, "--out", out, "--steps", "8",
                           "--save-every", "4", "--entity-masking", "0.5", "--whole-word",
                           "--mlm-probability", "0.2", "--lr", "3e-3", "--weight-decay", "0.05",
                           "--warmup-steps", "2", "--grad-clip", "0.5", "--amp", "off",
                           "--held-out", "0.05", "--seed", "7", "--quiet", *TINY_FLAGS], capsys)
    assert rc == 0, err
    assert "mlm_loss" in stdout and "mlm_accuracy" in stdout
    info = json.loads((out / "relex_pretrain.json").read_text())
    assert info["steps"] == 8 and info["corpus"]["sentences"] == 700
    assert info["corpus"]["held_out_sentences"] == 35  # 5% of 700
    cfg = info["config"]
    assert (cfg["entity_masking"], cfg["whole_word"], cfg["mlm_probability"], cfg["seed"]) == (0.5, True, 0.2, 7)
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [4, 8]
    assert all(np.isfinite(h["mlm_loss"]) and 0 <= h["mlm_accuracy"] <= 100 for h in history)

    run = tmp_path / "run"
    rc, stdout, err = cli(["train", "--backbone", out, "--out", run, "--epochs", "1", "--quiet",
                           *FAST_FLAGS], capsys)
    assert rc == 0, err
    # the classifier starts from the pretrained encoder, not from a fresh one
    pre = weights(out)["roberta.embeddings.word_embeddings.weight"]
    enc = load_file(str(run / "best" / "encoder" / "model.safetensors"))["embeddings.word_embeddings.weight"]
    assert enc.shape[1] == pre.shape[1]
    moved = (enc[:pre.shape[0]] - pre).abs().mean()
    assert moved < 0.5 * pre.abs().mean()  # fine-tuned a little, not re-initialised
    rc, stdout, err = cli(["predict", run / "best", SAMPLE_PATH, "--output", tmp_path / "sub.csv"], capsys)
    assert rc == 0, err
    assert len((tmp_path / "sub.csv").read_text().splitlines()) == 701


def test_plain_text_corpus_and_the_epochs_flag(tmp_path, capsys):
    text = tmp_path / "c.txt"
    sentences = [r["sentence"] for r in json.loads(Path(SAMPLE_PATH).read_text(encoding="utf-8"))][:200]
    text.write_text("\n".join(sentences), encoding="utf-8")
    rc, stdout, err = cli(["pretrain", "--corpus", text, "--out", tmp_path / "o", "--epochs", "1",
                           "--quiet", *TINY_FLAGS], capsys)
    assert rc == 0, err
    info = json.loads((tmp_path / "o" / "relex_pretrain.json").read_text())
    assert info["corpus"]["training_sentences"] == 196  # 200 less the 2% held out
    assert info["steps"] == 13  # ceil(196 / 16)


@pytest.mark.parametrize("argv, needle", [
    (["--corpus", "missing.json"], "missing.json: file not found"),
    (["--corpus", "EMPTY"], "no sentences"),
    (["--corpus", "TEXT", "--entity-masking", "0.5"], "no entity spans"),
    (["--corpus", SAMPLE_PATH, "--mlm-probability", "1.5"], "--mlm-probability=1.5 is invalid"),
    (["--corpus", SAMPLE_PATH, "--backbone", "GPT2"], "has no masked-language-model head"),
    (["--corpus", SAMPLE_PATH, "--backbone", "relex/tiny-nope"], "unknown embedded backbone"),
])
def test_errors_are_one_line_exit_2(argv, needle, tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    (tmp_path / "text.txt").write_text("한 문장.\n두 문장.\n세 문장.\n", encoding="utf-8")
    gpt2 = tmp_path / "gpt2"
    if "GPT2" in argv:
        from transformers import GPT2Config

        GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=50, bos_token_id=0, eos_token_id=0).save_pretrained(gpt2)
    subst = {"EMPTY": tmp_path / "empty.txt", "TEXT": tmp_path / "text.txt", "GPT2": gpt2,
             "missing.json": tmp_path / "missing.json"}
    argv = [subst.get(a, a) for a in argv]
    rc, stdout, err = cli(["pretrain", *argv, "--out", tmp_path / "o", "--steps", "2", "--quiet",
                           *TINY_FLAGS], capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err
    assert not (tmp_path / "o" / "model.safetensors").exists()


def test_metrics_go_to_trackers(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from tests.test_tracking import tensorboard_run

    out = tmp_path / "o"
    rc, _, err = cli(["pretrain", "--corpus", SAMPLE_PATH, "--out", out, "--steps", "4", "--save-every", "2",
                      "--logger", "tensorboard", "--quiet", *TINY_FLAGS], capsys)
    assert rc == 0, err
    scalars, hparams = tensorboard_run(out / "tensorboard")
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    for name in ("mlm_loss", "mlm_accuracy", "train_loss", "tokens_per_s"):
        assert [s for s, _ in scalars[name]] == [2, 4]
        assert np.allclose([v for _, v in scalars[name]], [h[name] for h in history], rtol=1e-5)
    assert hparams["backbone"] == "relex/tiny" and hparams["steps"] == 4


# ----------------------------------------------------------------------------- sweeps
@pytest.fixture(scope="module")
def pretrained_dir(corpus, tmp_path_factory):
    from relex.train.pretrain import pretrain

    out = tmp_path_factory.mktemp("sweep") / "tapt"
    pretrain(PretrainConfig(**TINY, steps=2, save_every=2), corpus, out, progress=False, device="cpu")
    return out


def test_a_sweep_grid_over_a_pretrained_directory_resolves_it_for_the_trials(pretrained_dir, tmp_path,
                                                                             monkeypatch):
    from relex.sweep.job import load_job
    from relex.sweep.runner import preflight
    from relex.sweep.trial import backbone_key

    monkeypatch.chdir(pretrained_dir.parent)  # the job names the directory relative to here
    job_file = tmp_path / "job.py"
    job_file.write_text(
        "from relex.sweep import Sweep, grid\n"
        f"sweep = Sweep(name='ab', train={str(SAMPLE_PATH)!r}, valid=0.2, seeds=[1, 2],\n"
        "              space=dict(backbone=grid(['relex/tiny', 'tapt']), tiny_hidden=32, tiny_layers=1,\n"
        "                         max_length=64, epochs=1))\n", encoding="utf-8")
    job = load_job(job_file)
    assert sorted(t.config.backbone for t in job.trials) == ["relex/tiny", "relex/tiny", "tapt", "tapt"]
    prepared, _ = preflight(job, tmp_path / "sweep")
    dirs = {t.config.backbone: prepared.backbones[backbone_key(t.config)] for t in job.trials}
    # trials run in directories of their own: they get the absolute path of the pretrained one
    assert dirs["tapt"] == str(pretrained_dir.resolve())
    assert Path(dirs["relex/tiny"]).is_absolute() and dirs["relex/tiny"] != dirs["tapt"]


def test_tapt_job_file_is_the_backbone_a_b_over_three_seeds(monkeypatch):
    from relex.sweep.job import load_job

    root = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("RELEX_TAPT", "/somewhere/tapt-tiny")
    job = load_job(root / "jobs" / "tapt.py", check_files=False)
    assert job.axes == ["backbone", "seed"]
    assert sorted((t.config.backbone, t.config.seed) for t in job.trials) == [
        (b, s) for b in ("/somewhere/tapt-tiny", "relex/tiny") for s in (1, 2, 3)]


# ----------------------------------------------------------------------------- the shipped default
def test_shipped_default_loads_as_fp32_copy_of_the_package_weights(tmp_path):
    from transformers import AutoModel

    from relex.model.backbone import load_tokenizer, resolve_backbone
    from relex.model.tiny import SHIPPED_DIR

    shipped = load_file(str(SHIPPED_DIR / "model.safetensors"))
    assert all(v.dtype == torch.float16 for v in shipped.values() if v.is_floating_point())
    assert sum(p.stat().st_size for p in SHIPPED_DIR.iterdir()) < 8e6  # a few MB in the package
    assert "CC BY-SA 4.0" in (SHIPPED_DIR / "README.md").read_text(encoding="utf-8")
    info = json.loads((SHIPPED_DIR / "relex_pretrain.json").read_text(encoding="utf-8"))
    assert info["format"] == "relex-pretrained" and info["steps"] > 0

    path = Path(resolve_backbone("relex/tiny-klue", cache_dir=tmp_path))
    assert path.parent == tmp_path and resolve_backbone("relex/tiny-klue", cache_dir=tmp_path) == str(path)
    copy = weights(path)
    assert copy.keys() == shipped.keys()
    for k, v in shipped.items():
        assert copy[k].dtype == (torch.float32 if v.is_floating_point() else v.dtype)
        assert torch.equal(copy[k], v.to(copy[k].dtype))
    encoder = AutoModel.from_pretrained(str(path))
    assert next(encoder.parameters()).dtype == torch.float32
    assert torch.equal(encoder.embeddings.word_embeddings.weight,
                       copy["roberta.embeddings.word_embeddings.weight"])
    tok = load_tokenizer(path)
    ids = tok("이순신은 조선 중기의 무신이다.")["input_ids"]
    assert tok.unk_token_id not in ids  # it has read Korean


def _klue_like(tmp_path: Path, source: str) -> Path:
    rows = json.loads(Path(SAMPLE_PATH).read_text(encoding="utf-8"))[:200]
    for r in rows:
        r["source"] = source
    path = tmp_path / f"{source}.json"
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.mark.parametrize("source, flags, want", [
    ("wikipedia", [], "relex/tiny-klue"),                          # KLUE-RE data: the shipped default
    ("wikipedia", ["--backbone", "relex/tiny"], "relex/tiny"),     # from scratch when asked
    ("relex-sample", [], "relex/tiny"),                            # other data: as before
])
def test_relex_train_defaults_to_the_shipped_backbone_on_klue_data(source, flags, want, tmp_path, capsys):
    data = _klue_like(tmp_path, source)
    rc, stdout, err = cli(["train", "--train", data, "--out", tmp_path / "run", "--max-steps", "2",
                           "--epochs", "1", *flags, *FAST_FLAGS], capsys)
    assert rc == 0, err
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["config"]["backbone"] == want
    assert (f"backbone {want}" in err) and (("KLUE-RE data" in err) == (want == "relex/tiny-klue"))
