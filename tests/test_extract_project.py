"""Extraction (vectors, held-out metrics, best layer), statistics, projection."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from traitscope.artifacts import ActivationShard, TraitVectors
from traitscope.config import section
from traitscope.extract import SplitError, choose_best_layer, extract_trait, grouped_split, selection_folds
from traitscope.methods import fit_direction, segment_mean
from traitscope.project import ProjectionError, project_shard
from traitscope.settings import ExtractJob
from traitscope.stats import auc, bootstrap_auc_ci, cohens_d


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
    assert len(set(groups[test])) == math.ceil(fraction * 20) and len(set(groups[train])) == 20 - math.ceil(fraction * 20)


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
    job = ExtractJob(methods=("mean_diff", "probe"), test_fraction=0.25, selection_folds=3, probe_C=1.0,
                     selection_method="mean_diff")
    shard = ActivationShard(tensors, {"ids": table["id"].tolist(), "layers": [0, 1, 2], "positions": ["last"]})
    out, metrics = extract_trait(shard, table, job, trait="t/x", variant="v", model="m", layers=[0, 1, 2],
                                 position="last", seed=0)
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
    m = pd.DataFrame({"layer": [3, 5, 7], "method": "mean_diff", "val_auc": [0.8, 0.9, 0.7], "auc": [1.0, 0.6, 0.99],
                      "cohens_d": [2.0, 3.0, 9.0], "n_test": 10})
    best = choose_best_layer(m, "mean_diff")
    assert best["layer"] == 5 and best["val_auc"] == 0.9 and best["auc"] == 0.6  # the test AUC is reported as it is
    m["val_auc"] = [0.9, 0.9, 0.7]
    assert choose_best_layer(m, "mean_diff")["layer"] == 3  # ties go to the earlier layer


def test_the_test_split_cannot_change_the_choice():
    """Replace the test rows' activations with noise: the chosen layer, its validation AUC and every vector
    stay the same; only the reported test metrics move."""
    tensors, table, _ = planted(signal=(0.0, 1.0, 1.2))
    job = ExtractJob(methods=("mean_diff", "probe"), test_fraction=0.25, selection_folds=3, probe_C=1.0,
                     selection_method="mean_diff")
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
    tensors.update({"response.offsets": torch.tensor([0, 2, 2, 5]), "response.token_ids": torch.arange(5),
                    "response.is_prefill": torch.tensor([True, False, True, False, False])})
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


def test_projection_errors_are_actionable():
    shard, vectors = shard_and_vectors()
    vectors.info["best"]["layer"] = 5
    with pytest.raises(ProjectionError, match="capture.layers"):
        project_shard(shard, [vectors], job(per_token=False), n_layers=6)
    vectors.info["best"]["layer"] = 1
    wide = TraitVectors({**vectors.info, "hidden_size": 12}, {k: torch.randn(12) for k in vectors.tensors})
    with pytest.raises(ProjectionError, match="hidden size"):
        project_shard(shard, [wide], job(per_token=False), n_layers=2)
