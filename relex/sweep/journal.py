"""The study journal: Optuna's journal file, read once and appended one step at a time.

Optuna's own ``JournalFileBackend`` serves many processes: it takes a lock file, appends and
fsyncs every operation on its own, and reads the file again after each. An ask of three
parameters is five operations (the trial, TPE's joint draw, each parameter), so a suggestion
paid five locks, five fsyncs and five reads. A sweep's study has one writer, the driver that
holds the sweep's lease (:mod:`relex.sweep.lease`), so :class:`StudyJournal` reads the file
once, when the sweep opens it, and serves Optuna's replay from memory. What the driver does is
still on disk before anything acts on it: an operation is appended and fsynced as it happens,
or, inside :meth:`StudyJournal.step`, with the other operations of its step (an ask with all
its parameters, a staged sweep's hand-over) in one append and one fsync as the step ends. A
step the driver died in before that is not in the file at all, so it never reached Ray.

The file stays Optuna's format (one JSON operation a line): ``optuna.load_study`` with a
``JournalFileBackend`` reads it. One case is left for the reader: the kernel can cut short an
append that a SIGKILL interrupts between two pages. A cut line has no newline and is dropped
when the file is opened (Optuna would refuse a file with it in the middle); the searcher
completes a step whose complete lines are there but not all of them (an ask, a hand-over:
:func:`relex.sweep.search.open_studies`).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from optuna.storages.journal import BaseJournalBackend


class StudyJournal(BaseJournalBackend):
    """An Optuna journal backend for a file only this process writes."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._logs = [json.loads(line) for line in _complete_lines(self.path)]
        self._pending: list[str] | None = None  # the lines of the step in progress

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        return iter(self._logs[log_number_from:])

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        lines = [json.dumps(log, separators=(",", ":")) for log in logs]
        self._logs.extend(json.loads(line) for line in lines)  # Optuna's replay gets its own copy
        if self._pending is None:
            self._write(lines)
        else:
            self._pending.extend(lines)

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        """Append the operations made inside as one write with one fsync, when the block ends
        (also when it raises: the replay in memory already holds them)."""
        if self._pending is not None:  # a step inside a step is part of it
            yield
            return
        self._pending = []
        try:
            yield
        finally:
            lines, self._pending = self._pending, None
            if lines:
                self._write(lines)

    def _write(self, lines: list[str]) -> None:
        with open(self.path, "ab") as f:
            f.write(("\n".join(lines) + "\n").encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())


def _complete_lines(path: Path) -> list[bytes]:
    """The file's lines, after cutting off a last line a killed append left without its newline
    (its step never finished, so nothing acted on it)."""
    if not path.exists():
        path.touch()
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        os.truncate(path, end)
    return data[:end].splitlines()
