"""Experiment statistics against scipy/statsmodels on known inputs, and their config checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import assert_config_error, load_set
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from traitscope.core.project import pooled_scores
from traitscope.core.prompts import replay_table
from traitscope.core.stats import correct_pvalues, paired_comparison
from traitscope.experiments.emergent_misalignment import analysis as emergent_misalignment
from traitscope.experiments.emergent_misalignment.analysis import compare_variants
from traitscope.study import load_config


def test_paired_comparison_matches_scipy():
    rng = np.random.default_rng(0)
    b = rng.normal(size=15)
    a = b + rng.normal(0.6, 1.0, size=15)
    got = paired_comparison(a, b, n_boot=2000, seed=0)
    ref = sps.ttest_rel(a, b)
    ci = ref.confidence_interval(0.95)
    assert got["t"] == pytest.approx(ref.statistic) and got["p"] == pytest.approx(ref.pvalue)
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((ci.low, ci.high))
    diff = a - b
    assert got["cohens_dz"] == pytest.approx(diff.mean() / diff.std(ddof=1))
    assert got["dz_ci_low"] < got["cohens_dz"] < got["dz_ci_high"]
    assert got["n"] == 15
    with_nan = paired_comparison(np.r_[a, np.nan], np.r_[b, 1.0])
    assert with_nan["n"] == 15 and with_nan["p"] == pytest.approx(ref.pvalue)


def test_correction_matches_statsmodels():
    p = [0.001, 0.02, 0.04, 0.3]
    for method in ("holm", "fdr_bh", "bonferroni"):
        adj, rej = correct_pvalues(p, method, 0.05)
        ref_rej, ref_adj, _, _ = multipletests(p, alpha=0.05, method=method)
        assert adj == pytest.approx(list(ref_adj)) and rej == list(ref_rej)
    adj, rej = correct_pvalues([0.01, float("nan")], "holm")
    assert adj[0] == pytest.approx(0.01) and np.isnan(adj[1]) and rej == [True, False]


def _scores(
    shift: dict[str, float], n_q: int = 12, n_para: int = 2, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ids = [f"q{q}#{k}" for q in range(n_q) for k in range(n_para)]
    prompts = pd.DataFrame({"id": ids, "group": [i.split("#")[0] for i in ids]})
    frames = {}
    base_vals = {t: rng.normal(size=len(ids)) for t in shift}
    for variant in ("base", "tuned"):
        rows = []
        for trait, s in shift.items():
            vals = base_vals[trait] + (s + rng.normal(0, 0.3, len(ids)) if variant == "tuned" else 0)
            rows.append(
                pd.DataFrame(
                    {
                        "id": ids,
                        "trait": trait,
                        "method": "mean_diff",
                        "layer": 3,
                        "position": "response_mean",
                        "score": vals,
                    }
                )
            )
        frames[variant] = pd.concat(rows, ignore_index=True)
    return pooled_scores(
        frames, prompts, {t: 3 for t in shift}, {t: "response_mean" for t in shift}, "mean_diff"
    ), prompts


def test_compare_variants_per_question_with_correction():
    scores, _ = _scores({"safety/evil": 1.0, "safety/harm": 0.0})
    result, per_q = compare_variants(
        scores, base="base", variant="tuned", correction="holm", alpha=0.05, n_boot=500, seed=0
    )
    evil, harm = result["traits"]["safety/evil"], result["traits"]["safety/harm"]
    assert evil["n"] == 12 and evil["n_prompts"] == 24  # the unit is the question, paraphrases averaged
    assert evil["significant"] and evil["cohens_dz"] > 1 and evil["p_adjusted"] >= evil["p"]
    assert not harm["significant"]
    wide = per_q[per_q["trait"] == "safety/evil"].pivot(index="group", columns="variant", values="score")
    ref = sps.ttest_rel(wide["tuned"], wide["base"])
    assert evil["p"] == pytest.approx(ref.pvalue)
    adj, _ = correct_pvalues([evil["p"], harm["p"]], "holm")
    assert [evil["p_adjusted"], harm["p_adjusted"]] == pytest.approx(adj)
    fig = emergent_misalignment.trait_distributions(per_q, result, "test")
    assert "n=12 questions" in fig.axes[0].get_title()


def test_replay_table_and_em_format_builtin():
    prompts = load_set({"source": "builtin", "name": "em_benign", "split": "eval"})
    assert len(prompts) == 20 and prompts["group"].nunique() == 10 and prompts["id"].iloc[0] == "three_wishes#0"
    responses = pd.DataFrame({"id": prompts["id"], "response": ["answer"] * 19 + [None]})
    replay = replay_table(prompts, responses)
    assert len(replay) == 19 and (replay["response"] == "answer").all()
    assert list(replay["group"]) == list(prompts["group"].iloc[:19])


def _with_compare(cfg: dict) -> dict:
    cfg["prompt_sets"]["em"] = {"source": "builtin", "name": "em_benign", "split": "eval"}
    cfg["prompt_sets"]["em_replay"] = {"source": "replay", "prompt_set": "em", "variant": "base"}
    cfg["variants"]["other"] = dict(cfg["variants"]["base"])
    cfg["emergent_misalignment"] = {"variant": "other", "prompt_set": "em_replay"}
    return cfg


def test_compare_config(small_config):
    cfg = load_config(_with_compare(small_config))
    assert cfg.shards["em_replay"] == cfg.shards["em"] and cfg.rows["em_replay"] == 20
    assert cfg.emergent_misalignment.correction == "holm"


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (
            lambda c: c["emergent_misalignment"].update(prompt_set="em"),
            "emergent_misalignment.prompt_set: 'em' is not a replay set",
        ),
        (
            lambda c: c["prompt_sets"]["em_replay"].update(variant="ghost"),
            "prompt_sets.em_replay.variant: unknown variant",
        ),
        (lambda c: c["prompt_sets"]["em_replay"].update(prompt_set="em_replay"), "prompt_sets.em_replay.prompt_set"),
        (
            lambda c: c["emergent_misalignment"].update(variant="base"),
            "emergent_misalignment.variant: the variant is the base",
        ),
    ],
)
def test_compare_config_errors(small_config, mutate, expected):
    cfg = _with_compare(small_config)
    mutate(cfg)
    assert_config_error(cfg, expected)


def test_transfer_needs_matching_hidden_size(small_config, tmp_path):
    wide = tmp_path / "wide-model"
    wide.mkdir()
    (wide / "config.json").write_text(json.dumps({"num_hidden_layers": 4, "hidden_size": 48, "vocab_size": 400}))
    cfg = _with_compare(small_config)
    cfg["variants"]["other"] = {"model": str(wide)}
    msg = assert_config_error(cfg, "emergent_misalignment.variant")
    assert "hidden size 48" in msg and "cannot transfer" in msg


class _FakeBaseline:
    def __init__(self, ids, scores):
        self.ids, self.scores = ids, scores

    def pooled(self, layer, position, site="resid"):
        assert (layer, position, site) == (3, "response_mean", "resid")
        return self.scores


@pytest.mark.parametrize("random_shift, beats", [(0.0, True), (1.0, False)])
def test_the_variant_comparison_has_a_random_direction_control(random_shift, beats):
    """A finetune that shifts every direction as much as the trait's does not beat the control."""
    from traitscope.experiments.emergent_misalignment.analysis import (
        random_control,
        random_differences,
        with_random_control,
    )

    scores, prompts = _scores({"safety/evil": 1.0})
    result, _ = compare_variants(
        scores, base="base", variant="tuned", correction="holm", alpha=0.05, n_boot=200, seed=0
    )
    ids = prompts["id"].tolist()
    rng = np.random.default_rng(1)
    base = rng.normal(0, 1, (len(ids), 50))
    tuned = base + random_shift + rng.normal(0, 0.3, base.shape)
    control = random_control(
        random_differences(
            {"base": _FakeBaseline(ids, base), "tuned": _FakeBaseline(ids, tuned)},
            prompts,
            {"safety/evil": 3},
            {"safety/evil": "response_mean"},
            {"safety/evil": "resid"},
            base="base",
            variant="tuned",
        )
    )
    # recomputed by hand: per-question means, paired d_z per direction, 95th percentile of |d_z|
    groups = prompts.set_index("id")["group"]
    diff = pd.DataFrame(tuned, index=ids).groupby(groups).mean() - pd.DataFrame(base, index=ids).groupby(groups).mean()
    dz = diff.mean(0) / diff.std(0, ddof=1)
    assert control["safety/evil"] == {
        "random_abs_dz_p95": pytest.approx(float(np.percentile(dz.abs(), 95))),
        "n_random": 50,
    }
    out = with_random_control(result, control)
    evil = out["traits"]["safety/evil"]
    assert evil["significant"] and evil["beats_random"] is beats
    assert out["n_significant_and_beats_random"] == int(beats)
    fig = emergent_misalignment.trait_distributions(
        _scores({"safety/evil": 1.0})[0].groupby(["trait", "variant", "group"])["score"].mean().reset_index(),
        out,
        "test",
    )
    assert ("beats it" if beats else "does NOT beat it") in fig.axes[0].get_title()


@pytest.mark.parametrize(
    ("name", "config_key", "clash"),
    [
        ("capture", (), "a core config section"),
        ("activation_budget_gb", ("checks", "activation_budget_gb"), "a core config section"),
        ("vectors", (), "a folder of the core's results"),
        ("backdoor", (), "the experiment traitscope.experiments.backdoor"),
    ],
)
def test_an_experiment_named_like_a_core_section_a_core_folder_or_another_is_refused(
    monkeypatch, name, config_key, clash
):
    import sys
    import types

    from traitscope import ConfigError
    from traitscope.experiments import registry
    from traitscope.workflow.experiment import Experiment

    module = types.ModuleType("clashing_experiment")
    module.EXPERIMENT = type("Clash", (Experiment,), {"name": name, "config_key": config_key})()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "clashing_experiment", module)
    with pytest.raises(ConfigError) as err:
        registry(("traitscope.experiments.backdoor", "clashing_experiment"))
    message = str(err.value)
    assert "\n" not in message and clash in message and "fix: rename it" in message
    assert registry(("traitscope.experiments.backdoor",))[0].name == "backdoor"  # the real ones pass


def test_the_tiny_study_is_every_registered_experiment_s_example(tiny_model_dir):
    """tests/conftest.py names no experiment: the tiny study holds each registered experiment's example section (its
    example.yaml), and start-up accepts it whole."""
    from conftest import organism_config

    from traitscope.experiments import REGISTRY
    from traitscope.study import load_config

    cfg = organism_config(tiny_model_dir)
    for experiment in REGISTRY:
        example = experiment.example_config()
        assert example.get("section"), f"{experiment.name} has no example.yaml with a section"
        assert experiment.section(cfg) == example["section"], experiment.name
    study = load_config(cfg)
    assert all(s is not None for _, s in study.configured()) and len(study.configured()) == len(REGISTRY)


def test_what_each_rule_leaves_out_of_its_params_is_declared_and_enforced():
    """Experiment.left_out, beside the settings class, is the one way to say a field does not change a rule's output:
    the rule's params (Experiment.params) leave it out of their repr, which Snakemake compares, and refuse it to the
    job; every other field is in the repr; every rule named there exists and passes its settings this way."""
    import pickle
    import re

    from snakemake.persistence import PersistenceBase

    from traitscope.experiments import REGISTRY
    from traitscope.workflow.config import section

    declared = [e for e in REGISTRY if e.left_out]
    assert declared
    for experiment in declared:
        settings = section(experiment.name, experiment.example_config()["section"], REGISTRY)
        rules = Path(experiment.rules).read_text()
        for rule, left_out in experiment.left_out.items():
            assert re.search(rf"^rule {rule}:", rules, re.M), (experiment.name, rule)
            assert ".params(" in rules and f'"{rule}")' in rules, (experiment.name, rule)
            params = experiment.params(settings, rule)
            assert pickle.loads(pickle.dumps(params)) == params  # Snakemake hands params to the job pickled
            # Snakemake compares a param only when it can serialise it (other objects it ignores, silently)
            assert PersistenceBase._serialize_param_builtin(None, params) == repr(params)  # type: ignore[arg-type]
            for field in settings._fields:
                value = getattr(settings, field)
                changed = settings._replace(**{field: _another(value)})
                same = repr(experiment.params(changed, rule)) == repr(params)
                assert same == (field in left_out), (experiment.name, rule, field)
                if field in left_out:
                    with pytest.raises(AttributeError, match="left out of this rule's params"):
                        getattr(params, field)
                else:
                    assert getattr(params, field) == value


def _another(value):
    """A different value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "_other"
    if isinstance(value, tuple):
        return (*value, "other")
    if isinstance(value, dict):
        return {**value, "other": None}
    return "other" if value is None else None
