"""Layer choice by steering effect: candidates, training-split questions and the choice from a judged sweep."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import assert_config_error

from traitscope.core.layer_choice import candidate_layers, choose_by_steering, steering_effects, training_questions
from traitscope.study import section


def _metrics(layer: int, val_auc: float) -> dict:
    return {
        "val_auc": val_auc,
        "auc": 0.8,
        "cohens_d": 1.0,
        "beats_random": True,
        "auc_percentile": 99.0,
        "random_auc_p95": 0.6,
        "shuffled_auc": 0.5,
        "n_random": 100,
        "layer": layer,
    }


def _info() -> dict:
    vals = {0: 0.7, 1: 0.9, 2: 0.9, 3: 0.95, 4: 0.5}
    vectors = [
        {"method": m, "layer": k, "metrics": _metrics(k, v if m == "mean_diff" else 1 - v)}
        for m in ("mean_diff", "probe")
        for k, v in vals.items()
    ]
    best = {"layer": 3, "method": "mean_diff", "reason": "highest val_auc", "criterion": "auc"}
    split = {"train_groups": ["q0", "q1", "q2"], "test_groups": ["q3"]}
    return {"trait": "safety/x", "vectors": vectors, "best": best, "split": split}


def _sweep(rows: list[tuple[int, float, float, float]]) -> pd.DataFrame:
    """(layer, coef, trait, coherence) per setting, two prompts each with the given means."""
    out = []
    for layer, coef, trait, coh in rows:
        out += [{"layer": layer, "coef": coef, "trait_score": trait + d, "coherence": coh + d} for d in (-1, 1)]
    return pd.DataFrame(out)


def test_candidates_are_the_layers_of_highest_cross_validated_auc_of_the_selection_method():
    assert candidate_layers(_info(), 3) == [3, 1, 2]  # ties: the earlier layer first; probe's AUCs play no part
    assert candidate_layers(_info(), 10) == [3, 1, 2, 0, 4]


def test_questions_come_from_training_groups_only_negatives_first():
    table = pd.DataFrame(
        {"prompt": ["a", "b", "c", "a", "d"], "group": ["q0", "q1", "q3", "q0", "q2"], "label": [1, 0, 0, 0, 1]}
    )
    assert training_questions(table, _info(), 10) == ["b", "a", "d"]  # q3 is the test split's
    assert training_questions(table, _info(), 1) == ["b"]


CHOICE = section("extract", {"steering_layer_choice": {"coherence_floor": 50}}).steering_layer_choice


def test_the_layer_with_the_largest_coherent_trait_increase_is_chosen():
    table = _sweep(
        [
            (-1, 0, 10, 90),
            (3, 0.5, 20, 80),
            (3, 1.0, 70, 30),  # the largest increase is incoherent: +10 counts
            (1, 0.5, 40, 60),
            (1, 1.0, 35, 55),
        ]
    )  # +30 at 0.5
    info = choose_by_steering(_info(), table, CHOICE, "judge-x")
    best = info["best"]
    assert best["layer"] == 1 and best["coefficient"] == 0.5 and best["trait_delta"] == pytest.approx(30)
    assert best["auc_choice"]["layer"] == 3 and best["val_auc"] == 0.9  # layer 1's own held-out numbers
    assert "runner-up layer 3 (+10.0)" in best["reason"] and "judge-x" in best["criterion"]
    effects = steering_effects(table, 50).set_index(["layer", "coef"])
    assert not effects.loc[(3, 1.0), "kept"] and effects.loc[(3, 1.0), "trait_delta"] == pytest.approx(60)
    assert info["vectors"] == _info()["vectors"]  # nothing else of the sidecar changes


def test_ties_go_to_the_earlier_layer_and_no_coherent_setting_keeps_the_auc_choice():
    tie = _sweep([(-1, 0, 10, 90), (3, 1.0, 30, 80), (1, 1.0, 30, 80)])
    assert choose_by_steering(_info(), tie, CHOICE, "j")["best"]["layer"] == 1
    incoherent = _sweep([(-1, 0, 10, 90), (3, 1.0, 60, 20), (1, 1.0, 70, 10)])
    best = choose_by_steering(_info(), incoherent, CHOICE, "j")["best"]
    assert best["layer"] == 3 and best["reason"].startswith("no steered setting kept mean coherence >= 50")


def test_steering_layer_choice_is_off_by_default_and_validated(small_config):
    assert section("extract", {}).steering_layer_choice is None
    small_config["extract"]["steering_layer_choice"] = {"coherence_floor": 150}
    assert_config_error(small_config, "extract.steering_layer_choice.coherence_floor")
