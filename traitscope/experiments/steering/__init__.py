"""Steering sweep: each configured trait's vector added to the model at a range of coefficients (x the mean
activation norm at its layer and site), the steered answers judged for the trait and for coherence.

The judged steering itself (:class:`~traitscope.core.sweep.SteeringTask`, :func:`~traitscope.core.sweep.sweep`) is in
the core: extraction's layer choice uses it too. Results in ``results/steering/<variant>/<category>/<trait>/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ...workflow.checks import check_steering_section
from ...workflow.experiment import Experiment, Finding, StudyView

if TYPE_CHECKING:
    from ...workflow.layout import Layout


class SteeringSettings(NamedTuple):
    traits: tuple[str, ...]
    prompt_set: str
    n_prompts: int
    coefficients: tuple[float, ...]
    layers: Any
    positions: str
    max_new_tokens: int


class Steering(Experiment):
    name = "steering"
    title = "Steering"
    settings = SteeringSettings
    uses_judge = True

    def check(self, cfg: dict[str, Any], dims: dict[str, Any], base_dir: Path, configured: list) -> None:
        check_steering_section(self, cfg, dims)

    def prompt_sets(self, s: SteeringSettings) -> list[str]:
        return [s.prompt_set]

    def files(self, lay: Layout, variant: str = "{variant}", trait: str = "{category}/{trait}") -> dict[str, str]:
        return {
            "table": self.folder(lay, variant, trait, "sweep.parquet"),
            "summary": self.folder(lay, variant, trait, "versus_random.json"),
            "figure": self.folder(lay, variant, trait, "sweep.png"),
        }

    def targets(self, study: StudyView, s: SteeringSettings, lay: Layout) -> list[str]:
        return [self.files(lay, study.extract.variant, t)["figure"] for t in s.traits]

    def results(self) -> dict[str, str]:
        return {"steering/{1}/{0}": "steering/*/*/*/versus_random.json"}

    def findings(self, res: Any) -> Iterator[Finding]:
        from .analysis import finding_line

        for name in (n for n in res.experiments() if n.startswith("steering/")):
            summary = res.experiment(name)
            yield (
                f"Steering: {summary['trait']} on {summary['variant']}",
                finding_line(summary),
                summary["raises_beyond_random"],
            )


EXPERIMENT = Steering()
