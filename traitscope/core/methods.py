"""Each method implemented once: unit normalisation, segment-mean pooling, and direction fitting.

``fit_direction(x, y, method)`` returns the direction that separates label 1 from label 0 rows:

``mean_diff``  mean(x | y=1) - mean(x | y=0); rows are classified by the midpoint of the two projected
               class means
``probe``      logistic regression on standardised activations; the decision direction mapped back to
               activation space (coef / scale) and the probe's own decision threshold
``pca_diff``   RepE-style: the first principal component of paired differences (each label-1 row minus a
               seeded random label-0 row, each difference sign-flipped at random so that the PCA's centring
               keeps the shared direction), oriented from label 0 to label 1; midpoint threshold
``random``     a seeded random Gaussian direction, oriented on the data from label 0 to label 1; midpoint
               threshold. A control: what a direction that knows nothing but the sign scores

Every method is one entry of ``METHODS`` (name -> fit function); the config's method lists are checked
against it.

Trait extraction (pos vs neg prompts) and model organisms (finetuned vs base activations) both use it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, TypeVar

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

A = TypeVar("A", np.ndarray, torch.Tensor)


def unit(v: A) -> A:
    """``v / ||v||`` (a zero vector stays zero), for numpy arrays and torch tensors."""
    if isinstance(v, torch.Tensor):
        v = v.float()
        n = v.norm()
        return v / n if n > 0 else v
    n = np.linalg.norm(v)
    return v / n if n > 0 else v


def segment_mean(values: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of ``values[offsets[i]:offsets[i+1]]`` per row ``i`` (tokens ``[T, ...]`` -> rows ``[n, ...]``).

    Returns the means (NaN for rows without tokens) and a mask of the rows that have tokens. Used for
    response-mean pooling of activations (extraction) and of per-token scores (projection).
    """
    lengths = offsets[1:] - offsets[:-1]
    n = len(lengths)
    row = torch.repeat_interleave(torch.arange(n), lengths)
    sums = torch.zeros((n, *values.shape[1:]), dtype=torch.float32).index_add_(0, row, values.float())
    counts = lengths.clamp(min=1).reshape(n, *([1] * (values.dim() - 1)))
    means = sums / counts
    has = lengths > 0
    means[~has] = float("nan")
    return means, has


class Direction(NamedTuple):
    """A fitted direction; ``x @ unit(vector) > threshold`` classifies a row as label 1."""

    vector: np.ndarray
    threshold: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        return (x @ unit(self.vector) > self.threshold).astype(int)


def _oriented(x: np.ndarray, y: np.ndarray, v: np.ndarray) -> Direction:
    """``v`` pointing from label 0 to label 1 rows, with the midpoint of the projected class means as threshold."""
    p = x @ unit(v)
    if p[y == 1].mean() < p[y == 0].mean():
        v, p = -v, -p
    return Direction(v.astype(np.float32), float((p[y == 1].mean() + p[y == 0].mean()) / 2))


def _mean_diff(x: np.ndarray, y: np.ndarray, probe_c: float, seed: int) -> Direction:
    v = x[y == 1].mean(0) - x[y == 0].mean(0)
    p = x @ unit(v)
    return Direction(v.astype(np.float32), float((p[y == 1].mean() + p[y == 0].mean()) / 2))


def _probe(x: np.ndarray, y: np.ndarray, probe_c: float, seed: int) -> Direction:
    scaler = StandardScaler().fit(x)
    clf = LogisticRegression(C=probe_c, max_iter=5000, random_state=seed).fit(scaler.transform(x), y)
    v = clf.coef_[0] / scaler.scale_  # decision = x @ v - mean @ v + intercept
    norm = float(np.linalg.norm(v))
    threshold = (float(scaler.mean_ @ v) - float(clf.intercept_[0])) / norm if norm > 0 else 0.0
    return Direction(v.astype(np.float32), threshold)


def _pca_diff(x: np.ndarray, y: np.ndarray, probe_c: float, seed: int) -> Direction:
    rng = np.random.default_rng(seed)
    pos, neg = x[y == 1], x[y == 0]
    diffs = pos - neg[rng.integers(0, len(neg), len(pos))]
    diffs *= rng.choice([-1.0, 1.0], size=(len(diffs), 1))
    if len(diffs) < 2:  # one pair: its difference is the mean difference
        return _mean_diff(x, y, probe_c, seed)
    return _oriented(x, y, PCA(n_components=1, random_state=seed).fit(diffs).components_[0])


def _random(x: np.ndarray, y: np.ndarray, probe_c: float, seed: int) -> Direction:
    return _oriented(x, y, np.asarray(np.random.default_rng(seed).standard_normal(x.shape[1])))


Fit = Callable[[np.ndarray, np.ndarray, float, int], Direction]
METHODS: dict[str, Fit] = {"mean_diff": _mean_diff, "probe": _probe, "pca_diff": _pca_diff, "random": _random}
"""Every direction-fitting method, by the name the config uses."""


def fit_direction(x: np.ndarray, y: np.ndarray, method: str, *, probe_c: float, seed: int) -> Direction:
    """The ``method`` direction from label 0 to label 1 rows of ``x`` (float32)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {sorted(METHODS)}")
    return METHODS[method](x, y, probe_c, seed)


def random_directions(n: int, dim: int, seed: int) -> np.ndarray:
    """``[n, dim]`` seeded random unit directions (Gaussian, normalised): the control baseline of an AUC."""
    r = np.random.default_rng(seed).standard_normal((n, dim))
    return (r / np.linalg.norm(r, axis=1, keepdims=True)).astype(np.float32)


def baseline_directions(n: int, dim: int, seed: int, layer: int) -> np.ndarray:
    """The ``[n, dim]`` random unit directions that the project stage scores at ``layer`` (the control of every
    score-based verdict, :class:`~traitscope.core.artifacts.BaselineScores`): the same at that layer in every
    prompt set and variant."""
    return random_directions(n, dim, seed * 1000 + layer)
