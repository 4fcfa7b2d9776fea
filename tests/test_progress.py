"""The log-file progress bar: a line per tenth of the work (or per interval), a bar that matches the count, a summary."""

from __future__ import annotations

import io

from traitscope.core.progress import Progress


def test_a_line_per_tenth_then_a_summary():
    out, now = io.StringIO(), [0.0]
    p = Progress("capture base/x", 40, "prompts", stream=out, min_interval=1e9, clock=lambda: now[0])
    for _ in range(40):
        now[0] += 1.0
        p.update(1)
    p.close("40 prompts at 3 layers")
    lines = out.getvalue().splitlines()
    assert len(lines) == 11 and all(line.startswith("[capture base/x] ") for line in lines)
    assert lines[0] == "[capture base/x] [##..................] 4/40 prompts 10% 00:04<00:36,  1.00 prompts/s"
    assert lines[9] == "[capture base/x] [####################] 40/40 prompts 100% 00:40<00:00,  1.00 prompts/s"
    assert lines[10] == "[capture base/x] done: 40 prompts at 3 layers in 40.0s"
    assert "\r" not in out.getvalue()  # log files get lines, not an animation


def test_slow_steps_are_reported_by_time_and_notes_are_shown():
    out, now = io.StringIO(), [0.0]
    p = Progress("finetune", 1000, "steps", stream=out, min_interval=30.0, clock=lambda: now[0])
    for _ in range(3):
        now[0] += 31.0
        p.update(1, note="loss 1.2000")
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and lines[-1].endswith("3/1000 steps 0% 01:33<8:35:07,  0.03 steps/s, loss 1.2000")


def test_an_unknown_total_counts_without_a_bar():
    out, now = io.StringIO(), [0.0]
    p = Progress("judge", 0, "items", stream=out, min_interval=1e9, clock=lambda: now[0])
    now[0] = 4.0
    p.update(8)
    assert out.getvalue().splitlines() == ["[judge] 8 items 00:04,  2.00 items/s"]


def test_a_resumed_job_says_where_it_starts():
    out = io.StringIO()
    now = [0.0]
    p = Progress("finetune", 10, "steps", stream=out, min_interval=1e9, clock=lambda: now[0])
    p.resume(4)
    now[0] = 2.0
    p.update(1)
    # the estimate uses this run's rate (1 step in 2 s, 5 left), not the steps done before the interruption
    assert out.getvalue().splitlines() == [
        "[finetune] resumed at 4/10 steps",
        "[finetune] [##########..........] 5/10 steps 50% 00:02<00:10,  0.50 steps/s",
    ]
