"""Emergent misalignment: does a variant score higher than the base on the same benign prompts?

Both variants are captured on a *replay* prompt set (every row carries the base's generated response), so
they are scored on identical tokens and text differences cannot drive the comparison. For each trait the
pooled score at its best layer is averaged over the paraphrases of each question (the question is the
unit, paraphrases are not independent), then compared with a paired t-test and Cohen's d_z with 95% CIs;
p-values are corrected across traits (statsmodels ``multipletests``).

The control: a finetune moves activations in many directions, so a trait's shift means something only if it is
larger than the shift along random directions. The same paired d_z is computed for each of the seeded random unit
directions of the projection's baseline (``project.random_directions``, at the trait's layer, position and site, on
the same rows and questions); a trait ``beats_random`` when its |d_z| exceeds their 95th percentile of |d_z|.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ...workflow.checks import check_projected_method, check_vector_variant, config_error
from ...workflow.experiment import Comparison, Experiment, Finding, Panel, StudyView
from ...workflow.tables import ci, fmt, table, yes

if TYPE_CHECKING:
    from ...workflow.layout import Layout


class EmergentMisalignmentSettings(NamedTuple):
    """``emergent_misalignment``: a variant against the base on a replay set (the class keeps its first name, which
    is in the rule's params)."""

    base: str
    variant: str
    prompt_set: str
    method: str
    position: str | None
    correction: str
    alpha: float
    n_boot: int


class EmergentMisalignment(Experiment):
    name = "emergent_misalignment"
    title = "Emergent misalignment"
    settings = EmergentMisalignmentSettings

    def check(self, cfg: dict[str, Any], dims: dict[str, Any], base_dir: Path, configured: list) -> None:
        c = self.section(cfg) or {}
        for role in ("base", "variant"):
            check_vector_variant(cfg, dims, c[role], self.dotted(role))
        if c["base"] == c["variant"]:
            raise config_error(self.dotted("variant"), "the variant is the base", "compare two different variants")
        pset = c["prompt_set"]
        if pset not in cfg["prompt_sets"]:
            raise config_error(
                self.dotted("prompt_set"), f"unknown prompt set {pset!r}", f"use one of {sorted(cfg['prompt_sets'])}"
            )
        if cfg["prompt_sets"][pset]["source"] != "replay":
            raise config_error(
                self.dotted("prompt_set"),
                f"{pset!r} is not a replay set, so the two variants would be scored on different response tokens",
                "define {source: replay, prompt_set: <set>, variant: <base>} and use it",
            )
        check_projected_method(cfg, c["method"], self.dotted("method"))

    def projected_pairs(self, s: EmergentMisalignmentSettings) -> set[tuple[str, str]]:
        return {(s.base, s.prompt_set), (s.variant, s.prompt_set)}

    def files(self, lay: Layout) -> dict[str, str]:
        return {
            "json": self.folder(lay, "variant_comparison.json"),
            "scores": self.folder(lay, "per_question_scores.parquet"),
            "figure": self.folder(lay, "figures", "trait_distributions.png"),
        }

    def targets(self, study: StudyView, s: EmergentMisalignmentSettings, lay: Layout) -> list[str]:
        return [self.files(lay)[k] for k in ("json", "figure")]

    def comparisons(self, s: EmergentMisalignmentSettings) -> list[Comparison]:
        return [
            Comparison(
                f"emergent misalignment: {s.variant} vs {s.base} on {s.prompt_set}",
                (Panel(s.base, s.base, s.prompt_set), Panel(s.variant, s.variant, s.prompt_set)),
                "Both columns score the same response tokens.",
            )
        ]

    def results(self) -> dict[str, str]:
        return {"emergent_misalignment": "emergent_misalignment/variant_comparison.json"}

    def findings(self, res: Any) -> Iterator[Finding]:
        if "emergent_misalignment" not in res.experiments():
            return
        c = res.experiment("emergent_misalignment")
        traits = c["traits"]
        significant = [t for t, r in traits.items() if r["significant"]]
        if "n_significant_and_beats_random" in c:
            both = [t for t in significant if traits[t].get("beats_random")]
            line = (
                f"{c['variant']} vs {c['base']} on the same tokens: {len(significant)} of {len(traits)} traits "
                f"differ significantly ({c['correction']['method']}); {len(both)} of those also shift more than "
                "random directions do" + (f" ({', '.join(both)})" if both else "")
            )
            sens = c.get("sensitivity") or {}
            if sens and not both:  # a null says how large an effect it would have found
                from .analysis import planted_line

                line += "; " + "; ".join(f"{t}: {planted_line(s)}" for t, s in sens.items())
            yield "Emergent misalignment", line, bool(both)
        else:
            yield (
                "Emergent misalignment",
                f"{c['variant']} vs {c['base']}: {len(significant)} of {len(traits)} "
                "traits differ significantly (no random-direction control in this result; "
                "project.random_directions must be above 0)",
                None,
            )

    def measurements(self, res: Any) -> list[str]:
        if "emergent_misalignment" not in res.experiments():
            return []
        c = res.experiment("emergent_misalignment")
        out = [
            f"## Emergent misalignment: {c['variant']} vs {c['base']}",
            "",
            f"On `{c['prompt_set']}` (the base's answers replayed), per question; p corrected by "
            f"{c['correction']['method']} across traits.",
            "",
        ]
        rows = [
            [
                t,
                r["layer"],
                r["n"],
                f"{fmt(r['cohens_dz'])} {ci(r['dz_ci_low'], r['dz_ci_high'])}",
                fmt(r["p_adjusted"]),
                fmt(r.get("random_abs_dz_p95")),
                yes(r.get("beats_random")),
            ]
            for t, r in sorted(c["traits"].items())
        ]
        out += table(
            ["trait", "layer", "questions", "d_z [95% CI]", "p adjusted", "random \\|d_z\\| p95", "beats"], rows
        )
        sens = c.get("sensitivity") or {}
        if not sens:
            return out
        out += [
            "",
            "Planted effects (the positive control): the variant's activations at each trait's layer plus coef x the "
            "mean activation norm there of the trait's own unit vector, or of a random one, the same test re-run "
            "(`traitscope.core.planted`). Detected: significant after correction and |d_z| above the random "
            "directions' 95th percentile.",
            "",
        ]
        planted_rows = [
            [
                t,
                r["planted"],
                f"{r['coef']:g}",
                fmt(r["score_shift"]),
                fmt(r["cohens_dz"]),
                fmt(r["random_abs_dz_p95"]),
                yes(r["detected"]),
            ]
            for t, s in sorted(sens.items())
            for r in s["rows"]
        ]
        return out + table(
            ["trait", "planted", "coef (x norm)", "score shift", "d_z", "random \\|d_z\\| p95", "detected"],
            planted_rows,
        )


EXPERIMENT = EmergentMisalignment()
