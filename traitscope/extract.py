"""Trait vector extraction from contrastive activations: mean difference and logistic probe.

For every layer, rows are split into train and test by ``group`` (a question never appears on
both sides) with class stratification, once per trait and seed, the same split for every layer
and method. Vectors are fit on train only; all reported metrics are held-out:

``auc``        ROC-AUC of the test projections onto the unit vector (pos = label 1)
``accuracy``   mean_diff: threshold at the midpoint of the projected train class means;
               probe: the probe's own prediction
``cohens_d``   Cohen's d of the test projections, pos vs neg
``train_auc``  the same AUC on train, to show over-fitting
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import StratifiedGroupKFold

from .artifacts import ActivationShard, TraitVectors, tensor_key
from .methods import fit_direction, unit
from .settings import ExtractJob
from .stats import auc, cohens_d


def grouped_split(labels: np.ndarray, groups: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified group split: disjoint groups, both classes on both sides where possible."""
    n_splits = max(2, int(round(1 / test_fraction)))
    n_groups = len(np.unique(groups))
    if n_groups < n_splits:
        raise ValueError(f"{n_groups} groups cannot be split {n_splits}-fold; add questions/prompts or raise test_fraction")
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    train, test = next(splitter.split(np.zeros(len(labels)), labels, groups))
    return np.sort(train), np.sort(test)


@dataclass
class LayerResult:
    vectors: dict[str, np.ndarray]
    metrics: list[dict[str, Any]]


def fit_layer(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, methods: tuple[str, ...] | list[str],
              probe_c: float, seed: int) -> LayerResult:
    xtr, ytr, xte, yte = x[train], y[train], x[test], y[test]
    vectors: dict[str, np.ndarray] = {}
    metrics = []
    for method in methods:
        direction = fit_direction(xtr, ytr, method, probe_c=probe_c, seed=seed)
        v = direction.vector
        u = unit(v)
        vectors[method] = v
        pte, ptr = xte @ u, xtr @ u
        metrics.append({"method": method, "auc": auc(yte, pte), "accuracy": float((direction.predict(xte) == yte).mean()),
                        "cohens_d": cohens_d(pte[yte == 1], pte[yte == 0]), "train_auc": auc(ytr, ptr),
                        "norm": float(np.linalg.norm(v)), "n_train": int(len(train)), "n_test": int(len(test))})
    return LayerResult(vectors, metrics)


def choose_best_layer(metrics: pd.DataFrame, method: str) -> dict[str, Any]:
    """Highest held-out ROC-AUC for ``method``; ties broken by larger Cohen's d, then the earlier layer."""
    m = metrics[metrics["method"] == method].copy()
    m["_d"] = m["cohens_d"].fillna(-np.inf)
    ranked = m.sort_values(["auc", "_d", "layer"], ascending=[False, False, True])
    best = ranked.iloc[0]
    runner = ranked.iloc[1] if len(ranked) > 1 else None
    reason = (f"layer {int(best['layer'])} has the highest held-out ROC-AUC of the {method} vector "
              f"({best['auc']:.3f}, Cohen's d {best['cohens_d']:.2f}, n_test {int(best['n_test'])})")
    if runner is not None:
        reason += f"; runner-up layer {int(runner['layer'])} (AUC {runner['auc']:.3f}, d {runner['cohens_d']:.2f})"
    reason += "; ties are broken by larger Cohen's d, then the earlier layer"
    return {"layer": int(best["layer"]), "method": method, "auc": float(best["auc"]),
            "cohens_d": float(best["cohens_d"]), "criterion": "max held-out ROC-AUC", "reason": reason}


def extract_trait(shard: ActivationShard, table: pd.DataFrame, job: ExtractJob, *, trait: str, variant: str,
                  model: str, layers: tuple[int, ...] | list[int], position: str,
                  seed: int) -> tuple[TraitVectors, pd.DataFrame]:
    """Vectors for every (method, layer) with their sidecar, and a per-layer metrics table.

    ``table`` holds the labelled contrastive rows in the shard's order (``label``, ``group``).
    """
    layers = list(layers)
    labels_all = table["label"].to_numpy(dtype=int)
    groups_all = table["group"].to_numpy()
    _, valid = shard.pooled(position, layers[0])
    keep = np.flatnonzero(valid)
    y, groups = labels_all[keep], groups_all[keep]
    if len(np.unique(y)) < 2:
        raise ValueError("contrastive data has a single class after dropping rows without activations")
    train, test = grouped_split(y, groups, job.test_fraction, seed)
    tensors: dict[str, torch.Tensor] = {}
    rows = []
    for layer in layers:
        x, _ = shard.pooled(position, layer)
        res = fit_layer(x[keep], y, train, test, job.methods, job.probe_C, seed)
        for method, v in res.vectors.items():
            tensors[tensor_key(method, layer)] = torch.from_numpy(v)
        rows += [{"layer": layer, **m} for m in res.metrics]
    metrics = pd.DataFrame(rows)
    info = {
        "trait": trait, "variant": variant, "model": model, "position": position, "methods": list(job.methods),
        "layers": layers, "hidden_size": int(next(iter(tensors.values())).shape[0]), "n": int(len(table)),
        "split": {"n_train": int(len(train)), "n_test": int(len(test)), "test_fraction": job.test_fraction, "seed": seed,
                  "grouped_by": "group", "train_groups": sorted(set(groups[train].tolist())),
                  "test_groups": sorted(set(groups[test].tolist())),
                  "n_pos": int((y == 1).sum()), "n_neg": int((y == 0).sum()), "n_dropped_no_tokens": int((~valid).sum())},
        "best": choose_best_layer(metrics, job.selection_method),
        "vectors": [{"key": tensor_key(r["method"], int(r["layer"])), "method": r["method"], "layer": int(r["layer"]),
                     "metrics": {k: r[k] for k in ("auc", "accuracy", "cohens_d", "train_auc", "norm",
                                                   "n_train", "n_test")}}
                    for r in metrics.to_dict(orient="records")],
        "activations_key": shard.meta.get("key"),
    }
    return TraitVectors(info, tensors), metrics.assign(trait=trait)
