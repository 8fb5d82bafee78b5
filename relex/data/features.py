"""Featurization: marked sentences → token ids, entity positions, labels; cached on disk.

:func:`featurize` marks every sentence (:mod:`relex.data.markers`, by character offsets),
tokenizes all of them in ONE batch call of the fast tokenizer (no special tokens; ``[CLS]``/
``[SEP]`` are added here), and locates the entities through the tokenizer's character → token
alignment (its offsets), never by searching for token ids:

* ``subj_pos`` / ``obj_pos``: the token holding the first character of the start marker
  (``[SUBJ-PER]``, ``[E1]``, ``@``, ``#``; for entity_mask the mask token itself);
* ``subj_span`` / ``obj_span``: inclusive token span of the entity words (from the first token
  holding the first non-space character of the entity text to the last token holding its last
  one); for entity_mask, and for an entity whose text yields no token at all, the start-marker
  token.

Where several tokens hold one character (SentencePiece's lone ``▁`` piece, byte-level BPE's
split syllables) :func:`_last_token` says which one counts, and why.

Windowing. A row longer than ``max_length`` (with ``[CLS]`` and ``[SEP]``) keeps ``[CLS]`` + a
contiguous token window + ``[SEP]``. The window holds both MARKED entities whole (start marker
to end marker) and is centred on them: the free room is split evenly before and after, and
moved to the other side where the sentence ends. When the two marked entities are too far apart
to fit in one window, two windows are kept — one centred on each entity, the free room shared
equally — and joined in sentence order with nothing between them (no extra ``[SEP]``: the budget
goes to context, and the model never sees a separator inside a sentence). The result has exactly
``max_length`` tokens. A row is rejected with :class:`RelexError` when one marked entity alone,
or both together, cannot fit in ``max_length − 2`` tokens: the user must raise ``max_length``.
Windowed rows are counted in :attr:`Features.n_windowed` (and flagged in ``windowed``).

Storage. All rows' ids live in one flat int32 array; a row is ``flat[starts[i]:starts[i] +
lengths[i]]``. :meth:`Features.subset` shares the flat array (no copy of the ids).

Cache. Features are cached under ``cache_root()/"features"`` (or ``cache_dir``) as an ``.npz``
(read with ``allow_pickle=False``) plus a JSON (the key's fields, counts and the row ids of the
run that wrote it), both written atomically; the JSON is written last and marks the entry
complete. The key covers everything the features depend on: the dataset's ``content_hash``,
the tokenizer (sha256 of its full ``tokenizer.json`` serialisation — vocabulary, normalizer,
added tokens — and its CLS/SEP/PAD ids; truncation/padding settings left on it are ignored),
the style, ``max_length``, the label names and negative, and :data:`FEATURE_VERSION`. A hit
takes the row ids from the data set, not from the cache: ``content_hash`` leaves ids out, so
the same rows read from a KLUE JSON and from a CSV share one entry. Concurrent trials may build
the same entry at once: the content is deterministic and each file appears by an atomic rename,
so a reader sees either nothing or a complete entry; an unreadable entry is rebuilt.

Speed. Apart from the tokenizer call, the work is numpy over all rows; Python touches each row
only to join its marked string and to ask the tokenizer's Rust encoding for a handful of
char → token look-ups (``Encoding.char_to_token``, the offsets mapping without copying every
token's offsets into Python).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import itertools
import json
import operator
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from relex.data import markers
from relex.errors import RelexError
from relex.io_utils import atomic_path, atomic_write_text, cache_root

FEATURE_VERSION = 2  # 2: punct start markers glued to text get a space (markers.SPACED_START_STYLES)

_IDS = operator.attrgetter("ids")
_ARRAYS = ("flat", "starts", "lengths", "subj_pos", "obj_pos", "subj_span", "obj_span", "labels", "windowed")


class Features:
    """Featurized rows. Arrays are numpy; ``input_ids(i)`` is a view into one flat int32 array."""

    def __init__(
        self,
        *,
        flat: np.ndarray,
        starts: np.ndarray,
        lengths: np.ndarray,
        subj_pos: np.ndarray,
        obj_pos: np.ndarray,
        subj_span: np.ndarray,
        obj_span: np.ndarray,
        labels: np.ndarray,
        windowed: np.ndarray,
        ids: Sequence[str],
        pad_id: int,
        style: str,
        max_length: int,
        key: str | None = None,
        from_cache: bool = False,
    ):
        self.flat = np.asarray(flat, dtype=np.int32)
        self.starts = np.asarray(starts, dtype=np.int64)
        self.lengths = np.asarray(lengths, dtype=np.int32)
        self.subj_pos = np.asarray(subj_pos, dtype=np.int32)
        self.obj_pos = np.asarray(obj_pos, dtype=np.int32)
        self.subj_span = np.asarray(subj_span, dtype=np.int32).reshape(-1, 2)
        self.obj_span = np.asarray(obj_span, dtype=np.int32).reshape(-1, 2)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.windowed = np.asarray(windowed, dtype=bool)
        self.ids = np.asarray(list(ids), dtype=str) if not isinstance(ids, np.ndarray) else ids
        self.pad_id = int(pad_id)
        self.style = style
        self.max_length = int(max_length)
        self.key = key
        self.from_cache = from_cache
        n = len(self.starts)
        for name in _ARRAYS[2:]:
            if len(getattr(self, name)) != n:
                raise ValueError(f"Features: {name} has {len(getattr(self, name))} rows, expected {n}")
        if len(self.ids) != n:
            raise ValueError(f"Features: ids has {len(self.ids)} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.starts)

    def __repr__(self) -> str:
        return (f"Features(n={len(self)}, style={self.style!r}, max_length={self.max_length}, "
                f"n_windowed={self.n_windowed}, from_cache={self.from_cache})")

    @property
    def n_windowed(self) -> int:
        """Rows that were longer than max_length and were windowed around the entities."""
        return int(self.windowed.sum())

    def input_ids(self, i: int) -> np.ndarray:
        s = int(self.starts[i])
        return self.flat[s : s + int(self.lengths[i])]

    def subset(self, indices) -> "Features":
        idx = _as_index(indices, len(self))
        return Features(
            flat=self.flat,
            starts=self.starts[idx],
            lengths=self.lengths[idx],
            subj_pos=self.subj_pos[idx],
            obj_pos=self.obj_pos[idx],
            subj_span=self.subj_span[idx],
            obj_span=self.obj_span[idx],
            labels=self.labels[idx],
            windowed=self.windowed[idx],
            ids=self.ids[idx],
            pad_id=self.pad_id,
            style=self.style,
            max_length=self.max_length,
            key=None,
            from_cache=self.from_cache,
        )

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays as stored (flat ids compacted to this object's rows)."""
        return {name: getattr(self, name) for name in _ARRAYS}


def _as_index(indices, n: int) -> np.ndarray:
    if hasattr(indices, "detach"):  # a torch tensor
        indices = indices.detach().cpu().numpy()
    idx = np.asarray(indices)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise IndexError(f"boolean mask of shape {idx.shape} for {n} rows")
        return np.flatnonzero(idx)
    idx = idx.astype(np.int64, copy=False).reshape(-1)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"row index out of range for {n} rows")
    return idx


# ---------------------------------------------------------------------------- tokenizer
@contextlib.contextmanager
def _plain_backend(tokenizer):
    """The backend tokenizer with truncation and padding off, restored afterwards."""
    bt = getattr(tokenizer, "backend_tokenizer", None)
    if bt is None or not getattr(tokenizer, "is_fast", False):
        raise RelexError(
            f"tokenizer {type(tokenizer).__name__} is not a fast tokenizer: featurization needs "
            "the character offsets only fast (Rust) tokenizers provide"
        )
    trunc, pad = bt.truncation, bt.padding
    if trunc is not None:
        bt.no_truncation()
    if pad is not None:
        bt.no_padding()
    try:
        yield bt
    finally:
        if trunc is not None:
            bt.enable_truncation(**trunc)
        if pad is not None:
            bt.enable_padding(**pad)


def _special_ids(tokenizer) -> tuple[int, int, int]:
    cls_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    pad_id = tokenizer.pad_token_id
    if cls_id is None or sep_id is None or pad_id is None:
        raise RelexError(
            "tokenizer lacks a start ([CLS]/<s>), separator ([SEP]/</s>) or padding token; "
            "featurization needs all three"
        )
    return int(cls_id), int(sep_id), int(pad_id)


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 of the tokenizer's full serialisation (vocab, normalizer, added tokens) and special ids."""
    with _plain_backend(tokenizer) as bt:
        text = bt.to_str()
    h = hashlib.sha256(text.encode("utf-8"))
    h.update(json.dumps(_special_ids(tokenizer)).encode())
    return h.hexdigest()


# ---------------------------------------------------------------------------- cache
def cache_key(ds, tokenizer, style: str, max_length: int) -> tuple[str, dict[str, Any]]:
    fields = dict(
        version=FEATURE_VERSION,
        content_hash=ds.content_hash,
        tokenizer=tokenizer_fingerprint(tokenizer),
        style=style,
        max_length=int(max_length),
        labels=list(ds.labels.names),
        negative=ds.labels.negative,
    )
    key = hashlib.sha256(json.dumps(fields, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()
    return key, fields


def _entry_paths(cache_dir: Path, key: str, style: str, max_length: int) -> tuple[Path, Path]:
    stem = f"{style}-{max_length}-{key[:32]}"
    return cache_dir / f"{stem}.npz", cache_dir / f"{stem}.json"


def _load(npz_path: Path, json_path: Path, key: str, ids: list[str]) -> Features | None:
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
        if meta.get("key") != key or meta.get("version") != FEATURE_VERSION:
            return None
        with np.load(npz_path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in _ARRAYS}
        if len(ids) != len(arrays["starts"]) or meta.get("n_rows") != len(ids):
            return None
        return Features(**arrays, ids=ids, pad_id=meta["pad_id"], style=meta["style"],
                        max_length=meta["max_length"], key=key, from_cache=True)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, json.JSONDecodeError):
        return None


def _save(feats: Features, npz_path: Path, json_path: Path, key: str, fields: dict[str, Any]) -> None:
    npz_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(npz_path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **feats.arrays())
    meta = dict(
        version=FEATURE_VERSION,
        key=key,
        fields=fields,
        style=feats.style,
        max_length=feats.max_length,
        pad_id=feats.pad_id,
        n_rows=len(feats),
        n_windowed=feats.n_windowed,
        ids=[str(x) for x in feats.ids.tolist()],
    )
    atomic_write_text(json_path, json.dumps(meta, ensure_ascii=False))


# ---------------------------------------------------------------------------- featurize
def featurize(
    ds,
    tokenizer,
    style: str,
    max_length: int,
    *,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> Features:
    """Featurize ``ds`` for ``style`` (tokenizer already prepared with markers.prepare_tokenizer).

    With ``use_cache`` (default) a previous result with the same key is loaded instead
    (``Features.from_cache`` is then True) and a new result is stored.
    """
    markers.check_style(style)
    if isinstance(max_length, bool) or int(max_length) != max_length or max_length < 3:
        raise RelexError(f"max_length={max_length!r} is invalid: must be an integer of at least 3")
    max_length = int(max_length)
    if use_cache:
        key, fields = cache_key(ds, tokenizer, style, max_length)
        root = Path(cache_dir) if cache_dir is not None else cache_root() / "features"
        npz_path, json_path = _entry_paths(root, key, style, max_length)
        if json_path.is_file() and npz_path.is_file():
            # row ids come from the data set, not the cache: content_hash leaves ids out, so
            # the same rows read from differently-keyed files share one entry
            hit = _load(npz_path, json_path, key, [str(x) for x in ds.frame["id"].tolist()])
            if hit is not None:
                return hit
    feats = _featurize(ds, tokenizer, style, max_length)
    if use_cache:
        feats.key = key
        try:
            _save(feats, npz_path, json_path, key, fields)
        except OSError as e:  # the cache only saves time: a read-only cache must not stop a run
            print(f"relex: warning: feature cache not written ({npz_path.parent}: "
                  f"{e.strerror or e}); set RELEX_CACHE to a writable directory", file=sys.stderr)
    return feats


def _where(ds, i: int, rid) -> str:
    path = getattr(ds, "path", None)
    return f"{path if path else '<data>'}: row {i + 1} (id {rid})"


def _featurize(ds, tokenizer, style: str, max_length: int) -> Features:
    """The features of a data set: markers inserted by char offsets, one batch call of the fast
    tokenizer, over-long rows windowed around their entities, then one flat array of
    [CLS] + tokens + [SEP] per row."""
    frame = ds.frame
    ids = [str(x) for x in frame["id"].tolist()]
    sentences = frame["sentence"].tolist()
    spans = [frame[c].to_numpy(dtype=np.int64) for c in ("subj_start", "subj_end", "obj_start", "obj_end")]
    stypes, otypes = frame["subj_type"].tolist(), frame["obj_type"].tolist()
    _check_spans(ds, ids, sentences, *spans)
    _check_markable(ds, ids, tokenizer, style, stypes, otypes)
    s0, s1, o0, o1 = spans
    mb = markers.mark_many(sentences, s0, s1, stypes, o0, o1, otypes, style)
    gc_was = gc.isenabled()
    gc.disable()  # tens of thousands of short-lived objects: no point in collecting mid-way
    try:
        tok = _tokenize(ds, ids, tokenizer, mb, style)
        windows = _windows(ds, ids, tok, mb, style, max_length)
        tok_flat = np.fromiter(itertools.chain.from_iterable(map(_IDS, tok.encs)), np.int32,
                               int(tok.ntok.sum()))
        tok.encs = []
    finally:
        if gc_was:
            gc.enable()
    cls_id, sep_id, pad_id = _special_ids(tokenizer)
    windowed = tok.ntok > max_length - 2
    flat, starts, lengths = _assemble(tok_flat, tok.ntok, windowed, windows, max_length, cls_id, sep_id)
    return Features(
        flat=flat,
        starts=starts,
        lengths=lengths.astype(np.int32),
        subj_pos=tok.subj_pos,
        obj_pos=tok.obj_pos,
        subj_span=tok.subj_span,
        obj_span=tok.obj_span,
        labels=np.asarray(ds.label_ids(), dtype=np.int64),
        windowed=windowed,
        ids=ids,
        pad_id=pad_id,
        style=style,
        max_length=max_length,
    )


def _check_spans(ds, ids: list[str], sentences: list[str], s0, s1, o0, o1) -> None:
    """Spans inside their sentence and apart, in bulk: a file read by relex.data.io was checked
    row by row already, but a ``Dataset`` may also be built from a frame directly."""
    if not ids:
        return
    slen = np.fromiter(map(len, sentences), np.int64, len(ids))
    bad = ~((0 <= s0) & (s0 <= s1) & (s1 < slen) & (0 <= o0) & (o0 <= o1) & (o1 < slen))
    overlap = ~((s1 < o0) | (o1 < s0))
    for mask, why in ((bad, "entity span outside the sentence or start after end"),
                      (overlap, "subject and object spans overlap; markers cannot be inserted")):
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            raise RelexError(f"{_where(ds, i, ids[i])}: {why} (subject [{s0[i]}, {s1[i]}], "
                             f"object [{o0[i]}, {o1[i]}], sentence length {slen[i]})")


def _check_markable(ds, ids: list[str], tokenizer, style: str, stypes: list, otypes: list) -> None:
    """Every row can be marked in ``style``: entity types where the style prints them, and the
    tokenizer holds the marker tokens of every type present (one message naming the row)."""
    if style in ("entity_mask", "typed_entity_marker", "typed_entity_marker_punct"):
        def blank(t):
            return t is None or not isinstance(t, str) or not t.strip()

        if any(blank(t) for t in set(stypes) | set(otypes)):
            i = next(i for i, (a, b) in enumerate(zip(stypes, otypes)) if blank(a) or blank(b))
            raise RelexError(f"{_where(ds, i, ids[i])}: empty entity type; style '{style}' needs types")
    if style in ("entity_mask", "typed_entity_marker", "entity_marker"):
        types = sorted({str(t) for t in itertools.chain(stypes, otypes)})
        missing = markers.missing_tokens(tokenizer, style, types) if ids else []
        if missing:
            raise RelexError(
                f"the tokenizer lacks marker token(s) {', '.join(missing[:6])}"
                f"{' …' if len(missing) > 6 else ''} of style '{style}' (entity types in the data: "
                f"{', '.join(types)}); prepare the tokenizer with relex.data.markers.prepare_tokenizer("
                "tokenizer, style, entity_types) for the types of every data set before the model is "
                "built (a trained checkpoint knows only the types it was trained with)"
            )


@dataclass
class _Tokens:
    """The marked rows tokenized: encodings, token counts, and each entity's marker position and
    word span as token indices (shifted past [CLS] once windowed)."""
    encs: list
    ntok: np.ndarray
    subj_pos: np.ndarray
    obj_pos: np.ndarray
    subj_span: np.ndarray
    obj_span: np.ndarray


def _tokenize(ds, ids: list[str], tokenizer, mb, style: str) -> _Tokens:
    """ONE batch call of the fast tokenizer; char offsets -> token indices through the
    tokenizer's own alignment."""
    with _plain_backend(tokenizer) as bt:
        encs = bt.encode_batch(mb.texts, add_special_tokens=False) if ids else []
    ntok = np.fromiter(map(len, encs), np.int64, len(ids))
    sp = _last_token(encs, mb.subj_marker, _char_to_token(encs, mb.subj_marker))
    op = _last_token(encs, mb.obj_marker, _char_to_token(encs, mb.obj_marker))
    bad = np.flatnonzero((sp < 0) | (op < 0))
    if bad.size:
        i = int(bad[0])
        raise RelexError(f"{_where(ds, i, ids[i])}: the tokenizer drops a marker of style '{style}'; "
                         "choose another marker style")
    return _Tokens(encs, ntok, sp, op, _spans(encs, sp, mb.subj_word_first, mb.subj_word_last),
                   _spans(encs, op, mb.obj_word_first, mb.obj_word_last))


def _windows(ds, ids: list[str], tok: _Tokens, mb, style: str, max_length: int) -> dict[int, list[tuple[int, int]]]:
    """The kept token pieces of every over-long row (row -> [(start, end)]), with the rows'
    positions remapped into them; then every position shifted past [CLS]."""
    width = max_length - 2
    pieces: dict[int, list[tuple[int, int]]] = {}
    for i in np.flatnonzero(tok.ntok > width).tolist():
        e = tok.encs[i]
        se = _last_of(e, int(mb.subj_end[i]), e.char_to_token(int(mb.subj_end[i])))
        oe = _last_of(e, int(mb.obj_end[i]), e.char_to_token(int(mb.obj_end[i])))
        if se is None or oe is None:
            raise RelexError(f"{_where(ds, i, ids[i])}: the tokenizer drops a marker of style "
                             f"'{style}'; choose another marker style")
        subj_r = (int(tok.subj_pos[i]), int(se))
        obj_r = (int(tok.obj_pos[i]), int(oe))
        for name, (r0, r1) in (("subject", subj_r), ("object", obj_r)):
            if r1 - r0 + 1 > width:
                raise RelexError(
                    f"{_where(ds, i, ids[i])}: the marked {name} alone takes {r1 - r0 + 1} tokens, more "
                    f"than max_length={max_length} leaves after [CLS] and [SEP] ({width}); raise max_length"
                )
        first, second = (subj_r, obj_r) if subj_r[0] <= obj_r[0] else (obj_r, subj_r)
        try:
            pcs = window_pieces(int(tok.ntok[i]), first, second, width)
        except ValueError as err:
            raise RelexError(f"{_where(ds, i, ids[i])}: {err}; raise max_length") from None
        pieces[i] = pcs
        # old token index -> index after [CLS] and windowing
        tok.subj_pos[i] = _remap(tok.subj_pos[i], pcs) - 1
        tok.obj_pos[i] = _remap(tok.obj_pos[i], pcs) - 1
        tok.subj_span[i] = (_remap(tok.subj_span[i, 0], pcs) - 1, _remap(tok.subj_span[i, 1], pcs) - 1)
        tok.obj_span[i] = (_remap(tok.obj_span[i, 0], pcs) - 1, _remap(tok.obj_span[i, 1], pcs) - 1)
    for positions in (tok.subj_pos, tok.obj_pos, tok.subj_span, tok.obj_span):
        positions += 1  # the [CLS] in front
    return pieces


def _assemble(tok_flat: np.ndarray, ntok: np.ndarray, windowed: np.ndarray,
              pieces: dict[int, list[tuple[int, int]]], max_length: int, cls_id: int, sep_id: int):
    """(flat ids, row starts, row lengths): [CLS] + kept tokens + [SEP] per row."""
    n_rows = len(ntok)
    out_len = np.where(windowed, max_length, ntok + 2).astype(np.int64)
    out_start = np.zeros(n_rows, np.int64)
    if n_rows:
        np.cumsum(out_len[:-1], out=out_start[1:])
    if pieces:  # drop the tokens outside the windows
        tok_start = np.zeros(n_rows, np.int64)
        np.cumsum(ntok[:-1], out=tok_start[1:])
        kept = np.ones(len(tok_flat), dtype=bool)
        for i, pcs in pieces.items():
            t0 = int(tok_start[i])
            kept[t0 : t0 + int(ntok[i])] = False
            for a, b in pcs:
                kept[t0 + a : t0 + b] = True
        tok_flat = tok_flat[kept]
    total = int(out_len.sum())
    flat = np.empty(total, np.int32)
    special = np.zeros(total, dtype=bool)
    if n_rows:
        special[out_start] = True
        special[out_start + out_len - 1] = True
    flat[~special] = tok_flat
    if n_rows:
        flat[out_start] = cls_id
        flat[out_start + out_len - 1] = sep_id
    return flat, out_start, out_len


def _char_to_token(encs, chars: np.ndarray) -> np.ndarray:
    """Token index holding char ``chars[i]`` of row i (−1 where none, or where chars[i] < 0)."""
    if not len(encs):
        return np.empty(0, np.int64)
    neg = chars < 0
    c2t = type(encs[0]).char_to_token  # the unbound method: map() calls it without lookups
    out = list(map(c2t, encs, np.where(neg, 0, chars).tolist()))
    try:
        res = np.fromiter(out, np.int64, len(out))
    except TypeError:  # some None: chars no token holds
        res = np.fromiter((-1 if t is None else t for t in out), np.int64, len(out))
    res[neg] = -1
    return res


def _last_token(encs, chars: np.ndarray, first: np.ndarray) -> np.ndarray:
    """The LAST token holding char ``chars[i]`` of row i, given ``first[i]``, the first (−1: none).

    Several tokens can hold one character, and ``char_to_token`` gives the first of them. A
    SentencePiece tokenizer (XLM-R) emits the word-boundary sign as a piece of its own when the
    word has no ``▁``-prefixed piece (``▁`` ``@``, ``▁`` ``과``), aligned to the character after it;
    byte-level BPE (RoBERTa, GPT-2) spreads a Hangul syllable's three UTF-8 bytes over two or three
    pieces. The first token is right for where an entity's words begin, but a start marker's
    position would land on the textless ``▁`` instead of the marker, and an entity span or a
    window would stop inside its last syllable. So positions of start markers and the ends of
    spans and windows take the last token holding the character: this is the one place
    featurization depends on how a tokenizer splits, and WordPiece (one token per character at
    most) is unaffected.
    """
    out = first.copy()
    if not len(encs):
        return out
    ntok = np.fromiter(map(len, encs), np.int64, len(encs))
    rows = np.flatnonzero((first >= 0) & (chars >= 0) & (first + 1 < ntok)).tolist()
    # one look at the next token of every row (map over the unbound method, as _char_to_token
    # does); walk on only where it holds the character too
    nxt = map(type(encs[0]).token_to_chars, [encs[i] for i in rows], (first[rows] + 1).tolist())
    for i, span, c in zip(rows, nxt, chars[rows].tolist()):
        if span and span[0] <= c < span[1]:
            out[i] = _last_of(encs[i], int(c), int(first[i]))
    return out


def _last_of(enc, char: int, tok: int | None) -> int | None:
    """From ``tok`` (a token holding ``char``), the last following token that still holds it."""
    if tok is None:
        return None
    n = len(enc)
    while tok + 1 < n:
        span = enc.token_to_chars(tok + 1)
        if not span or not (span[0] <= char < span[1]):
            break
        tok += 1
    return tok


def _spans(encs, marker_tok: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """(N,2) inclusive token span of the entity words; the marker token where there are none."""
    a = _char_to_token(encs, first)
    b = _char_to_token(encs, last)
    # rare: the first/last char is one the tokenizer drops (e.g. a control char): walk inwards
    for i in np.flatnonzero(((a < 0) | (b < 0)) & (first >= 0)).tolist():
        a[i], b[i] = _word_span(encs[i].char_to_token, int(first[i]), int(last[i]))
    b = _last_token(encs, np.where(b >= 0, last, -1), b)
    none = (a < 0) | (b < 0) | (b < a)
    a[none] = marker_tok[none]
    b[none] = marker_tok[none]
    return np.stack([a, b], axis=1)


def _word_span(c2t, w0: int, w1: int) -> tuple[int, int]:
    """Tokens of the first and last char in [w0, w1] that map to a token; (−1, −1) if none."""
    a = None
    c = w0
    while c <= w1:
        a = c2t(c)
        if a is not None:
            break
        c += 1
    if a is None:
        return (-1, -1)
    b = None
    c = w1
    while c >= w0:
        b = c2t(c)
        if b is not None:
            break
        c -= 1
    return (a, b)


def _remap(t: int, pieces: list[tuple[int, int]]) -> int:
    offset = 1  # [CLS]
    for a, b in pieces:
        if a <= t < b:
            return offset + int(t) - a
        offset += b - a
    raise AssertionError(f"token {t} outside the kept windows {pieces}")  # pragma: no cover


def window_pieces(n: int, first: tuple[int, int], second: tuple[int, int], budget: int) -> list[tuple[int, int]]:
    """Token ranges ``[start, stop)`` to keep of an ``n``-token row so both entities survive.

    ``first`` and ``second`` are the inclusive token ranges of the two marked entities, in
    sentence order; ``budget`` is how many tokens may be kept (``n > budget``). Returns one
    window of ``budget`` tokens centred on both entities when they fit together, else two
    windows, one centred on each entity, sharing the free room equally. Raises ValueError when
    the two marked entities together need more than ``budget`` tokens.
    """
    a0, a1 = first
    b0, b1 = second
    la, lb = a1 - a0 + 1, b1 - b0 + 1
    span = max(a1, b1) - a0 + 1
    if span <= budget:
        extra = budget - span
        start = a0 - extra // 2
        start = max(0, min(start, n - budget))
        return [(start, start + budget)]
    if la + lb > budget:
        raise ValueError(
            f"the marked subject and object take {la}+{lb} tokens, more than the {budget} that "
            "max_length leaves after [CLS] and [SEP]"
        )
    extra = budget - la - lb
    ca = extra // 2
    cb = extra - ca
    a_left = ca // 2
    a_right = ca - a_left
    if a0 - a_left < 0:  # sentence starts: move the room to the right
        a_right += a_left - a0
        a_left = a0
    b_right = cb // 2
    b_left = cb - b_right
    if b1 + b_right > n - 1:  # sentence ends: move the room to the left
        b_left += b1 + b_right - (n - 1)
        b_right = n - 1 - b1
    return [(a0 - a_left, a1 + a_right + 1), (b0 - b_left, b1 + b_right + 1)]


# ---------------------------------------------------------------------------- ERPE + batching
def relative_distance(length, start, end, clip):
    """Clipped relative distance of each token position ``t < length`` to the span [start, end].

    ``t − start`` before the span, 0 inside it, ``t − end`` after it; clipped to [−clip, clip].
    ``start``/``end`` may be scalars (→ shape ``(length,)``) or 1-D arrays/tensors of a batch
    (→ ``(B, length)``). Torch inputs give a torch tensor, anything else numpy int64.
    """
    if any(hasattr(x, "detach") for x in (start, end)):
        import torch

        s = torch.as_tensor(start, dtype=torch.long)
        e = torch.as_tensor(end, dtype=torch.long)
        dev = s.device
        t = torch.arange(int(length), dtype=torch.long, device=dev)
        if s.dim():
            s, e, t = s[:, None], e[:, None].to(dev), t[None, :]
        d = torch.where(t < s, t - s, torch.where(t > e, t - e, torch.zeros_like(t)))
        return d.clamp(-int(clip), int(clip))
    s = np.asarray(start, dtype=np.int64)
    e = np.asarray(end, dtype=np.int64)
    t = np.arange(int(length), dtype=np.int64)
    if s.ndim:
        s, e, t = s[:, None], e[:, None], t[None, :]
    d = np.where(t < s, t - s, np.where(t > e, t - e, 0))
    return np.clip(d, -int(clip), int(clip))


def collate(feats: Features, indices, *, erpe_clip: int | None = None) -> dict[str, Any]:
    """A padded batch of rows ``indices`` of ``feats`` as torch tensors (padding to the longest).

    Keys: input_ids, attention_mask (B,T); subj_pos, obj_pos, labels, index (B,); subj_span,
    obj_span (B,2); with ``erpe_clip`` also subj_dist, obj_dist (B,T) = relative distance to the
    entity span + erpe_clip, in 0..2·erpe_clip.
    """
    import torch

    idx = _as_index(indices, len(feats))
    idx = np.where(idx < 0, idx + len(feats), idx)
    lens = feats.lengths[idx].astype(np.int64)
    B = len(idx)
    T = int(lens.max()) if B else 0
    ids = np.full((B, T), feats.pad_id, dtype=np.int64)
    total = int(lens.sum())
    if total:
        row_start = np.zeros(B, np.int64)
        np.cumsum(lens[:-1], out=row_start[1:])
        within = np.arange(total, dtype=np.int64) - np.repeat(row_start, lens)
        rows = np.repeat(np.arange(B, dtype=np.int64), lens)
        ids[rows, within] = feats.flat[np.repeat(feats.starts[idx], lens) + within]
    mask = (np.arange(T, dtype=np.int64)[None, :] < lens[:, None]).astype(np.int64)
    subj_span = feats.subj_span[idx].astype(np.int64)
    obj_span = feats.obj_span[idx].astype(np.int64)
    batch = {
        "input_ids": torch.from_numpy(ids),
        "attention_mask": torch.from_numpy(mask),
        "subj_pos": torch.from_numpy(feats.subj_pos[idx].astype(np.int64)),
        "obj_pos": torch.from_numpy(feats.obj_pos[idx].astype(np.int64)),
        "subj_span": torch.from_numpy(subj_span),
        "obj_span": torch.from_numpy(obj_span),
        "labels": torch.from_numpy(feats.labels[idx].astype(np.int64)),
        "index": torch.from_numpy(idx.astype(np.int64)),
    }
    if erpe_clip is not None:
        clip = int(erpe_clip)
        if clip < 1:
            raise ValueError(f"erpe_clip must be at least 1, not {erpe_clip}")
        batch["subj_dist"] = torch.from_numpy(relative_distance(T, subj_span[:, 0], subj_span[:, 1], clip) + clip)
        batch["obj_dist"] = torch.from_numpy(relative_distance(T, obj_span[:, 0], obj_span[:, 1], clip) + clip)
    return batch
