"""Which SAE features tell two conditions apart (backdoor trigger vs control, finetuned vs base, prefill C2 vs C4).

No number is chosen and reported on the same rows. Every row is assigned by its id (a seeded hash, so the same id
lands on the same side in both conditions) to a **selection** half, which ranks the features by |Cohen's d| and
sets each direction's sign, or to a **report** half, on which everything reported is computed:

``cohens_d`` (condition a minus b, pooled SD) with a percentile bootstrap CI, Welch's t-test, and the ROC-AUC of
a (1) vs b (0) with a stratified bootstrap CI (:func:`traitscope.core.stats.independent_comparison`); ``auc_oriented``
is that AUC with the sign the selection half chose (1 - AUC where the feature was lower in a). The trait vectors
and ``n_random`` random unit directions at the same layer are scored on the same report rows, oriented the same
way, so the best features' AUC stands next to the trait vectors' and the random baseline's 95th percentile.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from scipy.stats import percentileofscore

from ...core.methods import random_directions, unit
from ...core.stats import auc, independent_comparison, pooled_d
from .autoencoder import SparseAutoencoder


def selection_half(ids: list[str], seed: int, fraction: float = 0.5) -> np.ndarray:
    """True for ids in the selection half: a seeded hash of the id, so a shared id is on the same side everywhere."""

    def u(i: str) -> float:
        return int(hashlib.sha256(f"{seed}:{i}".encode()).hexdigest()[:8], 16) / 16**8

    return np.array([u(str(i)) < fraction for i in ids], dtype=bool)


def _column_d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cohen's d per column (:func:`traitscope.core.stats.pooled_d`); 0 where it is undefined (constant columns)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        d = pooled_d(a, b, axis=0)
    return np.where(np.isfinite(d), d, 0.0)


def oriented_auc(a: np.ndarray, b: np.ndarray, sign: float) -> float:
    y = np.r_[np.ones(len(a)), np.zeros(len(b))]
    return auc(y, sign * np.r_[a, b])


def compare_features(
    fa: np.ndarray, fb: np.ndarray, sel_a: np.ndarray, sel_b: np.ndarray, *, top: int, n_boot: int, seed: int
) -> list[dict[str, Any]]:
    """The ``top`` features by |d| on the selection rows, each reported on the report rows."""
    d_sel = _column_d(fa[sel_a], fb[sel_b])
    order = np.argsort(-np.abs(d_sel), kind="stable")[:top]
    out = []
    for j in order:
        a, b = fa[~sel_a, j], fb[~sel_b, j]
        sign = 1.0 if d_sel[j] >= 0 else -1.0
        stats = independent_comparison(a, b, n_boot=n_boot, seed=seed)
        out.append(
            {
                "feature": int(j),
                "selection_d": float(d_sel[j]),
                **stats,
                "auc_oriented": oriented_auc(a, b, sign),
                "active_a": float((a > 0).mean()) if len(a) else float("nan"),
                "active_b": float((b > 0).mean()) if len(b) else float("nan"),
            }
        )
    return out


def direction_aucs(
    xa: np.ndarray, xb: np.ndarray, sel_a: np.ndarray, sel_b: np.ndarray, directions: dict[str, np.ndarray]
) -> dict[str, float]:
    """ROC-AUC on the report rows of each direction, oriented by the selection rows (a above b)."""
    out = {}
    for name, v in directions.items():
        u = unit(np.asarray(v, dtype=np.float32))
        pa, pb = xa @ u, xb @ u
        sign = 1.0 if pa[sel_a].mean() >= pb[sel_b].mean() else -1.0
        out[name] = oriented_auc(pa[~sel_a], pb[~sel_b], sign)
    return out


def random_baseline(
    xa: np.ndarray, xb: np.ndarray, sel_a: np.ndarray, sel_b: np.ndarray, n: int, seed: int
) -> dict[str, Any]:
    dirs = random_directions(n, xa.shape[1], seed)
    aucs = np.array(list(direction_aucs(xa, xb, sel_a, sel_b, {str(i): d for i, d in enumerate(dirs)}).values()))
    return {
        "n_random": n,
        "random_auc_mean": float(aucs.mean()),
        "random_auc_p95": float(np.percentile(aucs, 95)),
        "aucs": aucs,
    }


def top_tokens(
    sae: SparseAutoencoder,
    tokens: torch.Tensor,
    token_ids: torch.Tensor,
    row_ids: list[str],
    features: list[int],
    decode: Callable[[int], str],
    n: int,
) -> dict[int, list[dict[str, Any]]]:
    """The ``n`` response tokens (text, prompt id, activation) on which each feature is most active."""
    acts = sae.encode(tokens)[:, features] if len(tokens) else torch.zeros(0, len(features))
    out: dict[int, list[dict[str, Any]]] = {}
    for col, f in enumerate(features):
        values, idx = acts[:, col].topk(min(n, len(acts))) if len(acts) else (torch.zeros(0), torch.zeros(0))
        out[f] = [
            {"token": decode(int(token_ids[i])), "id": row_ids[int(i)], "activation": float(v)}
            for v, i in zip(values.tolist(), idx.tolist())
            if v > 0
        ]
    return out


def summarise(features: list[dict[str, Any]], trait_aucs: dict[str, float], baseline: dict[str, Any]) -> dict[str, Any]:
    """The best feature's AUC next to the best trait vector's and the random baseline, with a plain verdict."""
    best_f = max(features, key=lambda r: r["auc_oriented"]) if features else None
    best_t = max(trait_aucs.items(), key=lambda kv: kv[1]) if trait_aucs else None
    aucs = baseline["aucs"]
    out: dict[str, Any] = {"random_auc_p95": baseline["random_auc_p95"]}
    if best_f is not None:
        out.update(
            best_feature=best_f["feature"],
            best_feature_auc=best_f["auc_oriented"],
            best_feature_percentile=float(percentileofscore(aucs, best_f["auc_oriented"], kind="strict")),
            best_feature_beats_random=bool(best_f["auc_oriented"] > baseline["random_auc_p95"]),
        )
    if best_t is not None:
        out.update(
            best_trait=best_t[0],
            best_trait_auc=best_t[1],
            best_trait_beats_random=bool(best_t[1] > baseline["random_auc_p95"]),
        )
    return out


def pooled_features(
    sae: SparseAutoencoder, shards: list[Any], layer: int, position: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(activations ``[n, d]``, SAE features ``[n, F]``, ids) of shards at ``layer``: the last prompt token, or the
    mean over response tokens (of the activations, and of each token's features)."""
    from ...core.methods import segment_mean

    xs, fs, ids = [], [], []
    for shard in shards:
        if position == "last":
            x = shard.stored("last", layer).float()
            f = sae.encode(x)
            keep = torch.ones(len(x), dtype=torch.bool)
        else:
            tokens = shard.response(layer).float()
            x, keep = segment_mean(tokens, shard.offsets)
            f, _ = segment_mean(sae.encode(tokens), shard.offsets)
        xs.append(x[keep].numpy())
        fs.append(f[keep].numpy())
        ids += [i for i, k in zip(shard.ids, keep.tolist()) if k]
    return np.concatenate(xs), np.concatenate(fs), ids


def response_tokens(shards: list[Any], layer: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Every response token's activation at ``layer``, its token id and its prompt's id (empty without responses)."""
    acts, tok, ids = [], [], []
    for shard in shards:
        if "response" not in shard.positions:
            continue
        acts.append(shard.response(layer).float())
        tok.append(shard.tensors["response.token_ids"])
        ids += [i for i, n in zip(shard.ids, shard.response_lengths.tolist()) for _ in range(n)]
    if not acts:
        return torch.zeros(0, 0), torch.zeros(0, dtype=torch.long), []
    return torch.cat(acts), torch.cat(tok), ids


def compare_at_layer(
    sae: SparseAutoencoder,
    a: list[Any],
    b: list[Any],
    layer: int,
    *,
    position: str,
    directions: dict[str, np.ndarray],
    decode: Callable[[int], str],
    top: int,
    n_tokens: int,
    fraction: float,
    n_random: int,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """Everything reported for one layer of one experiment (see the module docstring)."""
    xa, fa, ids_a = pooled_features(sae, a, layer, position)
    xb, fb, ids_b = pooled_features(sae, b, layer, position)
    sel_a, sel_b = selection_half(ids_a, seed, fraction), selection_half(ids_b, seed, fraction)
    for name, sel in (("a", sel_a), ("b", sel_b)):
        if sel.all() or not sel.any() or len(sel) - sel.sum() < 2:
            raise ValueError(
                f"condition {name} has {len(sel)} rows: too few to split into selection and report "
                "halves (fix: more prompts, or another sae.selection_fraction)"
            )
    features = compare_features(fa, fb, sel_a, sel_b, top=top, n_boot=n_boot, seed=seed)
    trait_aucs = direction_aucs(xa, xb, sel_a, sel_b, directions)
    baseline = random_baseline(xa, xb, sel_a, sel_b, n_random, seed)
    tok_a, ids_tok_a, rows_a = response_tokens(a, layer)
    tok_b, ids_tok_b, rows_b = response_tokens(b, layer)
    tokens = torch.cat([t for t in (tok_a, tok_b) if len(t)]) if len(tok_a) or len(tok_b) else torch.zeros(0, 0)
    token_ids = torch.cat([ids_tok_a, ids_tok_b])
    rows = [f"a:{i}" for i in rows_a] + [f"b:{i}" for i in rows_b]
    tops = top_tokens(sae, tokens, token_ids, rows, [r["feature"] for r in features], decode, n_tokens)
    for r in features:
        r["top_tokens"] = tops.get(r["feature"], [])
    return {
        "layer": layer,
        "n_a": len(ids_a),
        "n_b": len(ids_b),
        "n_report_a": int((~sel_a).sum()),
        "n_report_b": int((~sel_b).sum()),
        "features": features,
        "trait_aucs": trait_aucs,
        "random_baseline": {k: v for k, v in baseline.items() if k != "aucs"},
        "summary": summarise(features, trait_aucs, baseline),
    }


# ---------------------------------------------------------------------------------------------- figures


def sae_features(result: dict[str, Any]) -> plt.Figure:
    """Per SAE layer: left, the top features' Cohen's d (a minus b) with 95% bootstrap CIs on the report half;
    right, their oriented ROC-AUC next to the trait vectors' and the random directions' 95th percentile."""
    layers = result["layers"]
    rows = [max(len(r["features"]), min(5, len(r["features"])) + len(r["trait_aucs"])) for r in layers]
    fig, axes = plt.subplots(
        len(layers),
        2,
        figsize=(13, sum(0.32 * n + 1.9 for n in rows)),
        squeeze=False,
        gridspec_kw={"height_ratios": rows},
    )  # each layer's rows get room: no tick overlaps
    a, b = result["conditions"]["a"]["label"], result["conditions"]["b"]["label"]
    for (ax1, ax2), r in zip(axes, layers):
        feats = r["features"]
        names = [f"feature {f['feature']}" for f in feats]
        d = [f["cohens_d"] for f in feats]
        err = [[f["cohens_d"] - f["d_ci_low"] for f in feats], [f["d_ci_high"] - f["cohens_d"] for f in feats]]
        ax1.errorbar(d, range(len(feats)), xerr=err, fmt="o", color="tab:blue", capsize=3)
        ax1.axvline(0, color="black", lw=0.5)
        ax1.set_yticks(range(len(feats)), names, fontsize=7)
        ax1.set_ylabel("SAE feature (selection rank)")
        ax1.invert_yaxis()
        ax1.set_xlabel(f"Cohen's d, {a} minus {b} (feature activation, 95% CI)")
        ax1.set_title(
            f"layer {r['layer']}: top {len(feats)} features, ranked on the selection half; shown on "
            f"the report half (n={r['n_report_a']} vs {r['n_report_b']})",
            fontsize=9,
        )
        bars = pd.DataFrame(
            [{"what": f"feature {f['feature']}", "kind": "SAE feature", "auc": f["auc_oriented"]} for f in feats[:5]]
            + [{"what": t, "kind": "trait vector", "auc": v} for t, v in sorted(r["trait_aucs"].items())]
        )
        sns.barplot(data=bars, y="what", x="auc", hue="kind", dodge=False, ax=ax2)
        p95 = r["random_baseline"]["random_auc_p95"]
        ax2.axvline(
            p95,
            color="grey",
            ls="--",
            lw=1,
            label=f"random directions, 95th pct (n={r['random_baseline']['n_random']})",
        )
        ax2.axvline(0.5, color="black", lw=0.5, ls=":")
        ax2.set_xlim(0, 1.02)
        ax2.set_xlabel(f"ROC-AUC, {a} vs {b} (report half; sign from the selection half)")
        ax2.set_ylabel("direction")
        ax2.tick_params(axis="y", labelsize=7)
        ax2.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax2.set_title(f"layer {r['layer']}: best SAE features vs trait vectors", fontsize=9)
    fig.suptitle(
        f"SAE features, {result['experiment']}: {a} (n={layers[0]['n_a']}) vs {b} (n={layers[0]['n_b']}), "
        f"{result['position']} position, {result['model']}"
    )
    fig.tight_layout()
    return fig
