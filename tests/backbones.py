"""Local stand-ins for the real backbones: one tokenizer of each kind they use, beside a small
randomly initialised model of the matching family, built with no model hub.

========================  ==========================  ==============  ===========================
kind                      tokenizer class             model           like
========================  ==========================  ==============  ===========================
``bert``                  BertTokenizerFast           BertModel       klue/bert-base
``klue-roberta``          BertTokenizerFast           RobertaModel    klue/roberta-base
``electra``               ElectraTokenizerFast [#]_   ElectraModel    koelectra-base-v3
``xlmr``                  XLMRobertaTokenizerFast     XLMRobertaModel xlm-roberta-base/large
``bpe``                   RobertaTokenizerFast        RobertaModel    a byte-level BPE RoBERTa
========================  ==========================  ==============  ===========================

.. [#] In transformers 5 ``ElectraTokenizerFast`` is ``BertTokenizerFast`` under another name.

The vocabularies are learned by HF ``tokenizers`` trainers on a few thousand Korean sentences:
the bundled sample's, the same sentences with the punct marker styles written in (pretrained
vocabularies have seen ``@``, ``#``, ``*``, ``^`` in running text), punctuation glued to markers
(``《@``, ``(#``), which the subword trainers learn to merge — the case marker handling must
survive — and generated sentences over every open Hangul syllable (:data:`OPEN_SYLLABLES`). Each kind is saved with ``save_pretrained`` of the real tokenizer class and its
config, so ``AutoTokenizer.from_pretrained`` / ``AutoModel.from_pretrained`` load it like a hub
checkpoint. The ``tokenizers`` trainers break ties by hash-map order, so two builds may differ in
a few pieces; the tests check properties that hold for any vocabulary.

Use :func:`backbone_dir` (a pytest fixture, session-scoped, builds each kind once per session on
first use) or :func:`build_backbone` directly.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

KINDS = ("bert", "klue-roberta", "electra", "xlmr", "bpe")
HIDDEN, LAYERS, HEADS = 32, 1, 2
VOCAB = 8000
SEED = 1234
# Every Hangul syllable without a final consonant (가, 나, …, 히): the generated sentences use them,
# so text drawn from them tokenizes without unknown pieces in every kind.
OPEN_SYLLABLES = "".join(chr(0xAC00 + 588 * lead + 28 * vowel) for lead in range(19) for vowel in range(21))


def corpus() -> list[str]:
    """The sample's sentences, plain and with punct markers written in, plus glued punctuation."""
    from relex.data import markers
    from relex.data.sample import SAMPLE_PATH

    rows = json.loads(Path(SAMPLE_PATH).read_text(encoding="utf-8"))
    out = [r["sentence"] for r in rows]
    for style in ("entity_marker_punct", "typed_entity_marker_punct"):
        for r in rows:
            s, o = r["subject_entity"], r["object_entity"]
            out.append(markers.mark(r["sentence"], (s["start_idx"], s["end_idx"], s["type"]),
                                    (o["start_idx"], o["end_idx"], o["type"]), style).text)
    glued = ["《@", "(#", "「@", "'#", "\"@", "@》", "#)"]
    out += [f"{g}{r['sentence'][:12]}{g[::-1]}" for g in glued for r in rows[:60]]
    rng = random.Random(SEED)
    chars = OPEN_SYLLABLES + "".join(sorted(set("".join(out))))
    for _ in range(1500):
        words = ["".join(rng.choices(chars, k=rng.randint(1, 4))) for _ in range(rng.randint(3, 10))]
        out.append(" ".join(words) + rng.choice(".?!"))
    return out


# ---------------------------------------------------------------------------- tokenizers
def _wordpiece(sentences, specials):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    # cased, no accent stripping: stripping decomposes Hangul into jamo (klue's tokenizers are cased)
    tok.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(sentences, trainers.WordPieceTrainer(vocab_size=VOCAB, special_tokens=specials))
    return tok


def _bert_post(tok):
    from tokenizers import processors

    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return tok


def _bert_like(cls_name, sentences, specials, **extra):
    import transformers

    tok = _bert_post(_wordpiece(sentences, specials))
    return getattr(transformers, cls_name)(
        tokenizer_object=tok, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
        cls_token="[CLS]", mask_token="[MASK]", do_lower_case=False, model_max_length=512, **extra)


def _xlmr(sentences):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import XLMRobertaTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.Nmt(), normalizers.NFKC(),
                                           normalizers.Replace(r"\s+", " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.train_from_iterator(sentences, trainers.UnigramTrainer(
        vocab_size=VOCAB, special_tokens=["<s>", "<pad>", "</s>", "<unk>"], unk_token="<unk>"))
    tok.add_special_tokens(["<mask>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)])
    return XLMRobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                                   pad_token="<pad>", mask_token="<mask>", model_max_length=512)


def _byte_bpe(sentences):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import RobertaTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(sentences, trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True,
                                                      add_prefix_space=False)
    return RobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                                pad_token="<pad>", mask_token="<mask>", add_prefix_space=False,
                                trim_offsets=True, model_max_length=512)


def build_tokenizer(kind: str, sentences=None):
    sentences = corpus() if sentences is None else sentences
    if kind == "bert":
        return _bert_like("BertTokenizerFast", sentences, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    if kind == "klue-roberta":  # klue/roberta-base's ids: [CLS]=0 [PAD]=1 [SEP]=2 [UNK]=3 [MASK]=4
        return _bert_like("BertTokenizerFast", sentences, ["[CLS]", "[PAD]", "[SEP]", "[UNK]", "[MASK]"],
                          model_input_names=["input_ids", "attention_mask"])  # RoBERTa: no token types
    if kind == "electra":
        return _bert_like("ElectraTokenizerFast", sentences, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    if kind == "xlmr":
        return _xlmr(sentences)
    if kind == "bpe":
        return _byte_bpe(sentences)
    raise ValueError(f"unknown tokenizer kind {kind!r}: one of {', '.join(KINDS)}")


# ---------------------------------------------------------------------------- models
def build_model(kind: str, tokenizer):
    import torch
    import transformers as tf

    common = dict(vocab_size=len(tokenizer), hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                  num_attention_heads=HEADS, intermediate_size=2 * HIDDEN,
                  pad_token_id=tokenizer.pad_token_id)
    if kind == "bert":
        config, cls = tf.BertConfig(max_position_embeddings=512, type_vocab_size=2, **common), tf.BertModel
    elif kind == "electra":
        # a smaller embedding than hidden size, so the embeddings projection is exercised too
        config = tf.ElectraConfig(max_position_embeddings=512, embedding_size=HIDDEN // 2, **common)
        cls = tf.ElectraModel
    elif kind in ("klue-roberta", "bpe", "xlmr"):
        # RoBERTa numbers positions from pad_token_id + 1: 514 slots hold 512 tokens
        conf_cls, cls = ((tf.XLMRobertaConfig, tf.XLMRobertaModel) if kind == "xlmr"
                         else (tf.RobertaConfig, tf.RobertaModel))
        config = conf_cls(max_position_embeddings=514, type_vocab_size=1,
                          bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id, **common)
    else:
        raise ValueError(f"unknown backbone kind {kind!r}: one of {', '.join(KINDS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        return cls(config)


def build_backbone(kind: str, out: Path, sentences=None) -> Path:
    """Tokenizer + random model of ``kind`` saved under ``out``; returns ``out``."""
    tokenizer = build_tokenizer(kind, sentences)
    tokenizer.save_pretrained(str(out))
    build_model(kind, tokenizer).save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def backbone_dir(tmp_path_factory):
    """``backbone_dir(kind)``: the directory of that kind, built once per test session."""
    root = tmp_path_factory.mktemp("backbones")
    sentences = corpus()
    built: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in built:
            built[kind] = build_backbone(kind, root / kind, sentences)
        return built[kind]

    return get
