"""Featurization: marker positions through char offsets, windowing, cache, collate, ERPE distances."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relex.data import Dataset, LabelSet, markers
from relex.data import features as F
from relex.data.markers import STYLES
from relex.errors import RelexError

HANGUL = "가나다라마바사아자차카타파하한국서울조지해리슨비틀즈는이가에서을를의공백앞뒤시장태어났"
ALPHABET = HANGUL + "abcXYZ019" + " " * 6 + ".,()·《》'\"-@#*^"
SENT = "〈Something〉는 조지 해리슨이 쓰고 비틀즈가 1969년 앨범 《Abbey Road》에 담은 노래다."
CORPUS = [SENT, " ".join(HANGUL), HANGUL, ALPHABET, "per org loc dat 서울 시장은 서울에서 태어났다."] * 3
TYPES = ["PER", "ORG", "LOC", "DAT"]
LABELS = LabelSet(("no_relation", "org:members", "per:origin"), "no_relation")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from relex.model.backbone import build_tiny

    return build_tiny(CORPUS, hidden=16, layers=1, heads=2, vocab=200,
                      cache_dir=tmp_path_factory.mktemp("backbone"))


def _tokenizer(tiny_dir, style):
    from relex.model.backbone import load_tokenizer

    tok = load_tokenizer(tiny_dir)
    markers.prepare_tokenizer(tok, style, TYPES)
    return tok


@pytest.fixture(scope="module")
def toks(tiny_dir):
    """One prepared tokenizer per style (featurize never mutates it)."""
    return {style: _tokenizer(tiny_dir, style) for style in STYLES}


def make_ds(rows, path="mem.json") -> Dataset:
    """rows: (sentence, (s0, s1, stype), (o0, o1, otype), label) with inclusive ends."""
    recs = []
    for i, (sent, (s0, s1, st_), (o0, o1, ot), label) in enumerate(rows):
        recs.append(dict(id=f"r{i}", sentence=sent, subj_word=sent[s0 : s1 + 1], subj_start=s0, subj_end=s1,
                         subj_type=st_, obj_word=sent[o0 : o1 + 1], obj_start=o0, obj_end=o1, obj_type=ot,
                         label=label, source="test"))
    return Dataset(pd.DataFrame(recs), LABELS, path)


def start_token(style, role, typ):
    return {
        "entity_mask": f"[{'SUBJ' if role == 'subj' else 'OBJ'}-{typ}]",
        "entity_marker": "[E1]" if role == "subj" else "[E2]",
        "typed_entity_marker": f"[{'SUBJ' if role == 'subj' else 'OBJ'}-{typ}]",
    }.get(style, "@" if role == "subj" else "#")


def check_row(feats, i, tok, style, row):
    """Every property a featurized row must have, checked through the tokenizer itself."""
    sent, subj, obj, _ = row
    ids = feats.input_ids(i)
    toks_ = tok.convert_ids_to_tokens(ids.tolist())
    assert len(ids) == feats.lengths[i] <= feats.max_length
    assert toks_[0] == tok.cls_token and toks_[-1] == tok.sep_token
    assert tok.pad_token not in toks_
    for role, (s0, s1, typ), pos, span in (("subj", subj, feats.subj_pos[i], feats.subj_span[i]),
                                           ("obj", obj, feats.obj_pos[i], feats.obj_span[i])):
        pre, suf, replaces = markers.affixes(style, role, typ)
        assert toks_[pos] == start_token(style, role, typ)
        a, b = int(span[0]), int(span[1])
        if replaces:
            assert a == b == pos
            continue
        # the whole start marker, the entity words, the end marker — in this order
        assert toks_[pos:a] == tok.tokenize(pre)
        assert toks_[a : b + 1] == tok.tokenize(sent[s0 : s1 + 1])
        assert toks_[b + 1 : b + 1 + len(tok.tokenize(suf))] == tok.tokenize(suf)
    # order of the entities is kept
    assert (feats.subj_pos[i] < feats.obj_pos[i]) == (subj[0] < obj[0])


# ---------------------------------------------------------------------------- properties
@st.composite
def rows_strategy(draw):
    text = draw(st.text(alphabet=ALPHABET, min_size=2, max_size=50))
    if not text.strip():
        text = "가" + text[1:]
    n = len(text)
    a0 = draw(st.integers(0, n - 2))
    a1 = draw(st.integers(a0, n - 2))
    b0 = draw(st.integers(a1 + 1, n - 1))
    b1 = draw(st.integers(b0, n - 1))
    t = draw(st.lists(st.sampled_from(TYPES), min_size=2, max_size=2))
    first, second = (a0, a1, t[0]), (b0, b1, t[1])
    subj_first = draw(st.booleans())
    label = draw(st.sampled_from(list(LABELS.names)))
    return (text, first, second, label) if subj_first else (text, second, first, label)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(rows_strategy(), min_size=1, max_size=6))
def test_every_style_points_at_its_markers(toks, rows):
    # entities that are blank (only spaces) have no words to point at; keep them out here
    rows = [r for r in rows if r[0][r[1][0] : r[1][1] + 1].strip() and r[0][r[2][0] : r[2][1] + 1].strip()]
    if not rows:
        return
    ds = make_ds(rows)
    for style in STYLES:
        tok = toks[style]
        feats = F.featurize(ds, tok, style, 512, use_cache=False)
        assert len(feats) == len(rows) and feats.n_windowed == 0
        np.testing.assert_array_equal(feats.labels, ds.label_ids())
        for i, row in enumerate(rows):
            check_row(feats, i, tok, style, row)


def test_blank_entity_falls_back_to_its_marker(toks):
    rows = [("가나  다라", (2, 3, "PER"), (4, 5, "ORG"), "no_relation")]  # subject is two spaces
    feats = F.featurize(make_ds(rows), toks["entity_marker"], "entity_marker", 64, use_cache=False)
    assert tuple(feats.subj_span[0]) == (feats.subj_pos[0], feats.subj_pos[0])
    assert feats.obj_span[0, 0] > feats.obj_pos[0]


def test_klue_example_exact_tokens(toks):
    row = (SENT, (24, 26, "ORG"), (13, 18, "PER"), "org:members")
    tok = toks["typed_entity_marker_punct"]
    feats = F.featurize(make_ds([row]), tok, "typed_entity_marker_punct", 128, use_cache=False)
    t = tok.convert_ids_to_tokens(feats.input_ids(0).tolist())
    p, q = int(feats.subj_pos[0]), int(feats.obj_pos[0])
    assert "".join(t[p : int(feats.subj_span[0, 1]) + 2]).replace("##", "") == "@*org*비틀즈@"
    assert "".join(t[q : int(feats.obj_span[0, 1]) + 2]).replace("##", "") == "#^per^조지해리슨#"
    assert q < p
    assert feats.labels[0] == LABELS.id("org:members")


def test_missing_marker_tokens_and_bad_spans_raise(tiny_dir, toks):
    from relex.model.backbone import load_tokenizer

    row = (SENT, (24, 26, "ORG"), (13, 18, "PER"), "no_relation")
    plain = load_tokenizer(tiny_dir)
    with pytest.raises(RelexError, match=r"lacks marker token.*prepare_tokenizer"):
        F.featurize(make_ds([row]), plain, "typed_entity_marker", 64, use_cache=False)
    odd = (SENT, (24, 26, "POH"), (13, 18, "PER"), "no_relation")  # a type never prepared
    with pytest.raises(RelexError, match=r"\[SUBJ-POH\]"):
        F.featurize(make_ds([odd]), toks["entity_mask"], "entity_mask", 64, use_cache=False)
    overlap = (SENT, (13, 20, "ORG"), (18, 22, "PER"), "no_relation")
    with pytest.raises(RelexError, match=r"mem.json: row 2 \(id r1\).*overlap"):
        F.featurize(make_ds([row, overlap]), toks["entity_marker"], "entity_marker", 64, use_cache=False)


# ---------------------------------------------------------------------------- windowing
def long_sentence(n_words, seed=0):
    rng = np.random.default_rng(seed)
    return " ".join("".join(rng.choice(list(HANGUL), size=2)) for _ in range(n_words))


def word_span(sent, k):
    """Inclusive char span of the k-th space-separated word."""
    starts = [0] + [i + 1 for i, c in enumerate(sent) if c == " "]
    s = starts[k]
    e = sent.find(" ", s)
    return s, (len(sent) if e < 0 else e) - 1


def contiguous_pieces(window, full):
    """Split ``window`` into maximal runs that are contiguous slices of ``full``; return the slices."""
    out = []
    i = 0
    pos = 0
    while i < len(window):
        # longest match of window[i:] in full starting at or after pos
        best = None
        for s in range(pos, len(full)):
            k = 0
            while i + k < len(window) and s + k < len(full) and full[s + k] == window[i + k]:
                k += 1
            if k and (best is None or k > best[1]):
                best = (s, k)
        assert best is not None, "window token not found in the full row"
        out.append((best[0], best[0] + best[1]))
        pos = best[0] + best[1]
        i += best[1]
    return out


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("subj_first", [True, False])
def test_window_centred_on_close_entities(toks, style, subj_first):
    sent = long_sentence(120, seed=1)
    a, b = word_span(sent, 60), word_span(sent, 63)
    subj, obj = ((a[0], a[1], "PER"), (b[0], b[1], "ORG")) if subj_first else ((b[0], b[1], "PER"), (a[0], a[1], "ORG"))
    row = (sent, subj, obj, "per:origin")
    tok = toks[style]
    full = F.featurize(make_ds([row]), tok, style, 10_000, use_cache=False)
    feats = F.featurize(make_ds([row]), tok, style, 48, use_cache=False)
    assert full.n_windowed == 0 and feats.n_windowed == 1 and feats.windowed[0]
    assert feats.lengths[0] == 48
    check_row(feats, 0, tok, style, row)
    win = feats.input_ids(0)[1:-1].tolist()
    body = full.input_ids(0)[1:-1].tolist()
    (s, e), = contiguous_pieces(win, body)  # one contiguous window
    # centred: the context before the first marked entity and after the second differ by <= 1
    first = min(full.subj_pos[0], full.obj_pos[0]) - 1
    last_entity_end = max(full.subj_span[0, 1], full.obj_span[0, 1]) - 1
    second_role, second_type = ("obj", "ORG") if subj_first else ("subj", "PER")
    suffix_len = len(tok.tokenize(markers.affixes(style, second_role, second_type)[1]))
    last = last_entity_end + suffix_len
    before, after = first - s, (e - 1) - last
    assert before >= 0 and after >= 0
    assert abs(before - after) <= 1


def test_window_clamps_at_the_sentence_start(toks):
    sent = long_sentence(100, seed=2)
    a, b = word_span(sent, 0), word_span(sent, 2)
    row = (sent, (a[0], a[1], "PER"), (b[0], b[1], "ORG"), "no_relation")
    tok = toks["entity_marker"]
    full = F.featurize(make_ds([row]), tok, "entity_marker", 10_000, use_cache=False)
    feats = F.featurize(make_ds([row]), tok, "entity_marker", 32, use_cache=False)
    np.testing.assert_array_equal(feats.input_ids(0)[:-1], full.input_ids(0)[:31])
    assert feats.subj_pos[0] == full.subj_pos[0] == 1
    check_row(feats, 0, tok, "entity_marker", row)


@pytest.mark.parametrize("style", STYLES)
def test_far_apart_entities_get_two_windows(toks, style):
    sent = long_sentence(150, seed=3)
    a, b = word_span(sent, 10), word_span(sent, 140)
    row = (sent, (b[0], b[1], "PER"), (a[0], a[1], "ORG"), "per:origin")  # object first
    short = ("짧은 문장", (0, 1, "PER"), (3, 4, "LOC"), "no_relation")
    tok = toks[style]
    ds = make_ds([short, row])
    full = F.featurize(ds, tok, style, 10_000, use_cache=False)
    feats = F.featurize(ds, tok, style, 40, use_cache=False)
    assert feats.n_windowed == 1 and list(feats.windowed) == [False, True]
    assert feats.lengths[1] == 40
    np.testing.assert_array_equal(feats.input_ids(0), full.input_ids(0))
    check_row(feats, 1, tok, style, row)
    pieces = contiguous_pieces(feats.input_ids(1)[1:-1].tolist(), full.input_ids(1)[1:-1].tolist())
    assert len(pieces) == 2 and pieces[0][1] < pieces[1][0]
    # each window holds its whole marked entity (object first here)
    o0 = full.obj_pos[1] - 1
    s0 = full.subj_pos[1] - 1
    assert pieces[0][0] <= o0 < pieces[0][1]
    assert pieces[1][0] <= s0 < pieces[1][1]


def test_entity_longer_than_max_length_names_the_row(toks):
    sent = long_sentence(80, seed=4)
    a = word_span(sent, 0)
    row = (sent, (a[0], word_span(sent, 40)[1], "PER"), word_span(sent, 60) + ("ORG",), "no_relation")
    ok = ("짧은 문장", (0, 1, "PER"), (3, 4, "LOC"), "no_relation")
    with pytest.raises(RelexError, match=r"data.json: row 2 \(id r1\): the marked subject alone takes \d+ tokens.*raise max_length"):
        F.featurize(make_ds([ok, row], path="data.json"), toks["entity_marker"], "entity_marker", 32, use_cache=False)


def test_entities_that_fit_alone_but_not_together_raise(toks):
    sent = long_sentence(120, seed=5)
    row = (sent, (word_span(sent, 0)[0], word_span(sent, 9)[1], "PER"),
           (word_span(sent, 100)[0], word_span(sent, 109)[1], "ORG"), "no_relation")
    tok = toks["entity_marker"]
    full = F.featurize(make_ds([row]), tok, "entity_marker", 10_000, use_cache=False)
    n_subj = full.subj_span[0, 1] - full.subj_pos[0] + 2
    n_obj = full.obj_span[0, 1] - full.obj_pos[0] + 2
    budget = int(max(n_subj, n_obj) + 2)  # each fits alone, both together do not
    assert n_subj + n_obj > budget - 2
    with pytest.raises(RelexError, match="subject and object take"):
        F.featurize(make_ds([row]), tok, "entity_marker", budget, use_cache=False)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_window_pieces_math(data):
    n = data.draw(st.integers(3, 400))
    budget = data.draw(st.integers(2, n - 1))
    a0 = data.draw(st.integers(0, n - 2))
    a1 = data.draw(st.integers(a0, min(n - 2, a0 + budget - 1)))
    b0 = data.draw(st.integers(a1 + 1, n - 1))
    b1 = data.draw(st.integers(b0, min(n - 1, b0 + budget - 1)))
    la, lb = a1 - a0 + 1, b1 - b0 + 1
    if la + lb > budget:
        with pytest.raises(ValueError):
            F.window_pieces(n, (a0, a1), (b0, b1), budget)
        return
    pcs = F.window_pieces(n, (a0, a1), (b0, b1), budget)
    assert sum(e - s for s, e in pcs) == budget
    assert all(0 <= s < e <= n for s, e in pcs)
    assert all(pcs[k][1] < pcs[k + 1][0] for k in range(len(pcs) - 1))  # ordered, disjoint, gap
    covered = set().union(*(range(s, e) for s, e in pcs))
    assert set(range(a0, a1 + 1)) <= covered and set(range(b0, b1 + 1)) <= covered
    if b1 - a0 + 1 <= budget:
        assert len(pcs) == 1
        (s, e), = pcs
        before, after = a0 - s, e - 1 - b1
        if s > 0 and e < n:  # not clamped: centred
            assert abs(before - after) <= 1
    else:
        assert len(pcs) == 2
        (s1, e1), (s2, e2) = pcs
        room_a, room_b = (e1 - s1) - la, (e2 - s2) - lb
        assert abs(room_a - room_b) <= 1 or s1 == 0 or e2 == n  # shared equally unless clamped


# ---------------------------------------------------------------------------- storage
def test_subset_shares_rows_and_counts_windows(toks):
    sent = long_sentence(100, seed=6)
    rows = [("짧은 문장", (0, 1, "PER"), (3, 4, "LOC"), "no_relation"),
            (sent, word_span(sent, 5) + ("PER",), word_span(sent, 90) + ("ORG",), "per:origin"),
            (SENT, (24, 26, "ORG"), (13, 18, "PER"), "org:members")]
    feats = F.featurize(make_ds(rows), toks["entity_mask"], "entity_mask", 80, use_cache=False)
    assert feats.n_windowed == 1
    sub = feats.subset([2, 1])
    assert len(sub) == 2 and sub.n_windowed == 1 and list(sub.ids) == ["r2", "r1"]
    for j, i in enumerate([2, 1]):
        np.testing.assert_array_equal(sub.input_ids(j), feats.input_ids(i))
        assert sub.subj_pos[j] == feats.subj_pos[i] and sub.labels[j] == feats.labels[i]
    assert feats.subset(np.array([True, False, False])).n_windowed == 0
    assert feats.flat.dtype == np.int32 and feats.lengths.dtype == np.int32


# ---------------------------------------------------------------------------- cache
def test_cache_hit_returns_equal_arrays_without_tokenizing(toks, tmp_path, monkeypatch):
    rows = [(SENT, (24, 26, "ORG"), (13, 18, "PER"), "org:members"),
            (SENT, (13, 18, "PER"), (24, 26, "ORG"), "no_relation")]
    ds = make_ds(rows)
    tok = toks["typed_entity_marker"]
    first = F.featurize(ds, tok, "typed_entity_marker", 64, cache_dir=tmp_path)
    assert not first.from_cache
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".npz")
    meta = json.loads((tmp_path / files[0]).read_text())
    assert meta["ids"] == ["r0", "r1"] and meta["fields"]["style"] == "typed_entity_marker"
    with np.load(tmp_path / files[1], allow_pickle=False) as z:
        assert set(z.files) >= {"flat", "starts", "lengths", "subj_pos", "obj_pos"}

    def boom(*a, **k):
        raise AssertionError("tokenized on a cache hit")

    monkeypatch.setattr(markers, "mark_many", boom)
    second = F.featurize(ds, tok, "typed_entity_marker", 64, cache_dir=tmp_path)
    assert second.from_cache
    for name, arr in first.arrays().items():
        np.testing.assert_array_equal(getattr(second, name), arr, err_msg=name)
    assert list(second.ids) == list(first.ids) and second.pad_id == first.pad_id
    # different style / max_length / labels are different entries (and here: must tokenize)
    for kwargs in (dict(style="entity_marker"), dict(max_length=65)):
        args = dict(style="typed_entity_marker", max_length=64) | kwargs
        with pytest.raises(AssertionError, match="tokenized on a cache hit"):
            F.featurize(ds, toks[args["style"]], args["style"], args["max_length"], cache_dir=tmp_path)


def test_cache_key_covers_what_determines_features(tiny_dir, toks):
    ds = make_ds([(SENT, (24, 26, "ORG"), (13, 18, "PER"), "org:members")])
    tok = toks["typed_entity_marker"]
    base, _ = F.cache_key(ds, tok, "typed_entity_marker", 64)
    assert F.cache_key(ds, tok, "typed_entity_marker", 64)[0] == base
    assert F.cache_key(ds, tok, "entity_marker", 64)[0] != base
    assert F.cache_key(ds, tok, "typed_entity_marker", 128)[0] != base
    other_labels = Dataset(ds.frame, LabelSet(("no_relation", "org:members", "per:x"), "no_relation"), None)
    assert F.cache_key(other_labels, tok, "typed_entity_marker", 64)[0] != base
    ds2 = make_ds([(SENT, (24, 26, "ORG"), (13, 18, "PER"), "no_relation")])
    assert F.cache_key(ds2, tok, "typed_entity_marker", 64)[0] != base
    # tokenizer identity is its content, not its name: one more added token changes the key,
    # a freshly loaded identical tokenizer does not
    same = _tokenizer(tiny_dir, "typed_entity_marker")
    assert F.tokenizer_fingerprint(same) == F.tokenizer_fingerprint(tok)
    same.add_special_tokens({"extra_special_tokens": ["[NEW]"]}, replace_extra_special_tokens=False)
    assert F.tokenizer_fingerprint(same) != F.tokenizer_fingerprint(tok)
    # truncation settings left on the tokenizer by other code neither change the key nor the ids
    same2 = _tokenizer(tiny_dir, "typed_entity_marker")
    same2.backend_tokenizer.enable_truncation(max_length=5)
    same2.backend_tokenizer.enable_padding(length=100, pad_id=same2.pad_token_id)
    assert F.tokenizer_fingerprint(same2) == F.tokenizer_fingerprint(tok)
    a = F.featurize(ds, same2, "typed_entity_marker", 64, use_cache=False)
    b = F.featurize(ds, tok, "typed_entity_marker", 64, use_cache=False)
    np.testing.assert_array_equal(a.input_ids(0), b.input_ids(0))
    assert same2.backend_tokenizer.truncation["max_length"] == 5  # restored
    assert same2.backend_tokenizer.padding["length"] == 100


def test_cache_takes_ids_from_the_data_and_survives_a_corrupt_entry(toks, tmp_path):
    rows = [(SENT, (24, 26, "ORG"), (13, 18, "PER"), "org:members")]
    ds = make_ds(rows)
    tok = toks["entity_marker_punct"]
    F.featurize(ds, tok, "entity_marker_punct", 64, cache_dir=tmp_path)
    renamed = Dataset(ds.frame.assign(id=["klue-0"]), LABELS, "other.csv")  # same content, other ids
    hit = F.featurize(renamed, tok, "entity_marker_punct", 64, cache_dir=tmp_path)
    assert hit.from_cache and list(hit.ids) == ["klue-0"]
    npz = next(tmp_path.glob("*.npz"))
    npz.write_bytes(b"not a zip")
    again = F.featurize(ds, tok, "entity_marker_punct", 64, cache_dir=tmp_path)
    assert not again.from_cache
    assert F.featurize(ds, tok, "entity_marker_punct", 64, cache_dir=tmp_path).from_cache


def test_default_cache_location(toks, session_cache):
    ds = make_ds([(SENT, (24, 26, "ORG"), (13, 18, "PER"), "org:members")])
    F.featurize(ds, toks["entity_marker_punct"], "entity_marker_punct", 77)
    assert list((session_cache / "features").glob("entity_marker_punct-77-*.npz"))


# ---------------------------------------------------------------------------- collate / ERPE
def test_relative_distance_math():
    d = F.relative_distance(8, 2, 4, 2)
    assert d.tolist() == [-2, -1, 0, 0, 0, 1, 2, 2]
    d = F.relative_distance(6, 0, 0, 10)
    assert d.tolist() == [0, 1, 2, 3, 4, 5]
    batch = F.relative_distance(5, np.array([0, 3]), np.array([1, 3]), 1)
    assert batch.tolist() == [[0, 0, 1, 1, 1], [-1, -1, -1, 0, 1]]
    tb = F.relative_distance(5, torch.tensor([0, 3]), torch.tensor([1, 3]), 1)
    assert isinstance(tb, torch.Tensor) and tb.tolist() == batch.tolist()


@pytest.mark.parametrize("style", ["typed_entity_marker_punct", "entity_mask"])
def test_collate_pads_and_computes_distances(toks, style):
    rows = [(SENT, (24, 26, "ORG"), (13, 18, "PER"), "org:members"),  # object first
            ("짧은 문장", (0, 1, "PER"), (3, 4, "LOC"), "no_relation"),  # subject first
            (SENT, (13, 18, "PER"), (24, 26, "ORG"), "per:origin")]
    ds = make_ds(rows)
    feats = F.featurize(ds, toks[style], style, 128, use_cache=False)
    idx = [1, 0, 2]
    b = F.collate(feats, idx, erpe_clip=3)
    T = int(feats.lengths[idx].max())
    assert b["input_ids"].shape == (3, T) and b["input_ids"].dtype == torch.long
    for j, i in enumerate(idx):
        L = int(feats.lengths[i])
        assert b["input_ids"][j, :L].tolist() == feats.input_ids(i).tolist()
        assert (b["input_ids"][j, L:] == feats.pad_id).all()
        assert b["attention_mask"][j].tolist() == [1] * L + [0] * (T - L)
        assert b["subj_pos"][j] == feats.subj_pos[i] and b["obj_pos"][j] == feats.obj_pos[i]
        assert b["subj_span"][j].tolist() == feats.subj_span[i].tolist()
        assert b["labels"][j] == ds.label_ids()[i] and b["index"][j] == i
        for key, (s, e) in (("subj_dist", feats.subj_span[i]), ("obj_dist", feats.obj_span[i])):
            want = [max(-3, min(3, t - s if t < s else (t - e if t > e else 0))) + 3 for t in range(T)]
            assert b[key][j].tolist() == want
    assert int(b["subj_dist"].min()) >= 0 and int(b["subj_dist"].max()) <= 6
    plain = F.collate(feats, np.array(idx))
    assert "subj_dist" not in plain and torch.equal(plain["input_ids"], b["input_ids"])
    # the object-first row: distances to the subject are negative before, positive after
    j = idx.index(0)
    s, e = feats.subj_span[0]
    assert b["subj_dist"][j, int(feats.obj_pos[0])] < 3 < b["subj_dist"][j, int(e) + 2]


def test_empty_dataset(toks):
    ds = make_ds([(SENT, (24, 26, "ORG"), (13, 18, "PER"), "org:members")]).subset([])
    feats = F.featurize(ds, toks["entity_mask"], "entity_mask", 64, use_cache=False)
    assert len(feats) == 0 and feats.n_windowed == 0 and feats.subj_span.shape == (0, 2)
    b = F.collate(feats, [], erpe_clip=4)
    assert b["input_ids"].shape == (0, 0) and b["labels"].shape == (0,)


def test_unlabelled_rows_have_label_minus_one(toks):
    rows = [(SENT, (24, 26, "ORG"), (13, 18, "PER"), None)]
    feats = F.featurize(make_ds(rows), toks["entity_marker"], "entity_marker", 64, use_cache=False)
    assert feats.labels.tolist() == [-1]
    assert F.collate(feats, [0])["labels"].tolist() == [-1]


# ---------------------------------------------------------------------------- real data
def test_klue_rows_every_style(shared_data, tmp_path_factory):
    from relex.data import read_dataset
    from relex.model.backbone import build_tiny, load_tokenizer

    ds = read_dataset(shared_data / "klue-re" / "klue-re-v1.1_train.json",
                      labels=shared_data / "klue-re" / "relation_list.json")
    ds = ds.subset(np.arange(0, len(ds), 16))  # ~2k rows
    path = build_tiny(ds.frame["sentence"].tolist(), hidden=16, layers=1, heads=2, vocab=2000,
                      cache_dir=tmp_path_factory.mktemp("klue-backbone"))
    types = markers.entity_types(ds)
    for style in STYLES:
        tok = load_tokenizer(path)
        markers.prepare_tokenizer(tok, style, types)
        feats = F.featurize(ds, tok, style, 128, use_cache=False)
        assert len(feats) == len(ds) and feats.lengths.max() <= 128
        ids_at = feats.flat[feats.starts + feats.subj_pos]
        expected = [tok.convert_tokens_to_ids(start_token(style, "subj", t)) for t in ds.frame["subj_type"]]
        np.testing.assert_array_equal(ids_at, expected)
        ids_at = feats.flat[feats.starts + feats.obj_pos]
        expected = [tok.convert_tokens_to_ids(start_token(style, "obj", t)) for t in ds.frame["obj_type"]]
        np.testing.assert_array_equal(ids_at, expected)
        np.testing.assert_array_equal(feats.labels, ds.label_ids())
        for i in range(0, len(ds), 97):
            r = ds.frame.iloc[i]
            check_row(feats, i, tok, style, (r.sentence, (r.subj_start, r.subj_end, r.subj_type),
                                              (r.obj_start, r.obj_end, r.obj_type), r.label))



def test_unwritable_cache_warns_and_still_featurizes(toks, tmp_path, monkeypatch, capsys):
    ds = make_ds([(SENT, (24, 26, "ORG"), (13, 18, "PER"), "org:members")])
    tok = toks["typed_entity_marker"]
    expected = F.featurize(ds, tok, "typed_entity_marker", 64, use_cache=False)

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(F, "_save", refuse)
    got = F.featurize(ds, tok, "typed_entity_marker", 64, cache_dir=tmp_path / "ro")
    assert np.array_equal(got.input_ids(0), expected.input_ids(0))
    err = capsys.readouterr().err
    assert "feature cache not written" in err and "Permission denied" in err
