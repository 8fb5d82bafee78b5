"""Deterministic repairs of the defects real annotation files carry (``relex data fix``).

Each repair is made only where its rule applies, and every change is recorded as a
:class:`Change` (row, field, before → after, kind); nothing is changed silently. The kinds, in
the order they are applied:

- ``quotes``: an entity dict string that does not parse because of curly quotes (‘ ’ “ ”) or
  doubled quotes (``''word''``, ``""word""``) where the dict's own quotes belong; curly quotes
  inside a word that parses are left alone;
- ``invisible``: soft hyphens, zero-width spaces/joiners, word joiners and stray BOMs are removed
  from the sentence, the entity words and the label, the spans moved with the text;
- ``label_spaces``: spaces around a label are stripped (``" 관계없음"`` → ``"관계없음"``);
- ``exclusive_end``: when more spans of a file match ``sentence[start:end] == word``
  (end-exclusive) than ``sentence[start:end + 1] == word`` (relex's inclusive end), the file was
  written end-exclusive: every span that matches that way gets ``end - 1``;
- ``reanchor``: a span whose text is not its word, when the word occurs in the sentence, is
  moved to the occurrence nearest the given start (the earlier one on a tie) that does not
  overlap the other entity. A word that occurs nowhere is left as it is: the row stays bad.

:func:`repair_table` applies them to a file's raw records and returns a :class:`Repair`: the
records (KLUE layout), the changes, and :meth:`Repair.dataset` (the repaired rows validated as
``relex data check`` validates a file, bad rows named by the original file's rows).
:func:`write_records` writes the records as KLUE JSON, JSON lines, CSV or Parquet.
"""

from __future__ import annotations

import bisect
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from relex.config import NEGATIVE_LABEL
from relex.data.validate import (INVISIBLE, INVISIBLE_RE, RawTable, RowError, Schema, as_index,
                                 entity_parts, is_missing, resolve_columns)
from relex.errors import RelexError

KINDS = {
    "quotes": "curly or doubled quotes in an entity string",
    "invisible": "invisible characters removed",
    "label_spaces": "spaces around a label",
    "exclusive_end": "end index written exclusive",
    "reanchor": "span moved to the nearest occurrence of its word",
}
ENTITIES = ("subject_entity", "object_entity")
# a curly quote where a dict string's own quote belongs: after '{', ':' or ',' or before them
_STRUCTURAL_CURLY = re.compile(r"(?<=[{:,])\s*[‘’“”]|[‘’“”](?=\s*[:,}])")
_CURLY = str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"'})


@dataclass(frozen=True)
class Change:
    """One repair: 1-based data ``row`` (as ``data check`` numbers rows), the field, its value
    before and after, and the kind (a key of :data:`KINDS`)."""

    row: int
    id: str | None
    field: str
    kind: str
    before: str
    after: str
    where: str | None = None  # e.g. "CSV line 14"

    def __str__(self) -> str:
        loc = f" [{self.where}]" if self.where else ""
        rid = f" (id {self.id})" if self.id is not None else ""
        return f"row {self.row}{loc}{rid}: {self.field}: {self.before} → {self.after}"


def shown(text: str, limit: int = 100, quote: bool = True) -> str:
    """``text`` for a change listing: quoted, invisible characters made visible."""
    text = INVISIBLE_RE.sub(lambda m: f"<U+{ord(m.group()):04X}>", text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"'{text}'" if quote else text


@dataclass
class Repair:
    """A file's records after repair.

    ``records`` are KLUE-layout dicts (``id``, ``sentence``, ``subject_entity`` /
    ``object_entity`` as ``{word, start_idx, end_idx, type}`` — or the original value where it
    could not be parsed —, ``label`` and ``source`` when the file has them); ``changes`` every
    repair in row order.
    """

    raw: RawTable
    records: list[dict]
    changes: list[Change]
    has_label: bool
    has_source: bool

    def counts(self) -> dict[str, tuple[int, int]]:
        """kind -> (changes, rows changed), for the kinds that occur, in :data:`KINDS` order."""
        out = {}
        for kind in KINDS:
            hits = [c for c in self.changes if c.kind == kind]
            if hits:
                out[kind] = (len(hits), len({c.row for c in hits}))
        return out

    @property
    def rows_changed(self) -> int:
        return len({c.row for c in self.changes})

    def summary(self) -> str:
        """One line: rows repaired and the changes by kind."""
        kinds = ", ".join(f"{n} × {KINDS[k]}" for k, (n, _) in self.counts().items())
        return f"{self.rows_changed} row{'s' if self.rows_changed != 1 else ''} repaired ({kinds})"

    def table(self) -> RawTable:
        """The repaired records as a RawTable that keeps the original file's name and row
        positions (so bad rows are reported where they are in the file read)."""
        columns = ["id", "sentence", *ENTITIES] + (["label"] if self.has_label else []) + \
            (["source"] if self.has_source else [])
        return RawTable(self.raw.file, self.raw.kind, columns, len(self.records),
                        lambda c: [r[c] for r in self.records], self.raw.where)

    def dataset(self, *, labels=None, negative: str | None = NEGATIVE_LABEL,
                require_labels: bool = True):
        """The repaired rows validated exactly as :func:`relex.data.io.load` validates a file:
        the rows that stay bad are dropped and listed in ``bad_rows``."""
        from relex.data.io import from_raw

        return from_raw(self.table(), Path(self.raw.file), labels=labels, negative=negative,
                        require_labels=require_labels)


def read_repaired(path: str | os.PathLike, *, labels=None, negative: str | None = NEGATIVE_LABEL,
                  skip_bad_rows: bool = False, require_labels: bool = True):
    """``read_dataset`` through the repairs of ``relex data fix``: (Dataset, Repair). Rows that
    stay bad raise BadRowsError unless ``skip_bad_rows``, as for ``read_dataset``."""
    from relex.data.io import apply_bad_row_policy

    repair = repair_file(path, require_labels=require_labels)
    ds = repair.dataset(labels=labels, negative=negative, require_labels=require_labels)
    return apply_bad_row_policy(ds, os.fspath(path), skip_bad_rows), repair


# --- the repairs -------------------------------------------------------------------------------
def repair_file(path: str | os.PathLike, *, require_labels: bool = True) -> Repair:
    """Read ``path`` (any format relex reads) and repair its records."""
    from relex.data.io import read_raw

    return repair_table(read_raw(path), require_labels=require_labels)


def repair_table(raw: RawTable, *, require_labels: bool = True) -> Repair:
    """Apply every repair to the records of ``raw`` (see the module docstring)."""
    if raw.row_errors:
        i = min(raw.row_errors)
        where = raw.where(i)
        raise RelexError(f"{raw.file}: row {i + 1}{f' [{where}]' if where else ''} cannot be read "
                         f"({raw.row_errors[i]}); fix it by hand, then run `relex data fix` again")
    schema = resolve_columns(raw, require_labels=require_labels)
    records = _records(raw, schema)
    ids = [_id_text(r["id"]) for r in records]
    changes: list[tuple[int, int, Change]] = []  # (row, step) keeps row order, then repair order

    def note(i: int, step: int, field: str, kind: str, before: str, after: str) -> None:
        changes.append((i, step, Change(i + 1, ids[i], field, kind, before, after, raw.where(i))))

    for i, rec in enumerate(records):
        for what in ENTITIES:
            rec[what] = _parse_entity(rec[what], what, lambda *a: note(i, 0, *a))
        _remove_invisible(rec, lambda *a: note(i, 1, *a))
        _clean_label(rec, lambda *a: note(i, 2, *a))
    exclusive = _written_exclusive(records)
    for i, rec in enumerate(records):
        if exclusive:
            _shift_exclusive_ends(rec, lambda *a: note(i, 3, *a))
        _reanchor(rec, lambda *a: note(i, 4, *a))
    changes.sort(key=lambda t: (t[0], t[1]))
    return Repair(raw, records, [c for _, _, c in changes], has_label=schema.label is not None,
                  has_source=schema.source is not None)


def _records(raw: RawTable, schema: Schema) -> list[dict]:
    n = raw.n
    ids = raw.column(schema.id) if schema.id else [str(i) for i in range(n)]
    cols = {"id": ids, "sentence": raw.column(schema.sentence)}
    for name, src in zip(ENTITIES, (schema.subject, schema.object)):
        if src.dict_column:
            cols[name] = raw.column(src.dict_column)
        else:
            flat = [raw.column(src.flat[p]) for p in ("word", "start", "end", "type")]
            cols[name] = [tuple(c[i] for c in flat) for i in range(n)]
    if schema.label is not None:
        cols["label"] = raw.column(schema.label)
    if schema.source is not None:
        cols["source"] = raw.column(schema.source)
    return [{k: v[i] for k, v in cols.items()} for i in range(n)]


def _id_text(v) -> str | None:
    if is_missing(v):
        return None
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _entity_dict(parts: tuple) -> dict:
    word, start, end, etype = parts
    out = {"word": word, "start_idx": start, "end_idx": end, "type": etype}
    for key in ("start_idx", "end_idx"):
        try:
            out[key] = as_index(out[key], key)
        except RowError:
            pass  # left as it is: validation reports it
    return out


def _parse_entity(value, what: str, note) -> object:
    """The entity as a ``{word, start_idx, end_idx, type}`` dict, repairing quotes in a dict
    string that does not parse; the original value when it cannot be parsed at all."""
    if isinstance(value, tuple):  # four flat columns
        return _entity_dict(value)
    try:
        return _entity_dict(entity_parts(value, what))
    except RowError:
        pass
    if not isinstance(value, str):
        return value
    for fixed in _quote_candidates(value):
        try:
            parts = entity_parts(fixed, what)
        except RowError:
            continue
        note(what, "quotes", shown(value, 120, quote=False), shown(fixed, 120, quote=False))
        return _entity_dict(parts)
    return value


def _quote_candidates(text: str) -> list[str]:
    """Rewrites of a dict string's quotes, most conservative first."""
    structural = _STRUCTURAL_CURLY.sub(lambda m: m.group().translate(_CURLY), text)
    candidates = [structural, text.translate(_CURLY)]
    for t in (text, structural):
        candidates += [t.replace('""', '"'), t.replace("''", "'")]
    seen: list[str] = []
    for c in candidates:
        if c != text and c not in seen:
            seen.append(c)
    return seen


def _is_entity(e) -> bool:
    return isinstance(e, dict) and isinstance(e.get("word"), str) and \
        type(e.get("start_idx")) is int and type(e.get("end_idx")) is int


def _remove_invisible(rec: dict, note) -> None:
    sentence = rec["sentence"]
    ents = [rec[w] for w in ENTITIES]
    if not isinstance(sentence, str) or not all(_is_entity(e) for e in ents):
        return  # a row that stays bad anyway: its text is left as the file has it
    if not INVISIBLE_RE.search(sentence) and not any(INVISIBLE_RE.search(e["word"]) for e in ents):
        return
    removed = [i for i, ch in enumerate(sentence) if ch in INVISIBLE]
    clean = INVISIBLE_RE.sub("", sentence)
    if removed:
        note("sentence", "invisible", shown(sentence), shown(clean))
        rec["sentence"] = clean
    for what, e in zip(ENTITIES, ents):
        word = INVISIBLE_RE.sub("", e["word"])
        if word != e["word"]:
            note(f"{what}.word", "invisible", shown(e["word"]), shown(word))
        start, end = e["start_idx"], e["end_idx"]
        # the span moves with the text; an annotator who counted without the invisible
        # characters gave the right span already
        moved = (start - bisect.bisect_left(removed, start), end - bisect.bisect_right(removed, end))
        span = next((s for s in (moved, (start, end)) if clean[s[0]:s[1] + 1] == word), moved)
        if span != (start, end):
            note(f"{what}.span", "invisible", f"{start}-{end}", f"{span[0]}-{span[1]}")
        e.update(word=word, start_idx=span[0], end_idx=span[1])


def _clean_label(rec: dict, note) -> None:
    label = rec.get("label")
    if not isinstance(label, str):
        return
    visible = INVISIBLE_RE.sub("", label)
    if visible != label:
        note("label", "invisible", shown(label), shown(visible))
    if visible.strip() and visible != visible.strip():
        note("label", "label_spaces", shown(visible), shown(visible.strip()))
        visible = visible.strip()
    rec["label"] = visible


def _matches(sentence: str, e: dict, inclusive: bool) -> bool:
    start, end = e["start_idx"], e["end_idx"]
    if not e["word"] or start < 0:
        return False
    return sentence[start:end + 1 if inclusive else end] == e["word"]


def _written_exclusive(records: list[dict]) -> bool:
    """More spans match end-exclusive than inclusive: the file was written end-exclusive."""
    inclusive = exclusive = 0
    for rec in records:
        if not isinstance(rec["sentence"], str):
            continue
        for what in ENTITIES:
            e = rec[what]
            if _is_entity(e):
                inclusive += _matches(rec["sentence"], e, True)
                exclusive += _matches(rec["sentence"], e, False)
    return exclusive > inclusive


def _shift_exclusive_ends(rec: dict, note) -> None:
    if not isinstance(rec["sentence"], str):
        return
    for what in ENTITIES:
        e = rec[what]
        if _is_entity(e) and _matches(rec["sentence"], e, False):
            note(f"{what}.end_idx", "exclusive_end", str(e["end_idx"]), str(e["end_idx"] - 1))
            e["end_idx"] -= 1


def _occurrences(sentence: str, word: str) -> list[int]:
    out, i = [], sentence.find(word)
    while i >= 0:
        out.append(i)
        i = sentence.find(word, i + 1)
    return out


def _reanchor(rec: dict, note) -> None:
    sentence = rec["sentence"]
    if not isinstance(sentence, str):
        return
    for what, other in (("subject_entity", "object_entity"), ("object_entity", "subject_entity")):
        e, o = rec[what], rec[other]
        if not _is_entity(e) or not e["word"] or _matches(sentence, e, True):
            continue
        taken = (o["start_idx"], o["end_idx"]) if _is_entity(o) and _matches(sentence, o, True) \
            else None
        n = len(e["word"])
        free = [i for i in _occurrences(sentence, e["word"])
                if taken is None or i + n - 1 < taken[0] or i > taken[1]]
        if not free:
            continue  # the word occurs nowhere (or only inside the other entity): stays bad
        start = min(free, key=lambda i: (abs(i - e["start_idx"]), i))
        before = f"{e['start_idx']}-{e['end_idx']} " + shown(
            sentence[max(e["start_idx"], 0):e["end_idx"] + 1], 40)
        note(f"{what}.span", "reanchor", before, f"{start}-{start + n - 1} {shown(e['word'], 40)}")
        e.update(start_idx=start, end_idx=start + n - 1)


# --- writing -------------------------------------------------------------------------------------
def _entity_cell(value) -> str:
    """An entity as the competition CSV writes it: ``str(dict)``; anything else as it was."""
    return str(value) if isinstance(value, dict) else ("" if is_missing(value) else str(value))


def write_records(repair: Repair, path: str | os.PathLike) -> None:
    """Write the repaired records to ``path`` (atomically) in the format its extension names:
    KLUE JSON (``guid``), JSON lines, the competition CSV/TSV (entities as dict strings) or
    Parquet (the same columns as the CSV)."""
    from relex.data.io import EXTENSIONS
    from relex.io_utils import atomic_path, atomic_write_text

    p = Path(path)
    kind = EXTENSIONS.get(p.suffix.lower())
    if kind is None:
        raise RelexError(f"--out {path}: unknown file type '{p.suffix or '(no extension)'}'; "
                         f"write one of {', '.join(EXTENSIONS)}")
    keys = ["sentence", *ENTITIES] + (["label"] if repair.has_label else []) + \
        (["source"] if repair.has_source else [])
    if kind in ("json", "jsonl"):
        rows = [{"guid": _id_text(r["id"]), **{k: r[k] for k in keys}} for r in repair.records]
        if kind == "json":
            text = json.dumps(rows, ensure_ascii=False, indent=1) + "\n"
        else:
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        atomic_write_text(p, text)
        return
    columns = {"id": [_id_text(r["id"]) or "" for r in repair.records]}
    for k in keys:
        columns[k] = [_entity_cell(r[k]) if k in ENTITIES else ("" if is_missing(r[k]) else str(r[k]))
                      for r in repair.records]
    if kind == "csv":
        import pandas as pd

        sep = "\t" if p.suffix.lower() == ".tsv" else ","
        atomic_write_text(p, pd.DataFrame(columns).to_csv(index=False, sep=sep))
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_path(p) as tmp:
        pq.write_table(pa.table(columns), tmp)


__all__ = ["Change", "INVISIBLE", "KINDS", "Repair", "read_repaired", "repair_file", "repair_table",
           "write_records"]
