"""Statistics used across stages. Tests come from scipy/statsmodels/scikit-learn; the effect
size formulas (Cohen's d) are written out with their definition."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import bootstrap, mannwhitneyu, spearmanr, ttest_ind, ttest_rel
from sklearn.metrics import roc_auc_score


def pooled_d(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """(mean_a - mean_b) / pooled SD (ddof=1 per group) along ``axis`` (vectorised, for bootstrap resamples)."""
    na, nb = a.shape[axis], b.shape[axis]
    pooled = np.sqrt(((na - 1) * a.var(axis=axis, ddof=1) + (nb - 1) * b.var(axis=axis, ddof=1)) / (na + nb - 2))
    return (a.mean(axis=axis) - b.mean(axis=axis)) / pooled


def paired_dz(diff: np.ndarray, axis: int = -1) -> np.ndarray:
    """Cohen's d_z of paired differences: mean / SD (ddof=1) along ``axis`` (vectorised: bootstrap resamples, or one
    column per random direction)."""
    return diff.mean(axis=axis) / diff.std(axis=axis, ddof=1)


def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's d for independent groups: (mean_a - mean_b) / pooled SD (ddof=1 per group); NaN when undefined."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        d = float(pooled_d(a, b))
    return d if np.isfinite(d) else float("nan")


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC of ``scores`` for binary ``labels`` (NaN when only one class is present)."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(roc_auc_score(labels, scores))


def column_aucs(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC-AUC of each column of ``scores [n, k]`` (e.g. the projections on ``k`` random directions)."""
    return np.array([auc(labels, scores[:, j]) for j in range(scores.shape[1])])


def versus_random(value: float, random_aucs: np.ndarray) -> dict[str, float | int | bool]:
    """An AUC against the AUCs of random directions on the same rows: their mean and 95th percentile, the AUC's
    percentile among them (``scipy.stats.percentileofscore``, strict: the share it beats) and ``beats_random`` (above
    the 95th percentile; false where either is undefined)."""
    from scipy.stats import percentileofscore

    r = np.asarray(random_aucs, dtype=float)
    r = r[~np.isnan(r)]
    nan = float("nan")
    if not len(r):
        return {
            "random_auc_mean": nan,
            "random_auc_p95": nan,
            "auc_percentile": nan,
            "beats_random": False,
            "n_random": 0,
        }
    p95 = float(np.percentile(r, 95))
    ok = not np.isnan(value)
    return {
        "random_auc_mean": float(r.mean()),
        "random_auc_p95": p95,
        "auc_percentile": float(percentileofscore(r, value, kind="strict")) if ok else nan,
        "beats_random": bool(ok and value > p95),
        "n_random": int(len(r)),
    }


def bootstrap_auc_ci(
    labels: np.ndarray, scores: np.ndarray, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the ROC-AUC, resampling within each class (stratified).

    ``scipy.stats.bootstrap`` resamples the positive and the negative scores independently; the AUC of each
    resample is the Mann-Whitney U of positives vs negatives over n_pos x n_neg (ties count one half), which
    scipy computes vectorised over all resamples at once.
    """
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=float)
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) < 2 or len(neg) < 2:  # no resampling distribution from a single observation
        return float("nan"), float("nan")

    def statistic(p: np.ndarray, n: np.ndarray, axis: int = -1) -> np.ndarray:
        return mannwhitneyu(p, n, axis=axis).statistic / (p.shape[axis] * n.shape[axis])

    with warnings.catch_warnings():  # a degenerate bootstrap distribution (AUC 1 everywhere) is a valid CI here
        warnings.simplefilter("ignore")
        res = bootstrap(
            (pos, neg),
            statistic,
            n_resamples=n_boot,
            confidence_level=level,
            method="percentile",
            vectorized=True,
            paired=False,
            random_state=np.random.default_rng(seed),
        )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def separation(
    pos: np.ndarray, neg: np.ndarray, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """How well scores separate two groups: ROC-AUC of ``pos`` (1) vs ``neg`` (0) with its stratified bootstrap
    CI (:func:`bootstrap_auc_ci`) and Cohen's d (pos minus neg)."""
    pos, neg = np.asarray(pos, dtype=float), np.asarray(neg, dtype=float)
    y, s = np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg]
    lo, hi = bootstrap_auc_ci(y, s, n_boot=n_boot, level=level, seed=seed)
    return {"auc": auc(y, s), "ci_low": lo, "ci_high": hi, "cohens_d": cohens_d(pos, neg)}


def paired_comparison(
    a: np.ndarray, b: np.ndarray, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """``a`` vs ``b`` measured on the same units (row i of each is one unit).

    Paired t-test (``scipy.stats.ttest_rel``) with the t confidence interval of the mean difference, and
    Cohen's d_z = mean(a - b) / SD(a - b) (ddof=1) with a percentile bootstrap CI over units
    (``scipy.stats.bootstrap``). Units with a missing value on either side are dropped.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = a[ok], b[ok]
    diff = a - b
    out: dict[str, float] = {
        "n": int(len(diff)),
        "mean_a": float(a.mean()) if len(a) else float("nan"),
        "mean_b": float(b.mean()) if len(b) else float("nan"),
    }
    if len(diff) < 3 or np.allclose(diff, diff[0]):
        return {
            **out,
            "mean_difference": float(diff.mean()) if len(diff) else float("nan"),
            "ci_low": float("nan"),
            "ci_high": float("nan"),
            "t": float("nan"),
            "p": float("nan"),
            "cohens_dz": float("nan"),
            "dz_ci_low": float("nan"),
            "dz_ci_high": float("nan"),
        }
    test = ttest_rel(a, b)
    ci = test.confidence_interval(level)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        boot = bootstrap(
            (diff,),
            paired_dz,
            n_resamples=n_boot,
            confidence_level=level,
            method="percentile",
            vectorized=True,
            random_state=np.random.default_rng(seed),
        )
    return {
        **out,
        "mean_difference": float(diff.mean()),
        "ci_low": float(ci.low),
        "ci_high": float(ci.high),
        "t": float(test.statistic),
        "p": float(test.pvalue),
        "cohens_dz": float(paired_dz(diff)),
        "dz_ci_low": float(boot.confidence_interval.low),
        "dz_ci_high": float(boot.confidence_interval.high),
    }


def independent_comparison(
    a: np.ndarray, b: np.ndarray, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """``a`` vs ``b`` measured on different units (two independent groups).

    Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``) with its confidence interval of the difference
    in means; Cohen's d (pooled SD, :func:`cohens_d`) with a percentile bootstrap CI resampling each group
    (``scipy.stats.bootstrap``); ROC-AUC of ``a`` (1) vs ``b`` (0) with its stratified bootstrap CI.
    NaNs are dropped.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    nan = float("nan")
    out: dict[str, float] = {
        "n_a": int(len(a)),
        "n_b": int(len(b)),
        "mean_a": float(a.mean()) if len(a) else nan,
        "mean_b": float(b.mean()) if len(b) else nan,
    }
    if len(a) < 2 or len(b) < 2:
        return {
            **out,
            "mean_difference": nan,
            "ci_low": nan,
            "ci_high": nan,
            "t": nan,
            "p": nan,
            "cohens_d": nan,
            "d_ci_low": nan,
            "d_ci_high": nan,
            "auc": nan,
            "auc_ci_low": nan,
            "auc_ci_high": nan,
        }
    test = ttest_ind(a, b, equal_var=False)
    ci = test.confidence_interval(level)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        boot = bootstrap(
            (a, b),
            pooled_d,
            n_resamples=n_boot,
            confidence_level=level,
            method="percentile",
            vectorized=True,
            paired=False,
            random_state=np.random.default_rng(seed),
        )
    sep = separation(a, b, n_boot=n_boot, level=level, seed=seed)
    return {
        **out,
        "mean_difference": float(a.mean() - b.mean()),
        "ci_low": float(ci.low),
        "ci_high": float(ci.high),
        "t": float(test.statistic),
        "p": float(test.pvalue),
        "cohens_d": sep["cohens_d"],
        "d_ci_low": float(boot.confidence_interval.low),
        "d_ci_high": float(boot.confidence_interval.high),
        "auc": sep["auc"],
        "auc_ci_low": sep["ci_low"],
        "auc_ci_high": sep["ci_high"],
    }


def spearman(
    x: np.ndarray, y: np.ndarray, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """Spearman's rho (``scipy.stats.spearmanr``) with its p-value and a paired percentile bootstrap CI."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = ~(np.isnan(x) | np.isnan(y))
    x, y = x[ok], y[ok]
    nan = float("nan")
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"n": int(len(x)), "rho": nan, "p": nan, "ci_low": nan, "ci_high": nan}
    res = spearmanr(x, y)

    def rho(u: np.ndarray, v: np.ndarray) -> float:
        return float(spearmanr(u, v).statistic)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        boot = bootstrap(
            (x, y),
            rho,
            n_resamples=n_boot,
            confidence_level=level,
            method="percentile",
            vectorized=False,
            paired=True,
            random_state=np.random.default_rng(seed),
        )
    return {
        "n": int(len(x)),
        "rho": float(res.statistic),
        "p": float(res.pvalue),
        "ci_low": float(boot.confidence_interval.low),
        "ci_high": float(boot.confidence_interval.high),
    }


def correct_pvalues(pvalues: list[float], method: str = "holm", alpha: float = 0.05) -> tuple[list[float], list[bool]]:
    """Adjusted p-values and rejections across a family of tests (``statsmodels`` multipletests); NaNs stay NaN."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full(len(p), np.nan)
    reject = np.zeros(len(p), dtype=bool)
    ok = ~np.isnan(p)
    if ok.any():
        rej, adj, _, _ = multipletests(p[ok], alpha=alpha, method=method)
        adjusted[ok], reject[ok] = adj, rej
    return adjusted.tolist(), reject.tolist()
