"""Where one model fails, from its validation probabilities.

Per-class precision / recall / F1 with support, the confusion matrix and its largest off-diagonal
cells, micro-F1 by subject→object entity-type pair and by source, and the two kinds of
no-relation errors with their sentences: a relation predicted where the gold label is the
negative one (false positives of the relation classes), and the negative label predicted where
there is a relation (false negatives) — each list most confident first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from relex import metrics as M


@dataclass
class Confusion:
    gold: str
    predicted: str
    count: int
    share: float  # of the gold class's rows, ×100


@dataclass
class Example:
    row: int
    id: str
    gold: str
    predicted: str
    confidence: float  # probability of the predicted label
    segments: list[tuple[str, str | None]] | None  # sentence pieces: (text, None|"subj"|"obj")


@dataclass
class ErrorAnalysis:
    labels: list[str]
    negative: str | None
    metrics: dict[str, Any]  # relex.metrics.compute with per_class
    ties: dict[str, float]  # relex.metrics.tie_effect
    confusion: np.ndarray  # gold × predicted counts
    top_confusions: list[Confusion]
    by_type_pair: pd.DataFrame | None  # subject→object, rows, gold relations, micro-F1
    by_source: pd.DataFrame | None
    false_positives: list[Example]  # relation predicted, gold negative
    false_negatives: list[Example]  # negative predicted, gold a relation
    n_false_positives: int = 0
    n_false_negatives: int = 0


def analyse(gold: np.ndarray, probs: np.ndarray, labels: Sequence[str], negative: str | None,
            rows: pd.DataFrame | None = None, *, examples: int = 10,
            top_confusions: int = 10) -> ErrorAnalysis:
    """Error analysis of ``probs`` (n × C) against gold ids; ``rows`` (validation rows in the
    same order, with sentence, entities, types and source) adds the breakdowns and examples."""
    labels = list(labels)
    pred = probs.argmax(axis=1)
    cm = M.confusion(gold, pred, len(labels))
    neg = labels.index(negative) if negative in labels else None
    has_text = rows is not None and "sentence" in rows.columns
    fps = np.flatnonzero((gold == neg) & (pred != neg)) if neg is not None else np.array([], int)
    fns = np.flatnonzero((gold != neg) & (pred == neg)) if neg is not None else np.array([], int)
    return ErrorAnalysis(
        labels=labels, negative=negative,
        metrics=M.compute(gold, probs, labels, negative, per_class=True),
        ties=M.tie_effect(gold, probs),
        confusion=cm,
        top_confusions=_top_confusions(cm, labels, top_confusions),
        by_type_pair=_breakdown(gold, pred, labels, neg, _type_pairs(rows)) if has_text else None,
        by_source=_by_source(gold, pred, labels, neg, rows) if has_text else None,
        false_positives=_examples(fps, pred, gold, probs, labels, rows, examples),
        false_negatives=_examples(fns, pred, gold, probs, labels, rows, examples),
        n_false_positives=int(fps.size), n_false_negatives=int(fns.size),
    )


def _top_confusions(cm: np.ndarray, labels: list[str], top: int) -> list[Confusion]:
    off = cm.copy()
    np.fill_diagonal(off, 0)
    cells = sorted(zip(*np.nonzero(off)), key=lambda ij: (-off[ij], ij))[:top]
    totals = cm.sum(axis=1)
    return [Confusion(labels[i], labels[j], int(off[i, j]), 100.0 * off[i, j] / totals[i])
            for i, j in cells]


def _type_pairs(rows: pd.DataFrame) -> pd.Series:
    return rows["subj_type"].astype(str) + "→" + rows["obj_type"].astype(str)


def _breakdown(gold, pred, labels, neg, groups: pd.Series) -> pd.DataFrame:
    """Rows, gold relations and micro-F1 per group, largest groups first."""
    out = []
    keys = groups.to_numpy()
    for g in pd.unique(keys):
        sel = keys == g
        out.append({"group": g, "rows": int(sel.sum()),
                    "relations": int((gold[sel] != neg).sum()) if neg is not None else int(sel.sum()),
                    "micro_f1": M.micro_f1(gold[sel], pred[sel], len(labels), neg),
                    "accuracy": float((gold[sel] == pred[sel]).mean() * 100.0)})
    frame = pd.DataFrame(out)
    return frame.sort_values(["rows", "group"], ascending=[False, True]).reset_index(drop=True)


def _by_source(gold, pred, labels, neg, rows: pd.DataFrame) -> pd.DataFrame | None:
    sources = rows["source"].fillna("").astype(str)
    if sources.nunique() < 2 and (sources == "").all():
        return None  # the data names no sources
    return _breakdown(gold, pred, labels, neg, sources.replace("", "(none)"))


def marked_segments(row: dict[str, Any]) -> list[tuple[str, str | None]]:
    """The sentence cut into plain text and the two entity spans (end indices inclusive)."""
    s = str(row["sentence"])
    spans = sorted([(int(row["subj_start"]), int(row["subj_end"]) + 1, "subj"),
                    (int(row["obj_start"]), int(row["obj_end"]) + 1, "obj")])
    out, at = [], 0
    for start, end, role in spans:
        if start < at:  # overlapping spans (rejected by validation; kept readable anyway)
            continue
        if start > at:
            out.append((s[at:start], None))
        out.append((s[start:end], role))
        at = end
    if at < len(s):
        out.append((s[at:], None))
    return out


def _examples(idx: np.ndarray, pred, gold, probs, labels, rows, top: int) -> list[Example]:
    conf = probs[idx, pred[idx]]
    order = idx[np.argsort(-conf, kind="stable")][:top]
    has_text = rows is not None and "sentence" in rows.columns
    out = []
    for i in order:
        r = rows.iloc[int(i)] if rows is not None else None
        out.append(Example(
            row=int(i), id=str(r["id"]) if r is not None else str(i),
            gold=labels[gold[i]], predicted=labels[pred[i]], confidence=float(probs[i, pred[i]]),
            segments=marked_segments(r) if has_text else None))
    return out
