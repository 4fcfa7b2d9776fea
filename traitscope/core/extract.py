"""Trait vector extraction from contrastive activations: mean difference and logistic probe.

Rows are split once per trait and seed into train and test by ``group`` (a question never appears on both
sides), stratified by the groups' labels, with exactly ``ceil(test_fraction x groups)`` groups in test; the
same split serves every layer and method. Vectors are fit on train only.

The best layer is chosen on the training split alone, by grouped ``selection_folds``-fold cross-validation
(``val_auc``), so the test split is never used to choose anything and its numbers are unbiased estimates:

``val_auc``    mean ROC-AUC over the cross-validation folds inside train: chooses the layer
``auc``        ROC-AUC of the test projections onto the unit vector (pos = label 1): reported only
``accuracy``   on test. mean_diff: threshold at the midpoint of the projected train class means;
               probe: the probe's own prediction
``cohens_d``   Cohen's d of the test projections, pos vs neg
``train_auc``  the same AUC on train, to show over-fitting

Control baselines, per (method, layer), on the same test split:

``random_auc_mean``, ``random_auc_p95``  mean and 95th percentile of the test AUCs of ``random_directions`` seeded
               random unit directions at the layer, each oriented on the training split (pos above neg)
``auc_percentile``  the vector's test AUC as a percentile of those random AUCs (scipy ``percentileofscore``,
               strict: the share of random directions it beats)
``beats_random``    ``auc`` above ``random_auc_p95``
``shuffled_auc``    the test AUC of the same method fit on the training rows with their labels shuffled
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from .artifacts import ActivationShard, TraitVectors, tensor_key
from .methods import fit_direction, random_directions, unit
from .specs import ExtractJob
from .stats import auc, cohens_d, column_aucs, versus_random


class SplitError(ValueError):
    pass


def _group_strata(labels: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique groups and each group's label make-up (all 0, all 1 or mixed), the stratum of the split."""
    frame = pd.DataFrame({"group": groups, "label": labels})
    mean = frame.groupby("group", sort=True)["label"].mean()
    strata = np.where(mean == 1, "pos", np.where(mean == 0, "neg", "mixed"))
    return mean.index.to_numpy(), strata


def grouped_split(
    labels: np.ndarray, groups: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of train and test: ``ceil(test_fraction x n_groups)`` whole groups in test, stratified by the
    groups' label make-up; both classes on both sides or a one-line error."""
    unique, strata = _group_strata(labels, groups)
    n_test = math.ceil(test_fraction * len(unique))
    if len(unique) < 2 or n_test >= len(unique):
        raise SplitError(
            f"{len(unique)} groups cannot give a test split of {test_fraction} with a non-empty train "
            "split (fix: add questions/prompts or lower extract.test_fraction)"
        )
    _, counts = np.unique(strata, return_counts=True)
    stratify = strata if counts.min() >= 2 and n_test >= len(counts) and len(unique) - n_test >= len(counts) else None
    _, test_groups = train_test_split(unique, test_size=n_test, stratify=stratify, random_state=seed)
    is_test = np.isin(groups, test_groups)
    train, test = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    for name, idx in (("train", train), ("test", test)):
        if len(np.unique(labels[idx])) < 2:
            raise SplitError(
                f"the {name} split of {len(unique)} groups has a single class "
                "(fix: add questions/prompts of both classes or change extract.test_fraction)"
            )
    return train, test


def selection_folds(
    labels: np.ndarray, groups: np.ndarray, n_folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Grouped, stratified cross-validation folds inside the training rows (positions into ``labels``)."""
    n_groups = len(np.unique(groups))
    if n_groups < n_folds:
        raise SplitError(
            f"the training split has {n_groups} groups, fewer than extract.selection_folds={n_folds} "
            "(fix: add questions/prompts or lower extract.selection_folds)"
        )
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = [(np.sort(a), np.sort(b)) for a, b in splitter.split(np.zeros(len(labels)), labels, groups)]
    for _, val in folds:
        if len(np.unique(labels[val])) < 2:
            raise SplitError(
                f"a selection fold of {n_groups} training groups has a single class "
                "(fix: add questions/prompts of both classes or lower extract.selection_folds)"
            )
    return folds


@dataclass
class LayerResult:
    vectors: dict[str, np.ndarray]
    metrics: list[dict[str, Any]]


def random_baseline(
    xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray, n: int, seed: int
) -> np.ndarray:
    """Test AUCs of ``n`` seeded random unit directions, each oriented on the training rows (pos above neg)."""
    r = random_directions(n, xtr.shape[1], seed)
    ptr, pte = xtr @ r.T, xte @ r.T
    sign = np.where(ptr[ytr == 1].mean(0) >= ptr[ytr == 0].mean(0), 1.0, -1.0)
    return column_aucs(yte, pte * sign)


def fit_layer(
    x: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    methods: tuple[str, ...] | list[str],
    probe_c: float,
    seed: int,
    folds: list[tuple[np.ndarray, np.ndarray]] | None = None,
    n_random: int = 100,
    layer: int = 0,
) -> LayerResult:
    """Vectors fit on ``train``; test metrics against the control baselines (random directions at this layer, a
    shuffled-label vector); and, given ``folds`` (positions into ``train``), the mean cross-validated AUC inside
    train that the layer choice uses."""
    xtr, ytr, xte, yte = x[train], y[train], x[test], y[test]
    vectors: dict[str, np.ndarray] = {}
    metrics = []
    random_aucs = random_baseline(xtr, ytr, xte, yte, n_random, seed=seed * 1000 + layer)
    shuffled = np.random.default_rng(seed * 1000 + layer).permutation(ytr)
    for method in methods:
        direction = fit_direction(xtr, ytr, method, probe_c=probe_c, seed=seed)
        v = direction.vector
        u = unit(v)
        vectors[method] = v
        pte, ptr = xte @ u, xtr @ u
        val = [
            auc(ytr[b], xtr[b] @ unit(fit_direction(xtr[a], ytr[a], method, probe_c=probe_c, seed=seed).vector))
            for a, b in folds or []
        ]
        test_auc = auc(yte, pte)
        shuffled_v = fit_direction(xtr, shuffled, method, probe_c=probe_c, seed=seed).vector
        metrics.append(
            {
                "method": method,
                "val_auc": float(np.mean(val)) if val else float("nan"),
                "auc": test_auc,
                "accuracy": float((direction.predict(xte) == yte).mean()),
                "cohens_d": cohens_d(pte[yte == 1], pte[yte == 0]),
                "train_auc": auc(ytr, ptr),
                "norm": float(np.linalg.norm(v)),
                "n_train": int(len(train)),
                "n_test": int(len(test)),
                **versus_random(test_auc, random_aucs),
                "shuffled_auc": auc(yte, xte @ unit(shuffled_v)),
            }
        )
    return LayerResult(vectors, metrics)


def best_entry(metrics: Any, layer: int, method: str, criterion: str, reason: str) -> dict[str, Any]:
    """The sidecar's ``best``: the chosen layer with its held-out numbers and their control baseline (``metrics``:
    the per-vector metrics of that layer and method)."""
    baseline = (
        f"test AUC {metrics['auc']:.3f} is at the {metrics['auc_percentile']:.0f}th percentile of "
        f"{int(metrics['n_random'])} random directions at layer {layer} (their 95th percentile "
        f"{metrics['random_auc_p95']:.3f}); a vector fit on shuffled labels scores {metrics['shuffled_auc']:.3f}"
    )
    if not metrics["beats_random"]:
        baseline = "DOES NOT BEAT ITS RANDOM BASELINE: " + baseline
    return {
        "layer": int(layer),
        "method": method,
        "val_auc": float(metrics["val_auc"]),
        "auc": float(metrics["auc"]),
        "cohens_d": float(metrics["cohens_d"]),
        "beats_random": bool(metrics["beats_random"]),
        "auc_percentile": float(metrics["auc_percentile"]),
        "random_auc_p95": float(metrics["random_auc_p95"]),
        "shuffled_auc": float(metrics["shuffled_auc"]),
        "baseline": baseline,
        "criterion": criterion,
        "reason": reason,
    }


def choose_best_layer(metrics: pd.DataFrame, method: str) -> dict[str, Any]:
    """Highest cross-validated AUC inside the training split (``val_auc``) for ``method``, earlier layer on ties.
    The test AUC of the chosen layer is reported, never used."""
    m = metrics[metrics["method"] == method]
    ranked = m.sort_values(["val_auc", "layer"], ascending=[False, True])
    best = ranked.iloc[0]
    runner = ranked.iloc[1] if len(ranked) > 1 else None
    reason = (
        f"layer {int(best['layer'])} has the highest cross-validated ROC-AUC inside the training split of the "
        f"{method} vector ({best['val_auc']:.3f})"
    )
    if runner is not None:
        reason += f"; runner-up layer {int(runner['layer'])} ({runner['val_auc']:.3f})"
    reason += (
        f"; ties go to the earlier layer. Its test-split AUC {best['auc']:.3f} (n_test {int(best['n_test'])}) "
        "played no part in the choice"
    )
    return best_entry(
        best,
        int(best["layer"]),
        method,
        "max cross-validated ROC-AUC inside the training split (the test split only reports)",
        reason,
    )


def extract_trait(
    shard: ActivationShard,
    table: pd.DataFrame,
    job: ExtractJob,
    *,
    trait: str,
    variant: str,
    model: str,
    layers: tuple[int, ...] | list[int],
    position: str,
    seed: int,
    site: str = "resid",
    drop_ids: set[str] | None = None,
    filter_info: dict[str, Any] | None = None,
) -> tuple[TraitVectors, pd.DataFrame]:
    """Vectors for every (method, layer) with their sidecar, and a per-layer metrics table.

    ``table`` holds the labelled contrastive rows in the shard's order (``label``, ``group``). ``site`` is where in
    each block the activations are read (``resid``, ``attn``, ``mlp``): the sidecar records it, and every later
    stage reads, projects and steers the vectors there.
    """
    layers = list(layers)
    labels_all = table["label"].to_numpy(dtype=int)
    groups_all = table["group"].to_numpy()
    _, valid = shard.pooled(position, layers[0], site)
    dropped = table["id"].isin(drop_ids or set()).to_numpy()  # the judged persona filter (persona_filter.py)
    keep = np.flatnonzero(valid & ~dropped)
    y, groups = labels_all[keep], groups_all[keep]
    if len(np.unique(y)) < 2:
        raise ValueError(
            f"trait {trait}: a single class is left after dropping rows without activations and "
            f"{int(dropped.sum())} rows of the judged filter (fix: loosen extract.filter thresholds, or "
            "add questions/instruction pairs)"
        )
    train, test = grouped_split(y, groups, job.test_fraction, seed)
    folds = selection_folds(y[train], groups[train], job.selection_folds, seed)
    tensors: dict[str, torch.Tensor] = {}
    rows = []
    for layer in layers:
        x, _ = shard.pooled(position, layer, site)
        res = fit_layer(
            x[keep], y, train, test, job.methods, job.probe_C, seed, folds, n_random=job.random_directions, layer=layer
        )
        for method, v in res.vectors.items():
            tensors[tensor_key(method, layer)] = torch.from_numpy(v)
        rows += [{"layer": layer, **m} for m in res.metrics]
    metrics = pd.DataFrame(rows)
    info = {
        "trait": trait,
        "variant": variant,
        "model": model,
        "position": position,
        "site": site,
        "methods": list(job.methods),
        "layers": layers,
        "hidden_size": int(next(iter(tensors.values())).shape[0]),
        "n": int(len(table)),
        "split": {
            "n_train": int(len(train)),
            "n_test": int(len(test)),
            "test_fraction": job.test_fraction,
            "n_train_groups": len(set(groups[train].tolist())),
            "n_test_groups": len(set(groups[test].tolist())),
            "realised_test_fraction": len(set(groups[test].tolist())) / len(set(groups.tolist())),
            "selection_folds": job.selection_folds,
            "seed": seed,
            "grouped_by": "group",
            "train_groups": sorted(set(groups[train].tolist())),
            "test_groups": sorted(set(groups[test].tolist())),
            "n_pos": int((y == 1).sum()),
            "n_neg": int((y == 0).sum()),
            "n_dropped_no_tokens": int((~valid).sum()),
            "n_dropped_by_filter": int((dropped & valid).sum()),
        },
        "filter": filter_info,
        "best": choose_best_layer(metrics, job.selection_method),
        "vectors": [
            {
                "key": tensor_key(r["method"], int(r["layer"])),
                "method": r["method"],
                "layer": int(r["layer"]),
                "metrics": {
                    k: r[k]
                    for k in (
                        "val_auc",
                        "auc",
                        "accuracy",
                        "cohens_d",
                        "train_auc",
                        "norm",
                        "n_train",
                        "n_test",
                        "random_auc_mean",
                        "random_auc_p95",
                        "auc_percentile",
                        "beats_random",
                        "shuffled_auc",
                        "n_random",
                    )
                },
            }
            for r in metrics.to_dict(orient="records")
        ],
        "activations_key": shard.meta.get("key"),
    }
    return TraitVectors(info, tensors), metrics.assign(trait=trait)
