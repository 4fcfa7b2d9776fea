"""The persona-vectors filter: only instruction/question pairs whose answers show the trait as instructed enter
extraction.

Each generated answer of a persona trait is judged twice (0-100): how strongly it shows the trait, and how
coherent it is. A pair (instruction pair ``p``, question ``q``: rows ``pos-p<p>-q<q>`` and ``neg-p<p>-q<q>``) is kept
when its positive answer scores at least ``min_trait_pos``, its negative answer at most ``max_trait_neg``, and both
at least ``min_coherence``; an answer the judge could not score drops its pair. Both rows of a dropped pair leave
extraction, so the classes stay paired question by question.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .judge import Judge
from .specs import FilterSettings


def pair_of(row_id: str) -> str:
    """``pos-p0-q03`` -> ``p0-q03``."""
    return row_id.split("-", 1)[1]


def judge_answers(
    judge: Judge, table: pd.DataFrame, responses: pd.DataFrame, trait_word: str, description: str
) -> pd.DataFrame:
    """Trait and coherence scores of every generated answer (one row per prompt row)."""
    merged = table[["id", "prompt", "label"]].merge(responses[["id", "response"]], on="id", how="left")
    items = [
        {"question": q, "answer": a or "", "trait": trait_word, "description": description}
        for q, a in zip(merged["prompt"], merged["response"])
    ]
    scores = judge.score(items)
    return pd.DataFrame(
        {
            "id": merged["id"],
            "label": merged["label"].astype(int),
            "pair": merged["id"].map(pair_of),
            "trait_score": scores["trait_score"].astype(float),
            "coherence": scores["coherence"].astype(float),
            "judge_model": scores["judge_model"],
        }
    )


def filter_pairs(judged: pd.DataFrame, settings: FilterSettings) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``judged`` with a ``keep`` column, and the counts of kept and dropped pairs by reason."""
    j = judged.copy()
    unscored = j["trait_score"].isna() | j["coherence"].isna()
    coherent = j["coherence"] >= settings.min_coherence
    shows = np.where(
        j["label"] == 1, j["trait_score"] >= settings.min_trait_pos, j["trait_score"] <= settings.max_trait_neg
    )
    j["row_passes"] = ~unscored & coherent & shows
    per_pair = j.groupby("pair").agg(n=("id", "size"), passes=("row_passes", "all"))
    kept = set(per_pair.index[(per_pair["n"] == 2) & per_pair["passes"]])
    j["keep"] = j["pair"].isin(kept)
    pos, neg = j[j["label"] == 1].set_index("pair"), j[j["label"] == 0].set_index("pair")
    counts = {
        "pairs": int(len(per_pair)),
        "kept_pairs": len(kept),
        "dropped_pairs": int(len(per_pair) - len(kept)),
        "dropped_unscored": int(j.loc[unscored, "pair"].nunique()),
        "dropped_pos_without_trait": int((pos["trait_score"] < settings.min_trait_pos).sum()),
        "dropped_neg_with_trait": int((neg["trait_score"] > settings.max_trait_neg).sum()),
        "dropped_incoherent": int(j.loc[~unscored & ~coherent, "pair"].nunique()),
        "thresholds": settings._asdict(),
        "judge_model": str(j["judge_model"].iloc[0]) if len(j) else None,
        "note": "a pair can fail for several reasons; dropped_pairs counts each pair once",
    }
    return j.drop(columns="row_passes"), counts
