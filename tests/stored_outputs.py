"""What a stored notebook shows a reader, and whether a fresh run shows the same (numbers to rounding)."""

from __future__ import annotations

import re

NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def shown(nb, results: str | None = None) -> list[list[tuple[str, str]]]:
    """Per code cell, what a reader sees besides progress: (kind, text) of stdout and of each result's text; the
    folder ``results`` (where a fresh run read its study) is written ``results``, as the stored copy has it."""
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        out = []
        for o in cell.get("outputs", []):
            if o.output_type == "stream" and o.name == "stdout":
                out.append(("stdout", o.text))
            elif o.output_type in ("execute_result", "display_data"):
                kind = "image" if "image/png" in o.data else "result"
                out.append((kind, "" if kind == "image" else o.data.get("text/plain", "")))
            elif o.output_type == "error":
                out.append(("error", f"{o.ename}: {o.evalue}"))
        cells.append([(k, t.replace(results, "results") if results else t) for k, t in out])
    return cells


def same_text(stored: str, fresh: str) -> bool:
    """The same words, and every number within 1% (or 2e-3): tables print rounded floats."""
    if NUMBER.sub("#", stored) != NUMBER.sub("#", fresh):
        return False
    for a, b in zip(NUMBER.findall(stored), NUMBER.findall(fresh)):
        x, y = float(a), float(b)
        if abs(x - y) > max(2e-3, 0.01 * max(abs(x), abs(y))):
            return False
    return True


def assert_runs_as_stored(path, env: dict[str, str] | None = None, results: str | None = None) -> None:
    """Execute the notebook at ``path`` (from the repository root, with ``env`` set) and fail, naming the cell, where
    what it shows differs from its stored outputs."""
    import copy
    import os

    import nbclient
    import nbformat

    stored = nbformat.read(path, as_version=4)
    fresh = copy.deepcopy(stored)
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    try:
        nbclient.NotebookClient(
            fresh, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent.parent)}}
        ).execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    want, got = shown(stored), shown(fresh, results)
    assert [[k for k, _ in c] for c in got] == [[k for k, _ in c] for c in want], f"{path.name}: other outputs"
    for i, (a, b) in enumerate(zip(want, got)):
        for (kind, s), (_, f) in zip(a, b):
            assert same_text(s, f), (
                f"{path.name} cell {i} {kind} changed (fix: run it on the embedded default and store it):\n{s}\n---\n{f}"
            )
