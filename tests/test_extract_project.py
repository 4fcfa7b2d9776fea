"""Extraction (vectors, held-out metrics, best layer), statistics, projection."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from traitscope.core.artifacts import ActivationShard, ArtifactError, BaselineScores, TraitVectors
from traitscope.core.extract import SplitError, choose_best_layer, extract_trait, grouped_split, selection_folds
from traitscope.core.methods import fit_direction, random_directions, segment_mean
from traitscope.core.project import ProjectionError, baseline_scores, project_shard, score_frames, score_tensors
from traitscope.core.specs import BaselineJob, ExtractJob
from traitscope.core.stats import auc, bootstrap_auc_ci, cohens_d
from traitscope.study import section


def planted(n_groups=40, per_group=10, d=16, signal=(0.0, 0.5, 3.0), seed=0):
    """Contrastive activations with a known direction whose strength differs by layer."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=d)
    direction /= np.linalg.norm(direction)
    labels = np.tile([1, 0], n_groups * per_group // 2)
    groups = np.repeat([f"q{i}" for i in range(n_groups)], per_group)
    tensors = {}
    for layer, strength in enumerate(signal):
        x = rng.normal(size=(len(labels), d)) + strength * labels[:, None] * direction
        tensors[f"last.layer_{layer}"] = torch.tensor(x, dtype=torch.float16)
    table = pd.DataFrame({"id": [f"r{i}" for i in range(len(labels))], "label": labels, "group": groups})
    return tensors, table, direction


def test_cohens_d_definition():
    assert cohens_d(np.array([4.0, 5, 6]), np.array([1.0, 2, 3])) == pytest.approx(3.0)
    # same t-statistic relation as scipy: d = t * sqrt(1/na + 1/nb)
    rng = np.random.default_rng(1)
    a, b = rng.normal(1, 1, 30), rng.normal(0, 2, 20)
    t = sps.ttest_ind(a, b).statistic
    assert cohens_d(a, b) == pytest.approx(t * np.sqrt(1 / 30 + 1 / 20))


def test_auc_and_bootstrap_ci():
    y = np.array([0, 0, 1, 1, 0, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s))
    lo, hi = bootstrap_auc_ci(y, s, n_boot=300, seed=0)
    assert 0 <= lo <= auc(y, s) <= hi <= 1
    assert np.isnan(auc(np.ones(3), np.arange(3)))
    # the same interval as resampling each class with replacement and scoring with scikit-learn
    rng = np.random.default_rng(1)
    y = np.r_[np.ones(20), np.zeros(20)]
    s = rng.normal(size=40) + y
    lo, hi = bootstrap_auc_ci(y, s, n_boot=2000, seed=0)
    boots = []
    for _ in range(2000):
        i = np.r_[rng.choice(20, 20), 20 + rng.choice(20, 20)]
        boots.append(roc_auc_score(y[i], s[i]))
    ref_lo, ref_hi = np.quantile(boots, [0.025, 0.975])
    assert lo == pytest.approx(ref_lo, abs=0.03) and hi == pytest.approx(ref_hi, abs=0.03)
    assert bootstrap_auc_ci(y, 10 * y) == (1.0, 1.0)


def test_grouped_split_has_no_leakage_and_both_classes():
    labels = np.tile([1, 0], 40)
    groups = np.repeat(np.arange(20), 4)
    train, test = grouped_split(labels, groups, 0.25, seed=0)
    assert not set(groups[train]) & set(groups[test])
    assert set(labels[test]) == {0, 1} and len(train) + len(test) == 80
    same = grouped_split(labels, groups, 0.25, seed=0)
    assert np.array_equal(same[1], test)
    with pytest.raises(ValueError, match="groups"):
        grouped_split(labels[:4], groups[:4], 0.25, seed=0)


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.3, 0.4, 0.5, 0.7])
def test_test_fraction_is_honoured_as_given(fraction):
    """ceil(fraction x groups) whole groups in test, not a rounded 1/k fold (0.3 used to become 1/3, 0.4 a half)."""
    labels = np.tile([1, 0], 40)
    groups = np.repeat(np.arange(20), 4)
    train, test = grouped_split(labels, groups, fraction, seed=1)
    assert len(set(groups[test])) == math.ceil(fraction * 20) and len(set(groups[train])) == 20 - math.ceil(
        fraction * 20
    )


def test_contrast_groups_are_split_by_class():
    """One prompt per group (a contrast set): the test split still holds both classes in proportion."""
    labels = np.r_[np.ones(12, dtype=int), np.zeros(28, dtype=int)]
    train, test = grouped_split(labels, np.arange(40), 0.25, seed=0)
    assert len(test) == 10 and labels[test].sum() == 3


def test_selection_folds_need_enough_groups():
    labels = np.tile([1, 0], 8)
    with pytest.raises(SplitError, match="extract.selection_folds=5"):
        selection_folds(labels, np.repeat(np.arange(4), 4), 5, seed=0)


def test_extraction_recovers_planted_direction_and_picks_the_strong_layer():
    tensors, table, direction = planted()
    job = ExtractJob(
        methods=("mean_diff", "probe"),
        test_fraction=0.25,
        selection_folds=3,
        probe_C=1.0,
        selection_method="mean_diff",
        random_directions=50,
    )
    shard = ActivationShard(tensors, {"ids": table["id"].tolist(), "layers": [0, 1, 2], "positions": ["last"]})
    out, metrics = extract_trait(
        shard, table, job, trait="t/x", variant="v", model="m", layers=[0, 1, 2], position="last", seed=0
    )
    info = out.info
    v = out.get("mean_diff", 2).numpy()
    assert abs(v @ direction) / np.linalg.norm(v) > 0.9
    strong = metrics[(metrics.layer == 2)].set_index("method")
    assert strong.loc["mean_diff", "auc"] > 0.97 and strong.loc["probe", "auc"] > 0.9
    assert metrics[(metrics.layer == 0) & (metrics.method == "mean_diff")]["auc"].iloc[0] < 0.8
    assert info["best"]["layer"] == 2 and "cross-validated ROC-AUC inside the training split" in info["best"]["reason"]
    assert info["split"]["n_test_groups"] == 10 and info["split"]["realised_test_fraction"] == 0.25
    assert not set(info["split"]["train_groups"]) & set(info["split"]["test_groups"])
    # metrics are held-out: recompute the test AUC from the vector and the recorded split
    test_rows = table["group"].isin(info["split"]["test_groups"]).to_numpy()
    x = tensors["last.layer_2"].float().numpy()[test_rows]
    assert strong.loc["mean_diff", "auc"] == pytest.approx(roc_auc_score(table["label"][test_rows], x @ v))


def test_best_layer_is_chosen_by_train_cross_validation_not_the_test_split():
    m = pd.DataFrame(
        {
            "layer": [3, 5, 7],
            "method": "mean_diff",
            "val_auc": [0.8, 0.9, 0.7],
            "auc": [1.0, 0.6, 0.99],
            "cohens_d": [2.0, 3.0, 9.0],
            "n_test": 10,
            "random_auc_p95": 0.7,
            "auc_percentile": 90.0,
            "beats_random": [True, False, True],
            "shuffled_auc": 0.5,
            "n_random": 100,
        }
    )
    best = choose_best_layer(m, "mean_diff")
    assert best["baseline"].startswith("DOES NOT BEAT ITS RANDOM BASELINE") and not best["beats_random"]
    assert best["layer"] == 5 and best["val_auc"] == 0.9 and best["auc"] == 0.6  # the test AUC is reported as it is
    m["val_auc"] = [0.9, 0.9, 0.7]
    assert choose_best_layer(m, "mean_diff")["layer"] == 3  # ties go to the earlier layer


def test_the_test_split_cannot_change_the_choice():
    """Replace the test rows' activations with noise: the chosen layer, its validation AUC and every vector
    stay the same; only the reported test metrics move."""
    tensors, table, _ = planted(signal=(0.0, 1.0, 1.2))
    job = ExtractJob(
        methods=("mean_diff", "probe"),
        test_fraction=0.25,
        selection_folds=3,
        probe_C=1.0,
        selection_method="mean_diff",
        random_directions=50,
    )
    meta = {"ids": table["id"].tolist(), "layers": [0, 1, 2], "positions": ["last"]}
    kwargs = dict(trait="t/x", variant="v", model="m", layers=[0, 1, 2], position="last", seed=0)
    clean, m1 = extract_trait(ActivationShard(tensors, meta), table, job, **kwargs)
    test_rows = table["group"].isin(clean.info["split"]["test_groups"]).to_numpy()
    noisy = {k: v.clone() for k, v in tensors.items()}
    for k in noisy:
        noisy[k][torch.tensor(test_rows)] = torch.randn(int(test_rows.sum()), 16).half() * 5
    other, m2 = extract_trait(ActivationShard(noisy, meta), table, job, **kwargs)
    assert other.info["best"]["layer"] == clean.info["best"]["layer"]
    assert m2["val_auc"].tolist() == m1["val_auc"].tolist() and m2["auc"].tolist() != m1["auc"].tolist()
    assert all(other.tensors[k].equal(clean.tensors[k]) for k in clean.tensors)


def test_response_mean_averages_tokens_and_masks_empty_rows():
    tok = torch.tensor([[1.0, 0], [3, 0], [0, 2]])
    tensors = {"response.layer_0": tok, "response.offsets": torch.tensor([0, 2, 2, 3])}
    x, ok = ActivationShard(tensors, {}).pooled("response_mean", 0)
    assert np.allclose(x[0], [2, 0]) and np.allclose(x[2], [0, 2]) and ok.tolist() == [True, False, True]
    # the same pooling of per-token scores (projection) and of activations (extraction)
    scores, has = segment_mean(tok[:, 0], tensors["response.offsets"])
    assert scores[0] == 2 and np.isnan(scores[1]) and scores[2] == 0 and has.tolist() == [True, False, True]


@pytest.mark.parametrize("method", ["mean_diff", "probe"])
def test_fit_direction_classifies_like_its_definition(method):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(3)
    y = np.r_[np.ones(40, dtype=int), np.zeros(40, dtype=int)]
    x = (rng.normal(size=(80, 6)) + 0.8 * y[:, None]).astype(np.float32)
    d = fit_direction(x, y, method, probe_c=1.0, seed=0)
    if method == "mean_diff":
        assert np.allclose(d.vector, x[y == 1].mean(0) - x[y == 0].mean(0))
        u = d.vector / np.linalg.norm(d.vector)
        mid = ((x[y == 1] @ u).mean() + (x[y == 0] @ u).mean()) / 2
        assert d.predict(x).tolist() == (x @ u > mid).astype(int).tolist()
    else:
        scaler = StandardScaler().fit(x)
        clf = LogisticRegression(C=1.0, max_iter=5000, random_state=0).fit(scaler.transform(x), y)
        assert np.allclose(d.vector, clf.coef_[0] / scaler.scale_, rtol=1e-5)
        assert d.predict(x).tolist() == clf.predict(scaler.transform(x)).tolist()


def shard_and_vectors():
    torch.manual_seed(0)
    d = 8
    tensors = {f"last.layer_{layer}": torch.randn(3, d).half() for layer in (0, 1)}
    tensors.update({f"mean.layer_{layer}": torch.randn(3, d).half() for layer in (0, 1)})
    tensors.update({f"response.layer_{layer}": torch.randn(5, d).half() for layer in (0, 1)})
    tensors.update(
        {
            "response.offsets": torch.tensor([0, 2, 2, 5]),
            "response.token_ids": torch.arange(5),
            "response.is_prefill": torch.tensor([True, False, True, False, False]),
        }
    )
    meta = {"ids": ["a", "b", "c"], "layers": [0, 1], "positions": ["last", "mean", "response"]}
    vecs = {f"mean_diff.layer_{layer}": torch.randn(d) * 5 for layer in (0, 1)}
    info = {"trait": "safety/x", "best": {"layer": 1, "method": "mean_diff"}, "hidden_size": d, "position": "last"}
    return ActivationShard(tensors, meta), TraitVectors(info, vecs)


def job(layers="best", per_token=True):
    return section("project", {"layers": layers, "methods": ["mean_diff"], "per_token": per_token})


def test_projection_is_scalar_projection_on_unit_vector():
    shard, vectors = shard_and_vectors()
    tensors = shard.tensors
    pooled, tokens = project_shard(shard, [vectors], job(), n_layers=2)
    v = vectors.tensors["mean_diff.layer_1"]
    u = v / v.norm()
    last = pooled[pooled.position == "last"].set_index("id")["score"]
    assert last["b"] == pytest.approx(float(tensors["last.layer_1"][1].float() @ u), rel=1e-5)
    assert set(pooled["layer"]) == {1}
    tok_c = tokens[tokens.id == "c"]
    assert tok_c["token_index"].tolist() == [0, 1, 2] and tok_c["is_prefill"].tolist() == [True, False, False]
    rm = pooled[pooled.position == "response_mean"].set_index("id")["score"]
    assert rm["c"] == pytest.approx(tok_c["score"].mean(), rel=1e-5)
    assert np.isnan(rm["b"])  # no tokens
    both, _ = project_shard(shard, [vectors], job("all", per_token=False), n_layers=2)
    assert set(both["layer"]) == {0, 1}
    near, _ = project_shard(shard, [vectors], job("neighbours", per_token=False), n_layers=2)
    assert set(near["layer"]) == {0, 1}  # the chosen layer 1 and its captured neighbour 0


def test_neighbours_are_the_nearest_captured_layers_either_side():
    from types import SimpleNamespace

    from traitscope.core.project import ProjectionError, select_layers

    at = SimpleNamespace(best_layer=6, trait="safety/x")
    assert select_layers("neighbours", at, [0, 2, 6, 9, 12], 16) == [2, 6, 9]
    assert select_layers("neighbours", at, [6, 7], 16) == [6, 7]
    assert select_layers("best", at, [0, 2, 6, 9], 16) == [6]
    with pytest.raises(ProjectionError, match="layer\\(s\\) \\[6\\] were not captured"):
        select_layers("neighbours", at, [0, 2], 16)


def _rows(shard: ActivationShard, lo: int, hi: int) -> ActivationShard:
    """Rows ``lo:hi`` of a shard, with their response tokens and re-based offsets (a shard of a smaller set)."""
    off = shard.offsets
    t0, t1 = int(off[lo]), int(off[hi])
    tensors = {
        k: (v[t0:t1] if k.startswith("response.") else v[lo:hi])
        for k, v in shard.tensors.items()
        if k != "response.offsets"
    }
    tensors["response.offsets"] = off[lo : hi + 1] - t0
    return ActivationShard(tensors, {**shard.meta, "ids": shard.ids[lo:hi]})


def test_random_baseline_scores_seeded_unit_directions_on_the_same_rows_and_tokens():
    shard, vectors = shard_and_vectors()
    bj = BaselineJob(n_random=7, seed=3, per_token=True)
    scores = score_tensors(shard, [vectors], job(), n_layers=2, baseline=bj)
    base = baseline_scores([scores], shard.ids, bj)
    r = torch.from_numpy(random_directions(7, 8, 3 * 1000 + 1))  # the trait's best layer is 1
    assert np.allclose(np.linalg.norm(r.numpy(), axis=1), 1)
    assert np.allclose(base.pooled(1, "last"), (shard.tensors["last.layer_1"].float() @ r.T).numpy(), atol=1e-6)
    assert np.allclose(base.pooled(1, "mean"), (shard.tensors["mean.layer_1"].float() @ r.T).numpy(), atol=1e-6)
    tok = (shard.tensors["response.layer_1"].float() @ r.T).numpy()
    rm = base.pooled(1, "response_mean")
    assert np.allclose(rm[2], tok[2:5].mean(0)) and np.isnan(rm[1]).all()  # row b has no response tokens
    win = base.window_means(1, np.array([1, 4, 2]))  # first k tokens; b has none, so NaN
    assert np.allclose(win[0], tok[0]) and np.isnan(win[1]).all() and np.allclose(win[2], tok[2:4].mean(0))
    with pytest.raises(ArtifactError, match="layer 0"):  # only projected layers carry a baseline
        base.pooled(0, "last")
    # the trait scores do not change, and the baseline is the same whether the set comes in one shard or two
    alone = score_frames(score_tensors(shard, [vectors], job(), n_layers=2), shard.ids)[0]
    pd.testing.assert_frame_equal(score_frames(scores, shard.ids)[0], alone)
    parts = [
        score_tensors(_rows(shard, lo, hi), [vectors], job(), n_layers=2, baseline=bj) for lo, hi in ((0, 2), (2, 3))
    ]
    merged = baseline_scores(parts, shard.ids, bj)
    assert merged.tensors.keys() == base.tensors.keys()
    for key, value in base.tensors.items():
        torch.testing.assert_close(merged.tensors[key], value, rtol=0, atol=0, equal_nan=True, msg=key)
    pooled_only = baseline_scores(
        [score_tensors(shard, [vectors], job(), n_layers=2, baseline=bj._replace(per_token=False))], shard.ids, bj
    )
    assert not any(k.startswith("token.") for k in pooled_only.tensors)
    off = baseline_scores([score_tensors(shard, [vectors], job(), 2, bj._replace(n_random=0))], shard.ids, bj)
    assert off.tensors == {}


def test_random_baseline_round_trips(tmp_path):
    shard, vectors = shard_and_vectors()
    bj = BaselineJob(n_random=5, seed=0, per_token=True)
    base = baseline_scores([score_tensors(shard, [vectors], job(), 2, bj)], shard.ids, bj)
    base.save(tmp_path / "baseline.safetensors")
    back = BaselineScores.load(tmp_path / "baseline.safetensors")
    assert back.ids == ["a", "b", "c"] and back.n_random == 5 and back.meta["layers"] == [1]
    for key, value in base.tensors.items():
        torch.testing.assert_close(back.tensors[key], value, rtol=0, atol=0, equal_nan=True)


def test_projection_errors_are_actionable():
    shard, vectors = shard_and_vectors()
    vectors.info["best"]["layer"] = 5
    with pytest.raises(ProjectionError, match="capture.layers"):
        project_shard(shard, [vectors], job(per_token=False), n_layers=6)
    vectors.info["best"]["layer"] = 1
    wide = TraitVectors({**vectors.info, "hidden_size": 12}, {k: torch.randn(12) for k in vectors.tensors})
    with pytest.raises(ProjectionError, match="hidden size"):
        project_shard(shard, [wide], job(per_token=False), n_layers=2)


def test_every_method_of_the_registry_is_a_config_choice_and_pca_diff_finds_the_direction():
    import yaml

    from traitscope.core.methods import METHODS, fit_direction
    from traitscope.experiments import REGISTRY
    from traitscope.workflow.config import SCHEMA_PATH

    text = "\n".join(Path(f).read_text() for f in [SCHEMA_PATH, *(e.schema for e in REGISTRY if e.schema)])
    enums = [line for line in text.splitlines() if "enum: [mean_diff" in line]
    # every method choice (core sections and experiments alike) offers the whole registry; how many there are is
    # not counted, so a new experiment with a method choice changes nothing here
    assert enums and all(yaml.safe_load("{" + e.split("{", 1)[1])["enum"] == list(METHODS) for e in enums)
    tensors, table, direction = planted()
    x, y = tensors["last.layer_2"].float().numpy(), table["label"].to_numpy()
    pca = fit_direction(x, y, "pca_diff", probe_c=1.0, seed=0)
    assert abs(pca.vector @ direction) / np.linalg.norm(pca.vector) > 0.9
    assert (x[y == 1] @ pca.vector).mean() > (x[y == 0] @ pca.vector).mean()  # oriented from label 0 to 1
    assert (pca.predict(x) == y).mean() > 0.9
    rand = fit_direction(x, y, "random", probe_c=1.0, seed=5)  # planted() drew its direction with seed 0
    assert abs(rand.vector @ direction) / np.linalg.norm(rand.vector) < 0.6  # knows nothing but the sign
    assert (x[y == 1] @ rand.vector).mean() >= (x[y == 0] @ rand.vector).mean()
    assert np.array_equal(rand.vector, fit_direction(x, y, "random", probe_c=1.0, seed=5).vector)  # seeded


def test_every_extraction_auc_comes_with_its_random_and_shuffled_baselines():
    from scipy.stats import percentileofscore

    from traitscope.core.extract import random_baseline

    tensors, table, _ = planted(signal=(0.0, 0.5, 3.0))
    job = ExtractJob(
        methods=("mean_diff", "pca_diff", "random"),
        test_fraction=0.25,
        selection_folds=3,
        probe_C=1.0,
        selection_method="mean_diff",
        random_directions=50,
    )
    shard = ActivationShard(tensors, {"ids": table["id"].tolist(), "layers": [0, 1, 2], "positions": ["last"]})
    out, metrics = extract_trait(
        shard, table, job, trait="t/x", variant="v", model="m", layers=[0, 1, 2], position="last", seed=0
    )
    m = metrics.set_index(["layer", "method"])
    assert m.loc[(2, "mean_diff"), "beats_random"] and m.loc[(2, "mean_diff"), "auc_percentile"] == 100.0
    assert m.loc[(2, "pca_diff"), "beats_random"]
    assert not m.loc[(0, "mean_diff"), "beats_random"]  # no signal at layer 0: no better than chance
    assert m.loc[(2, "mean_diff"), "shuffled_auc"] < m.loc[(2, "mean_diff"), "auc"] - 0.3  # shuffled labels: far worse
    assert (m["n_random"] == 50).all()
    # recompute layer 2's baseline from the recorded split with the same seeded directions
    test = table["group"].isin(out.info["split"]["test_groups"]).to_numpy()
    y, x = table["label"].to_numpy(), tensors["last.layer_2"].float().numpy()
    aucs = random_baseline(x[~test], y[~test], x[test], y[test], 50, seed=0 * 1000 + 2)
    assert m.loc[(2, "mean_diff"), "random_auc_p95"] == pytest.approx(np.percentile(aucs, 95))
    assert m.loc[(1, "mean_diff"), "auc_percentile"] != percentileofscore(aucs, m.loc[(1, "mean_diff"), "auc"])
    best = out.info["best"]
    assert best["layer"] == 2 and best["beats_random"] and "random directions at layer 2" in best["baseline"]
    assert {"random_auc_p95", "auc_percentile", "beats_random", "shuffled_auc"} <= set(
        out.info["vectors"][0]["metrics"]
    )
    # a trait vector that does not beat its baseline says so
    noise, _, _ = planted(signal=(0.0, 0.0, 0.0))
    weak, _ = extract_trait(
        ActivationShard(noise, shard.meta),
        table,
        job,
        trait="t/x",
        variant="v",
        model="m",
        layers=[0, 1, 2],
        position="last",
        seed=0,
    )
    if not weak.info["best"]["beats_random"]:
        assert weak.info["best"]["baseline"].startswith("DOES NOT BEAT ITS RANDOM BASELINE")
    assert sum(not r["metrics"]["beats_random"] for r in weak.info["vectors"]) >= 7  # 9 vectors on pure noise


def test_harm_check_reports_the_eval_auc_against_random_directions():
    from traitscope.core.methods import random_directions
    from traitscope.experiments.harm_separation.analysis import check_separation as harm_check

    tensors, table, direction = planted(signal=(0.0, 0.5, 3.0))
    job = ExtractJob(
        methods=("mean_diff",),
        test_fraction=0.25,
        selection_folds=3,
        probe_C=1.0,
        selection_method="mean_diff",
        random_directions=40,
    )
    meta = {"ids": table["id"].tolist(), "layers": [0, 1, 2], "positions": ["last"]}
    vectors, _ = extract_trait(
        ActivationShard(tensors, meta),
        table,
        job,
        trait="t/x",
        variant="v",
        model="m",
        layers=[0, 1, 2],
        position="last",
        seed=0,
    )
    labels = table["label"].to_numpy()
    rng = np.random.default_rng(1)  # independent eval rows along the same planted direction
    fresh = {
        f"last.layer_{k}": torch.tensor(
            rng.normal(size=(len(labels), 16)) + s * labels[:, None] * direction, dtype=torch.float16
        )
        for k, s in enumerate((0.0, 0.5, 3.0))
    }
    pos, neg = labels == 1, labels == 0

    def shard_of(rows):
        return ActivationShard(
            {k: v[torch.tensor(rows)] for k, v in fresh.items()},
            {"ids": [str(i) for i in range(int(rows.sum()))], "layers": [0, 1, 2], "positions": ["last"]},
        )

    result, _, _ = harm_check(vectors, [shard_of(pos)], [shard_of(neg)], min_auc=0.9, seed=3)
    base = result["eval_baseline"]
    u = vectors.unit("mean_diff", 2).numpy()
    r = random_directions(40, len(u), 3)
    r *= np.where(r @ u >= 0, 1.0, -1.0)[:, None]
    x = fresh["last.layer_2"].float().numpy()
    aucs = [roc_auc_score(np.r_[np.ones(pos.sum()), np.zeros(neg.sum())], np.r_[x[pos] @ d, x[neg] @ d]) for d in r]
    assert base["random_auc_p95"] == pytest.approx(np.percentile(aucs, 95)) and base["n_random"] == 40
    assert base["beats_random"] == (result["eval_auc"] > base["random_auc_p95"]) and base["beats_random"]
    assert result["extraction_baseline"]["beats_random"] and result["extraction_baseline"]["n_random"] == 40
    # the negative control: the same rows with shuffled labels must not beat random directions on those labels
    shuffled = result["shuffled_label_check"]
    assert shuffled["failed_as_it_must"] and not shuffled["beats_random"] and abs(shuffled["auc"] - 0.5) < 0.3
    assert shuffled["auc"] < result["eval_auc"] - 0.3
