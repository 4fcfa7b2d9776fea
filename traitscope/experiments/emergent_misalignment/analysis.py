"""Analysis and figures of the emergent misalignment experiment (the experiment itself: ``__init__``)."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ...core import planted
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


def random_control(differences: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Per trait: the 95th percentile of |Cohen's d_z| over the random directions' per-question differences
    (:func:`random_differences`: variant minus base, the same directions in both variants)."""
    return {
        trait: {"random_abs_dz_p95": _abs_p95(diff), "n_random": int(diff.shape[1])}
        for trait, diff in differences.items()
    }


def _abs_p95(diff: np.ndarray) -> float:
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.nanpercentile(np.abs(paired_dz(diff, axis=0)), 95))


def random_differences(
    baselines: dict[str, Any],
    prompts: pd.DataFrame,
    best: dict[str, int],
    positions: dict[str, str],
    sites: dict[str, str],
    *,
    base: str,
    variant: str,
) -> dict[str, np.ndarray]:
    """Per trait: ``[questions, R]`` per-question mean differences (variant minus base) of every random direction,
    questions in sorted order (the order of :func:`compare_variants`' pivot)."""
    groups = prompts.assign(id=prompts["id"].astype(str)).set_index("id")["group"]
    out: dict[str, np.ndarray] = {}
    for trait, layer in best.items():
        per_question = {}
        for v in (base, variant):
            b = baselines[v]
            x = pd.DataFrame(b.pooled(layer, positions[trait], sites[trait]), index=[str(i) for i in b.ids])
            per_question[v] = x.groupby(x.index.map(groups.to_dict())).mean()
        common = per_question[base].index.intersection(per_question[variant].index).sort_values()
        out[trait] = per_question[variant].loc[common].to_numpy() - per_question[base].loc[common].to_numpy()
    return out


def sensitivity(
    per_question: pd.DataFrame,
    random_diff: dict[str, np.ndarray],
    result: dict[str, Any],
    units: dict[str, dict[str, Any]],
    *,
    coefficients: tuple[float, ...] = planted.COEFFICIENTS,
) -> dict[str, dict[str, Any]]:
    """The positive control of each trait's comparison: the variant's activations at the trait's layer plus
    ``coef x norm`` of a planted unit vector (:mod:`traitscope.core.planted`: exact for fixed tokens), the same test
    re-run: the paired t-test's p corrected with the other traits' real p-values (the study's correction), d_z, and
    the random directions' |d_z| 95th percentile, all on the shifted scores. ``units[trait]``: ``norm`` (mean
    activation norm at the layer and site), ``trait`` (the scored unit vector), ``randoms`` (the baseline's unit
    directions, ``[R, d]``) and ``planted_random`` (the control vector). Detected: significant and beyond random,
    the experiment's own criterion."""
    from scipy import stats as sps

    correction, alpha = result["correction"]["method"], result["correction"]["alpha"]
    traits = list(result["traits"])
    real_p = [result["traits"][t]["p"] for t in traits]
    out: dict[str, dict[str, Any]] = {}
    for trait in traits:
        if trait not in random_diff or trait not in units:
            continue
        u = units[trait]
        d = per_question[per_question["trait"] == trait].pivot(index="group", columns="variant", values="score")
        diff = (d[result["variant"]] - d[result["base"]]).dropna().sort_index()
        rdiff = random_diff[trait]
        if len(diff) != len(rdiff):
            continue  # a question missing on one side in one table only: no like-for-like control
        rows = []
        for what in planted.PLANTED:
            vector = u["trait"] if what == "trait" else u["planted_random"]
            for coef in coefficients:
                s, rs = planted.shifts(vector, u["trait"], u["randoms"], coef=coef, norm=u["norm"])
                shifted, rshifted = diff.to_numpy() + s, rdiff + rs[None, :]
                p = float(sps.ttest_1samp(shifted, 0.0).pvalue)
                family = [p if t == trait else q for t, q in zip(traits, real_p)]
                adjusted, reject = correct_pvalues(family, correction, alpha)
                i = traits.index(trait)
                dz = float(paired_dz(shifted))
                p95 = _abs_p95(rshifted)
                rows.append(
                    {
                        "planted": what,
                        "coef": coef,
                        "score_shift": s,
                        "cohens_dz": dz,
                        "p_adjusted": adjusted[i],
                        "random_abs_dz_p95": p95,
                        "detected": bool(reject[i] and abs(dz) > p95),
                    }
                )
        out[trait] = {
            "norm": float(u["norm"]),
            "n_questions": int(len(diff)),
            "detection_limit": planted.detection_limit(rows, "trait"),
            "random_detected_at": planted.detection_limit(rows, "random"),
            "rows": rows,
        }
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


def planted_line(sens: dict[str, Any]) -> str:
    """What the positive control says, in a few words: the smallest planted coefficient the test detects, with its
    d_z, or that none up to the largest was."""
    limit = sens["detection_limit"]
    if limit is None:
        top = max(r["coef"] for r in sens["rows"])
        return f"planted trait vector: not detected up to {top:g} x norm"
    row = next(r for r in sens["rows"] if r["planted"] == "trait" and r["coef"] == limit)
    return f"would detect a planted shift of {limit:g} x norm (d_z {row['cohens_dz']:.2f})"


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
        sens = result.get("sensitivity", {}).get(trait)
        if sens is not None:
            control += "\n" + planted_line(sens)
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
