"""Training trajectory on planted activations and scores: the direction is the exact mean difference at the layer
that separates most, each step's mean comes with scipy's t interval, the steepest interval is named, random
directions are the control; checkpoint variants are added at start-up and bad sections are one-line errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import assert_config_error, organism_config
from scipy import stats

from traitscope.experiments.trajectory import analysis as tr

D, N = 16, 30


def planted(seed: int = 0) -> tuple[tuple[list[str], dict[int, np.ndarray]], tuple[list[str], dict[int, np.ndarray]]]:
    """Base activations at layers 0 and 1; the finetune shifts them by 3 along axis 0 at layer 1 and by 0.3 at layer
    0, holding the prompts in another order."""
    rng = np.random.default_rng(seed)
    ids = [f"p{i}" for i in range(N)]
    base = {layer: rng.standard_normal((N, D)).astype(np.float32) for layer in (0, 1)}
    shift = np.eye(D)[0]
    order = rng.permutation(N)
    fin = {0: base[0] + 0.3 * shift + 0.1 * rng.standard_normal((N, D)), 1: base[1] + 3 * shift}
    return (ids, base), ([ids[i] for i in order], {k: v[order].astype(np.float32) for k, v in fin.items()})


def test_the_direction_is_the_mean_difference_at_the_layer_that_separates_most():
    base, fin = planted()
    dirs, chosen = tr.fit_direction(base, fin, "best")
    order = [fin[0].index(i) for i in base[0]]
    expected = fin[1][1][order].astype(np.float64).mean(0) - base[1][1].astype(np.float64).mean(0)
    np.testing.assert_array_equal(dirs[1], expected.astype(np.float32))
    assert chosen["layer"] == 1 and chosen["n_train"] == N
    assert chosen["separation"]["1"] > chosen["separation"]["0"] > 0
    assert tr.fit_direction(base, fin, 0)[1]["layer"] == 0
    with pytest.raises(ValueError, match="share 0 train prompt ids"):
        tr.fit_direction(base, ([f"q{i}" for i in range(N)], fin[1]), "best")


def test_each_step_is_a_mean_with_scipys_t_interval_and_the_steepest_interval_is_named():
    rng = np.random.default_rng(1)
    means = {0: 0.0, 10: 0.5, 20: 3.0, 30: 3.2}  # the jump is between steps 10 and 20
    scores = pd.concat(
        [
            pd.DataFrame(
                {
                    "id": [f"p{i}" for i in range(12)],
                    "measure": "organism direction",
                    "score": m + rng.normal(0, 0.1, 12),
                }
            ).assign(step=s, variant=f"v{s}")
            for s, m in means.items()
        ],
        ignore_index=True,
    )
    judged = pd.concat(
        [
            pd.DataFrame({"id": ["p0", "p1", "p2"], "trait_score": [j, j + 10, j + 20]}).assign(step=s, variant=f"v{s}")
            for s, j in {0: 10.0, 10: 50.0, 20: 55.0, 30: 60.0}.items()
        ],
        ignore_index=True,
    )
    summary = tr.summarise(scores, judged)
    row = summary[(summary["measure"] == "organism direction") & (summary["step"] == 20)].iloc[0]
    x = scores[(scores["step"] == 20)]["score"].to_numpy()
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert (row["mean"], row["ci_low"], row["ci_high"], row["n"]) == pytest.approx((x.mean(), lo, hi, 12))
    steep = tr.steepest(summary, "organism direction")
    at = summary[summary["measure"] == "organism direction"].set_index("step")["mean"]
    assert (steep["from"], steep["to"]) == (10, 20) and steep["per_step"] == pytest.approx((at[20] - at[10]) / 10)
    judged_steep = tr.steepest(summary, "judged misalignment")
    assert (judged_steep["from"], judged_steep["to"]) == (0, 10) and judged_steep["change"] == pytest.approx(40.0)
    assert tr.mean_ci(np.array([2.0]))[0] == 2.0 and np.isnan(tr.mean_ci(np.array([2.0]))[1])


def test_a_shift_the_direction_carries_beats_random_directions():
    rng = np.random.default_rng(2)
    ids = [f"p{i}" for i in range(20)]
    first = pd.DataFrame(rng.normal(0, 1, (20, 100)), index=ids)
    last = first + rng.normal(0, 0.1, (20, 100))  # random directions barely move
    moved = tr.random_control(first, last, diff=np.full(20, 2.0) + rng.normal(0, 0.1, 20))
    assert moved["beats_random"] and moved["n_random"] == 100 and moved["change"] == pytest.approx(2.0, abs=0.1)
    assert moved["random_abs_change_p95"] == pytest.approx(
        np.percentile(np.abs((last - first).mean(axis=0)), 95), rel=1e-9
    )
    assert not tr.random_control(first, last, diff=rng.normal(0, 0.1, 20))["beats_random"]


def test_the_judged_answers_are_the_first_prompts_with_a_generated_answer():
    prompts = pd.DataFrame({"id": ["a", "b", "c", "d"], "prompt": ["qa", "qb", "qc", "qd"]})
    responses = pd.DataFrame(
        {"id": ["d", "c", "b", "a"], "response": ["rd", "rc", "rb", "ra"], "generated": [True, True, False, True]}
    )
    got = tr.answers_to_judge(responses, prompts, 2)
    assert got.to_dict(orient="list") == {"id": ["a", "c"], "prompt": ["qa", "qc"], "response": ["ra", "rc"]}


def test_checkpoints_become_variants_at_start_up(tiny_model_dir):
    from traitscope.study import load_config

    cfg = organism_config(tiny_model_dir)
    cfg["finetune"]["bad_advice"]["checkpoints"] = [4, 2]
    study = load_config(cfg)
    step = study.variants["bad_advice_step4"]
    assert (step.finetune, step.checkpoint) == ("bad_advice", 4)
    assert step.adapter == "results/finetune/bad_advice/checkpoints/step-4/adapter"
    assert step._replace(checkpoint=None, adapter=study.variants["bad_advice"].adapter) == study.variants["bad_advice"]
    assert [v for _, v in study.experiment("trajectory").steps(study, study.trajectory)] == [
        "base",
        "bad_advice_step2",
        "bad_advice_step4",
        "bad_advice",
    ]
    assert "checkpoint" not in repr(study.variants["bad_advice"])  # params of configs without checkpoints unchanged


def _edit_variants(cfg, name, spec):
    cfg["variants"][name] = spec


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda c: c["finetune"]["bad_advice"].update(checkpoints=[]),
            "finetune.bad_advice.checkpoints: is empty",
        ),
        (lambda c: c["trajectory"].update(finetuned="base"), "trajectory.finetuned: 'base' is not a finished finetune"),
        (lambda c: c["trajectory"].update(test="em_replay"), "trajectory.test: 'em_replay' replays another variant"),
        (lambda c: c["trajectory"].update(test="nope"), "trajectory.test: unknown prompt set 'nope'"),
        (lambda c: c["trajectory"].update(layer=9), "trajectory.layer: 9 is neither 'best' nor one of"),
        (lambda c: c["trajectory"].update(method="random"), "trajectory.method: 'random' vectors are not extracted"),
        (
            lambda c: _edit_variants(c, "bad_advice_step2", {"finetune": "backdoor"}),
            "variants.bad_advice_step2: the name is taken",
        ),
        (
            lambda c: _edit_variants(c, "early", {"finetune": "bad_advice", "checkpoint": 2}),
            "variants.early.checkpoint: 'bad_advice_step2' is step 2 of the same finetune too",
        ),
    ],
)
def test_bad_sections_are_one_line_errors(tiny_model_dir, edit, expected):
    cfg = organism_config(tiny_model_dir)
    edit(cfg)
    assert_config_error(cfg, expected)
