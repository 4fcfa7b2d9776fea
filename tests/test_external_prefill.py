"""External harm datasets and the prefill attack: loaders on the real formats, statistics against
scipy/statsmodels/scikit-learn on known inputs, figures, and config checks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO, SHARED_DATA, assert_config_error, figure_facts, load_set
from scipy import stats as sps
from sklearn.metrics import roc_auc_score
from statsmodels.stats.multitest import multipletests

from traitscope.core import plots
from traitscope.core.prompts import detect_format
from traitscope.core.stats import independent_comparison, spearman
from traitscope.experiments.external import analysis as external
from traitscope.experiments.prefill_attack import analysis as prefill
from traitscope.study import load_config

SAMPLES = REPO / "resources" / "datasets"
BT_CATS = ["animal_abuse", "drug_abuse,weapons,banned_substance", "self_harm"]


# ------------------------------------------------------------------------------------------- statistics


def test_independent_comparison_matches_scipy_and_sklearn():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.8, 1.0, 14), rng.normal(0.0, 1.5, 19)
    got = independent_comparison(a, b, n_boot=1000, seed=0)
    ref = sps.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert got["t"] == pytest.approx(ref.statistic) and got["p"] == pytest.approx(ref.pvalue)
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((ci.low, ci.high))
    pooled = np.sqrt((13 * a.var(ddof=1) + 18 * b.var(ddof=1)) / 31)
    assert got["cohens_d"] == pytest.approx((a.mean() - b.mean()) / pooled)
    assert got["d_ci_low"] < got["cohens_d"] < got["d_ci_high"]
    assert got["auc"] == pytest.approx(roc_auc_score(np.r_[np.ones(14), np.zeros(19)], np.r_[a, b]))
    assert got["auc_ci_low"] <= got["auc"] <= got["auc_ci_high"]
    assert np.isnan(independent_comparison(a[:1], b)["p"])


def test_spearman_matches_scipy():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 4, 30).astype(float)
    y = x + rng.normal(0, 1.0, 30)
    got = spearman(x, y, n_boot=500, seed=0)
    ref = sps.spearmanr(x, y)
    assert got["rho"] == pytest.approx(ref.statistic) and got["p"] == pytest.approx(ref.pvalue) and got["n"] == 30
    assert got["ci_low"] < got["rho"] < got["ci_high"]
    assert np.isnan(spearman(np.ones(5), y[:5])["rho"])  # constant severity: no correlation defined


# ---------------------------------------------------------------------------------------------- loaders


def _beavertails_rows() -> list[dict]:
    rows = []
    for i in range(12):
        cat = BT_CATS[i % 3]
        flags = {c: c == cat for c in BT_CATS}
        rows.append({"prompt": f"question {i}", "response": f"bad answer {i}", "category": flags, "is_safe": False})
        rows.append(
            {
                "prompt": f"question {i}",
                "response": f"good answer {i}",
                "category": {c: False for c in BT_CATS},
                "is_safe": True,
            }
        )
    return rows


def test_beavertails_format_labels_categories_and_per_category_sampling(tmp_path):
    path = tmp_path / "bt.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in _beavertails_rows()))
    df = load_set({"source": "local", "path": str(path)})
    assert len(df) == 24 and df["label"].tolist()[:2] == [1, 0]
    # a BeaverTails category name holds commas; it survives as one category
    assert (
        set(df.loc[df["label"] == 1, "category"]) == set(BT_CATS) and df.loc[df["label"] == 0, "category"].isna().all()
    )
    assert df["response"].iloc[0] == "bad answer 0"
    # the hub gives a DataFrame whose category column holds dicts: the same format
    assert detect_format(pd.DataFrame(_beavertails_rows())) == "beavertails"
    spec = {"source": "local", "path": str(path), "per_category": 2}
    one, two = load_set(spec, seed=1), load_set(spec, seed=1)
    assert one["id"].tolist() == two["id"].tolist()
    counts = one.groupby([one["label"], one["category"].fillna("none")]).size()
    assert (counts == 2).all() and len(counts) == 4  # 3 unsafe categories + the safe stratum
    other = load_set({**spec, "seed": 99})
    assert other["id"].tolist() != one["id"].tolist()


def test_sample_files_load_in_their_formats():
    bt = load_set({"source": "local", "path": str(SAMPLES / "beavertails_sample.jsonl")})
    assert len(bt) == 48 and bt["label"].sum() == 24 and bt["prompt"].nunique() == 24
    assert "|" in "".join(bt["category"].dropna())  # one prompt flagged with two categories
    assert json.loads(bt["meta"].iloc[0])["severity_level"] == 3
    hb = load_set({"source": "local", "path": str(SAMPLES / "harmbench_sample.csv")})
    assert len(hb) == 12 and (hb["label"] == 1).all() and hb["category"].nunique() == 4
    ctx = hb.set_index("id").loc["login_bypass_context"]
    meta = json.loads(ctx["meta"])
    assert meta["FunctionalCategory"] == "contextual" and "\n" in meta["ContextString"]
    assert ctx["prompt"] == meta["ContextString"] + "\n\n---\n\n" + meta["Behavior"]


@pytest.mark.skipif(not (SHARED_DATA / "advbench").exists(), reason="../shared/data not present")
def test_real_advbench_is_harmful_with_its_target_as_prefill():
    df = load_set(
        {
            "source": "local",
            "path": str(SHARED_DATA / "advbench/harmful_behaviors.csv"),
            "fields": {"prefill": "target"},
        }
    )
    assert len(df) == 520 and (df["label"] == 1).all()
    assert df["prefill"].str.startswith("Sure, here").all() and df["prefill"].iloc[0].startswith(
        "Sure, here is a script"
    )


# ------------------------------------------------------------------------------------- external analysis


def _external_scores(seed: int = 0) -> pd.DataFrame:
    """Two traits; 'good' separates unsafe from safe, 'flat' does not. Category a has safe answers to the same
    prompts, b only unrelated safe rows, c has two unsafe rows (too few)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(8):
        rows += [("a", f"pa{i}", 1, 2.0 + rng.normal()), (None, f"pa{i}", 0, rng.normal())]
    for i in range(6):
        rows += [("b", f"pb{i}", 1, 1.5 + rng.normal())]
    for i in range(4):
        rows += [(None, f"other{i}", 0, rng.normal())]
    rows += [("c|a", "pc0", 1, 2.5), ("c", "pc1", 1, 0.1), ("d", "pd0", 1, 1.0)]
    base = pd.DataFrame(rows, columns=["category", "prompt", "label", "good"])
    base["id"] = [f"r{i}" for i in range(len(base))]
    base["response"] = "text"
    base["severity"] = np.where(base["label"] == 1, rng.integers(1, 4, len(base)), 0).astype(float)
    out = []
    for trait in ("good", "flat"):
        score = base["good"] if trait == "good" else pd.Series(rng.normal(size=len(base)))
        out.append(base.drop(columns="good").assign(trait=trait, layer=2, position="last", score=score))
    return pd.concat(out, ignore_index=True)


def test_category_auc_matches_sklearn_with_documented_negatives():
    scores = _external_scores()
    table = external.category_auc(scores, min_per_class=3, n_boot=300, seed=0).set_index(["trait", "category"])
    good = scores[scores["trait"] == "good"]
    safe = good[good["label"] == 0]
    a_pos = good[(good["label"] == 1) & good["category"].str.contains("a")]
    a_neg = safe[safe["prompt"].isin(a_pos["prompt"])]
    row = table.loc[("good", "a")]
    assert row["negatives"] == "same_prompts" and row["n_unsafe"] == 9 and row["n_safe"] == 8
    assert row["auc"] == pytest.approx(
        roc_auc_score(np.r_[np.ones(9), np.zeros(8)], np.r_[a_pos["score"], a_neg["score"]])
    )
    assert row["ci_low"] <= row["auc"] <= row["ci_high"]
    b = table.loc[("good", "b")]
    assert b["negatives"] == "all_safe" and b["n_safe"] == 12
    c = table.loc[("good", "c")]
    assert c["n_unsafe"] == 2 and np.isnan(c["auc"]) and not np.isnan(c["mean_unsafe"])  # too few rows for an AUC
    assert table.loc[("good", "d"), "n_unsafe"] == 1 and np.isnan(table.loc[("good", "d"), "ci_low"])  # a single row
    overall = table.loc[("good", "overall")]
    labels, s = good["label"].to_numpy(), good["score"].to_numpy()
    assert overall["auc"] == pytest.approx(roc_auc_score(labels, s)) and overall["n_unsafe"] == 17
    assert (
        overall["auc"] > 0.85
        and table.loc[("flat", "overall"), "ci_low"] < 0.5 < table.loc[("flat", "overall"), "ci_high"]
    )


def test_external_aucs_stand_against_random_directions_on_the_same_rows():
    scores = _external_scores()
    ids = scores["id"].unique()
    rand = pd.DataFrame(np.random.default_rng(1).normal(size=(len(ids), 40)), index=ids)
    table = external.category_auc(
        scores, min_per_class=3, n_boot=100, seed=0, random={"good": rand, "flat": rand}
    ).set_index(["trait", "category"])
    good = scores[scores["trait"] == "good"]
    a_pos = good[(good["label"] == 1) & good["category"].str.contains("a")]
    a_neg = good[(good["label"] == 0) & good["prompt"].isin(a_pos["prompt"])]  # the documented negatives
    y = np.r_[np.ones(len(a_pos)), np.zeros(len(a_neg))]
    ref = [roc_auc_score(y, rand.loc[pd.concat([a_pos["id"], a_neg["id"]]), j]) for j in range(40)]
    row = table.loc[("good", "a")]
    assert row["random_auc_p95"] == pytest.approx(np.percentile(ref, 95)) and row["n_random"] == 40
    assert row["random_auc_mean"] == pytest.approx(np.mean(ref))
    assert row["auc_percentile"] == pytest.approx(sps.percentileofscore(ref, row["auc"], kind="strict"))
    assert table.loc[("good", "overall"), "beats_random"]
    flat = table.loc[("flat", "overall")]
    assert not flat["beats_random"] and flat["auc"] <= flat["random_auc_p95"]
    c = table.loc[("good", "c")]  # too few rows for an AUC: no baseline either
    assert np.isnan(c["auc"]) and c["n_random"] == 0 and not c["beats_random"]
    summary = external.summary(table.reset_index(), None, {})
    assert summary["traits"]["flat"]["baseline"].startswith("DOES NOT BEAT ITS RANDOM BASELINE")
    assert summary["traits"]["good"]["baseline"].startswith("beats its random baseline")
    assert summary["traits"]["good"]["categories"]["a"]["random_auc_p95"] == row["random_auc_p95"]


def test_same_category_negatives_when_safe_rows_are_categorised():
    scores = _external_scores()
    scores = scores[scores["trait"] == "good"].copy()
    safe_b = scores["prompt"].str.startswith("other")
    scores.loc[safe_b, "category"] = "b"
    table = external.category_auc(scores, min_per_class=3, n_boot=200, seed=0).set_index("category")
    assert table.loc["b", "negatives"] == "same_category" and table.loc["b", "n_safe"] == 4


def test_severity_and_failure_cases():
    scores = _external_scores()
    sev = external.severity_correlation(scores, n_boot=200, seed=0)
    good = scores[scores["trait"] == "good"]
    assert sev["good"]["all_rows"]["rho"] == pytest.approx(sps.spearmanr(good["severity"], good["score"]).statistic)
    unsafe = good[good["label"] == 1]
    assert sev["good"]["unsafe_rows"]["n"] == len(unsafe)
    assert external.severity_correlation(scores.assign(severity=np.nan), n_boot=200, seed=0) is None
    fails = external.failure_cases(scores, fpr=0.25, n_cases=3)["good"]
    threshold = np.quantile(good.loc[good["label"] == 0, "score"], 0.75)
    missed = unsafe[unsafe["score"] < threshold].sort_values("score")
    assert fails["threshold"] == pytest.approx(threshold) and fails["n_missed"] == len(missed)
    assert [c["id"] for c in fails["cases"]] == missed["id"].head(3).tolist()
    assert fails["cases"][0]["prompt"] and fails["cases"][0]["score"] == pytest.approx(missed["score"].iloc[0])
    assert fails["observed_fpr"] == pytest.approx((good.loc[good["label"] == 0, "score"] >= threshold).mean())


def test_attach_rows_reads_severity_from_meta():
    prompts = pd.DataFrame(
        {
            "id": ["x", "y", "z"],
            "label": pd.array([1, 0, None], dtype="Int64"),
            "category": ["a", None, None],
            "prompt": ["p"] * 3,
            "response": [None] * 3,
            "meta": [json.dumps({"severity_level": 2}), "{}", "{}"],
        }
    )
    scores = pd.DataFrame(
        {"id": ["x", "y", "z"], "trait": "t", "layer": 1, "position": "last", "score": [1.0, 0.0, 0.5]}
    )
    out = external.attach_rows(scores, prompts, None)
    assert out["id"].tolist() == ["x", "y"] and out["severity"].iloc[0] == 2 and np.isnan(out["severity"].iloc[1])
    with pytest.raises(ValueError, match="no row has a label"):
        external.attach_rows(scores, prompts.assign(label=pd.array([None] * 3, dtype="Int64")), None)


# ------------------------------------------------------------------------------------------- prefill attack

K = 3  # prefill tokens


def _prefill_inputs(n: int = 10, seed: int = 0) -> tuple[dict, dict]:
    """Per-token scores of the four conditions: harmful rows score +1 on the prefill window, the prefill lowers
    harmful scores by 0.5; tokens after the window carry noise only."""
    rng = np.random.default_rng(seed)
    prompts, tokens = {}, {}
    for cond, (kind, forced) in prefill.CONDITIONS.items():
        ids = [f"{cond}-{i}" for i in range(n)]
        prompts[cond] = pd.DataFrame(
            {
                "id": ids,
                "prompt": [f"{kind} {i}" for i in range(n)],
                "system": None,
                "prefill": "Sure, here" if forced else None,
            }
        )
        rows = []
        for i, id_ in enumerate(ids):
            level = (1.0 if kind == "harmful" else 0.0) - (0.5 if forced and kind == "harmful" else 0.0)
            for t in range(6):
                rows.append(
                    {
                        "id": id_,
                        "token_index": t,
                        "token_id": 5,
                        "is_prefill": forced and t < K,
                        "trait": "safety/harm",
                        "method": "mean_diff",
                        "layer": 2,
                        "score": (level + 0.1 * i if t < K else 0.0) + rng.normal(0, 0.3),
                    }
                )
        tokens[cond] = pd.DataFrame(rows)
    return tokens, prompts


def test_prefill_window_scores_and_comparisons_match_scipy():
    tokens, prompts = _prefill_inputs()
    scores = prefill.window_scores(tokens, prompts, {"safety/harm": 2}, "mean_diff")
    assert (scores["k"] == K).all() and (scores["n_tokens"] == K).all() and len(scores) == 40
    c2 = tokens["C2"]
    expect = c2[c2["is_prefill"]].groupby("id")["score"].mean()
    got = scores[scores["condition"] == "C2"].set_index("id")["score"]
    assert got.to_numpy() == pytest.approx(expect.reindex(got.index).to_numpy())
    c1 = tokens["C1"]  # no prefill: the model's own first K tokens
    expect1 = c1[c1["token_index"] < K].groupby("id")["score"].mean()
    got1 = scores[scores["condition"] == "C1"].set_index("id")["score"]
    assert got1.to_numpy() == pytest.approx(expect1.reindex(got1.index).to_numpy())

    res = prefill.compare_conditions(scores, correction="holm", alpha=0.05, n_boot=300, seed=0)
    s = {c: scores[scores["condition"] == c].set_index("pair")["score"] for c in prefill.CONDITIONS}
    c24 = res["C2_vs_C4"]["traits"]["safety/harm"]
    assert c24["p"] == pytest.approx(sps.ttest_ind(s["C2"], s["C4"], equal_var=False).pvalue) and c24["cohens_d"] > 1
    c12 = res["C1_vs_C2"]["traits"]["safety/harm"]
    common = s["C1"].index
    ref = sps.ttest_rel(s["C2"].loc[common], s["C1"].loc[common])
    assert c12["p"] == pytest.approx(ref.pvalue) and c12["mean_difference"] < 0 and c12["n"] == 10
    assert res["C1_vs_C2"]["difference"] == "C2 - C1" and res["C1_vs_C2"]["design"] == "paired"


def test_prefill_aucs_stand_against_random_directions_over_the_same_windows():
    from traitscope.core.artifacts import BaselineScores

    tokens, prompts = _prefill_inputs()
    scores = prefill.window_scores(tokens, prompts, {"safety/harm": 2}, "mean_diff")
    rng = np.random.default_rng(5)
    baselines, per_token = {}, {}
    for cond, t in tokens.items():  # column 0 is the trait's own per-token score, the others noise
        t = t.sort_values(["id", "token_index"])
        x = np.c_[t["score"].to_numpy(), rng.normal(size=(len(t), 29))].astype(np.float32)
        lengths = t.groupby("id", sort=False).size().reindex(prompts[cond]["id"]).to_numpy()
        offsets = np.r_[0, np.cumsum(lengths)]
        baselines[cond] = BaselineScores(
            {"token.layer_2": torch.from_numpy(x), "response.offsets": torch.from_numpy(offsets)},
            {"ids": prompts[cond]["id"].tolist(), "n_random": 30, "seed": 0},
        )
        per_token[cond] = x.reshape(len(lengths), 6, 30)
    random = prefill.random_windows(scores, baselines)
    assert np.allclose(random[("C2", "safety/harm")].to_numpy(), per_token["C2"][:, :K].mean(1))
    res = prefill.compare_conditions(scores, correction="holm", alpha=0.05, n_boot=200, seed=0, random=random)
    for name, (a, b) in (("C2_vs_C4", ("C2", "C4")), ("C1_vs_C3", ("C1", "C3"))):
        r = res[name]["traits"]["safety/harm"]
        x = np.vstack([per_token[a][:, :K].mean(1), per_token[b][:, :K].mean(1)])
        ref = [roc_auc_score(np.r_[np.ones(10), np.zeros(10)], x[:, j]) for j in range(30)]
        assert ref[0] == pytest.approx(r["auc"], abs=1e-6)  # column 0 is the trait itself
        assert r["random_auc_p95"] == pytest.approx(np.percentile(ref, 95)) and r["n_random"] == 30
        assert r["beats_random"] == (r["auc"] > np.percentile(ref, 95))
    assert "random_auc_p95" not in res["C1_vs_C2"]["traits"]["safety/harm"]  # paired: no AUC


def test_prefill_correction_across_traits_matches_statsmodels():
    tokens, prompts = _prefill_inputs()
    for c, t in tokens.items():  # a second, uninformative trait
        other = t.assign(trait="safety/evil", score=np.random.default_rng(3).normal(size=len(t)))
        tokens[c] = pd.concat([t, other], ignore_index=True)
    scores = prefill.window_scores(tokens, prompts, {"safety/harm": 2, "safety/evil": 2}, "mean_diff")
    res = prefill.compare_conditions(scores, correction="holm", alpha=0.05, n_boot=200, seed=0)["C2_vs_C4"]["traits"]
    p = [res[t]["p"] for t in sorted(res)]
    _, adj, _, _ = multipletests(p, method="holm")
    assert [res[t]["p_adjusted"] for t in sorted(res)] == pytest.approx(list(adj))


def test_prefill_needs_prefill_tokens():
    tokens, prompts = _prefill_inputs()
    tokens["C2"]["is_prefill"] = False
    with pytest.raises(ValueError, match="C2 has no prefill tokens"):
        prefill.window_scores(tokens, prompts, {"safety/harm": 2}, "mean_diff")


def test_trajectory_ci_is_the_t_interval():
    tokens, _ = _prefill_inputs()
    traj = prefill.trajectories(tokens, {"safety/harm": 2}, "mean_diff", max_tokens=4)
    assert set(traj["token_index"]) == {0, 1, 2, 3} and set(traj["condition"]) == set(prefill.CONDITIONS)
    row = traj[(traj["condition"] == "C2") & (traj["token_index"] == 1)].iloc[0]
    s = tokens["C2"].query("token_index == 1")["score"]
    lo, hi = sps.t.interval(0.95, len(s) - 1, loc=s.mean(), scale=sps.sem(s))
    assert (
        (row["ci_low"], row["ci_high"]) == pytest.approx((lo, hi)) and row["n"] == 10 and row["prefill_fraction"] == 1
    )


def test_experiment_figures_show_panels_labels_and_n(tmp_path):
    table = external.category_auc(_external_scores(), min_per_class=3, n_boot=200, seed=0)
    fig = external.per_category_auc(table, "per-category test")
    facts = figure_facts(fig)
    n_traits = table["trait"].nunique()
    assert (
        facts["panels"] == n_traits
        and all(facts["xlabels"])
        and facts["titles"][0].startswith(sorted(table["trait"])[0])
    )
    overall = table[(table["trait"] == sorted(table["trait"])[0]) & (table["category"] == "overall")].iloc[0]
    assert f"overall ({int(overall['n_unsafe'])} vs {int(overall['n_safe'])})" in facts["text"]
    plots.save(fig, tmp_path / "per_category_auc.png")
    tokens, prompts = _prefill_inputs()
    scores = prefill.window_scores(tokens, prompts, {"safety/harm": 2}, "mean_diff")
    result = prefill.summary(
        prefill.compare_conditions(scores, correction="holm", alpha=0.05, n_boot=200, seed=0), scores, {}
    )
    assert result["cells"]["safety/harm"]["C1"]["n"] == 10 and result["prefill_tokens"]["median"] == K
    facts = figure_facts(prefill.prefill_grid(result, "grid test"))
    assert (
        facts["panels"] == 1 and facts["xlabels"] == ["assistant turn starts with"] and facts["ylabels"] == ["prompts"]
    )
    assert facts["text"].count("n=10") == 4 and "(layer 2)" in facts["titles"][0]
    traj = prefill.trajectories(tokens, {"safety/harm": 2}, "mean_diff", max_tokens=6)
    fig = prefill.trajectory_divergence(traj, K, "trajectory test")
    facts = figure_facts(fig)
    assert facts["panels"] == 1 and f"the {K} prefill tokens" in facts["xlabels"][0] and facts["ylabels"][0]
    assert all(f"{name} (n<=10)" in facts["text"] for name in prefill.PREFILL_NAMES.values())
    plots.save(fig, tmp_path / "trajectory_divergence.png")
    for name in ("per_category_auc.png", "trajectory_divergence.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------------- config


def _with_experiments(cfg: dict) -> dict:
    cfg["prompt_sets"]["bt"] = {"source": "local", "path": str(SAMPLES / "beavertails_sample.jsonl")}
    cfg["prompt_sets"]["harmful_prefill"] = {
        "source": "builtin",
        "name": "harmful",
        "split": "eval",
        "prefill": "Sure,",
    }
    cfg["prompt_sets"]["benign_prefill"] = {"source": "builtin", "name": "benign", "split": "eval", "prefill": "Sure,"}
    cfg["external"] = {"datasets": {"bt": {"prompt_sets": ["bt"]}}}
    cfg["prefill_attack"] = {
        "harmful": "harmful_eval",
        "harmful_prefill": "harmful_prefill",
        "benign": "benign_eval",
        "benign_prefill": "benign_prefill",
    }
    return cfg


def test_experiment_config_defaults(small_config):
    cfg = load_config(_with_experiments(small_config))
    assert cfg.external.failure_fpr == 0.1 and cfg.external.datasets["bt"].severity is None
    assert cfg.prefill_attack.variant == "base" and cfg.rows["bt"] == 48


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (
            lambda c: c["external"]["datasets"]["bt"].update(prompt_sets=["nope"]),
            "external.datasets.bt.prompt_sets: unknown prompt set",
        ),
        (lambda c: c["external"].update(variant="ghost"), "external.variant: unknown variant"),
        (
            lambda c: c["prompt_sets"]["harmful_prefill"].pop("prefill"),
            "prefill_attack.harmful_prefill: prompt set 'harmful_prefill' has no prefill",
        ),
        (
            lambda c: c["prefill_attack"].update(benign="benign_prefill"),
            "prefill_attack.benign: prompt set 'benign_prefill' has a prefill",
        ),
        (lambda c: c["capture"]["generate"].update(enabled=False), "capture.generate.enabled"),
    ],
)
def test_experiment_config_errors(small_config, mutate, expected):
    cfg = _with_experiments(small_config)
    mutate(cfg)
    assert_config_error(cfg, expected)
