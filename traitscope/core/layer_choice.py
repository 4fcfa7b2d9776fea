"""Layer choice by steering effect (``extract.steering_layer_choice``), instead of the highest cross-validated AUC.

The persona-vectors recipe picks a trait's layer by what its vector *does*: steer the model with it and ask a judge
how much more the answers show the trait, as long as they stay coherent. Here:

1. candidates: the ``candidates`` layers with the highest cross-validated AUC of the selection method (inside the
   training split, as :func:`traitscope.core.extract.choose_best_layer` ranks them);
2. prompts: the questions of the trait's *training-split* groups (no persona system prompt), so the choice uses no
   row of the test split and no scored prompt set;
3. the unsteered answers are judged once; then at every candidate layer and coefficient (x the layer's mean activation
   norm at the trait's site) the steered answers;
4. effect of a (layer, coefficient): mean judged trait score minus the unsteered mean, kept only where the mean
   coherence is at least ``coherence_floor``; a layer's effect is its largest kept one;
5. the chosen layer has the largest effect (ties: the earlier layer). Where no setting stays coherent, the AUC choice
   stands and the sidecar says so.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import torch

from .extract import best_entry
from .specs import SteeringChoiceSettings
from .sweep import SteeringTask, sweep


def candidate_layers(info: dict[str, Any], n: int) -> list[int]:
    """The ``n`` layers of highest cross-validated AUC (``val_auc``) of the sidecar's selection method, best first,
    the earlier layer on ties."""
    method = info["best"]["method"]
    rows = [(v["metrics"]["val_auc"], v["layer"]) for v in info["vectors"] if v["method"] == method]
    rows.sort(key=lambda r: (-np.nan_to_num(r[0], nan=-1.0), r[1]))
    return [int(layer) for _, layer in rows[:n]]


def training_questions(table: pd.DataFrame, info: dict[str, Any], n: int) -> list[str]:
    """Up to ``n`` distinct prompts of the training-split groups, label 0 rows first (the trait is absent there), in
    table order."""
    train = table[table["group"].isin(set(info["split"]["train_groups"]))]
    ordered = pd.concat([train[train["label"] == 0], train[train["label"] != 0]])
    return list(dict.fromkeys(ordered["prompt"].tolist()))[:n]


def sweep_candidates(
    task: SteeringTask, vectors: dict[int, torch.Tensor], norms: dict[int, float], coefficients: list[float]
) -> pd.DataFrame:
    """Judged answers unsteered (``layer`` -1, ``coef`` 0) once, then steered at each candidate layer and
    coefficient (:func:`traitscope.core.sweep.sweep`)."""
    unsteered = task.evaluate(None, 0.0).assign(layer=-1, coef=0.0)
    return pd.concat([unsteered, sweep(task, vectors, norms, coefficients)], ignore_index=True)


def steering_effects(table: pd.DataFrame, coherence_floor: float) -> pd.DataFrame:
    """Per steered (layer, coefficient): mean trait and coherence, n, the trait delta over the unsteered answers and
    whether it is kept (mean coherence at least the floor)."""
    unsteered = table[table["layer"] == -1]["trait_score"].mean()
    steered = table[table["layer"] >= 0]
    out = (
        steered.groupby(["layer", "coef"])
        .agg(trait=("trait_score", "mean"), coherence=("coherence", "mean"), n=("trait_score", "size"))
        .reset_index()
    )
    out["unsteered_trait"] = float(unsteered)
    out["trait_delta"] = out["trait"] - unsteered
    out["kept"] = out["coherence"] >= coherence_floor
    return out


def choose_by_steering(
    info: dict[str, Any], table: pd.DataFrame, settings: SteeringChoiceSettings, judge: str
) -> dict[str, Any]:
    """The sidecar with ``best`` chosen by steering effect (see the module doc); the AUC choice stays under
    ``best.auc_choice`` and every (layer, coefficient) effect under ``best.steering``."""
    effects = steering_effects(table, settings.coherence_floor)
    kept = effects[effects["kept"]]
    auc_best = info["best"]
    method = auc_best["method"]
    per_layer = (
        kept.sort_values(["trait_delta", "coef"], ascending=[False, True])
        .groupby("layer")
        .head(1)
        .sort_values(["trait_delta", "layer"], ascending=[False, True])
    )
    criterion = (
        f"steering effect: largest judged trait increase over the unsteered answers ({judge}), among the "
        f"{effects['layer'].nunique()} layers of highest cross-validated AUC, at a coefficient whose mean "
        f"coherence is at least {settings.coherence_floor:g} (test split not used)"
    )
    steering = {
        "unsteered_trait": float(effects["unsteered_trait"].iloc[0]) if len(effects) else float("nan"),
        "n_prompts": int(table[table["layer"] == -1].shape[0]),
        "coherence_floor": settings.coherence_floor,
        "judge": judge,
        "effects": json.loads(effects.to_json(orient="records")),
    }
    if per_layer.empty:
        best = {
            **auc_best,
            "criterion": criterion,
            "steering": steering,
            "auc_choice": auc_best,
            "reason": (
                f"no steered setting kept mean coherence >= {settings.coherence_floor:g}, so the AUC "
                f"choice stands: {auc_best['reason']}"
            ),
        }
        return {**info, "best": best}
    top = per_layer.iloc[0]
    layer = int(top["layer"])
    metrics = next(v["metrics"] for v in info["vectors"] if v["method"] == method and v["layer"] == layer)
    reason = (
        f"layer {layer}: steering at coefficient {top['coef']:g} raises the judged trait score by "
        f"{top['trait_delta']:+.1f} (from {top['unsteered_trait']:.1f}) with mean coherence "
        f"{top['coherence']:.1f}"
    )
    if len(per_layer) > 1:
        runner = per_layer.iloc[1]
        reason += f"; runner-up layer {int(runner['layer'])} ({runner['trait_delta']:+.1f})"
    reason += f"; the AUC choice was layer {auc_best['layer']}"
    best = {
        **best_entry(metrics, layer, method, criterion, reason),
        "steering": steering,
        "auc_choice": auc_best,
        "trait_delta": float(top["trait_delta"]),
        "coefficient": float(top["coef"]),
    }
    return {**info, "best": best}
