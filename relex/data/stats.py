"""Exploratory statistics of a data set, per label (what ``relex data stats`` shows).

* label × (subject type → object type) counts;
* entity distance per label: the characters between the two entity spans (0 when they touch);
* sentence length per label, in characters;
* the most frequent subject and object words per label.

Unlabelled rows (a test file) form one group, ``(unlabelled)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

UNLABELLED = "(unlabelled)"


@dataclass
class DataStats:
    rows: int
    label_counts: pd.Series  # label -> rows, in label-set order (labels with rows only)
    type_pairs: pd.DataFrame  # label × "SUBJ→OBJ" counts
    distance: pd.DataFrame  # per label: rows, mean, median, p90, max
    length: pd.DataFrame  # per label: rows, mean, median, p90, max
    top_entities: pd.DataFrame  # label, role (subject|object), word, count
    distances: dict[str, np.ndarray]  # per label, for plots
    lengths: dict[str, np.ndarray]


def entity_distance(frame: pd.DataFrame) -> np.ndarray:
    """Characters between the subject and object spans (end indices inclusive); 0 if they touch
    or overlap."""
    s0, s1 = frame["subj_start"].to_numpy(int), frame["subj_end"].to_numpy(int)
    o0, o1 = frame["obj_start"].to_numpy(int), frame["obj_end"].to_numpy(int)
    gap = np.maximum(o0 - s1 - 1, s0 - o1 - 1)
    return np.maximum(gap, 0)


def _describe(values: dict[str, np.ndarray]) -> pd.DataFrame:
    out = [{"label": k, "rows": int(v.size), "mean": float(v.mean()), "median": float(np.median(v)),
            "p90": float(np.percentile(v, 90)), "max": int(v.max())}
           for k, v in values.items() if v.size]
    return pd.DataFrame(out, columns=["label", "rows", "mean", "median", "p90", "max"])


def _top_words(frame: pd.DataFrame, labels: list[str], top: int) -> pd.DataFrame:
    out = []
    for label in labels:
        sub = frame[frame["_label"] == label]
        for role, col in (("subject", "subj_word"), ("object", "obj_word")):
            for word, count in sub[col].value_counts().head(top).items():
                out.append({"label": label, "role": role, "word": word, "count": int(count)})
    return pd.DataFrame(out, columns=["label", "role", "word", "count"])


def compute(ds, *, top: int = 3) -> DataStats:
    """Statistics of a :class:`~relex.data.io.Dataset`; ``top`` words per label and role."""
    f = ds.frame.copy()
    f["_label"] = f["label"].where(f["label"].notna(), UNLABELLED).astype(str)
    present = set(f["_label"])
    order = [n for n in ds.labels.names if n in present] + \
        sorted(present - set(ds.labels.names) - {UNLABELLED}) + \
        ([UNLABELLED] if UNLABELLED in present else [])
    counts = f["_label"].value_counts().reindex(order)
    pair = f["subj_type"].astype(str) + "→" + f["obj_type"].astype(str)
    pairs = pd.crosstab(f["_label"], pair).reindex(order)
    pairs = pairs[pairs.sum(axis=0).sort_values(ascending=False).index]
    dist = entity_distance(f)
    length = f["sentence"].str.len().to_numpy(int)
    labels_arr = f["_label"].to_numpy()
    distances = {k: dist[labels_arr == k] for k in order}
    lengths = {k: length[labels_arr == k] for k in order}
    return DataStats(rows=len(f), label_counts=counts, type_pairs=pairs,
                     distance=_describe(distances), length=_describe(lengths),
                     top_entities=_top_words(f, order, top), distances=distances, lengths=lengths)
