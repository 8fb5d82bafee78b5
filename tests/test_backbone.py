"""The embedded tiny backbone and backbone-name resolution."""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path

import pytest
from transformers import AutoConfig, AutoModel, AutoTokenizer

from relex.config import TrialConfig
from relex.errors import RelexError
from relex.model import backbone as B
from relex.model import tiny as T
from relex.model.backbone import TINY, load_encoder, load_tokenizer, resolve_backbone
from relex.model.tiny import learn_wordpiece_vocab

SMALL = [
    "김민수는 한빛전자에서 근무한다.",
    "한빛전자의 대표 이서연은 기자회견을 열었다.",
    "박지훈은 1990년 3월 2일 하온시에서 태어났다.",
    "하온시에 본사를 둔 누리제약은 신약을 공개했다.",
    "김민수와 박지훈은 같은 무대에 올랐다.",
]


def sample_sentences() -> list[str]:
    from relex.data.sample import SAMPLE_PATH

    return [r["sentence"] for r in json.loads(Path(SAMPLE_PATH).read_text(encoding="utf-8"))]


# ----------------------------------------------------------------------- vocabulary learning
def naive_merges(sentences, merges, min_frequency=2):
    """Reference: recount every pair after every merge; ties to the smallest pair."""
    norm, pre = T._normalizer_and_pretokenizer()
    counts = Counter(w for s in set(sentences) for w, _ in pre.pre_tokenize_str(norm.normalize_str(s)))
    words = {w: [w[0]] + ["##" + c for c in w[1:]] for w in counts}
    learned, seen = [], {x for syms in words.values() for x in syms}
    while len(learned) < merges:
        pairs = Counter()
        for w, syms in words.items():
            for p in zip(syms, syms[1:]):
                pairs[p] += counts[w]
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        if pairs[best] < min_frequency:
            break
        a, b = best
        new = a + b[2:]
        if new not in seen:
            learned.append(new)
            seen.add(new)
        for w, syms in words.items():
            out, j = [], 0
            while j < len(syms):
                if j + 1 < len(syms) and syms[j] == a and syms[j + 1] == b:
                    out.append(new)
                    j += 2
                else:
                    out.append(syms[j])
                    j += 1
            words[w] = out
    return learned


def alphabet_size(sentences):
    return len(learn_wordpiece_vocab(sentences, 0))


def test_hand_worked_merges():
    # words: 가나 ×3, 가나다 ×1. Pair counts: (가, ##나)=4, (##나, ##다)=1.
    corpus = ["가나 가나 가나 가나다"]
    n = alphabet_size(corpus)
    assert learn_wordpiece_vocab(corpus, 10)[n:] == ["가나"]  # (가나, ##다)=1 < min_frequency 2
    assert learn_wordpiece_vocab(corpus, 10, min_frequency=1)[n:] == ["가나", "가나다"]
    assert learn_wordpiece_vocab(corpus, 1, min_frequency=1)[n:] == ["가나"]  # the cap


def test_alphabet_has_both_forms_of_every_character_and_ascii():
    vocab = learn_wordpiece_vocab(["가나다 라"], 0)
    for c in "가나다라@#*^pero0":
        assert c in vocab and "##" + c in vocab
    # frequency order first: every corpus character ahead of the ASCII ones it outnumbers
    assert vocab.index("가") < vocab.index("a")


def test_incremental_merges_match_naive_recount():
    sentences = sample_sentences()[:250]
    n = alphabet_size(sentences)
    fast = learn_wordpiece_vocab(sentences, 150)[n:]
    assert len(fast) == 150
    assert fast == naive_merges(sentences, 150)


def test_vocab_ignores_order_and_duplicate_sentences():
    s = sample_sentences()[:200]
    assert learn_wordpiece_vocab(s, 300) == learn_wordpiece_vocab(s[::-1] + s[:50], 300)


def test_normalizer_keeps_hangul_and_case():
    norm, _ = T._normalizer_and_pretokenizer()
    text = "한국어 문장 KLUE Café"
    assert norm.normalize_str(text) == text  # no NFD jamo split, no lowercasing


# ------------------------------------------------------------------------- the tiny backbone
@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> str:
    return resolve_backbone(TINY, cache_dir=tmp_path_factory.mktemp("backbones"))


def test_tiny_loads_through_from_pretrained_like_klue_roberta(tiny_dir):
    import torch
    from transformers import RobertaModel

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModel.from_pretrained(tiny_dir)
    assert tok.is_fast and isinstance(model, RobertaModel)
    assert [tok.convert_tokens_to_ids(t) for t in ("[CLS]", "[PAD]", "[SEP]", "[UNK]", "[MASK]")] == [0, 1, 2, 3, 4]
    assert (tok.cls_token, tok.sep_token, tok.pad_token, tok.unk_token, tok.mask_token) == (
        "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]")
    cfg = model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (128, 2, 2)
    assert cfg.intermediate_size == 4 * 128
    assert cfg.max_position_embeddings == 514 and cfg.type_vocab_size == 1
    assert cfg.pad_token_id == tok.pad_token_id == 1
    assert cfg.vocab_size == len(tok)
    assert tok.model_max_length == 512

    enc = tok("김민수는 한빛전자에서 근무한다.", "둘째 문장")
    ids = enc["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert ids.count(tok.sep_token_id) == 2
    assert set(enc.get("token_type_ids", [0])) == {0}  # type_vocab_size 1
    out = model(input_ids=torch.tensor([ids]))
    assert out.last_hidden_state.shape == (1, len(ids), 128)
    # the wrappers load the same directory the same way
    assert load_tokenizer(tiny_dir).get_vocab() == tok.get_vocab()
    assert type(load_encoder(tiny_dir)) is RobertaModel


def test_default_corpus_is_the_sample_and_korean_has_no_unk(tiny_dir):
    from relex.data.sample import SAMPLE_PATH

    rows = json.loads(Path(SAMPLE_PATH).read_text(encoding="utf-8"))
    tok = load_tokenizer(tiny_dir)
    meta = json.loads((Path(tiny_dir) / T.META_FILE).read_text())
    assert meta["corpus_sentences"] == len({r["sentence"] for r in rows})
    for r in rows:
        for text in (r["sentence"], r["subject_entity"]["word"], r["object_entity"]["word"]):
            ids = tok(text, add_special_tokens=False)["input_ids"]
            assert tok.unk_token_id not in ids, text
    # marker punctuation and the type words of the punct marker styles
    ids = tok("@ * per * 김민수 @ 와 # ^ org ^ 한빛전자 # [E1] </e2>")["input_ids"]
    assert tok.unk_token_id not in ids
    # learned pieces: frequent sample words are single tokens, not characters
    assert len(tok.tokenize("태어났다")) <= 2


def test_sizes_from_cfg_and_from_the_name(tmp_path):
    cfg = TrialConfig(tiny_hidden=64, tiny_layers=1, tiny_heads=4, tiny_vocab=120)
    p = resolve_backbone(TINY, corpus=SMALL, cfg=cfg, cache_dir=tmp_path)
    c = AutoConfig.from_pretrained(p)
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size) == (64, 1, 4, 256)
    assert c.vocab_size <= len(T.SPECIAL_TOKENS) + alphabet_size(SMALL) + 120

    q = resolve_backbone("relex/tiny-32x3", corpus=SMALL, cfg=cfg, cache_dir=tmp_path)
    c = AutoConfig.from_pretrained(q)
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads) == (32, 3, 4)
    assert p != q
    assert T.tiny_sizes("relex/tiny-256x4") == dict(hidden=256, layers=4, heads=2, vocab=8000)


def test_same_inputs_give_bit_identical_backbones(tmp_path):
    a = Path(resolve_backbone(TINY, corpus=SMALL, cache_dir=tmp_path / "a"))
    b = Path(resolve_backbone(TINY, corpus=list(reversed(SMALL)) + SMALL[:2], cache_dir=tmp_path / "b"))
    assert a.name == b.name  # key: the distinct sentences, not their order
    for f in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    c = Path(resolve_backbone(TINY, corpus=SMALL[:-1], cache_dir=tmp_path / "c"))
    assert c.name != a.name
    assert (c / "tokenizer.json").read_bytes() != (a / "tokenizer.json").read_bytes()


def test_second_call_is_a_cache_hit(tmp_path, monkeypatch):
    first = resolve_backbone(TINY, corpus=SMALL, cache_dir=tmp_path)
    mtime = (Path(first) / "model.safetensors").stat().st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("rebuilt on a cache hit")

    monkeypatch.setattr(T, "_train_tokenizer", boom)
    monkeypatch.setattr(T, "_init_encoder", boom)
    assert resolve_backbone(TINY, corpus=SMALL, cache_dir=tmp_path) == first
    assert (Path(first) / "model.safetensors").stat().st_mtime_ns == mtime


def test_default_cache_dir_is_under_cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("RELEX_CACHE", str(tmp_path))
    p = Path(resolve_backbone(TINY, corpus=SMALL))
    assert p.parent == tmp_path / "backbones"


def test_a_builder_that_loses_the_race_uses_the_winner(tmp_path, monkeypatch):
    winner = Path(resolve_backbone(TINY, corpus=SMALL, cache_dir=tmp_path))
    mtime = (winner / "model.safetensors").stat().st_mtime_ns
    real = T._complete
    calls = []

    def not_yet_the_first_time(path):  # the target appears while this builder works
        calls.append(path)
        return len(calls) > 1 and real(path)

    monkeypatch.setattr(T, "_complete", not_yet_the_first_time)
    assert Path(resolve_backbone(TINY, corpus=SMALL, cache_dir=tmp_path)) == winner
    assert len(calls) == 2  # it built, failed to rename, checked the winner
    assert (winner / "model.safetensors").stat().st_mtime_ns == mtime  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == [winner.name]  # no temp dirs left


def test_concurrent_builders_agree(tmp_path):
    results, errors = [], []

    def build():
        try:
            results.append(resolve_backbone(TINY, corpus=SMALL, cache_dir=tmp_path))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1
    assert [p.name for p in tmp_path.iterdir()] == [Path(results[0]).name]
    AutoModel.from_pretrained(results[0])


def test_empty_corpus_is_an_error(tmp_path):
    with pytest.raises(RelexError, match="corpus is empty"):
        resolve_backbone(TINY, corpus=["", "  "], cache_dir=tmp_path)
    with pytest.raises(RelexError, match="list of sentences"):
        resolve_backbone(TINY, corpus="한 문장", cache_dir=tmp_path)


# ---------------------------------------------------------------------------- other names
def one_line_error(name, **kw) -> str:
    with pytest.raises(RelexError) as e:
        resolve_backbone(name, **kw)
    msg = str(e.value)
    assert "\n" not in msg and name in msg
    return msg


def test_local_directory_with_config_is_returned_as_is(tiny_dir):
    assert resolve_backbone(tiny_dir) == tiny_dir


def test_bad_local_paths(tmp_path):
    assert "no config.json" in one_line_error(str(tmp_path))
    assert "no such directory" in one_line_error("./no-such-model-dir")
    assert "no such directory" in one_line_error(str(tmp_path / "missing" / "model"))
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x")
    assert "not a model directory" in one_line_error(str(f))


def test_unknown_embedded_names():
    assert "relex/tiny-<hidden>x<layers>" in one_line_error("relex/huge")
    assert "divisible" in one_line_error("relex/tiny-30x2", cfg=TrialConfig(tiny_heads=4))


def test_missing_hub_model_offline_fails_at_once(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    msg = one_line_error("klue/roberta-bsae")
    assert msg.startswith("cannot load backbone 'klue/roberta-bsae': not found locally")
    assert "HF_HUB_OFFLINE" in msg


def test_unreachable_hub_fails_at_once(monkeypatch):
    import huggingface_hub.constants as hub

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "ENDPOINT", "http://127.0.0.1:9")  # discard port: refused at once
    msg = one_line_error("klue/roberta-bsae")
    assert "unreachable" in msg and "cannot connect to 127.0.0.1" in msg


def test_invalid_hub_id():
    assert "valid model-hub id" in one_line_error("bad name!!")


def test_loaders_report_unloadable_directories(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(RelexError, match="cannot load tokenizer"):
        load_tokenizer(tmp_path)
    with pytest.raises(RelexError, match="cannot load backbone"):
        load_encoder(tmp_path)
