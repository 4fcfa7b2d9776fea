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
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.preprocessing import StandardScaler

from .stats import auc, cohens_d

METHODS = ("mean_diff", "probe")


def position_activations(tensors: dict[str, torch.Tensor], position: str, layer: int) -> tuple[np.ndarray, np.ndarray]:
    """``[n, d]`` float32 activations at a pooled position, and a mask of rows that have them.

    ``response_mean`` averages each row's assistant-turn tokens; rows with none are masked out.
    """
    if position in ("last", "mean"):
        x = tensors[f"{position}.layer_{layer}"].float().numpy()
        return x, np.ones(len(x), dtype=bool)
    if position == "response_mean":
        tok = tensors[f"response.layer_{layer}"].float()
        off = tensors["response.offsets"]
        n = len(off) - 1
        lengths = (off[1:] - off[:-1])
        row = torch.repeat_interleave(torch.arange(n), lengths)
        sums = torch.zeros(n, tok.shape[1]).index_add_(0, row, tok)
        x = (sums / lengths.clamp(min=1)[:, None]).numpy()
        return x, (lengths > 0).numpy()
    raise ValueError(f"unknown position {position!r}")


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


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    return v / n if n > 0 else v


def fit_layer(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, methods: list[str], probe_c: float,
              seed: int) -> LayerResult:
    xtr, ytr, xte, yte = x[train], y[train], x[test], y[test]
    vectors: dict[str, np.ndarray] = {}
    metrics = []
    for method in methods:
        if method == "mean_diff":
            v = xtr[ytr == 1].mean(0) - xtr[ytr == 0].mean(0)
            u = _unit(v)
            ptr = xtr @ u
            thr = (ptr[ytr == 1].mean() + ptr[ytr == 0].mean()) / 2
            acc = float(((xte @ u > thr).astype(int) == yte).mean())
        elif method == "probe":
            scaler = StandardScaler().fit(xtr)
            clf = LogisticRegression(C=probe_c, max_iter=5000, random_state=seed).fit(scaler.transform(xtr), ytr)
            v = clf.coef_[0] / scaler.scale_  # the decision direction in raw activation space
            u = _unit(v)
            acc = float(clf.score(scaler.transform(xte), yte))
        else:
            raise ValueError(f"unknown method {method!r}; use {METHODS}")
        vectors[method] = v.astype(np.float32)
        pte, ptr = xte @ u, xtr @ u
        metrics.append({"method": method, "auc": auc(yte, pte), "accuracy": acc,
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


def extract_trait(tensors: dict[str, torch.Tensor], table: pd.DataFrame, *, layers: list[int], position: str,
                  methods: list[str], test_fraction: float, probe_c: float, selection_method: str,
                  seed: int) -> tuple[dict[str, torch.Tensor], pd.DataFrame, dict[str, Any]]:
    """Vectors for every (method, layer), a per-layer metrics table, and split/best-layer info."""
    labels_all = table["label"].to_numpy(dtype=int)
    groups_all = table["group"].to_numpy()
    _, valid = position_activations(tensors, position, layers[0])
    keep = np.flatnonzero(valid)
    y, groups = labels_all[keep], groups_all[keep]
    if len(np.unique(y)) < 2:
        raise ValueError("contrastive data has a single class after dropping rows without activations")
    train, test = grouped_split(y, groups, test_fraction, seed)
    out_vectors: dict[str, torch.Tensor] = {}
    rows = []
    for layer in layers:
        x, _ = position_activations(tensors, position, layer)
        res = fit_layer(x[keep], y, train, test, methods, probe_c, seed)
        for method, v in res.vectors.items():
            out_vectors[f"{method}.layer_{layer}"] = torch.from_numpy(v)
        rows += [{"layer": layer, **m} for m in res.metrics]
    metrics = pd.DataFrame(rows)
    info = {
        "split": {"n_train": int(len(train)), "n_test": int(len(test)), "test_fraction": test_fraction, "seed": seed,
                  "grouped_by": "group", "train_groups": sorted(set(groups[train].tolist())),
                  "test_groups": sorted(set(groups[test].tolist())),
                  "n_pos": int((y == 1).sum()), "n_neg": int((y == 0).sum()), "n_dropped_no_tokens": int((~valid).sum())},
        "best": choose_best_layer(metrics, selection_method),
    }
    return out_vectors, metrics, info
