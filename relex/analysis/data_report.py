"""The document of ``relex data stats FILE``: the tables of :mod:`relex.data.stats`, and with
plots for the HTML page."""

from __future__ import annotations

from relex.analysis.document import Document, Figure, Para, Section, Table
from relex.data.stats import DataStats

TOP_PAIRS_PER_LABEL = 4


def _n(x: int) -> str:
    return f"{x:,}"


def build_stats_document(stats: DataStats, name: str, *, plots: bool = False) -> Document:
    doc = Document(title=f"Data statistics: {name}",
                   subtitle=f"{_n(stats.rows)} rows, {len(stats.label_counts)} labels")
    doc.sections = [_labels(stats, plots), _type_pairs(stats, plots),
                    _describe_section(stats, "distance", plots), _describe_section(stats, "length", plots),
                    _entities(stats)]
    return doc


def _labels(stats: DataStats, plots: bool) -> Section:
    sec = Section("Labels", anchor="labels")
    total = int(stats.label_counts.sum())
    sec.add(Table(["label", "rows", "%"],
                  [[k, _n(int(v)), f"{100.0 * v / total:.1f}"] for k, v in stats.label_counts.items()],
                  right={1, 2}))
    if plots:
        from relex.analysis import plots as P

        sec.add(Figure(P.bars(list(stats.label_counts.index), list(stats.label_counts.values), "rows"),
                       "rows per label"))
    return sec


def _type_pairs(stats: DataStats, plots: bool) -> Section:
    sec = Section("Label × entity type pair", anchor="pairs")
    rows = []
    for label, counts in stats.type_pairs.iterrows():
        top = counts[counts > 0].sort_values(ascending=False)
        shown = ", ".join(f"{p} {_n(int(c))}" for p, c in top.head(TOP_PAIRS_PER_LABEL).items())
        more = len(top) - TOP_PAIRS_PER_LABEL
        rows.append([str(label), _n(int(counts.sum())), str(len(top)),
                     shown + (f", … {more} more" if more > 0 else "")])
    sec.add(Table(["label", "rows", "type pairs", f"most frequent subject→object (top {TOP_PAIRS_PER_LABEL})"],
                  rows, right={1, 2}))
    if plots:
        from relex.analysis import plots as P

        m = stats.type_pairs
        sec.add(Figure(P.heatmap(m.to_numpy(), list(m.index), list(m.columns),
                                 "rows per label and subject→object type pair"),
                       "label by type pair counts"))
    return sec


def _describe_section(stats: DataStats, which: str, plots: bool) -> Section:
    frame, values, title, unit = (
        (stats.distance, stats.distances, "Entity distance per label",
         "characters between the two entities") if which == "distance" else
        (stats.length, stats.lengths, "Sentence length per label", "sentence length (characters)"))
    sec = Section(title, anchor=which)
    sec.add(Para(f"In {unit}.", "note"))
    sec.add(Table(["label", "rows", "mean", "median", "p90", "max"],
                  [[r.label, _n(r.rows), f"{r.mean:.1f}", f"{r.median:.0f}", f"{r.p90:.0f}", str(r.max)]
                   for r in frame.itertuples()], right={1, 2, 3, 4, 5}))
    if plots:
        from relex.analysis import plots as P

        shown = [k for k, v in values.items() if v.size]
        sec.add(Figure(P.boxes(shown, [values[k] for k in shown], unit), title,
                       "Box: quartiles and median; whiskers: 5th to 95th percentile."))
    return sec


def _entities(stats: DataStats) -> Section:
    sec = Section("Most frequent subjects and objects per label", anchor="entities")
    t = stats.top_entities
    rows = []
    for label in stats.label_counts.index:
        cells = []
        for role in ("subject", "object"):
            sub = t[(t["label"] == label) & (t["role"] == role)]
            cells.append(", ".join(f"{w} ({c})" for w, c in zip(sub["word"], sub["count"])))
        rows.append([str(label)] + cells)
    sec.add(Table(["label", "subjects", "objects"], rows))
    return sec
