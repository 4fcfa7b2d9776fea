"""Emergent misalignment: does a variant score higher than the base on the same benign prompts?

Both variants are captured on a *replay* prompt set (every row carries the base's generated response), so
they are scored on identical tokens and text differences cannot drive the comparison. For each trait the
pooled score at its best layer is averaged over the paraphrases of each question (the question is the
unit, paraphrases are not independent), then compared with a paired t-test and Cohen's d_z with 95% CIs;
p-values are corrected across traits (statsmodels ``multipletests``).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from .project import at_layer
from .stats import correct_pvalues, paired_comparison


def pooled_scores(frames: dict[str, pd.DataFrame], prompts: pd.DataFrame, best: dict[str, int], positions: dict[str, str],
                  method: str) -> pd.DataFrame:
    """Long table: variant, trait, layer, position, id, group, score (one pooled score per prompt)."""
    groups = prompts.set_index("id")["group"]
    out = []
    for variant, df in frames.items():
        for trait, layer in best.items():
            sel = at_layer(df, trait, layer, method)
            sel = sel[sel["position"] == positions[trait]]
            out.append(sel.assign(variant=variant, group=sel["id"].map(groups)))
    return pd.concat(out, ignore_index=True)


def compare_variants(scores: pd.DataFrame, *, base: str, variant: str, correction: str, alpha: float, n_boot: int,
                     seed: int) -> tuple[dict[str, Any], pd.DataFrame]:
    """Per trait: paired test of per-question mean scores, variant vs base; corrected across traits."""
    per_q = scores.groupby(["trait", "variant", "group"])["score"].mean().reset_index()
    rows = []
    for trait, d in per_q.groupby("trait"):
        wide = d.pivot(index="group", columns="variant", values="score").dropna()
        res = paired_comparison(wide[variant].to_numpy(), wide[base].to_numpy(), n_boot=n_boot, seed=seed)
        sel = scores[scores["trait"] == trait]
        rows.append({"trait": trait, "layer": int(sel["layer"].iloc[0]), "position": sel["position"].iloc[0],
                     "n_prompts": int(sel["id"].nunique()), **res})
    table = pd.DataFrame(rows)
    adj, reject = correct_pvalues(table["p"].tolist(), correction, alpha)
    table["p_adjusted"], table["significant"] = adj, reject
    result: dict[str, Any] = {
        "base": base, "variant": variant, "unit": "question (mean over its paraphrases)",
        "test": "paired t-test (scipy.stats.ttest_rel), variant minus base",
        "effect_size": "Cohen's d_z = mean difference / SD of differences, 95% percentile bootstrap CI over questions",
        "correction": {"method": correction, "alpha": alpha, "family": "all traits"},
        "traits": {r["trait"]: {k: v for k, v in r.items() if k != "trait"} for r in table.to_dict(orient="records")},
    }
    return result, per_q
