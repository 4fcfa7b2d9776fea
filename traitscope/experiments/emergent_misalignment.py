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

from ..workflow.config import check_projected_method, check_vector_variant, config_error
from ..workflow.experiment import Comparison, Experiment, Finding, Panel
from ..workflow.tables import ci, fmt, table, yes

if TYPE_CHECKING:
    from ..workflow.layout import Layout
    from ..workflow.settings import Study


import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ..core.plots import trait_panels
from ..core.stats import correct_pvalues, paired_comparison, paired_dz


class CompareSettings(NamedTuple):
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
    settings = CompareSettings
    schema = Path(__file__).with_suffix(".schema.yaml")

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

    def projected_pairs(self, s: CompareSettings) -> set[tuple[str, str]]:
        return {(s.base, s.prompt_set), (s.variant, s.prompt_set)}

    def files(self, lay: Layout) -> dict[str, str]:
        return {
            "json": self.folder(lay, "variant_comparison.json"),
            "scores": self.folder(lay, "per_question_scores.parquet"),
            "figure": self.folder(lay, "figures", "trait_distributions.png"),
        }

    def targets(self, study: Study, s: CompareSettings, lay: Layout) -> list[str]:
        return [self.files(lay)[k] for k in ("json", "figure")]

    def comparisons(self, s: CompareSettings) -> list[Comparison]:
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
        return out + table(
            ["trait", "layer", "questions", "d_z [95% CI]", "p adjusted", "random \\|d_z\\| p95", "beats"], rows
        )


EXPERIMENT = EmergentMisalignment()


def compare_variants(
    scores: pd.DataFrame, *, base: str, variant: str, correction: str, alpha: float, n_boot: int, seed: int
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Per trait: paired test of per-question mean scores, variant vs base; corrected across traits."""
    per_q = scores.groupby(["trait", "variant", "group"])["score"].mean().reset_index()
    rows = []
    for trait, d in per_q.groupby("trait"):
        wide = d.pivot(index="group", columns="variant", values="score").dropna()
        res = paired_comparison(wide[variant].to_numpy(), wide[base].to_numpy(), n_boot=n_boot, seed=seed)
        sel = scores[scores["trait"] == trait]
        rows.append(
            {
                "trait": trait,
                "layer": int(sel["layer"].iloc[0]),
                "position": sel["position"].iloc[0],
                "n_prompts": int(sel["id"].nunique()),
                **res,
            }
        )
    table = pd.DataFrame(rows)
    adj, reject = correct_pvalues(table["p"].tolist(), correction, alpha)
    table["p_adjusted"], table["significant"] = adj, reject
    result: dict[str, Any] = {
        "base": base,
        "variant": variant,
        "unit": "question (mean over its paraphrases)",
        "test": "paired t-test (scipy.stats.ttest_rel), variant minus base",
        "effect_size": "Cohen's d_z = mean difference / SD of differences, 95% percentile bootstrap CI over questions",
        "correction": {"method": correction, "alpha": alpha, "family": "all traits"},
        "traits": {r["trait"]: {k: v for k, v in r.items() if k != "trait"} for r in table.to_dict(orient="records")},
    }
    return result, per_q


def random_control(
    baselines: dict[str, Any],
    prompts: pd.DataFrame,
    best: dict[str, int],
    positions: dict[str, str],
    sites: dict[str, str],
    *,
    base: str,
    variant: str,
) -> dict[str, dict[str, Any]]:
    """Per trait: the 95th percentile of |Cohen's d_z| (variant minus base, per-question means) over the random
    directions of the two variants' :class:`~traitscope.core.artifacts.BaselineScores` (the same directions in both)."""
    groups = prompts.assign(id=prompts["id"].astype(str)).set_index("id")["group"]
    out: dict[str, dict[str, Any]] = {}
    for trait, layer in best.items():
        per_question = {}
        for v in (base, variant):
            b = baselines[v]
            x = pd.DataFrame(b.pooled(layer, positions[trait], sites[trait]), index=[str(i) for i in b.ids])
            per_question[v] = x.groupby(x.index.map(groups.to_dict())).mean()
        common = per_question[base].index.intersection(per_question[variant].index)
        diff = per_question[variant].loc[common].to_numpy() - per_question[base].loc[common].to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            dz = paired_dz(diff, axis=0)
        out[trait] = {"random_abs_dz_p95": float(np.nanpercentile(np.abs(dz), 95)), "n_random": int(diff.shape[1])}
    return out


def with_random_control(result: dict[str, Any], control: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``result`` of :func:`compare_variants` with each trait's random control and ``beats_random`` (|d_z| above
    the random 95th percentile), and the count of traits that are significant *and* beat it."""
    both = 0
    for trait, r in result["traits"].items():
        c = control.get(trait)
        if c is None:
            continue
        r.update(c, beats_random=bool(abs(r["cohens_dz"]) > c["random_abs_dz_p95"]))
        both += bool(r["significant"] and r["beats_random"])
    result["control"] = (
        "paired d_z of the same comparison along seeded random unit directions (project.random_"
        "directions) at each trait's layer, position and site; beats_random: |d_z| above their 95th "
        "percentile"
    )
    result["n_significant_and_beats_random"] = both
    return result


# ---------------------------------------------------------------------------------------------- figures


def trait_distributions(per_question: pd.DataFrame, result: dict, title: str) -> plt.Figure:
    """Per-question mean score of base and variant, one panel per trait; lines join the same question."""
    base, variant = result["base"], result["variant"]
    traits = sorted(per_question["trait"].unique())
    fig, panels = trait_panels(traits, 4.4, 3.8)
    for ax, trait in panels:
        d = per_question[per_question["trait"] == trait]
        sns.boxplot(
            data=d, x="variant", y="score", order=[base, variant], ax=ax, color="lightgrey", showfliers=False, width=0.5
        )
        wide = d.pivot(index="group", columns="variant", values="score").dropna()
        for _, row in wide.iterrows():
            ax.plot([0, 1], [row[base], row[variant]], color="grey", lw=0.7, alpha=0.7, marker="o", ms=3)
        r = result["traits"][trait]
        control = ""
        if "random_abs_dz_p95" in r:
            control = f"\nrandom directions: |d_z| p95 {r['random_abs_dz_p95']:.2f} (n={r['n_random']}): " + (
                "beats it" if r["beats_random"] else "does NOT beat it"
            )
        ax.set_title(
            f"{trait}, layer {r['layer']}, {r['position']}\nn={r['n']} questions, d_z {r['cohens_dz']:.2f} "
            f"[{r['dz_ci_low']:.2f}, {r['dz_ci_high']:.2f}], p_adj {r['p_adjusted']:.3g}{control}",
            fontsize=9,
        )
        ax.set_xlabel("variant")
        ax.set_ylabel("mean score per question (projection units)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
