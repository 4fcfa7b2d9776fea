"""The judged persona filter: which pairs pass, the counts by reason, and extraction without the dropped pairs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from test_extract_project import planted

from traitscope.core.artifacts import ActivationShard
from traitscope.core.extract import extract_trait
from traitscope.core.persona_filter import filter_pairs, pair_of
from traitscope.core.specs import ExtractJob
from traitscope.study import section

FILTER = section("extract", {"filter": {"min_trait_pos": 60, "max_trait_neg": 40, "min_coherence": 50}}).filter


def judged(rows):
    return pd.DataFrame(
        [
            {
                "id": i,
                "label": int(i.startswith("pos")),
                "pair": pair_of(i),
                "trait_score": t,
                "coherence": c,
                "judge_model": "m",
            }
            for i, t, c in rows
        ]
    )


def test_a_pair_passes_only_when_both_answers_do():
    table = judged(
        [
            ("pos-p0-q00", 80, 90),
            ("neg-p0-q00", 10, 90),  # kept
            ("pos-p0-q01", 50, 90),
            ("neg-p0-q01", 10, 90),  # positive answer does not show the trait
            ("pos-p0-q02", 80, 90),
            ("neg-p0-q02", 70, 90),  # negative answer shows it
            ("pos-p0-q03", 80, 20),
            ("neg-p0-q03", 10, 90),  # incoherent
            ("pos-p0-q04", np.nan, 90),
            ("neg-p0-q04", 10, 90),  # not scored
            ("pos-p1-q00", 60, 50),
            ("neg-p1-q00", 40, 50),  # exactly at the thresholds: kept
        ]
    )
    out, counts = filter_pairs(table, FILTER)
    assert sorted(out.loc[out["keep"], "pair"].unique()) == ["p0-q00", "p1-q00"]
    assert out.groupby("pair")["keep"].nunique().max() == 1  # both rows of a pair share the decision
    assert counts["pairs"] == 6 and counts["kept_pairs"] == 2 and counts["dropped_pairs"] == 4
    assert (
        counts["dropped_pos_without_trait"],
        counts["dropped_neg_with_trait"],
        counts["dropped_incoherent"],
        counts["dropped_unscored"],
    ) == (1, 1, 1, 1)
    assert counts["thresholds"] == {"min_trait_pos": 60, "max_trait_neg": 40, "min_coherence": 50}


def test_extraction_leaves_out_the_dropped_pairs_and_says_so():
    tensors, table, _ = planted()
    job = ExtractJob(
        methods=("mean_diff",),
        test_fraction=0.25,
        selection_folds=3,
        probe_C=1.0,
        selection_method="mean_diff",
        random_directions=20,
    )
    shard = ActivationShard(tensors, {"ids": table["id"].tolist(), "layers": [0, 1, 2], "positions": ["last"]})
    kwargs = dict(trait="t/x", variant="v", model="m", layers=[0, 1, 2], position="last", seed=0)
    drop = set(table.loc[table["group"].isin(["q0", "q1", "q2"]), "id"])  # three questions' rows
    out, _ = extract_trait(shard, table, job, drop_ids=drop, filter_info={"kept_pairs": 37}, **kwargs)
    split = out.info["split"]
    assert split["n_train"] + split["n_test"] == len(table) - len(drop) and split["n_dropped_by_filter"] == len(drop)
    assert not {"q0", "q1", "q2"} & set(split["train_groups"] + split["test_groups"])
    assert out.info["filter"] == {"kept_pairs": 37}
    # the vector is fit without them: dropping other rows gives another vector
    full, _ = extract_trait(shard, table, job, **kwargs)
    assert not torch.equal(full.get("mean_diff", 2), out.get("mean_diff", 2))
    keep_one_class = set(table.loc[table["label"] == 1, "id"])
    with pytest.raises(ValueError, match="single class.*extract.filter"):
        extract_trait(shard, table, job, drop_ids=keep_one_class, **kwargs)
