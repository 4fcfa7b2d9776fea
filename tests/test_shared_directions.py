"""Shared directions on planted activations and judged scores: the directions are exact mean differences, a shared
shift is found and a control's is not, the layer is chosen on organisms only, and the transfer cells are the paired
differences of the judged scores; the config checks are one line each."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import assert_config_error, organism_config

from traitscope.experiments.shared_directions import analysis as sd

D, N = 24, 40


def planted(
    seed: int = 0,
) -> tuple[tuple[list[str], dict[int, np.ndarray]], dict[str, tuple[list[str], dict[int, np.ndarray]]], np.ndarray]:
    """Base activations at layers 0 and 1; organisms a and b shift along one direction at layer 1 (and along their own
    at layer 0); the control shifts along an orthogonal one. The organisms hold the base's prompts in another order."""
    rng = np.random.default_rng(seed)
    shared = np.zeros(D)
    shared[0] = 1.0
    own_a, own_b, ctrl = np.eye(D)[1], np.eye(D)[2], np.eye(D)[3]
    ids = [f"p{i}" for i in range(N)]
    base = {layer: rng.standard_normal((N, D)).astype(np.float32) for layer in (0, 1)}

    def organism(shift0: np.ndarray, shift1: np.ndarray) -> tuple[list[str], dict[int, np.ndarray]]:
        order = rng.permutation(N)
        acts = {
            0: base[0] + 3 * shift0 + 0.1 * rng.standard_normal((N, D)),
            1: base[1] + 3 * shift1 + 0.1 * rng.standard_normal((N, D)),
        }
        return [ids[i] for i in order], {k: v[order].astype(np.float32) for k, v in acts.items()}

    orgs = {"a": organism(own_a, shared), "b": organism(own_b, shared), "ctrl": organism(ctrl, ctrl)}
    return (ids, base), orgs, shared


def test_directions_are_the_mean_differences_and_a_shared_shift_beats_random_and_the_control():
    base, orgs, shared = planted()
    dirs, reliability, n = sd.fit_directions(base, orgs, [0, 1], seed=3)
    assert n == N
    ids_a, acts_a = orgs["a"]
    order = [ids_a.index(i) for i in base[0]]
    expected = (acts_a[1][order].astype(np.float64).mean(0) - base[1][1].astype(np.float64).mean(0)).astype(np.float32)
    np.testing.assert_array_equal(dirs["a"][1], expected)
    p95 = sd.random_cosine_p95(D, 500, seed=0)
    table = sd.cosine_table(dirs, ["a", "b"], ["ctrl"], p95)
    at1 = table[table["layer"] == 1].set_index(["a", "b"])
    assert at1.loc[("a", "b"), "cosine"] > 0.95 and at1.loc[("a", "b"), "beats_random"]
    assert at1.loc[("a", "b"), "kind"] == "organisms" and at1.loc[("a", "ctrl"), "kind"] == "control"
    assert abs(at1.loc[("a", "ctrl"), "cosine"]) < p95 and not at1.loc[("a", "ctrl"), "beats_random"]
    assert sd.cosine(dirs["a"][1], shared) > 0.95
    assert min(reliability["a"][1], reliability["b"][1]) > 0.95
    # isotropic random pairs in 24 dims: |cos| 95th percentile near 1.96 / sqrt(24)
    assert 0.3 < p95 < 0.5
    chosen = sd.choose_layer(table, "best")
    assert chosen["layer"] == 1 and chosen["mean_cosine"] == pytest.approx(at1.loc[("a", "b"), "cosine"])
    assert sd.choose_layer(table, 0)["layer"] == 0


def test_the_layer_is_chosen_on_organisms_only():
    table = pd.DataFrame(
        [
            {"layer": 0, "a": "a", "b": "b", "kind": "organisms", "cosine": 0.2, "random_p95": 0.1},
            {"layer": 1, "a": "a", "b": "b", "kind": "organisms", "cosine": 0.5, "random_p95": 0.1},
            {"layer": 0, "a": "a", "b": "c", "kind": "control", "cosine": 0.9, "random_p95": 0.1},
            {"layer": 1, "a": "a", "b": "c", "kind": "control", "cosine": 0.1, "random_p95": 0.1},
        ]
    )
    assert sd.choose_layer(table, "best")["layer"] == 1


def answers(scores: dict[str, list[float]]) -> pd.DataFrame:
    rows = [
        {"condition": cond, "id": f"q{i}", "prompt": f"question {i}", "response": "r", "trait_score": s}
        for cond, values in scores.items()
        for i, s in enumerate(values)
    ]
    return pd.DataFrame(rows)


def test_transfer_cells_are_paired_differences_against_own_answers_and_a_random_direction():
    own = [80.0, 70.0, 90.0, 60.0, 75.0]
    by_model = {
        "base": answers(
            {
                "own": [10.0, 20.0, 15.0, 5.0, 10.0],
                "steer a": [60.0, 70.0, 55.0, 65.0, 50.0],
                "steer random@a": [12.0, 18.0, 16.0, 6.0, 9.0],
                "steer b": [11.0, 21.0, 14.0, 6.0, 10.0],
                "steer random@b": [10.0, 20.0, 15.0, 5.0, 11.0],
            }
        ),
        "a": answers(
            {
                "own": own,
                "ablate a": [10.0, 5.0, 20.0, 8.0, 12.0],
                "ablate b": [20.0, 15.0, 25.0, 10.0, 18.0],
                "ablate random": [79.0, 72.0, 88.0, 61.0, 74.0],
            }
        ),
        "b": answers(
            {
                "own": own,
                "ablate a": [70.0, 61.0, 80.0, 49.0, 66.0],  # about as much lower as a random direction
                "ablate b": [9.0, 8.0, 12.0, 7.0, 10.0],
                "ablate random": [71.0, 59.0, 81.0, 51.0, 65.0],
            }
        ),
    }
    cells, steering = sd.transfer(by_model, "base", ["a", "b"], n_boot=200, seed=0)
    cell = {(c["model"], c["direction"]): c for c in cells}
    ab = cell[("a", "b")]
    assert ab["own"] == pytest.approx(np.mean(own))
    assert ab["change"] == pytest.approx(np.mean(np.subtract([20.0, 15.0, 25.0, 10.0, 18.0], own)))
    assert ab["random_change"] == pytest.approx(np.mean(np.subtract([79.0, 72.0, 88.0, 61.0, 74.0], own)))
    assert ab["beats_random"] and ab["minus_random_ci"][1] < 0
    assert cell[("b", "a")]["change"] < -9 and not cell[("b", "a")]["beats_random"]  # no more than random
    steer = {s["direction"]: s for s in steering}
    assert steer["a"]["beats_random"] and steer["a"]["change"] == pytest.approx(48.0)
    assert not steer["b"]["beats_random"]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda s: s.update(controls=["bad_advice"]), "shared_directions.controls: ['bad_advice'] are also organisms"),
        (lambda s: s.update(organisms=["bad_advice", "nope"]), "shared_directions.organisms: unknown variant 'nope'"),
        (
            lambda s: s.update(organisms=["bad_advice", "base"]),
            "shared_directions.organisms: 'base' must be 'base' plus",
        ),
        (lambda s: s.update(layer=9), "shared_directions.layer: 9 is neither 'best' nor one of"),
        (lambda s: s.update(test="nope"), "shared_directions.test: unknown prompt set 'nope'"),
        (lambda s: s.update(organisms=["bad_advice"]), "shared_directions.organisms"),
    ],
)
def test_bad_sections_are_one_line_errors(tiny_model_dir, edit, expected):
    cfg = organism_config(tiny_model_dir)
    edit(cfg["shared_directions"])
    assert_config_error(cfg, expected)
