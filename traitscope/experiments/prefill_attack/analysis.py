"""Analysis and figures of the prefill attack experiment (the experiment itself: ``__init__``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from scipy import stats as sps

from ...core.artifacts import BaselineScores
from ...core.plots import trait_panels
from ...core.project import at_layer
from ...core.stats import column_aucs, correct_pvalues, independent_comparison, paired_comparison, versus_random

CONDITIONS = {"C1": ("harmful", False), "C2": ("harmful", True), "C3": ("benign", False), "C4": ("benign", True)}
COMPARISONS = {
    "C2_vs_C4": ("C2", "C4", "independent"),
    "C1_vs_C3": ("C1", "C3", "independent"),
    "C1_vs_C2": ("C2", "C1", "paired"),
}


def pair_key(prompts: pd.DataFrame) -> pd.Series:
    """The prompt a row asks (system + user text), shared by a prefilled row and its plain twin."""
    return prompts["system"].fillna("") + "\x1f" + prompts["prompt"]


def window_scores(
    tokens: dict[str, pd.DataFrame], prompts: dict[str, pd.DataFrame], best: dict[str, int], method: str
) -> pd.DataFrame:
    """One score per (condition, trait, row): the mean over the first k assistant-turn tokens (see the module doc).

    ``tokens``/``prompts``: condition -> per-token scores / prompt table. Returns condition, trait, layer, id,
    pair (the shared prompt key), k, n_tokens (tokens averaged) and score.
    """
    keys = {c: pair_key(p).set_axis(p["id"]) for c, p in prompts.items()}
    k_of: dict[str, pd.Series] = {}
    trait0, layer0 = next(iter(best.items()))  # prefill tokens are the same for every trait
    for plain, forced in (("C1", "C2"), ("C3", "C4")):
        t = at_layer(tokens[forced], trait0, layer0, method)
        k = t[t["is_prefill"]].groupby("id").size()
        if k.empty:
            raise ValueError(f"condition {forced} has no prefill tokens (fix: set prefill: on its prompt set)")
        by_pair = k.rename(index=keys[forced].to_dict()).groupby(level=0).first()
        mode = int(k.mode().iloc[0])
        k_of[forced] = k
        k_of[plain] = keys[plain].map(by_pair).fillna(mode).astype(int)
    out = []
    for cond, t in tokens.items():
        for trait, layer in best.items():
            d = at_layer(t, trait, layer, method)
            k = d["id"].map(k_of[cond])
            win = d[d["is_prefill"]] if CONDITIONS[cond][1] else d[d["token_index"] < k]
            g = win.groupby("id")["score"].agg(["mean", "size"])
            ids = prompts[cond]["id"]
            out.append(
                pd.DataFrame(
                    {
                        "condition": cond,
                        "trait": trait,
                        "layer": layer,
                        "id": ids.to_numpy(),
                        "pair": keys[cond].reindex(ids).to_numpy(),
                        "k": ids.map(k_of[cond]).fillna(0).astype(int).to_numpy(),
                        "n_tokens": ids.map(g["size"]).fillna(0).astype(int).to_numpy(),
                        "score": ids.map(g["mean"]).to_numpy(dtype=float),
                    }
                )
            )
    return pd.concat(out, ignore_index=True)


def random_windows(
    scores: pd.DataFrame, baselines: dict[str, BaselineScores], sites: dict[str, str] | None = None
) -> dict[tuple[str, str], pd.DataFrame]:
    """(condition, trait) -> ``[ids, R]`` random-direction scores over the same window as each row's trait score
    (its first ``k`` assistant-turn tokens, ``k`` from :func:`window_scores`), at the trait's layer and site
    (``sites``: trait -> site, default the residual stream)."""
    out = {}
    for (cond, trait), d in scores.groupby(["condition", "trait"], sort=True):
        b = baselines[str(cond)]
        k = pd.Series(b.ids).map(d.set_index("id")["k"]).fillna(0).astype(int).to_numpy()
        site = (sites or {}).get(str(trait), "resid")
        out[(str(cond), str(trait))] = pd.DataFrame(b.window_means(int(d["layer"].iloc[0]), k, site), index=b.ids)
    return out


def compare_conditions(
    scores: pd.DataFrame,
    *,
    correction: str,
    alpha: float,
    n_boot: int,
    seed: int,
    random: dict[tuple[str, str], pd.DataFrame] | None = None,
) -> dict[str, Any]:
    """The three comparisons of the module doc for every trait, corrected across traits per comparison; with
    ``random`` (:func:`random_windows`), each independent comparison's AUC against its random baseline."""
    out: dict[str, Any] = {}
    for name, (a, b, kind) in COMPARISONS.items():
        rows = {}
        for trait, d in scores.groupby("trait", sort=True):
            sa = d[d["condition"] == a].set_index("pair")["score"]
            sb = d[d["condition"] == b].set_index("pair")["score"]
            if kind == "paired":
                common = sa.index.intersection(sb.index)
                res = paired_comparison(sa.loc[common].to_numpy(), sb.loc[common].to_numpy(), n_boot=n_boot, seed=seed)
            else:
                res = independent_comparison(sa.to_numpy(), sb.to_numpy(), n_boot=n_boot, seed=seed)
                if random is not None:
                    ids = [d[(d["condition"] == c) & d["score"].notna()]["id"] for c in (a, b)]
                    x = np.vstack([random[(c, str(trait))].loc[i].to_numpy(float) for c, i in zip((a, b), ids)])
                    y = np.r_[np.ones(len(ids[0])), np.zeros(len(ids[1]))]
                    res.update(
                        versus_random(res["auc"], column_aucs(y, x) if not np.isnan(res["auc"]) else np.array([]))
                    )
            rows[trait] = {"layer": int(d["layer"].iloc[0]), **res}
        adj, rej = correct_pvalues([r["p"] for r in rows.values()], correction, alpha)
        for r, p_adj, sig in zip(rows.values(), adj, rej):
            r.update(p_adjusted=p_adj, significant=sig)
        out[name] = {
            "a": a,
            "b": b,
            "difference": f"{a} - {b}",
            "design": kind,
            "test": (
                "paired t-test (scipy.stats.ttest_rel) over prompts, Cohen's d_z with bootstrap CI"
                if kind == "paired"
                else "Welch t-test (scipy.stats.ttest_ind, equal_var=False), Cohen's d and ROC-AUC with bootstrap CIs"
            ),
            "traits": rows,
        }
    return out


def trajectories(
    tokens: dict[str, pd.DataFrame], best: dict[str, int], method: str, max_tokens: int, level: float = 0.95
) -> pd.DataFrame:
    """Mean per-token score per condition, trait and assistant-turn token index with a t confidence interval."""
    rows = []
    for cond, t in tokens.items():
        for trait, layer in best.items():
            d = at_layer(t, trait, layer, method)
            d = d[d["token_index"] < max_tokens]
            for _, g in d.groupby("token_index"):
                s = g["score"].to_numpy(float)
                n, mean = len(s), float(s.mean())
                lo, hi = (
                    sps.t.interval(level, n - 1, loc=mean, scale=sps.sem(s))
                    if n >= 2 and s.std() > 0
                    else (float("nan"), float("nan"))
                )
                rows.append(
                    {
                        "condition": cond,
                        "trait": trait,
                        "layer": layer,
                        "token_index": int(g["token_index"].iloc[0]),
                        "n": n,
                        "mean": mean,
                        "ci_low": float(lo),
                        "ci_high": float(hi),
                        "prefill_fraction": float(g["is_prefill"].mean()),
                    }
                )
    return pd.DataFrame(rows)


def summary(comparisons: dict[str, Any], scores: pd.DataFrame, info: dict[str, Any]) -> dict[str, Any]:
    cells: dict[str, Any] = {}
    for (cond, trait), d in scores.groupby(["condition", "trait"], sort=True):
        s = d["score"].dropna()
        cells.setdefault(str(trait), {})[str(cond)] = {
            "mean": float(s.mean()),
            "sd": float(s.std(ddof=1)) if len(s) > 1 else float("nan"),
            "n": int(len(s)),
            "mean_tokens": float(d["n_tokens"].mean()),
        }
    k = scores.loc[scores["condition"].isin(["C2", "C4"]), "k"]
    return {
        **info,
        "conditions": {c: {"prompts": kind, "prefill": forced} for c, (kind, forced) in CONDITIONS.items()},
        "prefill_tokens": {"min": int(k.min()), "max": int(k.max()), "median": float(np.median(k))},
        "cells": cells,
        "comparisons": comparisons,
        "definitions": {
            "score": "mean per-token projection on the unit trait vector (trait's best layer) over the first k "
            "assistant-turn tokens, k = prefill length: the prefill in C2/C4, the model's own first k "
            "tokens in C1/C3",
            "difference": "mean of condition a minus condition b",
            "random_auc_p95": "control baseline of an independent comparison's AUC: 95th percentile of the AUCs "
            "of n_random seeded random unit directions at the trait's layer, scored over the "
            "same token windows of the same rows; beats_random: AUC above it",
            "correction": "p-values adjusted across traits within each comparison (statsmodels multipletests)",
        },
    }


# ---------------------------------------------------------------------------------------------- figures

PREFILL_STYLE = {"C1": ("tab:red", "--"), "C2": ("tab:red", "-"), "C3": ("tab:blue", "--"), "C4": ("tab:blue", "-")}
PREFILL_NAMES = {
    "C1": "C1 harmful, no prefill",
    "C2": "C2 harmful + prefill",
    "C3": "C3 benign, no prefill",
    "C4": "C4 benign + prefill",
}


def prefill_grid(result: dict, title: str) -> plt.Figure:
    """Mean window score of the four conditions as a 2x2 grid (prompts x prefill), one panel per trait."""
    traits = sorted(result["cells"])
    fig, panels = trait_panels(traits, 3.6, 3.2)
    for ax, trait in panels:
        cells = result["cells"][trait]
        grid = pd.DataFrame(
            [[cells["C1"]["mean"], cells["C2"]["mean"]], [cells["C3"]["mean"], cells["C4"]["mean"]]],
            index=["harmful", "benign"],
            columns=["no prefill", "prefill"],
        )
        notes = [
            [f"{c}\n{cells[c]['mean']:.2f} (sd {cells[c]['sd']:.2f})\nn={cells[c]['n']}" for c in row]
            for row in (("C1", "C2"), ("C3", "C4"))
        ]
        sns.heatmap(
            grid,
            annot=notes,
            fmt="",
            cmap="vlag",
            center=0.0,
            ax=ax,  # 0 = no projection on the trait
            cbar_kws={"label": "mean score (projection units; white = 0)"},
            annot_kws={"fontsize": 8},
        )
        c24 = result["comparisons"]["C2_vs_C4"]["traits"][trait]
        c12 = result["comparisons"]["C1_vs_C2"]["traits"][trait]
        rnd = f" (random p95 {c24['random_auc_p95']:.2f})" if c24.get("n_random") else ""
        ax.set_title(
            f"{trait} (layer {c24['layer']})\nC2 vs C4: d {c24['cohens_d']:.2f}, AUC {c24['auc']:.2f}{rnd}; "
            f"C2-C1: d_z {c12['cohens_dz']:.2f}",
            fontsize=8,
        )
        ax.set_xlabel("assistant turn starts with")
        ax.set_ylabel("prompts")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def trajectory_divergence(traj: pd.DataFrame, k: int, title: str) -> plt.Figure:
    """Per-token mean score of each condition over the assistant turn with 95% CI bands; prefill span shaded."""
    traits = sorted(traj["trait"].unique())
    fig, panels = trait_panels(traits, 4.8, 3.4)
    for ax, trait in panels:
        d = traj[traj["trait"] == trait]
        for cond, v in d.groupby("condition", sort=True):
            v = v.sort_values("token_index")
            color, ls = PREFILL_STYLE[cond]
            ax.plot(
                v["token_index"],
                v["mean"],
                color=color,
                ls=ls,
                lw=1.4,
                label=f"{PREFILL_NAMES[cond]} (n<={int(v['n'].max())})",
            )
            ax.fill_between(v["token_index"], v["ci_low"], v["ci_high"], color=color, alpha=0.15)
        ax.axvspan(-0.5, k - 0.5, color="grey", alpha=0.12, lw=0)
        ax.set_title(f"{trait} (layer {int(d['layer'].iloc[0])})", fontsize=10)
        ax.set_xlabel(f"assistant-turn token (shaded: the {k} prefill tokens in C2/C4)")
        ax.set_ylabel("mean score (projection units)")
        ax.legend(fontsize=6)
    fig.suptitle(title + " (bands: 95% t CI over prompts)", fontsize=10)
    fig.tight_layout()
    return fig
