"""Entity representations (Zhou & Chen, 2021): how the subject and object are shown to the encoder.

Five styles, for a subject ``비틀즈`` (ORG) and an object ``조지 해리슨`` (PER)::

    entity_mask                [SUBJ-ORG] … [OBJ-PER]                      (the words are replaced)
    entity_marker              [E1] 비틀즈 [/E1] … [E2] 조지 해리슨 [/E2]
    entity_marker_punct        @ 비틀즈 @ … # 조지 해리슨 #
    typed_entity_marker        [SUBJ-ORG] 비틀즈 [/SUBJ-ORG] … [OBJ-PER] 조지 해리슨 [/OBJ-PER]
    typed_entity_marker_punct  @ * org * 비틀즈 @ … # ^ per ^ 조지 해리슨 #

Markers are inserted at the entities' CHARACTER OFFSETS (never by string replacement, which would
hit the wrong occurrence of a repeated word), in whichever order the entities occur. A marker is
separated from the entity text by one space and glued to the surrounding text, so the sentence
around the entity keeps its own spacing — with one exception: a punct style's start marker
(``@``, ``#``) that would follow a non-space character gets a space before it (see
:data:`SPACED_START_STYLES` for why).

The bracketed styles need new vocabulary: :func:`special_tokens` lists it and
:func:`prepare_tokenizer` adds it to a tokenizer as special tokens (never split, skipped by
``decode(skip_special_tokens=True)``); the model's embeddings must then be resized to
``len(tokenizer)``. Typed tokens depend on the entity types, which come from the data
(:func:`entity_types`). The punct styles use only characters and lowercase type words the
vocabulary already has, so they add nothing.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple, Sequence

import numpy as np

from relex.config import MARKER_STYLES
from relex.errors import RelexError

STYLES = MARKER_STYLES
# Styles whose marker replaces the entity words (the start marker is the whole marked entity).
MASK_STYLES = ("entity_mask",)
# Styles whose start marker is ordinary text, which a subword tokenizer may merge with what
# precedes it. SentencePiece (XLM-R) and byte-level BPE (RoBERTa, GPT-2) vocabularies hold pieces
# such as "《@", "(#" or "▁《@": glued to the preceding text, the start marker would share its token
# with the neighbour, and the marker head would read a piece that is half something else. A space
# before it makes the marker begin a word ("▁@", "Ġ@"), the marker's own piece. WordPiece (BERT,
# ELECTRA, klue/roberta) splits punctuation off anyway, so for it the space changes no token; the
# bracket styles' markers are added special tokens, always split off, so they get no space.
# This is the only tokenizer-dependent rule of the marking: the features find every position
# through the tokenizer's own char → token alignment.
SPACED_START_STYLES = ("entity_marker_punct", "typed_entity_marker_punct")


def check_style(style: str) -> str:
    if style not in STYLES:
        raise RelexError(f"unknown marker style '{style}': choose one of {', '.join(STYLES)}")
    return style


def _type_token(entity_type: str) -> str:
    t = str(entity_type).strip()
    if not t:
        raise RelexError("entity type is empty: typed marker styles need a type for every entity")
    return t.upper()


def _type_word(entity_type: str) -> str:
    t = str(entity_type).strip()
    if not t:
        raise RelexError("entity type is empty: typed marker styles need a type for every entity")
    return t.lower()


def affixes(style: str, role: str, entity_type: str) -> tuple[str, str, bool]:
    """``(prefix, suffix, replaces_words)`` for one entity; ``role`` is ``"subj"`` or ``"obj"``.

    The marked entity is ``prefix + words + suffix`` (``prefix + suffix`` when the style replaces
    the words). The start marker — the token a marker head reads — begins at the prefix's first
    character.
    """
    subj = role == "subj"
    if role not in ("subj", "obj"):
        raise ValueError(f"role must be 'subj' or 'obj', not {role!r}")
    if style == "entity_mask":
        return (f"[{'SUBJ' if subj else 'OBJ'}-{_type_token(entity_type)}]", "", True)
    if style == "entity_marker":
        n = 1 if subj else 2
        return (f"[E{n}] ", f" [/E{n}]", False)
    if style == "entity_marker_punct":
        return ("@ ", " @", False) if subj else ("# ", " #", False)
    if style == "typed_entity_marker":
        tag = f"{'SUBJ' if subj else 'OBJ'}-{_type_token(entity_type)}"
        return (f"[{tag}] ", f" [/{tag}]", False)
    if style == "typed_entity_marker_punct":
        w = _type_word(entity_type)
        return (f"@ * {w} * ", " @", False) if subj else (f"# ^ {w} ^ ", " #", False)
    check_style(style)
    raise AssertionError(style)  # pragma: no cover - check_style raised


def special_tokens(style: str, entity_types: Iterable[str] = ()) -> list[str]:
    """The new tokens ``style`` needs for these entity types ([] for the punct styles).

    Order is deterministic (types sorted), so two processes preparing the same tokenizer give
    the same ids.
    """
    check_style(style)
    if style == "entity_marker":
        return ["[E1]", "[/E1]", "[E2]", "[/E2]"]
    if style in ("entity_marker_punct", "typed_entity_marker_punct"):
        return []
    types = sorted({_type_token(t) for t in entity_types})
    if not types:
        raise RelexError(f"marker style '{style}' needs the entity types of the data; none were given")
    if style == "entity_mask":
        return [f"[{role}-{t}]" for role in ("SUBJ", "OBJ") for t in types]
    # typed_entity_marker
    out: list[str] = []
    for role in ("SUBJ", "OBJ"):
        for t in types:
            out += [f"[{role}-{t}]", f"[/{role}-{t}]"]
    return out


def prepare_tokenizer(tokenizer, style: str, entity_types: Iterable[str] = ()) -> int:
    """Add the tokens ``style`` needs as special tokens; return how many were new.

    Idempotent: tokens already present are not added again (returns 0 the second time).
    """
    tokens = special_tokens(style, entity_types)
    if not tokens:
        return 0
    present = tokenizer.get_added_vocab()
    new = [t for t in tokens if t not in present]
    if not new:
        return 0
    return int(tokenizer.add_special_tokens({"extra_special_tokens": new}, replace_extra_special_tokens=False))


def entity_types(*datasets) -> list[str]:
    """Sorted distinct entity types (subject and object) of datasets or normalized frames
    (``None`` entries, e.g. an absent validation set, are skipped)."""
    types: set[str] = set()
    for ds in datasets:
        if ds is None:
            continue
        frame = getattr(ds, "frame", ds)
        for col in ("subj_type", "obj_type"):
            types.update(str(t) for t in frame[col].tolist() if t is not None and str(t).strip())
    return sorted(types)


def missing_tokens(tokenizer, style: str, entity_types: Iterable[str]) -> list[str]:
    """Tokens ``style`` needs for these types that the tokenizer does not hold as added tokens."""
    present = tokenizer.get_added_vocab()
    return [t for t in special_tokens(style, entity_types) if t not in present]


class Marked(NamedTuple):
    """A marked sentence and where, in it, each entity's pieces are (inclusive char offsets).

    ``*_marker`` is the first character of the start marker; ``*_end`` the last character of the
    whole marked entity (end marker included); ``*_word`` the first and last non-space character
    of the entity words, or ``(-1, -1)`` when the style replaces the words (entity_mask) or the
    words are blank.
    """

    text: str
    subj_marker: int
    subj_end: int
    subj_word: tuple[int, int]
    obj_marker: int
    obj_end: int
    obj_word: tuple[int, int]


class MarkedBatch(NamedTuple):
    """:class:`Marked` for many rows: the texts and (N,) int64 char offsets (−1: no words)."""

    texts: list[str]
    subj_marker: np.ndarray
    subj_end: np.ndarray
    subj_word_first: np.ndarray
    subj_word_last: np.ndarray
    obj_marker: np.ndarray
    obj_end: np.ndarray
    obj_word_first: np.ndarray
    obj_word_last: np.ndarray


def mark(
    sentence: str,
    subj: tuple[int, int, str],
    obj: tuple[int, int, str],
    style: str,
) -> Marked:
    """Insert the markers of ``style`` at the entities' char offsets.

    ``subj`` and ``obj`` are ``(start, end_inclusive, type)``; the spans must lie inside the
    sentence and must not overlap (RelexError otherwise). Either entity may come first.
    """
    check_style(style)
    n = len(sentence)
    for name, (s, e, _t) in (("subject", subj), ("object", obj)):
        if not (0 <= s <= e < n):
            raise RelexError(f"{name} span [{s}, {e}] is outside the sentence (length {n})")
    if not (subj[1] < obj[0] or obj[1] < subj[0]):
        raise RelexError(f"subject span [{subj[0]}, {subj[1]}] and object span [{obj[0]}, {obj[1]}] overlap")
    b = mark_many([sentence], [subj[0]], [subj[1]], [subj[2]], [obj[0]], [obj[1]], [obj[2]], style)
    return Marked(
        b.texts[0],
        int(b.subj_marker[0]),
        int(b.subj_end[0]),
        (int(b.subj_word_first[0]), int(b.subj_word_last[0])),
        int(b.obj_marker[0]),
        int(b.obj_end[0]),
        (int(b.obj_word_first[0]), int(b.obj_word_last[0])),
    )


def mark_many(sentences: Sequence[str], subj_start, subj_end, subj_type: Sequence[str],
              obj_start, obj_end, obj_type: Sequence[str], style: str) -> MarkedBatch:
    """Mark many sentences at once (spans already validated: inside, non-overlapping).

    Python touches each row only to slice and join its strings; the offsets are numpy
    arithmetic.
    """
    check_style(style)
    n = len(sentences)
    s0 = np.asarray(subj_start, dtype=np.int64).reshape(n)
    s1 = np.asarray(subj_end, dtype=np.int64).reshape(n)
    o0 = np.asarray(obj_start, dtype=np.int64).reshape(n)
    o1 = np.asarray(obj_end, dtype=np.int64).reshape(n)
    replace = style in MASK_STYLES
    smap = {t: affixes(style, "subj", t) for t in set(subj_type)}
    omap = {t: affixes(style, "obj", t) for t in set(obj_type)}
    s_pre = [smap[t][0] for t in subj_type]
    s_suf = [smap[t][1] for t in subj_type]
    o_pre = [omap[t][0] for t in obj_type]
    o_suf = [omap[t][1] for t in obj_type]
    s_lead = o_lead = np.zeros(n, np.int64)
    if style in SPACED_START_STYLES:
        s_lead = _glued(sentences, s0, o1)
        o_lead = _glued(sentences, o0, s1)
        s_pre = [" " + p if g else p for p, g in zip(s_pre, s_lead.tolist())]
        o_pre = [" " + p if g else p for p, g in zip(o_pre, o_lead.tolist())]

    subj_first = s0 < o0
    sf = subj_first.tolist()
    a0 = np.where(subj_first, s0, o0)
    a1 = np.where(subj_first, s1, o1)
    b0 = np.where(subj_first, o0, s0)
    b1 = np.where(subj_first, o1, s1)
    ap = [p if f else q for f, p, q in zip(sf, s_pre, o_pre)]
    asf = [p if f else q for f, p, q in zip(sf, s_suf, o_suf)]
    bp = [q if f else p for f, p, q in zip(sf, s_pre, o_pre)]
    bsf = [q if f else p for f, p, q in zip(sf, s_suf, o_suf)]
    a_keep = a0 if replace else a1 + 1  # end (exclusive) of the entity words kept in the text
    b_keep = b0 if replace else b1 + 1
    texts = [
        s[:x0] + p + s[x0:xk] + q + s[x1:y0] + r + s[y0:yk] + u + s[y1:]
        for s, x0, xk, x1, y0, yk, y1, p, q, r, u in zip(
            sentences, a0.tolist(), a_keep.tolist(), (a1 + 1).tolist(), b0.tolist(), b_keep.tolist(),
            (b1 + 1).tolist(), ap, asf, bp, bsf,
        )
    ]

    def lens(strings):
        return np.fromiter(map(len, strings), np.int64, n)

    l_ap, l_asf = lens(ap), lens(asf)
    # how far the second entity moved: what the first one's markers added, minus removed words
    shift = l_ap + (a_keep - a0) + l_asf - (a1 + 1 - a0)
    zero = np.zeros(n, np.int64)
    subj_marker = s0 + np.where(subj_first, zero, shift)
    obj_marker = o0 + np.where(subj_first, shift, zero)

    def entity(marker, start, end, pre, suf):
        kept = zero if replace else end + 1 - start
        word0 = marker + lens(pre)
        last = word0 + kept + lens(suf) - 1
        if replace:
            return last, np.full(n, -1, np.int64), np.full(n, -1, np.int64)
        words = [s[a:b] for s, a, b in zip(sentences, start.tolist(), (end + 1).tolist())]
        core = lens([w.strip() for w in words])
        lead = np.zeros(n, np.int64)
        for i in np.flatnonzero(core != end + 1 - start).tolist():  # rare: spaces at an edge
            lead[i] = len(words[i]) - len(words[i].lstrip())
        first = np.where(core > 0, word0 + lead, -1)
        lastw = np.where(core > 0, word0 + lead + core - 1, -1)
        return last, first, lastw

    s_end, s_w0, s_w1 = entity(subj_marker, s0, s1, s_pre, s_suf)
    o_end, o_w0, o_w1 = entity(obj_marker, o0, o1, o_pre, o_suf)
    # the start marker begins after the space put in front of a glued one
    return MarkedBatch(texts, subj_marker + s_lead, s_end, s_w0, s_w1, obj_marker + o_lead, o_end,
                       o_w0, o_w1)


def _glued(sentences: Sequence[str], start: np.ndarray, other_end: np.ndarray) -> np.ndarray:
    """1 where an entity starting at ``start`` would follow a non-space character once marked:
    a non-space character of the sentence, or the other entity's end marker right before it."""
    return np.fromiter(
        (s0 > 0 and (s0 == e + 1 or not s[s0 - 1].isspace())
         for s, s0, e in zip(sentences, start.tolist(), other_end.tolist())),
        np.int64, len(sentences))
