"""The steering sweep against its control: the trait's vector beside a random direction of the same norm.

Adding anything of norm ``c x mean activation norm`` to the residual stream changes what a model says; a judged rise
in the trait (or a fall in coherence) means something only where a random direction added at the same coefficient,
layer and site does not do the same. :func:`versus_random` compares the two per coefficient.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

TRAIT, RANDOM = "trait", "random"
"""Values of the sweep table's ``vector`` column: the trait's vector, or the same-norm random direction."""


def versus_random(table: pd.DataFrame, alpha: float = 0.05) -> dict[str, Any]:
    """Per nonzero coefficient at the control's layer: the mean judged trait score and coherence of the trait's
    vector and of the random direction, their difference, and a one-sided Mann-Whitney U test (scipy) that the trait
    vector raises the trait score more than the random direction does. ``raises_beyond_random``: at some coefficient
    the difference is positive with p below ``alpha`` (not corrected for the number of coefficients; they are few and
    reported one by one)."""
    rand = table[table["vector"] == RANDOM]
    if rand.empty:
        return {"coefficients": [], "raises_beyond_random": None, "layer": None}
    layer = int(rand["layer"].iloc[0])
    trait = table[(table["vector"] == TRAIT) & (table["layer"] == layer)]
    rows: list[dict[str, Any]] = []
    for coef in sorted(c for c in rand["coef"].unique() if c != 0):
        t, r = trait[trait["coef"] == coef], rand[rand["coef"] == coef]
        if t.empty:
            continue
        test = sps.mannwhitneyu(t["trait_score"], r["trait_score"], alternative="greater")
        rows.append(
            {
                "coef": float(coef),
                "trait_score": float(t["trait_score"].mean()),
                "random_trait_score": float(r["trait_score"].mean()),
                "difference": float(t["trait_score"].mean() - r["trait_score"].mean()),
                "mannwhitney_p": float(test.pvalue) if np.isfinite(test.pvalue) else None,
                "coherence": float(t["coherence"].mean()),
                "random_coherence": float(r["coherence"].mean()),
                "n": int(len(t)),
            }
        )
    beats = any(r["difference"] > 0 and r["mannwhitney_p"] is not None and r["mannwhitney_p"] < alpha for r in rows)
    return {
        "layer": layer,
        "alpha": alpha,
        "coefficients": rows,
        "raises_beyond_random": beats,
        "definitions": {
            "random_*": "the same, with a seeded random unit direction added at the same coefficient, layer and site "
            "(the same norm: coefficient x the mean activation norm there)",
            "mannwhitney_p": "one-sided Mann-Whitney U test: the trait vector's judged trait scores above the random "
            "direction's, on the same prompts",
            "raises_beyond_random": f"some coefficient's difference is positive with p < {alpha}",
        },
    }


def finding_line(summary: dict[str, Any]) -> str:
    """One line: at the largest coefficient, the trait score and coherence of the vector against the random one."""
    rows = summary["coefficients"]
    if not rows:
        return "no random-direction control in this sweep"
    top = rows[-1]
    p = top["mannwhitney_p"]
    return (
        f"at coefficient {top['coef']:g} (layer {summary['layer']}, n={top['n']}): judged trait "
        f"{top['trait_score']:.0f} vs {top['random_trait_score']:.0f} for a same-norm random direction "
        f"(p={'n/a' if p is None else f'{p:.2g}'}), coherence {top['coherence']:.0f} vs {top['random_coherence']:.0f}"
    )
