"""Statistics used across stages. Tests come from scipy/statsmodels/scikit-learn; the effect
size formulas (Cohen's d) are written out with their definition."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's d for independent groups: (mean_a - mean_b) / pooled SD (ddof=1 per group)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return float("nan")
    pooled = np.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    return float((a.mean() - b.mean()) / pooled) if pooled > 0 else float("nan")


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC of ``scores`` for binary ``labels`` (NaN when only one class is present)."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(roc_auc_score(labels, scores))


def bootstrap_auc_ci(labels: np.ndarray, scores: np.ndarray, n_boot: int = 1000, level: float = 0.95,
                     seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the ROC-AUC, resampling within each class (stratified)."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=float)
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan"), float("nan")
    stats = []
    for _ in range(n_boot):
        idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        stats.append(roc_auc_score(labels[idx], scores[idx]))
    lo, hi = np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)
