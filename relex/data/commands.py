"""``relex data check FILE`` and ``relex data fix FILE --out FIXED``.

``data check`` reads and validates a data file and reports what is in it.

Prints the row count, the labels with counts and shares, the most frequent entity type pairs,
sentence lengths and the bad rows (first 20, and how many more) — as rich tables on a
terminal, as plain text otherwise. Exit code 0 when every row is valid, 2 when some are not;
with ``--skip-bad-rows`` bad rows are dropped and reported, and the exit code is 0 while valid
rows remain. File-level problems (missing columns, bad encoding, ...) raise RelexError, which
``relex.cli`` prints in one line (exit 2).

``data fix`` applies the repairs of :mod:`relex.data.repair`, lists every change and the counts
by kind, writes FIXED (unless ``--dry-run``) and reports the rows that stay bad as ``data check``
does (exit 2 while any remain).
"""

from __future__ import annotations

import argparse
import os
import sys

from relex.errors import RelexError

SHOW_BAD = 20
TOP_PAIRS = 15


def add_file_args(parser: argparse.ArgumentParser, *,
                  labels_help: str = 'label list {"relations": [...]} (order kept)') -> None:
    """FILE, --labels and --negative-label: how every data command reads its file."""
    parser.add_argument("file", metavar="FILE",
                        help="data file: KLUE .json, competition .csv/.tsv, .jsonl or .parquet")
    parser.add_argument("--labels", metavar="relation_list.json", default=None,
                        help=f"{labels_help}; default: the labels found in the file")
    parser.add_argument("--negative-label", metavar="NAME", default=None,
                        help="the no-relation label (default: no_relation, or the one label that "
                             "looks like it, e.g. 관계없음)")


def add_check_args(parser: argparse.ArgumentParser) -> None:
    add_file_args(parser)
    parser.add_argument("--skip-bad-rows", action="store_true",
                        help="drop invalid rows (reported) instead of failing")
    parser.add_argument("--unlabeled", action="store_true",
                        help="the file has no labels (e.g. a test set)")


# --- output ----------------------------------------------------------------------------------------
class _Out:
    """Tables and lines: rich on a terminal, aligned plain text otherwise."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.rich = hasattr(self.stream, "isatty") and self.stream.isatty()
        if self.rich:
            from rich.console import Console

            self.console = Console(file=self.stream, highlight=False)

    def line(self, text: str = "", style: str | None = None) -> None:
        if self.rich:
            from rich.markup import escape

            self.console.print(f"[{style}]{escape(text)}[/]" if style else escape(text))
        else:
            print(text, file=self.stream)

    def table(self, title: str, headers: list[str], rows: list[list[str]],
              right: tuple[int, ...] = ()) -> None:
        if self.rich:
            from rich.table import Table

            t = Table(title=title, title_justify="left", title_style="bold")
            for j, h in enumerate(headers):
                t.add_column(h, justify="right" if j in right else "left",
                             overflow="fold")
            for r in rows:
                t.add_row(*r)
            self.console.print(t)
            return
        from rich.cells import cell_len  # display width of Korean text

        print(f"{title}:", file=self.stream)
        cells = [headers] + rows
        widths = [max(cell_len(r[j]) for r in cells) for j in range(len(headers))]
        for r in cells:
            parts = []
            for j, c in enumerate(r):
                pad = " " * (widths[j] - cell_len(c))
                last = j == len(r) - 1
                parts.append(pad + c if j in right else (c if last else c + pad))
            print("  " + "  ".join(parts).rstrip(), file=self.stream)
        print(file=self.stream)


def _bad_rows_table(bad_rows, out: _Out) -> None:
    """The first SHOW_BAD bad rows (row, CSV line, id, reason) and how many more."""
    rows = [[str(b.row), getattr(b, "where", None) or "", b.id or "", b.reason]
            for b in bad_rows[:SHOW_BAD]]
    headers = ["row", "where", "id", "reason"]
    if not any(r[1] for r in rows):  # JSON / Parquet: the row is the record number
        rows = [[r[0]] + r[2:] for r in rows]
        headers = ["row", "id", "reason"]
    title = f"Bad rows ({_n(len(bad_rows))}; row = 1-based data row, header not counted)"
    out.table(title, headers, rows, right=(0,))
    if len(bad_rows) > SHOW_BAD:
        out.line(f"... and {_n(len(bad_rows) - SHOW_BAD)} more bad rows")


def _n(x: int) -> str:
    return f"{x:,}"


def _pct(x: int, total: int) -> str:
    return f"{100.0 * x / total:.1f}%" if total else "-"


def check(args: argparse.Namespace) -> int:
    from relex.data.io import load

    ds = load(args.file, labels=args.labels, negative=args.negative_label,
              require_labels=not args.unlabeled)
    try:
        return _report(ds, args, _Out())
    except BrokenPipeError:  # `relex data check FILE | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _report(ds, args: argparse.Namespace, out: _Out) -> int:
    import numpy as np

    from relex.data.io import EXTENSIONS

    f = ds.frame
    n_valid, n_bad = len(ds), len(ds.bad_rows)
    total = n_valid + n_bad
    kind = EXTENSIONS.get(os.path.splitext(args.file)[1].lower(), "?")
    out.line(f"{args.file} ({kind}): {_n(total)} rows, {_n(n_valid)} valid, {_n(n_bad)} bad",
             style="bold")
    origin = args.labels if args.labels else "found in the file"
    labelled = f["label"].notna()
    if not args.unlabeled or bool(labelled.any()):
        out.line(f"labels: {len(ds.labels)} ({origin}); negative label: {ds.labels.negative}")
    out.line()

    if n_valid:
        counts = f.loc[labelled, "label"].value_counts().to_dict()
        n_lab = int(labelled.sum())
        if len(ds.labels):
            rows = [[name, _n(int(counts.get(name, 0))), _pct(int(counts.get(name, 0)), n_lab)]
                    for name in ds.labels.names]
            if n_lab < n_valid:
                rows.append(["(unlabelled)", _n(n_valid - n_lab), _pct(n_valid - n_lab, n_valid)])
            out.table(f"Labels ({len(ds.labels)})", ["label", "count", "%"], rows, right=(1, 2))

        pairs = (f["subj_type"] + " → " + f["obj_type"]).value_counts()
        top = pairs.head(TOP_PAIRS)
        title = f"Entity type pairs (top {len(top)} of {len(pairs)})"
        out.table(title, ["subject → object", "count", "%"],
                  [[k, _n(int(v)), _pct(int(v), n_valid)] for k, v in top.items()], right=(1, 2))

        lens = f["sentence"].str.len().to_numpy(dtype=np.int64)
        out.table("Sentence length (characters)", ["min", "mean", "median", "p95", "max"],
                  [[str(int(lens.min())), f"{lens.mean():.1f}", f"{np.median(lens):.0f}",
                    f"{np.percentile(lens, 95):.0f}", str(int(lens.max()))]],
                  right=(0, 1, 2, 3, 4))

        sources = f["source"].value_counts()
        if len(sources) > 1 or (len(sources) == 1 and sources.index[0] != ""):
            out.table("Sources", ["source", "count", "%"],
                      [[k or "(none)", _n(int(v)), _pct(int(v), n_valid)] for k, v in sources.items()],
                      right=(1, 2))

    if n_bad:
        _bad_rows_table(ds.bad_rows, out)
        if args.skip_bad_rows:
            if n_valid:
                out.line(f"dropped {_n(n_bad)} bad row{'s' if n_bad > 1 else ''} "
                         f"(--skip-bad-rows); {_n(n_valid)} valid rows remain", style="yellow")
                return 0
            out.line(f"all {_n(n_bad)} rows are bad; no valid rows remain", style="red")
            return 2
        them = "them" if n_bad > 1 else "it"
        out.line(f"{_n(n_bad)} bad row{'s' if n_bad > 1 else ''}: fix {them}, or pass "
                 f"--skip-bad-rows to drop {them}; `relex data fix {args.file} --out FIXED` "
                 f"repairs what is fixable", style="red")
        return 2
    out.line(f"OK: all {_n(n_valid)} rows are valid", style="green")
    return 0


# --- relex data fix --------------------------------------------------------------------------------
def add_fix_args(parser: argparse.ArgumentParser) -> None:
    add_file_args(parser, labels_help="label list the repaired rows are checked against")
    parser.add_argument("--out", metavar="FIXED", required=True,
                        help="where to write the repaired file; its extension picks the format "
                             "(.json: KLUE JSON, .csv/.tsv, .jsonl, .parquet)")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the repairs and the rows that stay bad; write nothing")
    parser.add_argument("--unlabeled", action="store_true",
                        help="the file has no labels (e.g. a test set)")


def fix(args: argparse.Namespace) -> int:
    """Repair FILE (see relex.data.repair), list every change, write FIXED, report what stays bad.

    Exit code 0 when every row of FIXED is valid, 2 when some rows could not be repaired (FIXED
    is still written, with those rows as they were, so nothing is lost).
    """
    from pathlib import Path

    from relex.data.io import EXTENSIONS
    from relex.data.repair import KINDS, repair_file, write_records
    from relex.io_utils import check_output

    out_path = Path(args.out)
    if out_path.suffix.lower() not in EXTENSIONS:
        raise RelexError(f"--out {args.out}: unknown file type '{out_path.suffix or '(none)'}'; "
                         f"write one of {', '.join(EXTENSIONS)}")
    if out_path.exists() and out_path.resolve() == Path(args.file).expanduser().resolve():
        raise RelexError(f"--out {args.out} is the input file; write the repaired copy elsewhere")
    if not args.dry_run:
        check_output(args.out, "--out")
    repair = repair_file(args.file, require_labels=not args.unlabeled)
    ds = repair.dataset(labels=args.labels, negative=args.negative_label,
                        require_labels=not args.unlabeled)
    out = _Out()
    total = len(repair.records)
    out.line(f"{args.file}: {_n(total)} rows, {_n(repair.rows_changed)} repaired "
             f"({_n(len(repair.changes))} changes)", style="bold")
    if repair.changes:
        rows = [[str(c.row), c.where or "", c.id or "", c.field, f"{c.before} → {c.after}"]
                for c in repair.changes]
        headers = ["row", "where", "id", "field", "before → after"]
        if not any(r[1] for r in rows):  # JSON / Parquet: the row is the record number
            rows, headers = [[r[0]] + r[2:] for r in rows], [headers[0]] + headers[2:]
        out.table("Repairs (row = 1-based data row, header not counted)", headers, rows, right=(0,))
        out.table("Repairs by kind", ["kind", "changes", "rows"],
                  [[KINDS[k], _n(n), _n(r)] for k, (n, r) in repair.counts().items()], right=(1, 2))
    bad = list(ds.bad_rows)
    if bad:
        _bad_rows_table(bad, out)
    if args.dry_run:
        out.line(f"dry run: nothing written; {args.out} would hold {_n(total)} rows, "
                 f"{_n(total - len(bad))} valid, {_n(len(bad))} bad")
    else:
        write_records(repair, out_path)
        kind = EXTENSIONS[out_path.suffix.lower()]
        out.line(f"wrote {args.out} ({kind}): {_n(total)} rows, {_n(total - len(bad))} valid, "
                 f"{_n(len(bad))} bad", style="green" if not bad else None)
    if bad:
        it = "it" if len(bad) == 1 else "them"
        out.line(f"{_n(len(bad))} row{'s' if len(bad) > 1 else ''} could not be repaired "
                 f"(listed above; kept as they were): fix {it} by hand, or pass --skip-bad-rows "
                 f"to drop {it} where the file is used", style="red")
        return 2
    return 0
