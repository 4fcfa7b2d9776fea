"""Planted effects: a known vector added to one side's activations, exactly as a forward hook would, and the
positive control of the emergent-misalignment comparison built on it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps

from traitscope.core import planted
from traitscope.core.methods import random_directions


def test_a_planted_vector_moves_the_layers_activations_by_exactly_itself(tiny_model):
    """The equivalence planted effects rest on: a steering hook at block L's output moves every token's activation at
    L by coef x norm x u and leaves every earlier block as it was, so a projection at L moves by coef x norm x (u.v)."""
    from traitscope.core.hooks import SiteCapture
    from traitscope.core.steering import Steer

    model, tok = tiny_model
    ids = tok(["the cat sat on the mat", "hello there"], return_tensors="pt", padding=True)
    layer, coef, norm = 1, 0.3, 7.0
    u = torch.nn.functional.normalize(torch.randn(model.config.hidden_size), dim=0)

    def run(steer: bool) -> dict:
        with torch.no_grad(), Steer(model, layer, u, coef * norm if steer else 0.0):
            with SiteCapture(model, [layer - 1, layer, layer + 1], reduce=lambda s, la, h: h.clone()) as cap:
                model(**ids)
        return {la: cap.outputs[("resid", la)] for la in (layer - 1, layer, layer + 1)}

    plain, steered = run(False), run(True)
    torch.testing.assert_close(steered[layer - 1], plain[layer - 1])  # the block before: untouched
    torch.testing.assert_close(steered[layer] - plain[layer], (coef * norm * u).expand_as(plain[layer]))
    assert not torch.allclose(steered[layer + 1] - plain[layer + 1], (coef * norm * u).expand_as(plain[layer]))
    trait = torch.nn.functional.normalize(torch.randn(model.config.hidden_size), dim=0).double().numpy()
    s, _ = planted.shifts(u.double().numpy(), trait, trait[None, :], coef=coef, norm=norm)
    moved = (steered[layer] - plain[layer]).double().numpy() @ trait
    np.testing.assert_allclose(moved, s, atol=1e-5)


def _comparison(n_q: int = 20, dim: int = 1024, n_random: int = 100, seed: int = 0):
    """A null comparison: per-question scores of base and variant that differ by noise only, along the trait and
    along random directions."""
    from traitscope.experiments.emergent_misalignment.analysis import compare_variants

    rng = np.random.default_rng(seed)
    groups = [f"q{i:02d}" for i in range(n_q)]
    rows = []
    for trait in ("safety/evil", "safety/harm"):
        for v in ("base", "tuned"):
            rows += [
                {"trait": trait, "variant": v, "group": g, "id": g, "layer": 2, "position": "mean", "score": x}
                for g, x in zip(groups, rng.normal(0, 1, n_q))
            ]
    scores = pd.DataFrame(rows)
    result, per_q = compare_variants(
        scores, base="base", variant="tuned", correction="holm", alpha=0.05, n_boot=200, seed=0
    )
    trait_unit = np.eye(dim)[0]
    randoms = random_directions(n_random, dim, 5).astype(np.float64)
    diffs = {t: rng.normal(0, np.sqrt(2), (n_q, n_random)) for t in result["traits"]}  # as noisy as the trait
    units = {
        t: {"norm": 10.0, "trait": trait_unit, "randoms": randoms, "planted_random": planted.planted_random(dim, 0)}
        for t in result["traits"]
    }
    return result, per_q, diffs, units


def test_the_positive_control_finds_the_planted_trait_vector_and_not_a_random_one():
    from traitscope.experiments.emergent_misalignment.analysis import sensitivity

    result, per_q, diffs, units = _comparison()
    sens = sensitivity(per_q, diffs, result, units)
    s = sens["safety/evil"]
    own = [r for r in s["rows"] if r["planted"] == "trait"]
    assert [r["coef"] for r in own] == list(planted.COEFFICIENTS)
    assert not own[0]["detected"] and own[-1]["detected"]  # 0.005 x 10 is noise; a full norm is not
    limit = s["detection_limit"]
    assert limit is not None and all(r["detected"] for r in own if r["coef"] >= limit)  # monotone here
    # each row is the same test on shifted scores: recomputed by hand
    wide = per_q[per_q["trait"] == "safety/evil"].pivot(index="group", columns="variant", values="score")
    row = next(r for r in own if r["coef"] == limit)
    shifted = (wide["tuned"] - wide["base"]).to_numpy() + limit * 10.0
    assert row["score_shift"] == pytest.approx(limit * 10.0)
    assert row["cohens_dz"] == pytest.approx(shifted.mean() / shifted.std(ddof=1))
    other_p = result["traits"]["safety/harm"]["p"]
    p = sps.ttest_1samp(shifted, 0).pvalue
    assert row["p_adjusted"] == pytest.approx(min(1.0, max(min(p, other_p) * 2, p)))  # holm with the other trait
    rshift = units["safety/evil"]["randoms"] @ (limit * 10.0 * units["safety/evil"]["trait"])
    rd = diffs["safety/evil"] + rshift[None, :]
    p95 = np.percentile(np.abs(rd.mean(0) / rd.std(0, ddof=1)), 95)
    assert row["random_abs_dz_p95"] == pytest.approx(p95)
    # the planted random vector barely touches the trait's score: never detected as the trait
    assert s["random_detected_at"] is None
    assert all(abs(r["score_shift"]) < 0.4 * 10.0 * r["coef"] + 1e-9 for r in s["rows"] if r["planted"] == "random")


def test_a_planted_shift_that_random_directions_share_is_not_a_detection():
    """Where every random direction moves as much as the trait (planted along all of them at once), the trait's
    shift is significant but not beyond random: not detected, as the experiment's own criterion says."""
    from traitscope.experiments.emergent_misalignment.analysis import sensitivity

    result, per_q, diffs, units = _comparison()
    for trait, u in units.items():  # every 'random' direction is the trait itself: its scores, its shifts
        u["randoms"] = np.tile(u["trait"], (len(u["randoms"]), 1))
        wide = per_q[per_q["trait"] == trait].pivot(index="group", columns="variant", values="score")
        diffs[trait] = np.tile((wide["tuned"] - wide["base"]).to_numpy()[:, None], (1, len(u["randoms"])))
    sens = sensitivity(per_q, diffs, result, units)
    assert sens["safety/evil"]["detection_limit"] is None
    assert any(r["p_adjusted"] < 0.05 for r in sens["safety/evil"]["rows"] if r["planted"] == "trait")


def test_a_planted_trigger_direction_is_found_before_any_output_and_a_random_one_is_not():
    from sklearn.metrics import roc_auc_score

    from traitscope.experiments.backdoor.analysis import planted_trigger

    rng = np.random.default_rng(3)
    dim, n_random = 1024, 100
    trait = np.eye(dim)[0]
    randoms = random_directions(n_random, dim, 9).astype(np.float64)
    unit = {"norm": 10.0, "trait": trait, "randoms": randoms, "planted_random": planted.planted_random(dim, 0)}
    trigger, control = rng.normal(0, 1, 30), rng.normal(0, 1, 30)  # no backdoor: the same distribution
    rt, rc = rng.normal(0, 1, (30, n_random)), rng.normal(0, 1, (30, n_random))
    out = planted_trigger(trigger, control, rt, rc, unit)
    own = [r for r in out["rows"] if r["planted"] == "trait"]
    assert not own[0]["detected"] and own[-1]["detected"] and out["random_detected_at"] is None
    limit = out["detection_limit"]
    row = next(r for r in own if r["coef"] == limit)
    y = np.r_[np.ones(30), np.zeros(30)]
    assert row["auc"] == pytest.approx(roc_auc_score(y, np.r_[trigger + limit * 10.0, control]))
    shifted = rt + (randoms @ (limit * 10.0 * trait))[None, :]
    p95 = np.percentile([roc_auc_score(y, np.r_[shifted[:, j], rc[:, j]]) for j in range(n_random)], 95)
    assert row["random_auc_p95"] == pytest.approx(p95) and row["auc"] > p95
    assert all(r["detected"] for r in own if r["coef"] >= limit)
