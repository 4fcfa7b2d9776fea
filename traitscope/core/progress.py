"""Progress of a long job, written for log files: a text bar line at each tenth of the work (or at most every
``min_interval`` seconds), never a carriage-return animation, then one summary line.

    [capture base/harmful_eval shard-0] [######..............] 96/320 prompts 30% 41s, ~96s left
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

WIDTH = 20


class Progress:
    """Count ``total`` units of work under ``label``; ``update(n)`` after each piece, ``close(summary)`` at the end."""

    def __init__(
        self,
        label: str,
        total: int,
        unit: str,
        *,
        stream: TextIO | None = None,
        min_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.total, self.unit = label, max(0, int(total)), unit
        self.stream = stream
        self.min_interval, self.clock = min_interval, clock
        self.done = self.resumed = 0
        self.started = self.last_time = clock()
        self.last_tenth = 0

    def _write(self, text: str) -> None:
        print(f"[{self.label}] {text}", file=self.stream or sys.stderr, flush=True)

    def line(self, note: str = "") -> str:
        frac = self.done / self.total if self.total else 1.0
        filled = int(round(frac * WIDTH))
        elapsed = self.clock() - self.started
        ran = self.done - self.resumed  # units done by this run: the rate of the estimate
        left = f", ~{elapsed / ran * (self.total - self.done):.0f}s left" if ran > 0 and frac < 1 else ""
        return (
            f"[{'#' * filled}{'.' * (WIDTH - filled)}] {self.done}/{self.total} {self.unit} {frac:.0%} "
            f"{elapsed:.0f}s{left}" + (f" ({note})" if note else "")
        )

    def update(self, n: int = 1, note: str = "") -> None:
        self.done = min(self.total, self.done + n) if self.total else self.done + n
        tenth = int(10 * self.done / self.total) if self.total else 10
        now = self.clock()
        if tenth > self.last_tenth or now - self.last_time >= self.min_interval:
            self.last_tenth, self.last_time = tenth, now
            self._write(self.line(note))

    def resume(self, done: int) -> None:
        """Start from ``done`` units finished by an earlier, interrupted run (a line says so)."""
        self.done = self.resumed = done
        self.last_tenth = int(10 * done / self.total) if self.total else 0
        self._write(f"resumed at {done}/{self.total} {self.unit}")

    def close(self, summary: str) -> str:
        """Write and return the job's one-line summary (with the elapsed time)."""
        text = f"done: {summary} in {self.clock() - self.started:.1f}s"
        self._write(text)
        return text
