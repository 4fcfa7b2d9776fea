"""A toy experiment, added through the registry alone (``tests/test_toy_experiment.py``): the mean trait score of one
prompt set, beside the same mean along random directions.

It is what ``CONTRIBUTING.md`` walks through. This folder is copied whole into a project as
``traitscope/experiments/toy/``: this file (settings, checks, pairs, paths, finding), ``analysis.py`` its analysis,
``schema.yaml`` its config section, ``rules.smk`` its rules and ``scripts/toy.py`` its script. The only project file it
changes is the registry (one line in ``traitscope/experiments/__init__.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ...workflow.checks import config_error
from ...workflow.experiment import Experiment, Finding

if TYPE_CHECKING:
    from ...workflow.layout import Layout
    from ...workflow.settings import Study


class ToySettings(NamedTuple):
    variant: str
    prompt_set: str
    method: str


class Toy(Experiment):
    name = "toy"
    title = "Toy"
    settings = ToySettings

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
