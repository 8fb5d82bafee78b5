"""Tokenizer and architecture conformance: every tokenizer kind the real backbones use × every
marker style — features point at the right tokens, windowing keeps both entities, and a training
run writes a checkpoint that evaluate and predict read.

The checks go through the tokenizer's own character offsets, so they hold for WordPiece,
SentencePiece (``▁`` pieces) and byte-level BPE (a Hangul syllable split over several byte
pieces) alike.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from backbones import KINDS, OPEN_SYLLABLES, backbone_dir  # noqa: F401 (backbone_dir: a fixture)
from relex.data import Dataset, LabelSet, markers
from relex.data import features as F
from relex.data.markers import STYLES

TYPES = ["PER", "ORG", "LOC", "DAT"]
LABELS = LabelSet(("no_relation", "org:members", "per:origin"), "no_relation")
WORD_CHARS = OPEN_SYLLABLES[:120] + "서울비틀즈조지해리슨"
GLUE = "《》()「」'\".,·-"  # punctuation a subword vocabulary merges with a neighbouring marker


@pytest.fixture(scope="module")
def kind_tokenizers(backbone_dir):
    """{kind: {style: tokenizer prepared for the style}}, loaded through AutoTokenizer."""
    from relex.model.backbone import load_tokenizer

    out = {}
    for kind in KINDS:
        out[kind] = {}
        for style in STYLES:
            tok = load_tokenizer(backbone_dir(kind))
            markers.prepare_tokenizer(tok, style, TYPES)
            out[kind][style] = tok
    return out


def random_rows(seed, n, words=(3, 12)):
    """Rows with entities anywhere: at the edges, adjacent, glued to punctuation and particles."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        toks = []
        for _ in range(int(rng.integers(*words))):
            w = "".join(rng.choice(list(WORD_CHARS), size=int(rng.integers(1, 4))))
            if rng.random() < 0.3:
                g = str(rng.choice(list(GLUE)))
                w = g + w if rng.random() < 0.5 else w + g
            toks.append(w)
        sent = " ".join(toks)
        starts = [0] + [j + 1 for j, c in enumerate(sent) if c == " "]
        k = sorted(rng.choice(len(toks), size=2, replace=False).tolist())
        spans = []
        for j in k:  # the word without its glued punctuation (what KLUE marks as the entity)
            s0, w = starts[j], toks[j]
            a = next(x for x, c in enumerate(w) if c not in GLUE)
            b = max(x for x, c in enumerate(w) if c not in GLUE)
            if rng.random() < 0.2 and j + 1 < len(toks) and j + 1 != k[-1]:  # a two-word entity
                b = len(w) + 1 + max(x for x, c in enumerate(toks[j + 1]) if c not in GLUE)
            spans.append((s0 + a, s0 + b))
        if spans[0][1] >= spans[1][0]:
            continue
        (a0, a1), (b0, b1) = spans
        t = rng.choice(TYPES, size=2).tolist()
        first, second = (a0, a1, t[0]), (b0, b1, t[1])
        label = str(rng.choice(list(LABELS.names)))
        rows.append((sent, first, second, label) if rng.random() < 0.5 else (sent, second, first, label))
    # the sentence edges and adjacent entities
    rows.append(("가나다라", (0, 1, "PER"), (2, 3, "ORG"), "no_relation"))
    rows.append(("《비틀즈》의 조지", (1, 3, "ORG"), (7, 8, "PER"), "org:members"))
    rows.append(("조지(비틀즈)", (3, 5, "ORG"), (0, 1, "PER"), "org:members"))
    return rows


def make_ds(rows):
    recs = [dict(id=f"r{i}", sentence=s, subj_word=s[a[0]: a[1] + 1], subj_start=a[0], subj_end=a[1],
                 subj_type=a[2], obj_word=s[b[0]: b[1] + 1], obj_start=b[0], obj_end=b[1], obj_type=b[2],
                 label=lab, source="test") for i, (s, a, b, lab) in enumerate(rows)]
    return Dataset(pd.DataFrame(recs), LABELS, "mem.json")


def covered(offsets, tokens, text):
    """Indices of the non-space characters that the tokens cover."""
    return {c for t in tokens for c in range(*offsets[t]) if not text[c].isspace()}


def check_row(tok, feats, i, row, style):
    sent, subj, obj, _ = row
    m = markers.mark(sent, subj[:2] + (subj[2],), obj, style)
    enc = tok(m.text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offs = enc["input_ids"], enc["offset_mapping"]
    assert feats.input_ids(i).tolist() == [tok.cls_token_id, *ids, tok.sep_token_id]
    for role, pos, span, mk, end, (w0, w1) in (
            ("subj", feats.subj_pos[i], feats.subj_span[i], m.subj_marker, m.subj_end, m.subj_word),
            ("obj", feats.obj_pos[i], feats.obj_span[i], m.obj_marker, m.obj_end, m.obj_word)):
        p, a, b = int(pos) - 1, int(span[0]) - 1, int(span[1]) - 1  # indices without [CLS]
        # the position is on the start marker, in a token of its own (never merged with a neighbour)
        marker_end = (w0 if w0 >= 0 else end + 1)
        got = covered(offs, [p], m.text)
        assert mk in got and got <= set(range(mk, marker_end)), (m.text, tok.convert_ids_to_tokens(ids), p)
        if w0 < 0:  # entity_mask: the span is the mask token
            assert a == b == p
            continue
        # the span covers exactly the entity's tokens: all of its characters and nothing else
        words = {c for c in range(w0, w1 + 1) if not m.text[c].isspace()}
        assert covered(offs, range(a, b + 1), m.text) == words, (m.text, tok.convert_ids_to_tokens(ids))
        assert not covered(offs, [*range(0, a), *range(b + 1, len(ids))], m.text) & words
        assert p < a and covered(offs, range(p, a), m.text) <= set(range(mk, w0))
    # both entity texts are kept, in their order
    assert (feats.subj_pos[i] < feats.obj_pos[i]) == (subj[0] < obj[0])


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("kind", KINDS)
def test_features_point_at_markers_and_entity_tokens(kind_tokenizers, kind, style):
    tok = kind_tokenizers[kind][style]
    rows = random_rows(seed=KINDS.index(kind) * 10 + STYLES.index(style), n=40)
    feats = F.featurize(make_ds(rows), tok, style, 100_000, use_cache=False)
    assert feats.n_windowed == 0
    for i, row in enumerate(rows):
        check_row(tok, feats, i, row, style)


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("kind", KINDS)
def test_windowing_keeps_both_marked_entities(kind_tokenizers, kind, style):
    tok = kind_tokenizers[kind][style]
    long_rows = [r for r in random_rows(seed=100 + STYLES.index(style), n=12, words=(60, 90))
                 if len(r[0]) > 200]
    ds = make_ds(long_rows)
    full = F.featurize(ds, tok, style, 100_000, use_cache=False)
    win = F.featurize(ds, tok, style, 64, use_cache=False)
    assert win.n_windowed == len(long_rows) and (win.lengths == 64).all()
    for i in range(len(long_rows)):
        f_ids, w_ids = full.input_ids(i), win.input_ids(i)
        assert w_ids[0] == tok.cls_token_id and w_ids[-1] == tok.sep_token_id
        for pos, span in (("subj_pos", "subj_span"), ("obj_pos", "obj_span")):
            fp, wp = int(getattr(full, pos)[i]), int(getattr(win, pos)[i])
            f_span, w_span = getattr(full, span)[i], getattr(win, span)[i]
            # the same marked entity, token for token, at the remapped positions
            assert (w_span - wp).tolist() == (f_span - fp).tolist()
            # start marker .. the first token of the end marker (entity_mask: the mask token)
            n = int(f_span[1]) - fp + (1 if style in markers.MASK_STYLES else 2)
            assert w_ids[wp: wp + n].tolist() == f_ids[fp: fp + n].tolist()
        assert (win.subj_pos[i] < win.obj_pos[i]) == (full.subj_pos[i] < full.obj_pos[i])


def test_kinds_load_as_their_real_classes(backbone_dir):
    from transformers import AutoConfig, AutoTokenizer

    expected = {"bert": ("BertTokenizer", "bert", 2), "klue-roberta": ("BertTokenizer", "roberta", 1),
                "electra": ("BertTokenizer", "electra", 2), "xlmr": ("XLMRobertaTokenizer", "xlm-roberta", 1),
                "bpe": ("RobertaTokenizer", "roberta", 1)}
    for kind, (tok_cls, model_type, type_vocab) in expected.items():
        tok = AutoTokenizer.from_pretrained(backbone_dir(kind))
        config = AutoConfig.from_pretrained(backbone_dir(kind))
        assert (type(tok).__name__, config.model_type, config.type_vocab_size) == (tok_cls, model_type, type_vocab)
        assert tok.is_fast and len(tok) == config.vocab_size
        assert tok.tokenize("조지 해리슨") and tok.unk_token not in tok.tokenize("가나 다라 마바")
    assert "token_type_ids" not in AutoTokenizer.from_pretrained(backbone_dir("klue-roberta"))("가나")
    # SentencePiece and byte-level BPE learn to merge punctuation with a glued marker: the case
    # markers.SPACED_START_STYLES exists for
    assert any(p.endswith("@") and len(p) > 2 for p in AutoTokenizer.from_pretrained(backbone_dir("xlmr")).get_vocab())


# ---------------------------------------------------------------------------- training runs
TRAIN_STYLE = {"bert": "typed_entity_marker", "klue-roberta": "typed_entity_marker_punct",
               "electra": "entity_marker", "xlmr": "typed_entity_marker_punct", "bpe": "entity_mask"}


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory):
    from test_train_cli import write_klue_json

    from relex.data import read_dataset, stratified_split
    from relex.data.sample import SAMPLE_PATH

    train_ds, valid_ds = stratified_split(read_dataset(SAMPLE_PATH), 0.2, seed=1)
    d = tmp_path_factory.mktemp("data")
    return {"train": write_klue_json(train_ds, d / "train.json"),
            "valid": write_klue_json(valid_ds, d / "valid.json"),
            "test": write_klue_json(valid_ds, d / "test.json", with_labels=False), "n_valid": len(valid_ds)}


@pytest.mark.parametrize("kind", KINDS)
def test_train_evaluate_predict_on_each_kind(backbone_dir, sample_files, kind, tmp_path, capsys):
    from test_train_cli import cli, read_submission

    out = tmp_path / "run"
    rc, _, err = cli(["train", "--backbone", backbone_dir(kind), "--train", sample_files["train"],
                      "--valid", sample_files["valid"], "--out", out, "--marker", TRAIN_STYLE[kind],
                      "--max-steps", 6, "--epochs", 1, "--batch-size", 32, "--max-length", 96,
                      "--num-threads", 1, "--lr", "1e-3", "--quiet"], capsys)
    assert rc == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    rc, text, err = cli(["evaluate", out / "best", sample_files["valid"], "--json"], capsys)
    assert rc == 0, err
    assert json.loads(text)["micro_f1"] == metrics["micro_f1"]
    dest = tmp_path / "pred.csv"
    rc, _, err = cli(["predict", out / "best", sample_files["test"], "--output", dest], capsys)
    assert rc == 0, err
    names = json.loads((out / "best" / "labels.json").read_text())["names"]
    sub, _ = read_submission(dest, names)
    assert len(sub) == sample_files["n_valid"]
