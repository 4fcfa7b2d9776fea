"""Analysis and figures of the emergent misalignment experiment (the experiment itself: ``__init__``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ...core.plots import trait_panels
from ...core.stats import correct_pvalues, paired_comparison, paired_dz


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
