"""Label sets: the ordered relation names of a task and which one is the negative class.

A label set comes from a ``relation_list.json`` (``{"relations": [...]}``, order kept), from a
checkpoint's ``labels.json`` (``{"names": [...], "negative": ...}``), or from the labels found
in the data (negative first, the rest sorted). The position of a name is its class id.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from relex.config import NEGATIVE_LABEL
from relex.errors import RelexError

# Names that data sets commonly use for "no relation"; used only to suggest (and, where asked
# for, detect) the negative label of a set that has no ``no_relation``.
KNOWN_NEGATIVES = (NEGATIVE_LABEL, "관계없음", "관계 없음", "NA", "N/A", "None", "Other", "other",
                   "NOTA", "no relation", "norelation", "NO_RELATION")


def guess_negative(names: Iterable[str]) -> str | None:
    """The one name among ``names`` that looks like a negative label, or None (none or several)."""
    found = [n for n in dict.fromkeys(names) if n in KNOWN_NEGATIVES]
    return found[0] if len(found) == 1 else None


def _negative_hint(names: tuple[str, ...]) -> str:
    guess = guess_negative(names)
    return f" (probably '{guess}')" if guess else ""


@dataclass(frozen=True)
class LabelSet:
    """Ordered label names; ``names[i]`` has class id ``i``.

    ``negative`` names the "no relation" class. It must be one of ``names`` for training and
    evaluation (``from_file``/``from_names`` check it by default); an empty set is allowed for
    unlabelled data, where ``negative_id`` raises.
    """

    names: tuple[str, ...]
    negative: str = NEGATIVE_LABEL
    _index: dict = field(default=None, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        names = tuple(self.names)
        for n in names:
            if not isinstance(n, str) or not n:
                raise RelexError(f"labels must be non-empty strings; got {n!r}")
        dup = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) != len(names) else []
        if dup:
            raise RelexError(f"labels must be unique; repeated labels: {', '.join(map(repr, dup))}")
        if not isinstance(self.negative, str) or not self.negative:
            raise RelexError(f"the negative label must be a non-empty string; got {self.negative!r}")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(names)})

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def from_names(cls, names: Iterable[str], negative: str = NEGATIVE_LABEL, *,
                   require_negative: bool = True, where: str = "the data") -> "LabelSet":
        """Label set of the distinct ``names``: ``negative`` first, the rest sorted."""
        distinct = set(names)
        if require_negative and negative not in distinct:
            found = tuple(sorted(distinct))
            raise RelexError(
                f"{where}: the negative label '{negative}' does not occur among the labels "
                f"({', '.join(found) if found else 'none'}); set the negative label "
                f"(--negative-label NAME / negative=NAME){_negative_hint(found)}, or give a "
                f"label list that contains it (--labels relation_list.json)")
        rest = sorted(n for n in distinct if n != negative)
        return cls(((negative,) if negative in distinct else ()) + tuple(rest), negative)

    @classmethod
    def from_file(cls, path: str | os.PathLike, negative: str = NEGATIVE_LABEL, *,
                  require_negative: bool = True) -> "LabelSet":
        """Read ``{"relations": [...]}`` (relation_list.json), ``{"names": [...], "negative": ...}``
        (a checkpoint's labels.json) or a plain JSON list; the order of the file is kept.

        For a labels.json that names its own negative, that one is used.
        """
        p = Path(path)
        if not p.is_file():
            raise RelexError(f"{p}: label list not found")
        try:
            obj = json.loads(p.read_text(encoding="utf-8-sig"))
        except UnicodeDecodeError as e:
            raise RelexError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start}); "
                             f"re-save it as UTF-8") from None
        except json.JSONDecodeError as e:
            raise RelexError(f"{p}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
        if isinstance(obj, dict) and isinstance(obj.get("relations"), list):
            names = obj["relations"]
        elif isinstance(obj, dict) and isinstance(obj.get("names"), list):
            names = obj["names"]
            negative = obj.get("negative") or negative
        elif isinstance(obj, list):
            names = obj
        else:
            keys = ", ".join(map(repr, obj)) if isinstance(obj, dict) else type(obj).__name__
            raise RelexError(f"{p}: expected {{\"relations\": [label, ...]}} (found {keys})")
        if not names:
            raise RelexError(f"{p}: the label list is empty")
        try:
            labels = cls(tuple(names), negative)  # checks the names: non-empty strings, unique
        except RelexError as e:
            raise RelexError(f"{p}: {e}") from None
        if require_negative and negative not in names:
            raise RelexError(
                f"{p}: the negative label '{negative}' is not in the label list; set the negative "
                f"label (--negative-label NAME / negative=NAME){_negative_hint(tuple(names))}")
        return labels

    def to_dict(self) -> dict:
        """``{"names": [...], "negative": ...}`` (the checkpoint's labels.json)."""
        return {"names": list(self.names), "negative": self.negative}

    @classmethod
    def from_dict(cls, d: dict) -> "LabelSet":
        try:
            return cls(tuple(d["names"]), d["negative"])
        except (KeyError, TypeError):
            raise RelexError(f"a label set needs 'names' and 'negative'; got {d!r}") from None

    # --- lookup -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def id(self, name: str) -> int:
        """Class id of ``name``; RelexError for an unknown name."""
        try:
            return self._index[name]
        except (KeyError, TypeError):
            raise RelexError(f"unknown label {name!r}; the labels are: {', '.join(self.names)}") from None

    def ids(self, seq: Iterable[str | None]):
        """Class ids (int64 numpy array) of ``seq``; None (an unlabelled row) maps to -1."""
        import numpy as np

        index = self._index
        out = []
        for name in seq:
            if name is None or (isinstance(name, float) and name != name):
                out.append(-1)
            else:
                i = index.get(name)
                if i is None:
                    self.id(name)  # raises with the message
                out.append(i)
        return np.asarray(out, dtype=np.int64)

    @property
    def negative_id(self) -> int:
        """Class id of the negative label."""
        i = self._index.get(self.negative)
        if i is None:
            raise RelexError(f"the negative label '{self.negative}' is not in the label set "
                             f"({', '.join(self.names) or 'empty'})")
        return i
