"""Each method implemented once: unit normalisation, segment-mean pooling, and direction fitting.

``fit_direction(x, y, method)`` returns the direction that separates label 1 from label 0 rows:

``mean_diff``  mean(x | y=1) - mean(x | y=0); rows are classified by the midpoint of the two projected
               class means
``probe``      logistic regression on standardised activations; the decision direction mapped back to
               activation space (coef / scale) and the probe's own decision threshold

Trait extraction (pos vs neg prompts) and model organisms (finetuned vs base activations) both use it.
"""

from __future__ import annotations

from typing import NamedTuple, TypeVar

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

METHODS = ("mean_diff", "probe")
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


def fit_direction(x: np.ndarray, y: np.ndarray, method: str, *, probe_c: float, seed: int) -> Direction:
    """The ``method`` direction from label 0 to label 1 rows of ``x`` (float32)."""
    if method == "mean_diff":
        v = x[y == 1].mean(0) - x[y == 0].mean(0)
        p = x @ unit(v)
        return Direction(v.astype(np.float32), float((p[y == 1].mean() + p[y == 0].mean()) / 2))
    if method == "probe":
        scaler = StandardScaler().fit(x)
        clf = LogisticRegression(C=probe_c, max_iter=5000, random_state=seed).fit(scaler.transform(x), y)
        v = clf.coef_[0] / scaler.scale_  # decision = x @ v - mean @ v + intercept
        norm = float(np.linalg.norm(v))
        threshold = (float(scaler.mean_ @ v) - float(clf.intercept_[0])) / norm if norm > 0 else 0.0
        return Direction(v.astype(np.float32), threshold)
    raise ValueError(f"unknown method {method!r}; use {METHODS}")
