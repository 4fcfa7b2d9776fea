"""Progress of a long job, written for log files: a bar line at each tenth of the work (or at most every
``min_interval`` seconds), never a carriage-return animation, then one summary line.

    [capture base/harmful_eval shard-0] [######..............] 96/320 prompts 30% 00:41<01:36, 2.34 prompts/s

The line is tqdm's (``tqdm.format_meter``: elapsed, remaining and rate, the rate of this run only when it resumed);
when a line is written is ours: tqdm writes on a time interval with carriage returns, which in a SLURM job log is
either one overwritten line or thousands of lines; here a long job writes at most ten lines plus one per
``min_interval``, each a whole line.
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
        from tqdm import tqdm

        return str(
            tqdm.format_meter(
                self.done,
                self.total or None,
                self.clock() - self.started,
                unit=f" {self.unit}",
                initial=self.resumed,  # the rate and the estimate are this run's
                postfix=note or None,
                ascii=".#",
                bar_format=(
                    f"[{{bar:{WIDTH}}}] {{n_fmt}}/{{total_fmt}} {self.unit} {{percentage:.0f}}% "
                    "{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}"
                )
                if self.total
                else f"{{n_fmt}} {self.unit} {{elapsed}}, {{rate_noinv_fmt}}{{postfix}}",
            )
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
