"""Each experiment's finding in one line, beside its control: the front page of the report and ``results/findings.md``.

Every line is read from an experiment's own JSON result (nothing is recomputed) and ends with its verdict against its
control: random directions at the same layer and rows (``beats random directions`` or ``does NOT beat random
directions``). The order follows the pipeline: extraction, then each experiment in registry order
(:meth:`Experiment.findings <traitscope.workflow.experiment.Experiment.findings>`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from .experiments import REGISTRY
from .results import Results
from .workflow.experiment import Finding


def extraction(res: Results) -> Iterator[Finding]:
    traits = res.traits()
    if not traits:
        return
    best = {t: res.vector_info(t).info["best"] for t in traits}
    beaten = [t for t, b in best.items() if b.get("beats_random")]
    missed = [f"{t} (AUC {best[t]['auc']:.2f} vs {best[t]['random_auc_p95']:.2f})" for t in traits if t not in beaten]
    line = (
        f"{len(beaten)} of {len(traits)} trait vectors separate held-out answers better than the 95th percentile of "
        "random directions at their chosen layer" + (f"; not: {', '.join(missed)}" if missed else "")
    )
    yield "Extraction", line, len(beaten) == len(traits)


def findings(res: Results) -> list[Finding]:
    """Every finding the results folder holds, in pipeline order: extraction, then each registered experiment."""
    return list(extraction(res)) + [f for experiment in REGISTRY for f in experiment.findings(res)]


def markdown(items: list[Finding]) -> str:
    return "".join(f"- **{name}**: {line}\n" for name, line, _ in items)


def front_page(items: list[Finding], intro: str) -> str:
    """The report's front page (reStructuredText): ``intro``, then one bullet per finding, its text escaped (a finding
    may hold ``|``, ``*`` or backquotes, which reStructuredText would read as markup)."""
    body = "".join(f"- **{rst_text(name)}**: {rst_text(line)}\n" for name, line, _ in items)
    return f"{intro.rstrip()}\n\nFindings, each beside its control:\n\n{body}"


def rst_text(text: str) -> str:
    """``text`` as literal reStructuredText: every character that can start or end inline markup backslash-escaped."""
    return re.sub(r"([\\`*_|\[\]<>])", r"\\\1", text)


def as_json(items: list[Finding]) -> list[dict[str, Any]]:
    return [{"experiment": name, "finding": line, "beats_control": verdict} for name, line, verdict in items]
