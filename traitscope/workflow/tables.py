"""Markdown for ``docs/measurements.md``: numbers to two decimals, confidence intervals, verdicts, tables."""

from __future__ import annotations

from typing import Any


def fmt(x: Any) -> str:
    """A number to two decimals (``n/a`` for None or NaN)."""
    return "n/a" if x is None or x != x else f"{float(x):.2f}"


def ci(lo: Any, hi: Any) -> str:
    return f"[{fmt(lo)}, {fmt(hi)}]"


def yes(b: Any) -> str:
    return "yes" if b else "**no**"


def table(head: list[str], rows: list[list[Any]]) -> list[str]:
    """A Markdown table (and a blank line after it) as lines."""
    return (
        ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
        + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
        + [""]
    )
