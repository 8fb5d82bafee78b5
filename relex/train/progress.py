"""The progress display of a training run: a rich bar on a terminal, plain lines, or nothing."""

from __future__ import annotations

import sys


class Reporter:
    """A rich progress bar on a terminal, plain log lines otherwise, or nothing."""

    def __init__(self, mode: str, title: str = "train"):
        self.mode = mode
        self.title = title
        self._progress = None
        self._task = None
        self._every = 1
        self._total = 0

    @staticmethod
    def pick(progress: bool | str | None) -> str:
        if progress is None or progress == "auto":
            return "rich" if sys.stderr.isatty() else "plain"
        if progress is True:
            return "rich"
        if progress is False:
            return "off"
        if progress in ("rich", "plain", "off"):
            return progress
        raise ValueError(f"progress must be None, a bool, or one of auto/rich/plain/off, not {progress!r}")

    def log(self, msg: str) -> None:
        if self.mode == "off":
            return
        if self._progress is not None:
            self._progress.console.print(msg, highlight=False, markup=False)
        else:
            print(f"[relex] {msg}", file=sys.stderr, flush=True)

    def start(self, total: int, done: int) -> None:
        self._total = total
        self._every = max(1, total // 20)
        if self.mode == "rich":
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self._progress = Progress(
                TextColumn(f"[bold]{self.title}"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
                TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                console=Console(stderr=True), transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.title, total=total, completed=done, info="")

    def step(self, step: int, epoch: float, loss: float, lr: float, extra: str = "") -> None:
        """Show a step; ``extra`` is appended (e.g. a throughput)."""
        info = f"epoch {epoch:.2f} loss {loss:.4f} lr {lr:.2e}" + (f" {extra}" if extra else "")
        if self.mode == "rich" and self._progress is not None:
            self._progress.update(self._task, completed=step, info=info)
        elif self.mode == "plain" and (step % self._every == 0 or step == self._total):
            self.log(f"step {step}/{self._total} {info}")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
