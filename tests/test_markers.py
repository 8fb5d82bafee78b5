"""Entity representations: the five marker styles, inserted by character offsets."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relex.data import markers
from relex.data.markers import STYLES, mark, mark_many, special_tokens
from relex.errors import RelexError

# A corpus holding every character the property tests use, so the tiny WordPiece vocabulary
# has them all (no [UNK] hides a misplaced entity).
HANGUL = "가나다라마바사아자차카타파하한국서울조지해리슨비틀즈는이가에서을를의공백앞뒤시장태어났"
ALPHABET = HANGUL + "abcXYZ019" + " " * 6 + ".,()·《》'\"-@#*^"
CORPUS = ["〈Something〉는 조지 해리슨이 쓰고 비틀즈가 1969년 앨범 《Abbey Road》에 담은 노래다.",
          " ".join(HANGUL), HANGUL, ALPHABET, "per org loc dat 서울 시장은 서울에서 태어났다."] * 3


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from relex.model.backbone import build_tiny

    return build_tiny(CORPUS, hidden=16, layers=1, heads=2, vocab=200,
                      cache_dir=tmp_path_factory.mktemp("backbone"))


@pytest.fixture
def tiny_tokenizer(tiny_dir):
    from relex.model.backbone import load_tokenizer

    return lambda: load_tokenizer(tiny_dir)

SENT = "〈Something〉는 조지 해리슨이 쓰고 비틀즈가 1969년 앨범 《Abbey Road》에 담은 노래다."
SUBJ = (24, 26, "ORG")  # 비틀즈
OBJ = (13, 18, "PER")  # 조지 해리슨


def test_spans_of_the_example():
    assert SENT[SUBJ[0] : SUBJ[1] + 1] == "비틀즈"
    assert SENT[OBJ[0] : OBJ[1] + 1] == "조지 해리슨"


@pytest.mark.parametrize(
    "style, expected",
    [
        ("entity_mask", "〈Something〉는 [OBJ-PER]이 쓰고 [SUBJ-ORG]가 1969년"),
        ("entity_marker", "〈Something〉는 [E2] 조지 해리슨 [/E2]이 쓰고 [E1] 비틀즈 [/E1]가 1969년"),
        ("entity_marker_punct", "〈Something〉는 # 조지 해리슨 #이 쓰고 @ 비틀즈 @가 1969년"),
        ("typed_entity_marker",
         "〈Something〉는 [OBJ-PER] 조지 해리슨 [/OBJ-PER]이 쓰고 [SUBJ-ORG] 비틀즈 [/SUBJ-ORG]가 1969년"),
        ("typed_entity_marker_punct", "〈Something〉는 # ^ per ^ 조지 해리슨 #이 쓰고 @ * org * 비틀즈 @가 1969년"),
    ],
)
def test_each_style_on_a_klue_sentence(style, expected):
    m = mark(SENT, SUBJ, OBJ, style)
    assert m.text.startswith(expected)
    assert m.text.endswith(" 앨범 《Abbey Road》에 담은 노래다.")
    start_marker = {"entity_mask": "[SUBJ-ORG]", "entity_marker": "[E1]", "typed_entity_marker": "[SUBJ-ORG]"}
    assert m.text[m.subj_marker :].startswith(start_marker.get(style, "@"))
    assert m.text[m.obj_marker :].startswith({"entity_mask": "[OBJ-PER]", "entity_marker": "[E2]",
                                              "typed_entity_marker": "[OBJ-PER]"}.get(style, "#"))
    if style != "entity_mask":
        assert m.text[m.subj_word[0] : m.subj_word[1] + 1] == "비틀즈"
        assert m.text[m.obj_word[0] : m.obj_word[1] + 1] == "조지 해리슨"
    else:
        assert m.subj_word == (-1, -1) and m.obj_word == (-1, -1)
        assert "비틀즈" not in m.text and "해리슨" not in m.text


def test_subject_first_and_object_first_are_mirror_images():
    a = mark(SENT, OBJ, SUBJ, "typed_entity_marker")  # roles swapped: subject now comes first
    assert "[SUBJ-PER] 조지 해리슨 [/SUBJ-PER]이 쓰고 [OBJ-ORG] 비틀즈 [/OBJ-ORG]가" in a.text
    assert a.subj_marker < a.obj_marker
    b = mark(SENT, SUBJ, OBJ, "typed_entity_marker")
    assert b.obj_marker < b.subj_marker


def test_insertion_is_by_offset_not_by_string_replacement():
    s = "서울 시장은 서울에서 태어났다."  # 서울 occurs twice; the entity is the second one
    m = mark(s, (7, 8, "LOC"), (0, 4, "PER"), "entity_marker_punct")
    assert m.text == "# 서울 시장 #은 @ 서울 @에서 태어났다."
    m = mark(s, (7, 8, "LOC"), (0, 4, "PER"), "entity_mask")
    assert m.text == "[OBJ-PER]은 [SUBJ-LOC]에서 태어났다."


def test_punct_start_markers_begin_a_word():
    # glued to "《" or to the other entity's end marker, a subword vocabulary would merge "《@"
    m = mark("그는 《비틀즈》와", (4, 6, "ORG"), (0, 1, "PER"), "entity_marker_punct")
    assert m.text == "# 그는 # 《 @ 비틀즈 @》와"
    assert m.text[m.subj_marker] == "@" and m.text[m.subj_word[0] : m.subj_word[1] + 1] == "비틀즈"
    m = mark("가나다라", (0, 1, "PER"), (2, 3, "ORG"), "typed_entity_marker_punct")
    assert m.text == "@ * per * 가나 @ # ^ org ^ 다라 #"
    assert m.text[m.obj_marker :].startswith("# ^ org ^ 다라") and m.obj_end == len(m.text) - 1
    # the bracket styles' markers are special tokens, split off whatever precedes them
    assert mark("그는 《비틀즈》와", (4, 6, "ORG"), (0, 1, "PER"), "entity_marker").text == (
        "[E2] 그는 [/E2] 《[E1] 비틀즈 [/E1]》와")


def test_adjacent_entities_and_sentence_edges():
    s = "가나다라"
    m = mark(s, (0, 1, "PER"), (2, 3, "ORG"), "entity_marker")
    assert m.text == "[E1] 가나 [/E1][E2] 다라 [/E2]"
    assert m.subj_end == m.obj_marker - 1
    assert m.obj_end == len(m.text) - 1


def test_bad_spans_raise():
    with pytest.raises(RelexError, match="overlap"):
        mark("가나다라마", (0, 2, "PER"), (2, 4, "ORG"), "entity_marker")
    with pytest.raises(RelexError, match="outside"):
        mark("가나다", (0, 5, "PER"), (1, 1, "ORG"), "entity_marker")
    with pytest.raises(RelexError, match="unknown marker style"):
        mark(SENT, SUBJ, OBJ, "entity_markers")


def test_special_tokens_per_style():
    assert special_tokens("entity_marker") == ["[E1]", "[/E1]", "[E2]", "[/E2]"]
    assert special_tokens("entity_marker_punct", ["PER"]) == []
    assert special_tokens("typed_entity_marker_punct", ["PER"]) == []
    assert special_tokens("entity_mask", ["per", "LOC", "PER"]) == ["[SUBJ-LOC]", "[SUBJ-PER]", "[OBJ-LOC]", "[OBJ-PER]"]
    assert special_tokens("typed_entity_marker", ["ORG"]) == ["[SUBJ-ORG]", "[/SUBJ-ORG]", "[OBJ-ORG]", "[/OBJ-ORG]"]
    with pytest.raises(RelexError, match="entity types"):
        special_tokens("typed_entity_marker", [])
    with pytest.raises(RelexError, match="empty"):
        special_tokens("entity_mask", ["PER", " "])


def test_entity_types_from_frames():
    f = pd.DataFrame({"subj_type": ["PER", "ORG"], "obj_type": ["DAT", "PER"]})
    assert markers.entity_types(f) == ["DAT", "ORG", "PER"]
    g = pd.DataFrame({"subj_type": ["LOC"], "obj_type": ["POH"]})
    assert markers.entity_types(f, g) == ["DAT", "LOC", "ORG", "PER", "POH"]


def test_prepare_tokenizer_adds_unsplittable_special_tokens(tiny_tokenizer):
    tok = tiny_tokenizer()
    before = len(tok)
    n = markers.prepare_tokenizer(tok, "typed_entity_marker", ["PER", "ORG"])
    assert n == 8 and len(tok) == before + 8
    assert tok.tokenize("가[SUBJ-PER]나 [/OBJ-ORG]") == ["가", "[SUBJ-PER]", "나", "[/OBJ-ORG]"]
    assert "[SUBJ-PER]" in tok.all_special_tokens
    # idempotent; a new type adds only its own tokens
    assert markers.prepare_tokenizer(tok, "typed_entity_marker", ["PER", "ORG"]) == 0
    assert markers.prepare_tokenizer(tok, "typed_entity_marker", ["PER", "LOC"]) == 4
    assert markers.missing_tokens(tok, "typed_entity_marker", ["PER", "LOC", "ORG"]) == []
    assert markers.missing_tokens(tok, "typed_entity_marker", ["DAT"]) == [
        "[SUBJ-DAT]", "[/SUBJ-DAT]", "[OBJ-DAT]", "[/OBJ-DAT]"]
    # punct styles need no new vocabulary
    n_now = len(tok)
    assert markers.prepare_tokenizer(tok, "typed_entity_marker_punct", ["PER"]) == 0
    assert len(tok) == n_now


# ---------------------------------------------------------------------------- properties


@st.composite
def sentence_and_spans(draw):
    """A random sentence and two disjoint entity spans (inclusive), subject first or second."""
    text = draw(st.text(alphabet=ALPHABET, min_size=2, max_size=60))
    n = len(text)
    a0 = draw(st.integers(0, n - 2))
    a1 = draw(st.integers(a0, n - 2))
    b0 = draw(st.integers(a1 + 1, n - 1))
    b1 = draw(st.integers(b0, n - 1))
    types = draw(st.lists(st.sampled_from(["PER", "ORG", "LOC", "DAT"]), min_size=2, max_size=2))
    first, second = (a0, a1, types[0]), (b0, b1, types[1])
    return (text, first, second) if draw(st.booleans()) else (text, second, first)


@settings(max_examples=150, deadline=None)
@given(sentence_and_spans(), st.sampled_from(STYLES))
def test_markers_wrap_the_right_characters(case, style):
    text, subj, obj = case
    m = mark(text, subj, obj, style)
    t = m.text
    pieces = []
    for role, (s0, s1, typ), marker, end in (("subj", subj, m.subj_marker, m.subj_end),
                                             ("obj", obj, m.obj_marker, m.obj_end)):
        pre, suf, replaces = markers.affixes(style, role, typ)
        assert t[marker : marker + len(pre)] == pre
        assert t[end - len(suf) + 1 : end + 1] == suf
        inner = t[marker + len(pre) : end - len(suf) + 1]
        assert inner == ("" if replaces else text[s0 : s1 + 1])
        pieces.append((marker, end, s0, s1))
        # the word offsets point at the stripped entity text
        w0, w1 = m.subj_word if role == "subj" else m.obj_word
        stripped = text[s0 : s1 + 1].strip()
        if replaces or not stripped:
            assert (w0, w1) == (-1, -1)
        else:
            assert t[w0 : w1 + 1] == stripped
    # the entities keep their order, and removing the markers gives the sentence back
    # (entity_mask: the mask tokens stand where the words were)
    (ma, ea, a0, a1), (mb, eb, b0, b1) = sorted(pieces)
    assert ea < mb
    rebuilt = t
    for (mk, ed, s0, s1) in sorted(pieces, reverse=True):
        # a text start marker begins a word: a space was put before it where it would be glued
        spaced = style in markers.SPACED_START_STYLES and s0 > 0 and (
            not text[s0 - 1].isspace() or (mk, s0) == (mb, a1 + 1))
        if style in markers.SPACED_START_STYLES:
            assert mk == 0 or t[mk - 1].isspace()
        rebuilt = rebuilt[: mk - spaced] + text[s0 : s1 + 1] + rebuilt[ed + 1 :]
    assert rebuilt == text
    if style == "entity_mask":
        assert t.count("[SUBJ-") == text.count("[SUBJ-") + 1


def test_mark_many_matches_mark_row_by_row():
    rows = [
        (SENT, SUBJ, OBJ),
        (SENT, OBJ, SUBJ),
        ("가 나 다", (0, 0, "PER"), (4, 4, "LOC")),
        ("  공백 앞뒤  ", (0, 4, "PER"), (6, 8, "LOC")),
    ]
    for style in STYLES:
        b = mark_many([r[0] for r in rows], [r[1][0] for r in rows], [r[1][1] for r in rows],
                      [r[1][2] for r in rows], [r[2][0] for r in rows], [r[2][1] for r in rows],
                      [r[2][2] for r in rows], style)
        for i, (s, sub, ob) in enumerate(rows):
            m = mark(s, sub, ob, style)
            assert b.texts[i] == m.text
            assert (b.subj_marker[i], b.obj_marker[i], b.subj_end[i], b.obj_end[i]) == (
                m.subj_marker, m.obj_marker, m.subj_end, m.obj_end)
            assert (b.subj_word_first[i], b.subj_word_last[i]) == m.subj_word
    m = mark("  공백 앞뒤  ", (0, 4, "PER"), (6, 8, "LOC"), "entity_marker")
    assert m.text[m.subj_word[0] : m.subj_word[1] + 1] == "공백"
