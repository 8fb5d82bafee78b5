"""A report as plain data — sections of paragraphs, tables, figures and marked sentences — and its
three renderings: the console (rich), markdown, and one self-contained HTML file. A table alone
(the leaderboard's) renders the same ways, and as plain aligned text.

Figures (PNG bytes) appear only in HTML, embedded as ``data:`` URIs; the page loads nothing from
anywhere else (no scripts, fonts or style sheets from the network), so it opens offline and can be
mailed as one file. Cell styles are semantic ("good", "bad", "muted", "warn", "best", "running") and each
renderer maps them to its own look; markdown and plain text have none.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from typing import Union

Cell = Union[str, tuple[str, str]]  # text, or (text, style)


@dataclass
class Para:
    text: str
    style: str | None = None  # None | "note" | "warn"


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Cell]]
    caption: str | None = None  # a title above the table
    right: set[int] = field(default_factory=set)  # right-aligned (numeric) columns
    header: bool = True  # False: a key-value table, no header row
    note: str | None = None  # a line under the table (console only)
    compact: bool = False  # console: no cell wraps, no padding at the edges (a wide leaderboard)


@dataclass
class Figure:
    png: bytes
    alt: str
    caption: str | None = None


@dataclass
class Marked:
    """One example sentence: a heading line and the sentence in (text, role) segments, role
    None, "subj" or "obj"."""
    head: str
    segments: list[tuple[str, str | None]] | None


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)
    anchor: str = ""

    def add(self, *blocks) -> "Section":
        self.blocks.extend(b for b in blocks if b is not None)
        return self


@dataclass
class Document:
    title: str
    subtitle: str = ""
    sections: list[Section] = field(default_factory=list)


def text_of(cell: Cell) -> str:
    return cell[0] if isinstance(cell, tuple) else cell


def style_of(cell: Cell) -> str | None:
    return cell[1] if isinstance(cell, tuple) else None


# ---------------------------------------------------------------------------- console
RICH_STYLES = {"good": "green", "bad": "red", "muted": "dim", "warn": "yellow", "best": "bold green",
               "running": "cyan"}
ROLE_MARK = {"subj": ("[S:", "]"), "obj": ("[O:", "]")}


def render_console(doc: Document, console) -> None:
    from rich.markup import escape
    from rich.rule import Rule

    console.print(f"[bold]{escape(doc.title)}[/]")
    if doc.subtitle:
        console.print(escape(doc.subtitle), style="dim")
    for sec in doc.sections:
        console.print()
        console.print(Rule(escape(sec.title), align="left", style="cyan"))
        for block in sec.blocks:
            _console_block(block, console)


def _console_block(block, console) -> None:
    from rich.text import Text

    if isinstance(block, Para):
        style = {"warn": "yellow", "note": "dim"}.get(block.style or "")
        console.print(Text(block.text, style=style or ""))
    elif isinstance(block, Table):
        console.print(rich_table(block))
    elif isinstance(block, Marked):
        console.print(Text(block.head, style="bold"))
        if block.segments:
            line = Text("  ")
            for seg, role in block.segments:
                if role is None:
                    line.append(seg)
                else:
                    open_, close = ROLE_MARK[role]
                    line.append(f"{open_}{seg}{close}", style="bold cyan" if role == "subj" else "bold magenta")
            console.print(line)


def rich_table(block: Table):
    """A table as a rich renderable (the console's rendering of it, also a live display's)."""
    from rich.markup import escape
    from rich.table import Table as RichTable
    from rich.text import Text

    t = RichTable(title=escape(block.caption) if block.caption else None, title_justify="left",
                  title_style="bold", header_style="bold", show_header=block.header,
                  caption=escape(block.note) if block.note else None, pad_edge=not block.compact)
    for j, h in enumerate(block.headers):
        t.add_column(escape(h), justify="right" if j in block.right else "left", no_wrap=block.compact)
    for row in block.rows:
        t.add_row(*(Text(text_of(c), style=RICH_STYLES.get(style_of(c) or "", "")) for c in row))
    return t


# ------------------------------------------------------------------------- plain text
def render_plain_table(block: Table) -> str:
    """Columns aligned with spaces, for pipes and files: no styles, no rules."""
    table = ([block.headers] if block.header else []) + [[text_of(c) for c in row] for row in block.rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(block.headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table) + "\n"


# --------------------------------------------------------------------------- markdown
def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def _md_sentence(segments) -> str:
    parts = []
    for seg, role in segments:
        seg = _md_escape(seg).replace("*", "\\*").replace("_", "\\_")
        parts.append(seg if role is None else f"**{ROLE_MARK[role][0]}{seg}{ROLE_MARK[role][1]}**")
    return "".join(parts)


def render_markdown_table(block: Table) -> str:
    """The table's header, rule and rows in markdown (alignment is the console's and HTML's)."""
    lines = ["| " + " | ".join(_md_escape(h) for h in block.headers) + " |",
             "|" + "|".join("---" for _ in block.headers) + "|"]
    lines += ["| " + " | ".join(_md_escape(text_of(c)) for c in row) + " |" for row in block.rows]
    return "\n".join(lines) + "\n"


def render_markdown(doc: Document) -> str:
    out = [f"# {doc.title}", ""]
    if doc.subtitle:
        out += [doc.subtitle, ""]
    for sec in doc.sections:
        out += [f"## {sec.title}", ""]
        for block in sec.blocks:
            out += _md_block(block)
    return "\n".join(out).rstrip() + "\n"


def _md_block(block) -> list[str]:
    if isinstance(block, Para):
        return [("> " if block.style in ("warn", "note") else "") + block.text, ""]
    if isinstance(block, Table):
        lines = [f"**{block.caption}**", ""] if block.caption else []
        return lines + render_markdown_table(block).splitlines() + [""]
    if isinstance(block, Marked):
        body = f"  \n  {_md_sentence(block.segments)}" if block.segments else ""
        return [f"- {_md_escape(block.head)}{body}", ""]
    return []  # figures: HTML only


# ------------------------------------------------------------------------------- HTML
CSS = """
:root { --fg:#1d2330; --muted:#6b7385; --line:#e3e6ee; --bg:#f6f7fb; --accent:#3558c8;
        --good:#1e7d45; --bad:#b3261e; --warn:#8a5a00; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", "Noto Sans KR", "Nanum Gothic",
             "Apple SD Gothic Neo", "Malgun Gothic", sans-serif; }
header { background:#1d2330; color:#fff; padding:28px 40px 22px; }
header h1 { margin:0 0 4px; font-size:26px; font-weight:650; }
header p { margin:0; color:#c5cbe0; }
nav { padding:10px 40px; background:#fff; border-bottom:1px solid var(--line); position:sticky;
      top:0; z-index:1; font-size:14px; }
nav a { color:var(--accent); text-decoration:none; margin-right:18px; white-space:nowrap; }
main { max-width:1180px; margin:0 auto; padding:8px 40px 60px; }
section { background:#fff; border:1px solid var(--line); border-radius:10px; padding:8px 26px 22px;
          margin:22px 0; }
h2 { font-size:20px; margin:16px 0 10px; }
p { margin:8px 0; }
p.note { color:var(--muted); font-size:13.5px; }
p.warn { color:var(--warn); background:#fff6e0; border-left:4px solid #e0a100; padding:6px 10px; }
table { border-collapse:collapse; margin:10px 0 16px; font-size:13.5px; }
caption { text-align:left; font-weight:600; padding:4px 0 6px; }
th, td { padding:4px 10px; border-bottom:1px solid var(--line); text-align:left;
         vertical-align:top; }
th { background:#f0f2f8; font-weight:600; white-space:nowrap; }
td.r, th.r { text-align:right; font-variant-numeric: tabular-nums; }
td.good { color:var(--good); font-weight:600; } td.bad { color:var(--bad); font-weight:600; }
td.muted { color:var(--muted); } td.warn { color:var(--warn); } td.best { font-weight:700; color:var(--good); }
td.running { color:var(--accent); }
figure { margin:12px 0 18px; } figure img { max-width:100%; height:auto; border:1px solid var(--line);
         border-radius:6px; background:#fff; }
figcaption { color:var(--muted); font-size:13px; }
.ex { margin:8px 0 12px; padding:8px 12px; border-left:3px solid var(--line); }
.ex .head { font-weight:600; font-size:13.5px; }
.ex .sent { margin-top:2px; }
.subj { background:#dbe7ff; border-radius:3px; padding:0 3px; font-weight:600; }
.obj { background:#ffe0ef; border-radius:3px; padding:0 3px; font-weight:600; }
.subj::after, .obj::after { font-size:10px; vertical-align:super; margin-left:2px; color:var(--muted); }
.subj::after { content:"S"; } .obj::after { content:"O"; }
"""


def _h(s: str) -> str:
    return html.escape(s, quote=True)


def render_html(doc: Document) -> str:
    nav = "".join(f'<a href="#{_h(s.anchor)}">{_h(s.title)}</a>' for s in doc.sections if s.anchor)
    body = "\n".join(_html_section(s) for s in doc.sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{_h(doc.title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{_h(doc.title)}</h1><p>{_h(doc.subtitle)}</p></header>"
        f"<nav>{nav}</nav><main>{body}</main></body></html>\n")


def _html_section(sec: Section) -> str:
    ident = f' id="{_h(sec.anchor)}"' if sec.anchor else ""
    return f"<section{ident}><h2>{_h(sec.title)}</h2>" + "".join(_html_block(b) for b in sec.blocks) + "</section>"


def _html_block(block) -> str:
    if isinstance(block, Para):
        cls = f' class="{block.style}"' if block.style else ""
        return f"<p{cls}>{_h(block.text)}</p>"
    if isinstance(block, Table):
        cap = f"<caption>{_h(block.caption)}</caption>" if block.caption else ""
        head = "".join(f'<th{" class=r" if j in block.right else ""}>{_h(h)}</th>'
                       for j, h in enumerate(block.headers))
        head = f"<thead><tr>{head}</tr></thead>" if block.header else ""
        rows = "".join("<tr>" + "".join(_html_cell(c, j in block.right) for j, c in enumerate(r)) + "</tr>"
                       for r in block.rows)
        return f"<table>{cap}{head}<tbody>{rows}</tbody></table>"
    if isinstance(block, Figure):
        data = base64.b64encode(block.png).decode("ascii")
        cap = f"<figcaption>{_h(block.caption)}</figcaption>" if block.caption else ""
        return f'<figure><img src="data:image/png;base64,{data}" alt="{_h(block.alt)}">{cap}</figure>'
    if isinstance(block, Marked):
        sent = ""
        if block.segments:
            sent = "".join(_h(t) if role is None else f'<span class="{role}">{_h(t)}</span>'
                           for t, role in block.segments)
            sent = f'<div class="sent">{sent}</div>'
        return f'<div class="ex"><div class="head">{_h(block.head)}</div>{sent}</div>'
    raise TypeError(f"unknown block {type(block).__name__}")


def _html_cell(cell: Cell, right: bool) -> str:
    classes = " ".join(c for c in ("r" if right else "", style_of(cell) or "") if c)
    attr = f' class="{classes}"' if classes else ""
    return f"<td{attr}>{_h(text_of(cell))}</td>"
