"""Prefill attack: is harm still recognised when the model is forced to comply?

Four conditions, each a captured prompt set:

====  ===========================  ==========================================================
C1    harmful prompts              no prefill: the model answers on its own (often a refusal)
C2    the same harmful prompts     a compliance prefill ("Sure, here is ...") starts the
                                   assistant turn, tokenised after the chat template's
                                   assistant header, then the model continues
C3    benign prompts               no prefill
C4    the same benign prompts      the same prefill
====  ===========================  ==========================================================

Score of a row: the mean per-token trait score over the first ``k`` tokens of the assistant turn, where ``k``
is the number of prefill tokens: the prefill itself in C2/C4, the model's own first ``k`` tokens in C1/C3
(``k`` of the paired prefilled row). So every condition is scored at the same token positions.

Comparisons, per trait (best layer), p-values corrected across traits per comparison (statsmodels):

* ``C2_vs_C4`` harmful vs benign under the prefill (independent groups: Welch t-test, Cohen's d, ROC-AUC,
  with 95% CIs): does the model still represent harm while it is forced to comply?
* ``C1_vs_C3`` the same without prefill, the reference separation.
* ``C1_vs_C2`` harmful prompts with vs without the prefill (paired by prompt: paired t-test, Cohen's d_z
  with 95% CIs, difference C2 - C1): how much does forced compliance move the score?

Control baseline: each AUC of the two independent comparisons is reported beside the AUCs of seeded random unit
directions at the trait's layer, scored over the same windows of the same rows (:class:`BaselineScores`):
``random_auc_mean``, ``random_auc_p95``, ``auc_percentile`` and ``beats_random``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ...workflow.checks import check_projected_method, check_vector_variant, config_error
from ...workflow.experiment import Comparison, Experiment, Finding, Panel, SaeComparison, StudyView
from ...workflow.tables import fmt, table, yes

if TYPE_CHECKING:
    from ...workflow.layout import Layout


class PrefillSettings(NamedTuple):
    variant: str
    harmful: str
    harmful_prefill: str
    benign: str
    benign_prefill: str
    method: str
    correction: str
    alpha: float
    n_boot: int
    max_tokens: int

    def conditions(self) -> dict[str, str]:
        """C1..C4 -> prompt set."""
        return {"C1": self.harmful, "C2": self.harmful_prefill, "C3": self.benign, "C4": self.benign_prefill}


ROLES = ("harmful", "harmful_prefill", "benign", "benign_prefill")


class PrefillAttack(Experiment):
    name = "prefill_attack"
    title = "Prefill attack"
    settings = PrefillSettings

    def check(self, cfg: dict[str, Any], dims: dict[str, Any], base_dir: Path, configured: list) -> None:
        """The four conditions: plain sets without a prefill, prefilled sets with one; assistant-turn tokens scored."""
        pa = self.section(cfg) or {}
        sets, cap = cfg["prompt_sets"], cfg["capture"]
        check_vector_variant(cfg, dims, pa["variant"], self.dotted("variant"))
        for role in ROLES:
            s = pa[role]
            if s not in sets:
                raise config_error(self.dotted(role), f"unknown prompt set {s!r}", f"use one of {sorted(sets)}")
            forced = bool(sets[s].get("prefill")) or "prefill" in (sets[s].get("fields") or {})
            if role.endswith("_prefill") and not forced:
                raise config_error(
                    self.dotted(role),
                    f"prompt set {s!r} has no prefill",
                    f"set prompt_sets.{s}.prefill to a compliance prefill such as 'Sure, here is'",
                )
            if not role.endswith("_prefill") and forced:
                raise config_error(
                    self.dotted(role), f"prompt set {s!r} has a prefill", "use the same prompts without prefill"
                )
        if "response" not in cap["positions"] or not cfg["project"]["per_token"]:
            raise config_error(
                "capture.positions",
                "the prefill attack scores assistant-turn tokens",
                "keep response in capture.positions and project.per_token: true",
            )
        if not cap["generate"]["enabled"]:
            raise config_error(
                "capture.generate.enabled",
                "without generation the no-prefill conditions have no assistant tokens",
                "set capture.generate.enabled: true",
            )
        check_projected_method(cfg, pa["method"], self.dotted("method"))

    def condition_pairs(self, s: PrefillSettings) -> list[tuple[str, str, str, str]]:
        sets = dict(zip(ROLES, (s.harmful, s.harmful_prefill, s.benign, s.benign_prefill)))
        return [(self.dotted(a), sets[a], self.dotted(b), sets[b]) for i, a in enumerate(ROLES) for b in ROLES[i + 1 :]]

    def projected_pairs(self, s: PrefillSettings) -> set[tuple[str, str]]:
        return {(s.variant, p) for p in s.conditions().values()}

    def scored_sets(self, s: PrefillSettings) -> list[str]:
        return [s.harmful, s.harmful_prefill, s.benign, s.benign_prefill]

    def per_token_baseline(self, s: PrefillSettings, pset: str) -> bool:
        return pset in s.conditions().values()  # its AUCs compare windowed per-token scores

    def sae_comparisons(self, s: PrefillSettings) -> dict[str, SaeComparison]:
        c = s.conditions()
        return {
            "prefill": SaeComparison(
                s.variant, c["C2"], s.variant, c["C4"], "C2 harmful + prefill", "C4 benign + prefill"
            )
        }

    def files(self, lay: Layout) -> dict[str, str]:
        return {
            "json": self.folder(lay, "condition_comparison.json"),
            "scores": self.folder(lay, "window_scores.parquet"),
            "trajectory": self.folder(lay, "trajectory.parquet"),
            "grid": self.folder(lay, "2x2_grid.png"),
            "divergence": self.folder(lay, "trajectory_divergence.png"),
        }

    def targets(self, study: StudyView, s: PrefillSettings, lay: Layout) -> list[str]:
        return [self.files(lay)[k] for k in ("json", "grid", "divergence")]

    def comparisons(self, s: PrefillSettings) -> list[Comparison]:
        labels = {"C1": "C1 harmful", "C2": "C2 harmful + prefill", "C3": "C3 benign", "C4": "C4 benign + prefill"}
        return [
            Comparison(
                f"prefill attack: four conditions ({s.variant})",
                tuple(Panel(f"{labels[c]} ({p})", s.variant, p) for c, p in s.conditions().items()),
                "C1/C2 and C3/C4 share prompts (by id); harmful and benign columns pair by position.",
            )
        ]

    def results(self) -> dict[str, str]:
        return {"prefill_attack": "prefill_attack/condition_comparison.json"}

    def findings(self, res: Any) -> Iterator[Finding]:
        if "prefill_attack" not in res.experiments():
            return
        p = res.experiment("prefill_attack")
        comp = p["comparisons"].get("C2_vs_C4")
        if not comp:
            return
        parts = [f"{t} AUC {r['auc']:.2f} vs {r['random_auc_p95']:.2f}" for t, r in comp["traits"].items()]
        beaten = [t for t, r in comp["traits"].items() if r.get("beats_random")]
        yield (
            "Prefill attack",
            "under a forced-compliance prefill, harmful vs benign prompts (C2 vs C4): "
            f"{'; '.join(parts)}; harm still represented (beats random directions) for "
            f"{', '.join(beaten) if beaten else 'no trait'}",
            bool(beaten),
        )

    def measurements(self, res: Any) -> list[str]:
        if "prefill_attack" not in res.experiments():
            return []
        p = res.experiment("prefill_attack")
        c24, c12 = p["comparisons"]["C2_vs_C4"]["traits"], p["comparisons"]["C1_vs_C2"]["traits"]
        out = [
            "## Prefill attack",
            "",
            "C2 (harmful + prefill) vs C4 (benign + prefill), and the prefill's shift on "
            "harmful prompts (C2 - C1, paired).",
            "",
        ]
        rows = [
            [
                t,
                r["layer"],
                fmt(r["auc"]),
                fmt(r.get("random_auc_p95")),
                yes(r.get("beats_random")),
                fmt(c12[t]["cohens_dz"]),
            ]
            for t, r in sorted(c24.items())
        ]
        return out + table(["trait", "layer", "C2 vs C4 AUC", "random p95", "beats", "C2 - C1 d_z"], rows)


EXPERIMENT = PrefillAttack()
