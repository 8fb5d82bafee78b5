"""Reading relation-extraction data files into the one normalized table.

Formats (by extension):

- ``.json``: KLUE JSON, a list of records ``{guid, sentence, subject_entity{word, start_idx,
  end_idx, type}, object_entity{...}, label, source}`` (a JSON-lines file named ``.json`` is
  read as JSON lines);
- ``.jsonl`` / ``.ndjson``: one such record per line;
- ``.csv`` / ``.tsv``: the boostcamp competition layout ``id, sentence, subject_entity,
  object_entity, label, source`` with the entities as Python-dict strings
  (``"{'word': '비틀즈', 'start_idx': 24, 'end_idx': 26, 'type': 'ORG'}"``);
- ``.parquet``: entity columns as structs or dict strings.

In every format the entities may instead be eight flat columns ``subj_word, subj_start,
subj_end, subj_type, obj_word, ...``; ``guid`` may stand for ``id`` (without either, ids are the
0-based row numbers, as in the competition CSV); ``source`` is optional (filled with ""); a
leading unnamed index column is ignored. See :mod:`relex.data.validate` for the row checks.

Row numbers in messages are 1-based data rows (records; the CSV header is not counted); for CSV
and JSON lines the line in the file is given too, e.g. ``train.csv: row 13 [CSV line 14]``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from relex.config import NEGATIVE_LABEL
from relex.data.labels import LabelSet, guess_negative
from relex.data.validate import (MISSING, LocatedBadRow, RawTable, bad_rows, normalize,
                                 resolve_columns)
from relex.errors import BadRow, BadRowsError, RelexError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd

COLUMNS = ("id", "sentence", "subj_word", "subj_start", "subj_end", "subj_type",
           "obj_word", "obj_start", "obj_end", "obj_type", "label", "source")
INT_COLUMNS = ("subj_start", "subj_end", "obj_start", "obj_end")
EXTENSIONS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv",
              ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet"}
# Bump when the normalized content or its hashing changes (invalidates feature caches).
HASH_VERSION = "relex-data-1"


# --- the dataset -----------------------------------------------------------------------------------
class Dataset:
    """A validated data set: the normalized table and its label set.

    ``frame`` has the columns of :data:`COLUMNS` in that order (``subj_end``/``obj_end`` are
    inclusive); ``labels`` is the :class:`LabelSet`; ``path`` the file read (None for one built
    in memory); ``skipped`` how many bad rows were dropped while reading (``bad_rows`` lists
    them); a subset keeps both, as they describe the file.
    """

    def __init__(self, frame: "pd.DataFrame", labels: LabelSet, path: str | os.PathLike | None = None,
                 skipped: int = 0, bad_rows: Sequence[BadRow] = ()):
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"frame lacks columns {missing}")
        self.frame = frame[list(COLUMNS)] if list(frame.columns) != list(COLUMNS) else frame
        self.labels = labels
        self.path = Path(path) if path is not None else None
        self.skipped = int(skipped)
        self.bad_rows = tuple(bad_rows)

    def __len__(self) -> int:
        return len(self.frame)

    def __repr__(self) -> str:
        where = f" from {self.path}" if self.path else ""
        return (f"Dataset({len(self)} rows{where}, {len(self.labels)} labels, "
                f"skipped={self.skipped})")

    @cached_property
    def content_hash(self) -> str:
        """sha256 (hex) of the normalized content, the feature-cache key.

        The ``id`` column is left out on purpose: the same rows read from KLUE JSON (guid
        ``klue-re-v1_train_00000``) and from the competition CSV (id ``0``) hash the same and
        share one feature cache. Anything cached under this key must therefore not carry ids;
        take them from ``frame.id``. Row order, every other column and unlabelled rows count.
        """
        import numpy as np

        f = self.frame
        h = hashlib.sha256(f"{HASH_VERSION}\n{len(f)}\n".encode())
        for c in COLUMNS:
            if c == "id":
                continue
            h.update(f"\n{c}\n".encode())
            if c in INT_COLUMNS:
                h.update(f[c].to_numpy(dtype="<i8").tobytes())
                continue
            vals = f[c].tolist()
            if c == "label":
                vals = [None if v is None or (isinstance(v, float) and v != v) else v for v in vals]
            # lengths first (-1: no value), then the text: unambiguous whatever the text holds
            h.update(np.asarray([-1 if v is None else len(v) for v in vals], dtype="<i8").tobytes())
            h.update("".join(v for v in vals if v is not None).encode("utf-8", "surrogatepass"))
        return h.hexdigest()

    def label_ids(self) -> "np.ndarray":
        """Class id of each row (int64); -1 for unlabelled rows."""
        return self.labels.ids(self.frame["label"].tolist())

    def subset(self, indices: Iterable[int] | "np.ndarray") -> "Dataset":
        """The rows at ``indices`` (positions, in the given order), as a new Dataset."""
        import numpy as np

        idx = np.asarray(list(indices) if not hasattr(indices, "__array__") else indices)
        if idx.dtype == bool:
            if len(idx) != len(self):
                raise IndexError(f"boolean mask of length {len(idx)} for {len(self)} rows")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64, copy=False)
        frame = self.frame.iloc[idx].reset_index(drop=True)
        return Dataset(frame, self.labels, self.path, self.skipped, self.bad_rows)

    def entity_types(self) -> list[str]:
        """The sorted distinct entity types of subjects and objects (for typed markers)."""
        from relex.data.markers import entity_types

        return entity_types(self)


# --- text and formats --------------------------------------------------------------------------------
def _read_bytes(path: Path, file: str) -> bytes:
    data = path.read_bytes()
    if not data.strip():
        raise RelexError(f"{file}: the file is empty")
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise RelexError(f"{file}: the file is UTF-16 text; relex reads UTF-8. Re-save it as UTF-8 "
                         f"(e.g. iconv -f utf-16 -t utf-8 {path.name} > {path.stem}.utf8{path.suffix})")
    return data


def _decode(data: bytes, path: Path, file: str) -> str:
    """UTF-8 text of ``data`` (a BOM is dropped), or RelexError saying what the encoding is."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        where = f"byte 0x{data[e.start]:02x} at line {line}"
        try:
            data.decode("cp949")
        except UnicodeDecodeError:
            raise RelexError(f"{file}: not UTF-8 text ({where}); re-save it as UTF-8") from None
        raise RelexError(
            f"{file}: not UTF-8 text ({where}); it reads as CP949/EUC-KR, the Korean Windows "
            f"encoding. Re-save it as UTF-8, e.g. `iconv -f cp949 -t utf-8 {path.name} > "
            f"{path.stem}.utf8{path.suffix}` or, in Python, "
            f"`open(out, 'w', encoding='utf-8').write(open(src, encoding='cp949').read())` "
            f"(in Excel: Save As > CSV UTF-8)") from None


def _read_text(path: Path, file: str) -> str:
    return _decode(_read_bytes(path, file), path, file)


def _records_table(file: str, kind: str, records: list, where=lambda i: None,
                   row_errors: dict | None = None) -> RawTable:
    row_errors = dict(row_errors or {})
    keys: dict = {}
    for i, r in enumerate(records):
        if type(r) is dict:
            keys.update(dict.fromkeys(r))
        elif i not in row_errors:
            row_errors[i] = f"the record is a JSON {_json_type(r)}, not an object"
    columns = [k for k in keys if isinstance(k, str)]

    def column(name: str) -> list:
        return [r.get(name, MISSING) if type(r) is dict else MISSING for r in records]

    return RawTable(file, kind, columns, len(records), column, where, row_errors)


def _json_type(v) -> str:
    return {list: "array", str: "string", int: "number", float: "number", bool: "boolean",
            type(None): "null"}.get(type(v), type(v).__name__)


def _read_json(path: Path, file: str) -> RawTable:
    text = _read_text(path, file)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data" and text.lstrip().startswith("{"):
            return _jsonl_table(text, file)  # JSON lines in a .json file
        raise RelexError(f"{file}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if isinstance(obj, dict):
        if isinstance(obj.get("data"), list):
            obj = obj["data"]
        elif isinstance(obj.get("relations"), list) or isinstance(obj.get("names"), list):
            raise RelexError(f"{file}: this is a label list, not a data file; pass it as "
                             f"--labels {file} (labels=...) beside the data file")
        else:
            keys = ", ".join(f"'{k}'" for k in list(obj)[:8])
            raise RelexError(f"{file}: expected a JSON list of records [{{...}}, ...]; found an "
                             f"object with keys {keys} (one record? wrap it in [ ]; one record "
                             f"per line? name the file .jsonl)")
    if not isinstance(obj, list):
        raise RelexError(f"{file}: expected a JSON list of records; found a JSON {_json_type(obj)}")
    if not obj:
        raise RelexError(f"{file}: no records (the JSON list is empty)")
    return _records_table(file, "json", obj)


def _jsonl_table(text: str, file: str) -> RawTable:
    records: list = []
    lines: list[int] = []
    errors: dict[int, str] = {}
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            errors[len(records)] = f"invalid JSON at column {e.colno}: {e.msg}"
            rec = None
        records.append(rec)
        lines.append(lineno)
    if not records:
        raise RelexError(f"{file}: the file is empty")
    return _records_table(file, "jsonl", records, lambda i: f"line {lines[i]}", errors)


def _read_jsonl(path: Path, file: str) -> RawTable:
    return _jsonl_table(_read_text(path, file), file)


def _read_csv(path: Path, file: str) -> RawTable:
    import pandas as pd

    data = _read_bytes(path, file)
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    _check_separator(data, sep, file)
    try:
        df = pd.read_csv(io.BytesIO(data), sep=sep, dtype=str, keep_default_na=False,
                         na_filter=False, encoding="utf-8-sig")
    except UnicodeDecodeError:
        _decode(data, path, file)  # raises, naming the encoding
        raise
    except pd.errors.EmptyDataError:
        raise RelexError(f"{file}: the file is empty") from None
    except (pd.errors.ParserError, ValueError) as e:
        msg = " ".join(str(e).split())
        raise RelexError(f"{file}: cannot parse as CSV: {msg} (line numbers count from 1, the "
                         f"header included); check the quoting of that line") from None
    if len(df) == 0:
        raise RelexError(f"{file}: no data rows (only a header)")
    columns = [str(c) for c in df.columns]
    line_starts: list[int] = []

    def where(i: int) -> str:
        if not line_starts:
            line_starts.extend(_csv_record_lines(data.decode("utf-8-sig"), sep))
        return f"CSV line {line_starts[i]}" if i < len(line_starts) else None

    return RawTable(file, "csv", columns, len(df), lambda c: df[c].tolist(), where)


def _check_separator(data: bytes, sep: str, file: str) -> None:
    """A header without the separator but with another one: say so before parsing fails."""
    header = data.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    if sep in header:
        return
    for other, name in ((";", "semicolons"), ("\t", "tabs"), (",", "commas"), ("|", "bars")):
        if other != sep and other in header:
            want = "tab-separated .tsv" if sep == "\t" else "comma-separated .csv"
            also = " (or name it .tsv)" if other == "\t" else ""
            raise RelexError(f"{file}: the header '{header.strip()[:80]}' separates fields with "
                             f"{name}; relex reads {want} files: re-save it with "
                             f"{'tabs' if sep == chr(9) else 'commas'}{also}")


def _csv_record_lines(text: str, sep: str) -> list[int]:
    """The line (1-based, in the file) on which each data record starts; blank lines skipped."""
    import csv

    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    starts: list[int] = []
    prev = 0
    header = True
    for row in reader:
        start = prev + 1
        prev = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if header:
            header = False
            continue
        starts.append(start)
    return starts


def _read_parquet(path: Path, file: str) -> RawTable:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise RelexError(f"{file}: not a readable Parquet file ({' '.join(str(e).split())[:200]})") from None
    if table.num_rows == 0:
        raise RelexError(f"{file}: no rows")
    cache: dict[str, list] = {}

    def column(name: str) -> list:
        if name not in cache:
            cache[name] = table.column(name).to_pylist()
        return cache[name]

    return RawTable(file, "parquet", list(table.column_names), table.num_rows, column)


READERS = {"json": _read_json, "jsonl": _read_jsonl, "csv": _read_csv, "parquet": _read_parquet}


def read_raw(path: str | os.PathLike) -> RawTable:
    """Read a data file into raw columns (no checks beyond the file being readable)."""
    file = os.fspath(path)
    p = Path(file).expanduser()
    kind = EXTENSIONS.get(p.suffix.lower())
    if kind is None:
        raise RelexError(f"{file}: unknown file type '{p.suffix or '(no extension)'}'; relex reads "
                         f"{', '.join(EXTENSIONS)}")
    if not p.exists():
        raise RelexError(f"{file}: file not found")
    if p.is_dir():
        raise RelexError(f"{file}: is a directory, not a data file")
    try:
        return READERS[kind](p, file)
    except PermissionError:
        raise RelexError(f"{file}: permission denied") from None


# --- reading + validation ------------------------------------------------------------------------------
def _frame(cols: dict[str, list], keep: list[int] | None) -> "pd.DataFrame":
    import numpy as np
    import pandas as pd

    data = {}
    for c in COLUMNS:
        vals = cols[c] if keep is None else [cols[c][i] for i in keep]
        if c in INT_COLUMNS:
            data[c] = np.asarray(vals, dtype=np.int64)
        elif c == "label" and any(v is None for v in vals):
            data[c] = pd.Series(vals, dtype=object)
        else:
            data[c] = pd.Series(vals, dtype="str")
    return pd.DataFrame(data, columns=list(COLUMNS))


def load(path: str | os.PathLike, *, labels: LabelSet | str | os.PathLike | None = None,
         negative: str | None = NEGATIVE_LABEL, require_labels: bool = True) -> Dataset:
    """Read and validate ``path``; bad rows are dropped and listed in ``Dataset.bad_rows``.

    The building block of :func:`read_dataset` (which decides what bad rows mean) and of
    ``relex data check`` (which reports them). ``negative=None`` picks ``no_relation`` when the
    labels contain it, else the one label that looks negative (``관계없음``, ``NA``, ...).
    File-level problems raise RelexError; the result may have no rows.
    """
    return _build(read_raw(path), path, labels=labels, negative=negative,
                  require_labels=require_labels)


def _build(raw: RawTable, path, *, labels, negative, require_labels) -> Dataset:
    schema = resolve_columns(raw, require_labels=require_labels)
    norm = normalize(raw, schema, require_labels=require_labels)
    if norm.exclusive_like and norm.exclusive_like == raw.n:
        raise RelexError(
            f"{raw.file}: in every row the end index looks exclusive (sentence[start:end] == word);"
            f" relex expects end_idx INCLUSIVE (the index of the entity's last character): "
            f"subtract 1 from every end index")
    problems = norm.problems
    label_col = norm.columns["label"]
    valid = [i for i in range(raw.n) if i not in problems]

    # the label set
    if isinstance(labels, LabelSet):
        labelset, label_origin = labels, "the given label set"
    elif labels is not None:
        if negative is None:
            names = LabelSet.from_file(labels, NEGATIVE_LABEL, require_negative=False).names
            negative = NEGATIVE_LABEL if NEGATIVE_LABEL in names else (guess_negative(names) or NEGATIVE_LABEL)
        labelset = LabelSet.from_file(labels, negative, require_negative=require_labels)
        label_origin = os.fspath(labels)
    else:
        present = [label_col[i] for i in valid if label_col[i] is not None]
        if negative is None:
            distinct = set(present)
            negative = NEGATIVE_LABEL if NEGATIVE_LABEL in distinct or not distinct else \
                (guess_negative(sorted(distinct)) or NEGATIVE_LABEL)
        labelset = LabelSet.from_names(present, negative,
                                       require_negative=require_labels and bool(present),
                                       where=raw.file)
        label_origin = None
    if label_origin is not None:
        for i in valid:
            lab = label_col[i]
            if lab is not None and lab not in labelset:
                if require_labels:
                    problems[i] = [f"label '{lab}' is not in the label set ({label_origin})"]
                else:
                    label_col[i] = None  # unlabelled, e.g. a test file's placeholder label

    ids = raw.column(schema.id) if schema.id else None
    bad = bad_rows(raw, norm, ids)
    keep = None if not problems else [i for i in range(raw.n) if i not in problems]
    frame = _frame(norm.columns, keep)
    where = Path(os.fspath(path)).expanduser() if path is not None else None
    return Dataset(frame, labelset, where, skipped=len(bad), bad_rows=bad)


def read_dataset(path: str | os.PathLike, *, labels: LabelSet | str | os.PathLike | None = None,
                 negative: str | None = NEGATIVE_LABEL, skip_bad_rows: bool = False,
                 require_labels: bool = True) -> Dataset:
    """Read a KLUE JSON / competition CSV / JSON lines / Parquet file into a :class:`Dataset`.

    ``labels``: a LabelSet, or a relation_list.json path (order kept); otherwise the labels found
    in the data (``negative`` first, the rest sorted). ``negative`` names the no-relation label
    and must be in the set when labels are required (a LabelSet brings its own).
    ``require_labels=False`` reads unlabelled files: a missing label column or empty labels
    give ``label`` None, and labels outside a given label set are treated as unlabelled (e.g.
    the placeholder label of a competition test file).

    Bad rows raise :class:`~relex.errors.BadRowsError` (first 20 shown, all counted) unless
    ``skip_bad_rows``, which drops them (``Dataset.skipped``). File-level problems (not found,
    unknown extension, empty, not UTF-8, missing columns, invalid JSON/CSV) raise RelexError.
    """
    ds = load(path, labels=labels, negative=negative, require_labels=require_labels)
    return apply_bad_row_policy(ds, os.fspath(path), skip_bad_rows)


def from_records(records: Iterable[dict], *, name: str = "<records>",
                 labels: LabelSet | str | os.PathLike | None = None,
                 negative: str | None = NEGATIVE_LABEL, skip_bad_rows: bool = False,
                 require_labels: bool = True) -> Dataset:
    """A Dataset from KLUE-style records in memory (dicts as in the KLUE JSON), with the same
    checks as :func:`read_dataset`; ``name`` stands for the file in messages."""
    raw = _records_table(name, "records", list(records))
    if raw.n == 0:
        raise RelexError(f"{name}: no records")
    ds = _build(raw, None, labels=labels, negative=negative, require_labels=require_labels)
    return apply_bad_row_policy(ds, name, skip_bad_rows)


def from_raw(raw: RawTable, path: str | os.PathLike | None, *,
             labels: LabelSet | str | os.PathLike | None = None,
             negative: str | None = NEGATIVE_LABEL, require_labels: bool = True) -> Dataset:
    """A Dataset from raw records already read (e.g. repaired by :mod:`relex.data.repair`),
    checked exactly as :func:`load` checks a file: bad rows dropped and listed in
    ``Dataset.bad_rows`` (:func:`apply_bad_row_policy` decides what they mean)."""
    return _build(raw, path, labels=labels, negative=negative, require_labels=require_labels)


def apply_bad_row_policy(ds: Dataset, file: str, skip_bad_rows: bool) -> Dataset:
    """``ds`` when it has no bad rows or ``skip_bad_rows``; else BadRowsError (exit 2). A data
    set without any valid row is an error either way."""
    if ds.bad_rows and not skip_bad_rows:
        raise BadRowsError(list(ds.bad_rows), total_rows=len(ds) + len(ds.bad_rows))
    if len(ds) == 0:
        shown = "\n".join(f"  {b}" for b in ds.bad_rows[:BadRowsError.shown])
        more = len(ds.bad_rows) - BadRowsError.shown
        raise RelexError(f"{file}: no valid rows; all {len(ds.bad_rows)} rows are bad:\n"
                         f"{shown}" + (f"\n  ... and {more} more" if more > 0 else ""))
    return ds


__all__ = ["COLUMNS", "Dataset", "LocatedBadRow", "apply_bad_row_policy", "from_raw", "from_records", "load", "read_dataset",
           "read_raw"]
