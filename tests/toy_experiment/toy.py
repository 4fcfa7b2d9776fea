"""A toy experiment, added through the registry alone (``tests/test_toy_experiment.py``): the mean trait score of one
prompt set, beside the same mean along random directions.

It is what ``CONTRIBUTING.md`` walks through: this module (settings, checks, pairs, paths, finding, analysis), its
schema fragment ``toy.schema.yaml``, its rules ``rules/toy.smk`` and its script ``workflow/scripts/toy.py``; the only
project file it changes is the registry (one line in ``traitscope/experiments/__init__.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from ..workflow.config import config_error
from ..workflow.experiment import Experiment, Finding

if TYPE_CHECKING:
    from ..workflow.layout import Layout
    from ..workflow.settings import Study


class ToySettings(NamedTuple):
    variant: str
    prompt_set: str
    method: str


class Toy(Experiment):
    name = "toy"
    title = "Toy"
    settings = ToySettings
    schema = Path(__file__).with_suffix(".schema.yaml")

    def check(self, cfg: dict[str, Any], dims: dict[str, Any], base_dir: Path, configured: list[Any]) -> None:
        toy = self.section(cfg) or {}
        if toy["prompt_set"] not in cfg["prompt_sets"]:
            raise config_error(
                self.dotted("prompt_set"),
                f"unknown prompt set {toy['prompt_set']!r}",
                f"use one of {sorted(cfg['prompt_sets'])}",
            )

    def projected_pairs(self, s: ToySettings) -> set[tuple[str, str]]:
        return {(s.variant, s.prompt_set)}

    def files(self, lay: Layout) -> dict[str, str]:
        return {"json": self.folder(lay, "summary.json")}

    def targets(self, study: Study, s: ToySettings, lay: Layout) -> list[str]:
        return list(self.files(lay).values())

    def results(self) -> dict[str, str]:
        return {"toy": "toy/summary.json"}

    def findings(self, res: Any) -> Iterator[Finding]:
        if "toy" in res.experiments():
            r = res.experiment("toy")
            above = [t for t, v in r["traits"].items() if v["beats_random"]]
            yield "Toy", f"{len(above)} of {len(r['traits'])} mean trait scores exceed random directions'", bool(above)


EXPERIMENT = Toy()


def summarise(scores: pd.DataFrame, random: dict[str, np.ndarray], method: str) -> dict[str, Any]:
    """Per trait: the mean pooled score (last token) at its layer, and the 95th percentile of the same mean along each
    random direction."""
    out = {}
    for trait, rows in scores[(scores["method"] == method) & (scores["position"] == "last")].groupby("trait"):
        mean = float(rows["score"].mean())
        p95 = float(np.percentile(random[str(trait)].mean(axis=0), 95))
        out[str(trait)] = {"mean": mean, "random_mean_p95": p95, "beats_random": mean > p95, "n": int(len(rows))}
    return {"traits": out}
