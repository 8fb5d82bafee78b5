"""The text of a masked-language-model pretraining corpus: sentences and their entity spans.

``read_corpus(paths)`` takes any file relex reads (labelled or not: a training file, an
unlabelled test file) and plain text files (``.txt``: one sentence per line). A relation file
holds each sentence once per entity pair; the corpus holds it once, with the union of the
entity spans of its rows (character offsets, end inclusive, as in the data files), which
``relex pretrain --entity-masking`` masks whole. Sentences are de-duplicated across all files
and sorted, so the corpus depends only on the set of sentences read.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from relex.errors import RelexError

TEXT_SUFFIXES = (".txt",)


@dataclass
class Corpus:
    """Distinct sentences (sorted), the entity spans of each, and what reading found."""

    sentences: list[str]
    spans: list[tuple[tuple[int, int], ...]]  # per sentence: (start, end inclusive), sorted
    files: list[str] = field(default_factory=list)
    read: int = 0  # rows or lines read, all files together
    dropped_empty: int = 0  # blank lines / empty sentences
    dropped_duplicates: int = 0  # repeats of a sentence already read

    def __len__(self) -> int:
        return len(self.sentences)

    @property
    def content_hash(self) -> str:
        """sha256 of the sentences and their spans (order-free: the corpus is sorted)."""
        h = hashlib.sha256(b"relex-corpus-1\n")
        for s, spans in zip(self.sentences, self.spans):
            b = s.encode("utf-8", "surrogatepass")
            h.update(len(b).to_bytes(8, "little") + b)
            h.update(repr(spans).encode())
        return h.hexdigest()

    def describe(self) -> str:
        return (f"{len(self)} distinct sentences from {self.read} rows/lines of "
                f"{len(self.files)} file(s); dropped {self.dropped_duplicates} duplicates and "
                f"{self.dropped_empty} empty")

    def subset(self, indices: Sequence[int]) -> "Corpus":
        return Corpus([self.sentences[i] for i in indices], [self.spans[i] for i in indices],
                      list(self.files), self.read, self.dropped_empty, self.dropped_duplicates)


def read_corpus(paths: Sequence[str | os.PathLike], *, skip_bad_rows: bool = False) -> Corpus:
    """Read and merge the sentences of ``paths`` (see the module notes); RelexError naming the
    file when one cannot be read, and when no sentence is left at all."""
    if not paths:
        raise RelexError("pretraining corpus: no files given")
    spans: dict[str, set[tuple[int, int]]] = {}
    read = empty = 0
    for path in paths:
        rows = _text_rows(path) if Path(path).suffix.lower() in TEXT_SUFFIXES else \
            _data_rows(path, skip_bad_rows)
        for sentence, entity_spans in rows:
            read += 1
            if not sentence.strip():
                empty += 1
                continue
            spans.setdefault(sentence, set()).update(entity_spans)
    if not spans:
        raise RelexError(f"pretraining corpus {', '.join(map(os.fspath, paths))}: no sentences "
                         f"({read} rows/lines read, all empty)")
    sentences = sorted(spans)
    return Corpus(sentences, [tuple(sorted(spans[s])) for s in sentences],
                  [os.fspath(p) for p in paths], read, empty, read - empty - len(sentences))


def _text_rows(path: str | os.PathLike):
    p = Path(path).expanduser()
    if not p.is_file():
        raise RelexError(f"{path}: {'is a directory, not a text file' if p.is_dir() else 'file not found'}")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise RelexError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise RelexError(f"{path}: cannot read ({e.strerror or e})") from None
    return [(line.strip(), ()) for line in text.splitlines()]


def _data_rows(path: str | os.PathLike, skip_bad_rows: bool):
    from relex.data.io import read_dataset

    ds = read_dataset(path, require_labels=False, negative=None, skip_bad_rows=skip_bad_rows)
    f = ds.frame
    return [(s, ((int(a), int(b)), (int(c), int(d))))
            for s, a, b, c, d in zip(f["sentence"], f["subj_start"], f["subj_end"],
                                     f["obj_start"], f["obj_end"])]


# the sources of KLUE-RE's rows (Wikipedia, WikiTree news, policy briefings)
KLUE_SOURCES = frozenset({"wikipedia", "wikitree", "policy_briefing"})


def is_klue_re(ds) -> bool:
    """True when every row of ``ds`` comes from one of KLUE-RE's sources: the text the shipped
    pretrained backbone (relex/tiny-klue) has read."""
    sources = set(ds.frame["source"])
    return bool(sources) and sources <= KLUE_SOURCES
