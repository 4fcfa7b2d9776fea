"""Steering sweep: each configured trait's vector added to the model at a range of coefficients (x the mean
activation norm at its layer and site), the steered answers judged for the trait and for coherence.

The judged steering itself (:class:`~traitscope.core.sweep.SteeringTask`, :func:`~traitscope.core.sweep.sweep`) is in
the core: extraction's layer choice uses it too. Results in ``results/steering/<variant>/<category>/<trait>/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ...workflow.checks import check_steering_section
from ...workflow.experiment import Experiment, StudyView

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
            "figure": self.folder(lay, variant, trait, "sweep.png"),
        }

    def targets(self, study: StudyView, s: SteeringSettings, lay: Layout) -> list[str]:
        return [self.files(lay, study.extract.variant, t)["figure"] for t in s.traits]


EXPERIMENT = Steering()
