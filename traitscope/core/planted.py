"""Planted effects: the positive control of a null. What a comparison would have found had a known vector been added
to one side's residual stream.

Adding ``coef x norm x u`` (``u`` a unit vector, ``norm`` the mean activation norm at the layer and site: the
steering coefficient's unit) to the output of block ``L`` at every token changes nothing before it, so with the
tokens held fixed (replayed responses, the same prompts) every activation at ``L`` moves by exactly that vector and
every projection at ``L`` by ``coef x norm x (u . direction)``. A planted variant therefore needs no second model run:
:func:`shifts` gives the exact change of the trait's score and of each random direction's score, and an experiment
re-runs its own statistic on the shifted scores (``tests/test_planted.py`` checks the equivalence against a real
forward hook on a tiny model). Planting the trait's own vector measures sensitivity (the smallest coefficient the
comparison detects beyond random at the study's n); planting a random vector is a control that must not change the
verdict (on a null comparison: must stay undetected).

>>> import numpy as np
>>> trait = np.array([1.0, 0.0]); randoms = np.array([[0.0, 1.0], [0.6, 0.8]])
>>> shifts(trait, trait, randoms, coef=0.1, norm=20.0)
(2.0, array([0. , 1.2]))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

COEFFICIENTS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
"""Planted coefficients (x the mean activation norm at the trait's layer and site), smallest first: from well under
what steering uses to a full norm."""

PLANTED = ("trait", "random")
"""What is planted: the trait's own unit vector (sensitivity), or a seeded random unit vector (must not change the
verdict)."""


def shifts(
    planted: np.ndarray, trait: np.ndarray, randoms: np.ndarray, *, coef: float, norm: float
) -> tuple[float, np.ndarray]:
    """The change of the trait's score (projection on its unit vector ``trait``) and of each random direction's
    score (rows of ``randoms``, unit) when unit vector ``planted`` is added at ``coef x norm``."""
    step = coef * norm * np.asarray(planted, dtype=np.float64)
    return float(step @ np.asarray(trait, dtype=np.float64)), np.asarray(randoms, dtype=np.float64) @ step


def unit(vectors: Any, method: str, layer: int, activations: str | Path, baseline: Any, seed: int) -> dict[str, Any]:
    """What planting at a trait's ``layer`` needs, as the experiments' planted-effect functions take it: ``norm``
    (the mean activation norm there over the trait's contrastive ``activations``, the steering unit), ``trait`` (the
    scored unit vector of ``method``), ``randoms`` (the ``baseline``'s
    :class:`~traitscope.core.artifacts.BaselineScores` directions at that layer) and ``planted_random``."""
    from .sweep import trait_norms

    u = vectors.unit(method, layer).double().numpy()
    return {
        "norm": trait_norms(activations, vectors, [layer])[layer],
        "trait": u,
        "randoms": baseline.directions(layer, len(u)),
        "planted_random": planted_random(len(u), seed),
    }


def planted_random(dim: int, seed: int) -> np.ndarray:
    """The seeded random unit vector planted as the negative control (not one of the baseline's directions)."""
    r = np.random.default_rng([seed, 7919]).standard_normal(dim)
    return r / np.linalg.norm(r)


def detection_limit(rows: list[dict], planted: str = "trait") -> float | None:
    """The smallest coefficient at which ``planted`` was detected, or None where none was."""
    hits = [r["coef"] for r in rows if r["planted"] == planted and r["detected"]]
    return min(hits) if hits else None
