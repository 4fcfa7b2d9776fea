"""The harm check: does the harmful-instruction trait separate held-out harmful and harmless prompts?

Config ``checks.harm_separation`` (the check sits with the study's other start-up and sanity checks); results in
``results/harm_separation/harm_separation.{json,png}``. Two held-out views at the trait's chosen layer: the extraction test
split (its metrics are in the vector's sidecar) and independent eval prompt sets never used for extraction, projected
at every captured layer. The control: random unit directions at the chosen layer on the same eval rows, each given the
sign that agrees with the trait vector.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ...workflow.checks import config_error
from ...workflow.experiment import Experiment, Finding, StudyView, verdict
from ...workflow.tables import ci, fmt

if TYPE_CHECKING:
    from ...workflow.layout import Layout


class HarmCheckSettings(NamedTuple):
    trait: str
    harmful: str
    harmless: str
    min_auc: float


class HarmSeparation(Experiment):
    name = "harm_separation"
    title = "Harm separation"
    settings = HarmCheckSettings
    config_key = ("checks", "harm_separation")

    def check(self, cfg: dict[str, Any], dims: dict[str, Any], base_dir: Path, configured: list) -> None:
        section = self.section(cfg) or {}
        if section.get("trait") not in cfg["traits"]:
            raise config_error(
                self.dotted("trait"), f"unknown trait {section.get('trait')!r}", f"use one of {sorted(cfg['traits'])}"
            )
        captured = cfg["capture"]["prompt_sets"]
        for role in ("harmful", "harmless"):
            s = section.get(role)
            if s not in captured:
                raise config_error(
                    self.dotted(role),
                    f"{s!r} is not a captured prompt set",
                    f"use one of capture.prompt_sets {captured}",
                )

    def condition_pairs(self, s: HarmCheckSettings) -> list[tuple[str, str, str, str]]:
        return [(self.dotted("harmful"), s.harmful, self.dotted("harmless"), s.harmless)]

    def scored_sets(self, s: HarmCheckSettings) -> list[str]:
        return [s.harmful, s.harmless]

    def activation_pairs(self, study: StudyView, s: HarmCheckSettings) -> set[tuple[str, str]]:
        return {(study.extract.variant, p) for p in (s.harmful, s.harmless)}

    def files(self, lay: Layout) -> dict[str, str]:
        return {"json": self.folder(lay, "harm_separation.json"), "figure": self.folder(lay, "harm_separation.png")}

    def targets(self, study: StudyView, s: HarmCheckSettings, lay: Layout) -> list[str]:
        return list(self.files(lay).values())

    def results(self) -> dict[str, str]:
        return {"harm_separation": "harm_separation/harm_separation.json"}

    def findings(self, res: Any) -> Iterator[Finding]:
        if "harm_separation" not in res.experiments():
            return
        h = res.experiment("harm_separation")
        base = h["eval_baseline"]
        yield (
            "Harm check",
            f"{h['trait']} at layer {h['best_layer']} separates the independent harmful and harmless "
            f"prompts with AUC {h['eval_auc']:.2f} (random 95th percentile {base['random_auc_p95']:.2f}): "
            f"{verdict(base['beats_random'])}",
            bool(base["beats_random"]),
        )

    def measurements(self, res: Any) -> list[str]:
        if "harm_separation" not in res.experiments():
            return []
        h = res.experiment("harm_separation")
        return [
            "## Harm check",
            "",
            f"{h['trait']}, layer {h['best_layer']}: extraction test AUC {fmt(h['extraction_test_auc'])} (random p95 "
            f"{fmt(h['extraction_baseline']['random_auc_p95'])}); independent eval sets AUC {fmt(h['eval_auc'])} "
            f"{ci(*h['eval_auc_ci95'])} (random p95 {fmt(h['eval_baseline']['random_auc_p95'])}), Cohen's d "
            f"{fmt(h['eval_cohens_d'])}.",
            "",
        ]


EXPERIMENT = HarmSeparation()
