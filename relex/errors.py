"""User-facing errors.

Anything a user can cause (a bad file, a bad flag, a bad job file, a backbone that cannot be
loaded) raises :class:`RelexError`. The CLI prints its message, without a traceback, and exits
with code 2. Code bugs stay ordinary exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass


class RelexError(Exception):
    """A mistake in the user's input: printed as one clear message, exit code 2."""

    exit_code = 2


@dataclass(frozen=True)
class BadRow:
    """One invalid row of an input file; ``row`` is 1-based within the data records."""

    file: str
    row: int
    reason: str
    id: str | None = None

    def __str__(self) -> str:
        rid = f" (id {self.id})" if self.id is not None else ""
        return f"{self.file}: row {self.row}{rid}: {self.reason}"


class BadRowsError(RelexError):
    """Rows that failed validation; the message lists the first ``shown`` and counts the rest."""

    shown = 20

    def __init__(self, bad_rows: list[BadRow], total_rows: int | None = None):
        self.bad_rows = list(bad_rows)
        self.total_rows = total_rows
        n = len(self.bad_rows)
        files = sorted({b.file for b in self.bad_rows})
        head = f"{n} bad row{'s' if n != 1 else ''}"
        if total_rows is not None:
            head += f" of {total_rows}"
        head += f" in {', '.join(files)}"
        lines = [head + ":"]
        lines += [f"  {b}" for b in self.bad_rows[: self.shown]]
        if n > self.shown:
            lines.append(f"  ... and {n - self.shown} more")
        lines.append("Fix them (`relex data fix FILE --out FIXED` repairs what is fixable), or "
                     "pass --skip-bad-rows to drop them.")
        super().__init__("\n".join(lines))
