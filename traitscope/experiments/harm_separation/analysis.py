"""Analysis and figures of the harm separation experiment (the experiment itself: ``__init__``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from ...core.artifacts import ActivationShard, ShardFiles, TraitVectors, tensor_key
from ...core.methods import random_directions
from ...core.plots import layer_axis, score_unit
from ...core.stats import auc, column_aucs, separation, versus_random

if TYPE_CHECKING:
    pass


# ---------------------------------------------------------------------------------------------- analysis


def check_separation(
    vectors: TraitVectors,
    harmful: list[ActivationShard] | list[ShardFiles],
    harmless: list[ActivationShard] | list[ShardFiles],
    *,
    min_auc: float,
    seed: int,
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """Does the trait vector separate held-out harmful from harmless prompts?

    Two held-out views: the extraction split (metrics stored in the sidecar) and independent eval
    prompt sets that were never used for extraction, projected at every captured layer, at the trait's
    extraction position and site, with the vectors of the method that chose the best layer.
    """
    sidecar = vectors.info
    best, method, position, site = vectors.best_layer, vectors.best_method, vectors.position, vectors.site
    rows = [
        {"layer": v["layer"], "auc": v["metrics"]["auc"], "data": f"extraction test split ({m})"}
        for v in sidecar["vectors"]
        for m in [v["method"]]
    ]

    def scores(
        shards: list[ActivationShard] | list[ShardFiles], layer: int, u: torch.Tensor | np.ndarray
    ) -> np.ndarray:
        direction = u.numpy() if isinstance(u, torch.Tensor) else u
        return np.concatenate([shard.project(position, layer, site, direction) for shard in shards])

    layers = harmful[0].layers
    per_layer_scores: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for layer in layers:
        if tensor_key(method, layer) not in vectors.tensors:
            continue
        u = vectors.unit(method, layer)
        h, b = scores(harmful, layer, u), scores(harmless, layer, u)
        per_layer_scores[layer] = (h, b)
        y = np.r_[np.ones(len(h)), np.zeros(len(b))]
        rows.append({"layer": layer, "auc": auc(y, np.r_[h, b]), "data": f"independent eval sets ({method})"})
    if best not in per_layer_scores:
        raise ValueError(f"best layer {best} was not captured for the eval sets; add it to capture.layers")
    h, b = per_layer_scores[best]
    y, s = np.r_[np.ones(len(h)), np.zeros(len(b))], np.r_[h, b]
    sep = separation(h, b, seed=seed)
    eval_auc = sep["auc"]
    chosen = next(v["metrics"] for v in sidecar["vectors"] if v["layer"] == best and v["method"] == method)
    extraction_auc = float(chosen["auc"])
    # control baseline on the eval sets: random unit directions at the best layer, each given the sign that agrees
    # with the trait vector (no eval label is used), as many as extraction drew
    trait_dir = vectors.unit(method, best).numpy()
    rand = random_directions(int(chosen.get("n_random", 100)), len(trait_dir), seed)
    rand *= np.where(rand @ trait_dir >= 0, 1.0, -1.0)[:, None]
    ph, pb = scores(harmful, best, rand.T), scores(harmless, best, rand.T)
    random_scores = np.vstack([ph, pb])
    random_aucs = column_aucs(y, random_scores)
    # negative control that must fail: the same rows with their harmful/harmless labels shuffled, against random
    # directions on those shuffled labels; a method that "separates" them would be reading something else
    y_shuffled = np.random.default_rng(seed).permutation(y)
    shuffled = versus_random(auc(y_shuffled, s), column_aucs(y_shuffled, random_scores))
    result = {
        "trait": sidecar["trait"],
        "model": sidecar["model"],
        "position": position,
        "site": site,
        "method": method,
        "best_layer": best,
        "best_layer_reason": sidecar["best"]["reason"],
        "extraction_val_auc": float(chosen["val_auc"]),
        "extraction_test_auc": extraction_auc,
        "eval_auc": eval_auc,
        "eval_auc_ci95": [sep["ci_low"], sep["ci_high"]],
        "eval_cohens_d": sep["cohens_d"],
        "extraction_baseline": {
            k: chosen.get(k) for k in ("random_auc_p95", "auc_percentile", "beats_random", "shuffled_auc", "n_random")
        },
        "eval_baseline": versus_random(eval_auc, random_aucs),
        "shuffled_label_check": {
            "auc": auc(y_shuffled, s),
            "random_auc_p95": shuffled["random_auc_p95"],
            "beats_random": shuffled["beats_random"],
            "failed_as_it_must": not shuffled["beats_random"],
        },
        "n_eval_harmful": int(len(h)),
        "n_eval_harmless": int(len(b)),
        "min_auc": min_auc,
        "passed": bool(extraction_auc >= min_auc and eval_auc >= min_auc),
        "criterion": "ROC-AUC >= min_auc at the best layer, on the extraction test split and on the eval sets",
        "definitions": {
            "extraction_val_auc": "cross-validated ROC-AUC inside the extraction training split: chose the best layer",
            "extraction_test_auc": "ROC-AUC on the extraction test split at that layer (not used for any choice)",
            "eval_auc": "ROC-AUC on the independent eval prompt sets at that layer (not used for any choice)",
            "*_baseline": "the same AUC of random unit directions at that layer (extraction: oriented on the training "
            "split; eval: given the trait vector's sign): their 95th percentile, the vector's percentile "
            "among them, whether it beats the 95th percentile, and (extraction) a shuffled-label vector",
            "shuffled_label_check": "the eval AUC with the harmful/harmless labels shuffled, against random "
            "directions on the same shuffled labels: a negative control that must not beat random",
        },
    }
    dist = pd.DataFrame({"score": s, "group": np.where(y == 1, "harmful", "harmless")})
    return result, pd.DataFrame(rows), dist


# ---------------------------------------------------------------------------------------------- figures


def separation_figure(
    layer_auc: pd.DataFrame,
    scores: pd.DataFrame,
    result: dict[str, Any],
    variant: str,
) -> plt.Figure:
    """Left: ROC-AUC per layer (extraction test split and independent eval sets) beside the 95th percentile of random
    directions' AUC on each at the best layer, and the verdict. Right: score distributions of the eval sets at the
    best layer. ``result`` is :func:`check_separation`'s; ``variant`` names the model in the title."""
    best_layer, min_auc, site = result["best_layer"], result["min_auc"], result["site"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.4))
    sns.lineplot(data=layer_auc, x="layer", y="auc", hue="data", style="data", markers=True, errorbar=None, ax=ax1)
    ax1.axhline(min_auc, color="red", ls="--", lw=1, label=f"required AUC {min_auc}")
    controls = (
        ("extraction test split", result["extraction_baseline"].get("random_auc_p95"), ":"),
        ("eval sets", result["eval_baseline"]["random_auc_p95"], "-."),
    )
    for what, p95, ls in controls:
        if p95 is not None and np.isfinite(p95):
            ax1.axhline(p95, color="0.35", ls=ls, lw=1.2, label=f"random directions p95, {what}: {p95:.2f}")
    ax1.axvline(best_layer, color="grey", ls=":", lw=1)
    ax1.set_ylim(0.0, 1.02)
    ax1.set_xlabel(layer_axis(site))
    ax1.set_ylabel("ROC-AUC, harmful vs harmless")
    beats = result["eval_baseline"]["beats_random"]
    ax1.set_title(
        f"Layer {best_layer}: eval AUC {result['eval_auc']:.2f} "
        f"{'beats' if beats else 'does not beat'} random p95 {result['eval_baseline']['random_auc_p95']:.2f}",
        fontsize=10,
    )
    ax1.legend(fontsize=7, loc="lower right")
    counts = scores.groupby("group").size().to_dict()
    scores = scores.assign(group=scores["group"].map(lambda g: f"{g} (n={counts[g]})"))
    sns.histplot(data=scores, x="score", hue="group", stat="density", common_norm=False, element="step", ax=ax2)
    ax2.set_xlabel(f"score at layer {best_layer}: {score_unit(site)}")
    ax2.set_ylabel("density")
    shuffled = result["shuffled_label_check"]
    ax2.set_title(
        f"Held-out eval prompts on the vector\nshuffled labels: AUC {shuffled['auc']:.2f}, "
        f"{'beats random: suspect' if shuffled['beats_random'] else 'no better than random, as it must'}",
        fontsize=10,
    )
    verdict = "passed" if result["passed"] else "failed"
    fig.suptitle(f"{result['trait']}: harmful vs harmless instructions, variant {variant} (check {verdict})")
    fig.tight_layout()
    return fig
