"""The toy experiment's analysis (imported by its script only, so that start-up stays light)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def summarise(scores: pd.DataFrame, random: dict[str, np.ndarray], method: str) -> dict[str, Any]:
    """Per trait: the mean pooled score (last token) at its layer, and the 95th percentile of the same mean along each
    random direction."""
    out = {}
    for trait, rows in scores[(scores["method"] == method) & (scores["position"] == "last")].groupby("trait"):
        mean = float(rows["score"].mean())
        p95 = float(np.percentile(random[str(trait)].mean(axis=0), 95))
        out[str(trait)] = {"mean": mean, "random_mean_p95": p95, "beats_random": mean > p95, "n": int(len(rows))}
    return {"traits": out}
