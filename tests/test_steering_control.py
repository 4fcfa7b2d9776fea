"""The steering sweep's control: a random direction of the same norm, compared per coefficient."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from traitscope.core.sweep import same_norm_random
from traitscope.experiments.steering.analysis import finding_line, versus_random


def test_the_random_control_has_the_vectors_norm_and_is_seeded():
    v = torch.randn(64, dtype=torch.float32) * 7
    r = same_norm_random(v, seed=3)
    assert r.shape == v.shape and r.dtype == v.dtype
    assert float(r.norm()) == pytest.approx(float(v.norm()), rel=1e-5)
    assert torch.equal(r, same_norm_random(v, seed=3)) and not torch.equal(r, same_norm_random(v, seed=4))
    assert abs(float(torch.nn.functional.cosine_similarity(r, v, dim=0))) < 0.5  # not the vector itself


def _table(trait_at_2: float, random_at_2: float, n: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for vector, top in (("trait", trait_at_2), ("random", random_at_2)):
        for coef, mean in ((0.0, 10.0), (2.0, top)):
            rows += [
                {"vector": vector, "layer": 3, "coef": coef, "trait_score": rng.normal(mean, 5), "coherence": 60.0}
                for _ in range(n)
            ]
    return pd.DataFrame(rows)


def test_a_rise_that_random_directions_share_is_not_steering():
    shared = versus_random(_table(trait_at_2=70, random_at_2=70))
    real = versus_random(_table(trait_at_2=70, random_at_2=12))
    assert shared["raises_beyond_random"] is False and real["raises_beyond_random"] is True
    row = real["coefficients"][0]
    assert row["coef"] == 2.0 and row["n"] == 12 and row["mannwhitney_p"] < 1e-3
    assert row["difference"] == pytest.approx(row["trait_score"] - row["random_trait_score"])
    want = f"judged trait {row['trait_score']:.0f} vs {row['random_trait_score']:.0f} for a same-norm random direction"
    assert want in finding_line(real) and row["random_trait_score"] < 20


def test_a_sweep_without_control_says_so():
    table = _table(50, 50)
    assert versus_random(table[table["vector"] == "trait"])["raises_beyond_random"] is None
