"""Column resolution and row validation: raw records in, the normalized columns out.

A reader (``relex.data.io``) turns a file into a :class:`RawTable` (column name -> list of raw
values). :func:`resolve_columns` maps the file's columns onto the normalized ones, accepting
common variants (``guid``/``id``, ``subject``/``object`` for the entity columns, flattened
``subj_*``/``obj_*`` columns, an unnamed index column) and otherwise failing with a message that says what to rename. :func:`normalize` then
checks every row:

- the sentence is a non-empty string;
- each entity parses (a dict, a Python-dict string, or four flat columns) and has a word, a
  start and an end index (ints, or strings/floats holding an int) and a non-empty type;
  ``text``/``entity_type``/``start``/``end`` keys are accepted for ``word``/``type``/...;
- the end index is INCLUSIVE: ``0 <= start <= end < len(sentence)`` and
  ``sentence[start:end + 1] == word``;
- the subject and object spans do not overlap;
- a label is present when labels are required: a string without spaces around it (a list, a
  dict or ``" 관계없음"`` is a bad row; unlabelled reads treat them as no label);
- ids are unique (a repeat is reported at its second and later rows).

Problems of a single row become :class:`RowProblem` records (the caller turns them into
``BadRow``); problems of the whole file raise :class:`~relex.errors.RelexError`.
"""

from __future__ import annotations

import ast
import difflib
import json
import re
from dataclasses import dataclass, field
from typing import Callable

from relex.errors import BadRow, RelexError

# A value that a record does not have (a JSON record without the key).
MISSING = object()

# Accepted spellings of the keys of an entity dict (first is the normalized name).
WORD_KEYS = ("word", "text", "mention")
START_KEYS = ("start_idx", "start", "start_index", "start_pos", "begin", "char_start")
END_KEYS = ("end_idx", "end", "end_index", "end_pos", "char_end")
TYPE_KEYS = ("type", "entity_type", "ner_type", "ner")
ENTITY_KEYS = {"word": WORD_KEYS, "start": START_KEYS, "end": END_KEYS, "type": TYPE_KEYS}

# Accepted column names.
ID_COLUMNS = ("id", "guid")
# Entity dict columns: KLUE's names, then the shorter ones of other Korean RE annotation files.
SUBJECT_COLUMNS = ("subject_entity", "subject")
OBJECT_COLUMNS = ("object_entity", "object")
SUBJECT_PREFIXES = ("subj_", "subject_")
OBJECT_PREFIXES = ("obj_", "object_")
# Leading index columns that pandas / pyarrow write; never data.
_INDEX_COLUMN = re.compile(r"^(Unnamed: \d+|__index_level_\d+__|)$")

# Column names seen in the wild, mapped to the name relex expects (for rename hints only).
RENAME_HINTS = {
    "sentence": ("text", "sent", "sentences", "context", "content", "document", "sentence_text"),
    "subject_entity": ("subj", "subj_entity", "sub_entity", "head", "head_entity",
                       "e1", "entity1", "entity_1", "h", "subject_entities"),
    "object_entity": ("obj", "obj_entity", "tail", "tail_entity", "e2", "entity2",
                      "entity_2", "t", "object_entities"),
    "label": ("labels", "relation", "relations", "rel", "relation_label", "class", "target",
              "label_name", "relation_type"),
}

# Characters that do not show but make two strings differ: soft hyphen, zero-width space /
# non-joiner / joiner, word joiner, a BOM inside text (relex.data.repair removes them).
INVISIBLE = {"\u00ad": "SOFT HYPHEN", "\u200b": "ZERO WIDTH SPACE",
             "\u200c": "ZERO WIDTH NON-JOINER", "\u200d": "ZERO WIDTH JOINER",
             "\u2060": "WORD JOINER", "\ufeff": "ZERO WIDTH NO-BREAK SPACE"}
INVISIBLE_RE = re.compile("[" + "".join(INVISIBLE) + "]")

# Fast path for the dict strings that ``str(dict)`` writes in the boostcamp CSV; anything that
# does not match exactly (quotes or backslashes in the word, other key orders) goes through
# ast.literal_eval. Without a quote or backslash inside, the repr of a string is the string.
_FAST_DICT = re.compile(
    r"\{'word': '([^'\\]*)', 'start_idx': (\d+), 'end_idx': (\d+), 'type': '([^'\\]*)'\}\Z")


@dataclass(frozen=True)
class LocatedBadRow(BadRow):
    """A :class:`BadRow` that also says where the row is in the file (e.g. ``CSV line 14``)."""

    where: str | None = None

    def __str__(self) -> str:
        loc = f" [{self.where}]" if self.where else ""
        rid = f" (id {self.id})" if self.id is not None else ""
        return f"{self.file}: row {self.row}{loc}{rid}: {self.reason}"


@dataclass
class RawTable:
    """A file's records as columns of raw values, before any checking.

    ``where(i)`` describes the position of 0-based record ``i`` in the file beyond its 1-based
    row number (``"CSV line 14"``, ``"line 7"``), or None. ``row_errors`` holds records that
    could not be read at all (an invalid JSON line), by 0-based record index.
    """

    file: str
    kind: str
    columns: list[str]
    n: int
    column: Callable[[str], list]
    where: Callable[[int], str | None] = lambda i: None
    row_errors: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EntitySource:
    """Where an entity comes from: one dict column, or four flat columns."""

    dict_column: str | None = None
    flat: dict | None = None  # {"word": col, "start": col, "end": col, "type": col}


@dataclass(frozen=True)
class Schema:
    id: str | None
    sentence: str
    subject: EntitySource
    object: EntitySource
    label: str | None
    source: str | None


# --- column resolution --------------------------------------------------------------------------
def _quote_list(names) -> str:
    return ", ".join(f"'{n}'" for n in names) if names else "none"


def _rename_hint(target: str, columns: list[str], taken: set[str]) -> str | None:
    """A column of ``columns`` that probably means ``target``."""
    lower = {c.lower(): c for c in columns if c not in taken}
    if target.lower() in lower:
        return lower[target.lower()]
    for alias in RENAME_HINTS.get(target, ()):
        if alias in lower:
            return lower[alias]
    close = difflib.get_close_matches(target, [c for c in columns if c not in taken], n=1, cutoff=0.75)
    return close[0] if close else None


def _flat_columns(columns: list[str], prefixes: tuple[str, ...]) -> tuple[dict, list[str]]:
    """Flat entity columns with one of ``prefixes``: (found part -> column, missing parts)."""
    found = {}
    for part, keys in ENTITY_KEYS.items():
        for prefix in prefixes:
            hit = next((prefix + k for k in keys if prefix + k in columns), None)
            if hit:
                found[part] = hit
                break
    missing = [p for p in ENTITY_KEYS if p not in found]
    return found, missing


def resolve_columns(raw: RawTable, *, require_labels: bool) -> Schema:
    """Map the file's columns to the normalized ones, or raise RelexError saying what to rename."""
    columns = [c for c in raw.columns if not _INDEX_COLUMN.match(str(c))]
    cols = set(columns)
    missing: list[str] = []
    renames: list[str] = []
    notes: list[str] = []
    taken = {c for c in ("id", "guid", "sentence", *SUBJECT_COLUMNS, *OBJECT_COLUMNS, "label",
                         "source") if c in cols}

    def need(name: str) -> None:
        missing.append(name)
        hint = _rename_hint(name, columns, taken)
        if hint:
            renames.append(f"rename '{hint}' to '{name}'")
            taken.add(hint)

    id_col = next((c for c in ID_COLUMNS if c in cols), None)
    sentence = "sentence" if "sentence" in cols else None
    if sentence is None:
        need("sentence")

    entities = {}
    for name, aliases, prefixes, short in (
            ("subject_entity", SUBJECT_COLUMNS, SUBJECT_PREFIXES, "subj"),
            ("object_entity", OBJECT_COLUMNS, OBJECT_PREFIXES, "obj")):
        dict_column = next((c for c in aliases if c in cols), None)
        if dict_column:
            entities[name] = EntitySource(dict_column=dict_column)
            continue
        flat, flat_missing = _flat_columns(columns, prefixes)
        if not flat_missing:
            entities[name] = EntitySource(flat=flat)
            continue
        need(name)
        if flat:  # some flat columns exist: say which are missing
            notes.append(f"or add {_quote_list(short + '_' + p for p in flat_missing)} to the "
                         f"flat columns {_quote_list(flat.values())}")

    label = "label" if "label" in cols else None
    if label is None and require_labels:
        need("label")

    if missing:
        what = "column" if len(missing) == 1 else "columns"
        msg = f"{raw.file}: missing {what} {_quote_list(missing)} (found: {_quote_list(columns)})"
        if renames:
            msg += "; " + ", ".join(renames)
        if notes:
            msg += "; " + "; ".join(notes)
        if not renames and not notes:
            msg += ("; expected id (or guid), sentence, subject_entity, object_entity, label "
                    "and optionally source, with each entity a dict of word, start_idx, end_idx "
                    "(inclusive) and type, or flat subj_word/subj_start/subj_end/subj_type and "
                    "obj_* columns")
        raise RelexError(msg)
    return Schema(id=id_col, sentence=sentence, subject=entities["subject_entity"],
                  object=entities["object_entity"], label=label,
                  source="source" if "source" in cols else None)


# --- values ---------------------------------------------------------------------------------------
def is_missing(v) -> bool:
    return v is MISSING or v is None or (isinstance(v, float) and v != v)


def _short(v, limit: int = 80) -> str:
    s = v if isinstance(v, str) else repr(v)
    return s if len(s) <= limit else s[: limit - 1] + "…"


class RowError(Exception):
    pass


def as_index(v, what: str) -> int:
    if isinstance(v, bool):
        raise RowError(f"{what} is {v!r}, not an integer")
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        s = v.strip()
        if re.fullmatch(r"[+-]?\d+", s):
            return int(s)
    if hasattr(v, "__index__"):  # numpy integers
        return int(v.__index__())
    raise RowError(f"{what} is {_short(v)!r}, not an integer")


def _literal_problem(text: str, e: Exception) -> str:
    if isinstance(e, SyntaxError):
        msg = e.msg or "invalid syntax"
        at = f" at character {e.offset}" if e.offset else ""
        hint = ""
        curly = sorted({ch for ch in text if ch in "‘’“”"})
        if curly:
            hint = f"; replace the curly quote{'s' if len(curly) > 1 else ''} " \
                   f"{' '.join(curly)} with straight quotes"
        return f"{msg}{at}{hint}"
    return f"{type(e).__name__}: {e}"


def _entity_mapping(value, what: str) -> dict:
    """An entity value (dict, dict string, or key/value pairs) as a dict."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise RowError(f"{what} is empty")
        try:
            obj = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
            try:  # a JSON object string (null/true/false are not Python literals)
                obj = json.loads(text)
            except (ValueError, RecursionError):
                raise RowError(f"{what} is not a valid dict string ({_literal_problem(text, e)}):"
                                f" {_short(text, 120)}") from None
        if not isinstance(obj, dict):
            raise RowError(f"{what} is a {type(obj).__name__}, not a dict: {_short(text)}")
        return obj
    if isinstance(value, (list, tuple)) and all(isinstance(p, (list, tuple)) and len(p) == 2
                                                for p in value):  # a Parquet map column
        return dict(value)
    raise RowError(f"{what} is a {type(value).__name__}, not a dict: {_short(value)}")


def _get_key(d: dict, part: str, what: str):
    for k in ENTITY_KEYS[part]:
        if k in d:
            return d[k]
    raise RowError(f"{what} has no '{ENTITY_KEYS[part][0]}' key (keys: {_quote_list(list(d))})")


def missing_entity_keys(d: dict) -> list[str]:
    """Rename hints ("rename 'w' to 'word'") for the parts that dict ``d`` lacks."""
    known = {a for aliases in ENTITY_KEYS.values() for a in aliases}
    unused = [str(k) for k in d if k not in known]
    lacking = [aliases for aliases in ENTITY_KEYS.values() if not any(a in d for a in aliases)]
    pairs: dict[str, str] = {}
    for aliases in lacking:
        name = aliases[0]
        free = [k for k in unused if k not in pairs.values()]
        hit = next((k for k in free if any(a.startswith(k.lower()) for a in aliases)), None)
        if hit is None:
            close = difflib.get_close_matches(name, free, n=1, cutoff=0.5)
            hit = close[0] if close else None
        if hit is not None:
            pairs[name] = hit
    rest_names = [a[0] for a in lacking if a[0] not in pairs]
    rest_keys = [k for k in unused if k not in pairs.values()]
    if len(rest_names) == 1 and len(rest_keys) == 1:
        pairs[rest_names[0]] = rest_keys[0]
    return [f"rename '{pairs[a[0]]}' to '{a[0]}'" if a[0] in pairs else f"add '{a[0]}'"
            for a in lacking]


def entity_parts(value, what: str) -> tuple:
    """(word, start, end, type) of an entity value, or RowError."""
    if type(value) is dict:  # the common case: KLUE keys
        try:
            return value["word"], value["start_idx"], value["end_idx"], value["type"]
        except KeyError:
            pass
    if is_missing(value):
        raise RowError(f"{what} is missing")
    if isinstance(value, str):
        m = _FAST_DICT.match(value)
        if m:
            w, a, b, t = m.groups()
            return w, int(a), int(b), t
    d = _entity_mapping(value, what)
    return (_get_key(d, "word", what), _get_key(d, "start", what), _get_key(d, "end", what),
            _get_key(d, "type", what))


def _check_entity(parts: tuple, sentence: str, what: str, problems: list[str]):
    """Check one entity; append problems; return (word, start, end, type) or None."""
    word, start, end, etype = parts
    if (type(start) is int and type(end) is int and type(word) is str and type(etype) is str
            and word and etype.strip() and 0 <= start <= end < len(sentence)
            and sentence[start:end + 1] == word):
        return parts  # the common case, all checks passed
    bad = False
    if is_missing(word) or not isinstance(word, str) or word == "":
        problems.append(f"{what}: word is missing or empty")
        bad = True
    if is_missing(etype) or not isinstance(etype, str) or not etype.strip():
        problems.append(f"{what}: type is missing or empty")
        bad = True
    try:
        start = as_index(start, f"{what}: start_idx")
        end = as_index(end, f"{what}: end_idx")
    except RowError as e:
        problems.append(str(e))
        return None
    n = len(sentence)
    if start < 0 or end < 0:
        problems.append(f"{what}: negative index (start_idx {start}, end_idx {end})")
        return None
    if start > end:
        problems.append(f"{what}: start_idx {start} > end_idx {end}")
        return None
    if end >= n:
        exclusive = end == n and sentence[start:end] == word
        problems.append(f"{what}: end_idx {end} is outside the sentence (length {n}, last index "
                        f"{n - 1})" + ("; end_idx looks exclusive, relex expects it inclusive "
                                       "(the last character's index)" if exclusive else ""))
        return None
    if bad:
        return None
    got = sentence[start:end + 1]
    if got != word:
        hint = ""
        if start < end and sentence[start:end] == word:
            hint = "; end_idx looks exclusive, relex expects it inclusive (the last character's index)"
        problems.append(f"{what}: sentence[{start}:{end}+1] is '{_short(got, 40)}' but word is "
                        f"'{_short(word, 40)}' (end_idx is inclusive){hint}")
        return None
    return word, start, end, etype


def _text(v) -> str | None:
    if is_missing(v):
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _label(v) -> tuple[str | None, str | None]:
    """(the label as text or None, the problem that makes it no label).

    A list or dict is not a label (no stringified ``"['a', 'b']"`` class); nor is a label with
    spaces around it or invisible characters in it, which would otherwise become a class of its
    own beside the real one (``relex data fix`` removes them). Numbers are text (a test file's
    placeholder ``100``).
    """
    if isinstance(v, (list, tuple, dict, set)):
        kind = "dict" if isinstance(v, dict) else "list"
        return None, f"label is a {kind}, not a string: {_short(repr(v), 60)}"
    text = _text(v)
    if text is None or not text.strip():
        return None, None
    if text != text.strip():
        return None, f"label {text!r} has spaces around it (`relex data fix` strips them)"
    if INVISIBLE_RE.search(text):
        shown = INVISIBLE_RE.sub(lambda m: f"<U+{ord(m.group()):04X}>", text)
        return None, f"label '{shown}' holds invisible characters (`relex data fix` removes them)"
    return text, None


@dataclass
class Normalized:
    """Normalized column lists (one entry per record; invalid rows hold placeholders) and the
    problems of each bad record (0-based index -> reasons)."""

    columns: dict[str, list]
    problems: dict[int, list[str]]
    exclusive_like: int = 0  # rows whose only problem looks like an exclusive end index


def normalize(raw: RawTable, schema: Schema, *, require_labels: bool) -> Normalized:
    """Check every record; return the normalized values and the per-row problems."""
    n = raw.n
    sentences = raw.column(schema.sentence)
    ids = raw.column(schema.id) if schema.id else [str(i) for i in range(n)]
    labels = raw.column(schema.label) if schema.label else [None] * n
    sources = raw.column(schema.source) if schema.source else [""] * n

    def entity_values(src: EntitySource):
        if src.dict_column:
            return raw.column(src.dict_column), None
        return None, [raw.column(src.flat[p]) for p in ("word", "start", "end", "type")]

    subj_d, subj_f = entity_values(schema.subject)
    obj_d, obj_f = entity_values(schema.object)
    _check_entity_keys(raw, schema, subj_d, obj_d)

    out = {c: [None] * n for c in ("id", "sentence", "subj_word", "subj_start", "subj_end",
                                    "subj_type", "obj_word", "obj_start", "obj_end", "obj_type",
                                    "label", "source")}
    problems: dict[int, list[str]] = {}
    exclusive_like = 0
    seen_ids: dict[str, int] = {}
    for i in range(n):
        if i in raw.row_errors:
            problems[i] = [raw.row_errors[i]]
            continue
        p: list[str] = []
        rid = ids[i]
        if type(rid) is not str:
            rid = _text(rid)
        if rid is None or rid == "":
            p.append("id is empty")
        elif rid in seen_ids:
            p.append(f"duplicate id '{rid}' (first at row {seen_ids[rid] + 1})")
        else:
            seen_ids[rid] = i
        sentence = sentences[i]
        if type(sentence) is not str or not sentence.strip():
            p.append("sentence is missing or empty")
            sentence = None
        ents = []
        for what, dvals, fvals in (("subject_entity", subj_d, subj_f),
                                   ("object_entity", obj_d, obj_f)):
            try:
                parts = entity_parts(dvals[i], what) if dvals is not None else \
                    tuple(col[i] for col in fvals)
            except RowError as e:
                p.append(str(e))
                ents.append(None)
                continue
            ents.append(_check_entity(parts, sentence, what, p) if sentence is not None else None)
        s, o = ents
        if s is not None and o is not None and s[1] <= o[2] and o[1] <= s[2]:
            p.append(f"subject ({s[1]}-{s[2]} '{_short(s[0], 30)}') and object "
                     f"({o[1]}-{o[2]} '{_short(o[0], 30)}') spans overlap")
        label, label_problem = labels[i], None
        if type(label) is not str or not label or label != label.strip() or \
                INVISIBLE_RE.search(label):
            label, label_problem = _label(label)
        if label is None and require_labels:  # without labels required, a bad one is no label
            p.append(label_problem or "label is missing or empty")
        if p:
            problems[i] = p
            if all("looks exclusive" in r for r in p):
                exclusive_like += 1
            continue
        out["id"][i] = rid
        out["sentence"][i] = sentence
        out["subj_word"][i], out["subj_start"][i], out["subj_end"][i], out["subj_type"][i] = s
        out["obj_word"][i], out["obj_start"][i], out["obj_end"][i], out["obj_type"][i] = o
        out["label"][i] = label
        src = sources[i]
        out["source"][i] = src if type(src) is str else (_text(src) or "")
    return Normalized(out, problems, exclusive_like)


def _check_entity_keys(raw: RawTable, schema: Schema, subj_d, obj_d) -> None:
    """When the first readable entity dicts of a column (up to 5) all lack a key, the file uses
    other key names: one file-level message with the rename instead of a bad row per row."""
    for name, vals in (("subject_entity", subj_d), ("object_entity", obj_d)):
        if vals is None:
            continue
        first = None
        lacking = 0
        for v in vals[:200]:
            if is_missing(v):
                continue
            if isinstance(v, str) and _FAST_DICT.match(v):
                lacking = 0
                break
            try:
                d = _entity_mapping(v, name)
            except RowError:
                continue
            hints = missing_entity_keys(d)
            if not hints:
                lacking = 0
                break
            first = first or (d, hints)
            lacking += 1
            if lacking >= 5:
                break
        if lacking and first:
            d, hints = first
            raise RelexError(
                f"{raw.file}: the {name} entries have keys {_quote_list(list(d))}; relex needs "
                f"word, start_idx, end_idx (inclusive), type: {', '.join(hints)}")


def bad_rows(raw: RawTable, norm: Normalized, ids: list) -> list[LocatedBadRow]:
    """The problems of ``norm`` as bad-row records, in file order (rows 1-based)."""
    out = []
    for i in sorted(norm.problems):
        rid = _text(ids[i]) if ids is not None else str(i)
        out.append(LocatedBadRow(file=raw.file, row=i + 1, reason="; ".join(norm.problems[i]),
                                 id=rid or None, where=raw.where(i)))
    return out
