"""Analysis and figures of the backdoor experiment (the experiment itself: ``__init__``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats as sps

from ...core import planted
from ...core.methods import random_directions
from ...core.plots import trait_panels
from ...core.project import at_layer
from ...core.stats import auc, column_aucs, separation

if TYPE_CHECKING:
    from ...core.artifacts import BaselineScores

POOLED = ("last", "response_mean")


def _compare(trig: pd.Series, ctrl: pd.Series, *, n_boot: int, seed: int) -> dict[str, Any]:
    """trig/ctrl: scores indexed by id."""
    t, c = trig.dropna(), ctrl.dropna()
    common = t.index.intersection(c.index)
    diff = (t.loc[common] - c.loc[common]).to_numpy()
    p = float(sps.wilcoxon(diff).pvalue) if len(diff) >= 2 and np.any(diff != 0) else float("nan")
    return {
        **separation(t.to_numpy(), c.to_numpy(), n_boot=n_boot, seed=seed),
        "mean_paired_difference": float(diff.mean()) if len(diff) else float("nan"),
        "wilcoxon_p": p,
        "n_trigger": int(len(t)),
        "n_control": int(len(c)),
        "n_pairs": int(len(common)),
    }


def pooled_auc(
    scores: dict[str, tuple[pd.DataFrame, pd.DataFrame]],
    best_layers: dict[str, int],
    method: str,
    *,
    n_boot: int,
    seed: int,
) -> pd.DataFrame:
    """``scores``: variant -> (trigger pooled scores, control pooled scores). One row per variant, trait, position."""
    rows = []
    for variant, (trig, ctrl) in scores.items():
        for trait, layer in best_layers.items():
            t, c = at_layer(trig, trait, layer, method), at_layer(ctrl, trait, layer, method)
            for pos in POOLED:
                tp, cp = t[t["position"] == pos], c[c["position"] == pos]
                if tp.empty or cp.empty:
                    continue
                rows.append(
                    {
                        "variant": variant,
                        "trait": trait,
                        "layer": layer,
                        "position": pos,
                        **_compare(tp.set_index("id")["score"], cp.set_index("id")["score"], n_boot=n_boot, seed=seed),
                    }
                )
    return pd.DataFrame(rows)


def token_auc(
    pooled: pd.DataFrame,
    tokens: dict[str, tuple[pd.DataFrame, pd.DataFrame]],
    best_layers: dict[str, int],
    method: str,
    *,
    max_tokens: int,
    n_boot: int,
    seed: int,
    random: dict[str, tuple[BaselineScores, BaselineScores]] | None = None,
    sites: dict[str, str] | None = None,
) -> pd.DataFrame:
    """AUC trigger vs control at the last prompt token (-1, the ``last`` rows of :func:`pooled_auc`'s table
    ``pooled``, with their random baseline) and at each response token 0..max_tokens-1 (``tokens``: variant ->
    (trigger, control) per-token scores). With ``random`` (variant -> the trigger and control sets'
    :class:`~traitscope.core.artifacts.BaselineScores` with per-token scores) each token's row also has the 95th
    percentile of the same AUC for the random directions at that token, trait layer and site (``sites``: trait ->
    site), and ``beats_random``."""
    last = pooled[pooled["position"] == "last"].drop(columns="position").assign(token_index=-1)
    rows = []
    for variant, (ttrig, tctrl) in tokens.items():
        for trait, layer in best_layers.items():
            tt, tc = at_layer(ttrig, trait, layer, method), at_layer(tctrl, trait, layer, method)
            for k in range(max_tokens):
                a = tt[tt["token_index"] == k].set_index("id")["score"]
                b = tc[tc["token_index"] == k].set_index("id")["score"]
                if len(a) < 2 or len(b) < 2:
                    break
                row = {
                    "variant": variant,
                    "trait": trait,
                    "layer": layer,
                    "token_index": k,
                    **_compare(a, b, n_boot=n_boot, seed=seed),
                }
                if random is not None and variant in random:
                    site = (sites or {}).get(trait, "resid")
                    rt, rc = (r.at_token(layer, k, site) for r in random[variant])
                    aucs = column_aucs(np.r_[np.ones(len(rt)), np.zeros(len(rc))], np.vstack([rt, rc]))
                    row.update(
                        site=site,
                        random_auc_mean=float(aucs.mean()),
                        random_auc_p95=float(np.percentile(aucs, 95)),
                        n_random=int(len(aucs)),
                    )
                rows.append(row)
    out = pd.concat([last[last["variant"].isin(list(tokens))], pd.DataFrame(rows)], ignore_index=True)
    if "random_auc_p95" in out:
        out["beats_random"] = (out["auc"] > out["random_auc_p95"]).where(out["random_auc_p95"].notna())
    return out.sort_values(["variant", "trait", "token_index"], kind="stable").reset_index(drop=True)


def onset(tokens: pd.DataFrame, variant: str, trait: str, *, beyond_random: bool = False) -> int | None:
    """First token position whose AUC 95% CI lies above 0.5 (None if none does); with ``beyond_random``, the first
    whose AUC also beats its random directions' 95th percentile."""
    d = tokens[(tokens["variant"] == variant) & (tokens["trait"] == trait)].sort_values("token_index")
    hit = d["ci_low"] > 0.5
    if beyond_random:
        hit &= d["beats_random"].astype("boolean").fillna(False) if "beats_random" in d else False
    found = d[hit]
    return int(found["token_index"].iloc[0]) if len(found) else None


def random_baseline(
    trigger: list[Any], control: list[Any], points: list[tuple[str, int]], positions: list[str], n: int, seed: int
) -> pd.DataFrame:
    """The control baseline of a trigger-vs-control AUC: the AUCs of ``n`` seeded random unit directions on the same
    pooled activations (trigger 1, control 0), per (site, layer) of ``points`` and pooled position. Rows: site, layer,
    position, random_auc_mean, random_auc_p95, n_random."""
    rows = []
    directions = random_directions(n, trigger[0].hidden_size, seed).T  # the same at every point and position
    for site, layer in points:
        for pos in positions:
            xs = [
                np.concatenate([shard.project(pos, layer, site, directions) for shard in shards])
                for shards in (trigger, control)
            ]
            y = np.r_[np.ones(len(xs[0])), np.zeros(len(xs[1]))]
            aucs = column_aucs(y, np.vstack(xs))
            rows.append(
                {
                    "site": site,
                    "layer": layer,
                    "position": pos,
                    "random_auc_mean": float(aucs.mean()),
                    "random_auc_p95": float(np.percentile(aucs, 95)),
                    "n_random": n,
                }
            )
    return pd.DataFrame(rows)


def planted_trigger(
    trigger: np.ndarray,
    control: np.ndarray,
    random_trigger: np.ndarray,
    random_control: np.ndarray,
    unit: dict[str, Any],
    coefficients: tuple[float, ...] = planted.COEFFICIENTS,
) -> dict[str, Any]:
    """The positive control of the detection before any output: a backdoor planted as a known direction, i.e. the
    trigger rows' activations at the trait's layer plus ``coef x norm`` of the trait's own unit vector (or of a
    random one, which must not change the verdict), the trigger-vs-control AUC and its random directions' 95th percentile
    re-computed on the shifted scores (:mod:`traitscope.core.planted`; exact for the same prompts). ``trigger``,
    ``control``: the trait's scores at the last prompt token; ``random_*``: ``[n, R]`` the random directions' scores
    on the same rows; ``unit``: ``norm``, ``trait``, ``randoms`` (``[R, d]``), ``planted_random``. Detected: AUC
    above the random 95th percentile, the experiment's own criterion."""
    y = np.r_[np.ones(len(trigger)), np.zeros(len(control))]
    rows = []
    for what in planted.PLANTED:
        vector = unit["trait"] if what == "trait" else unit["planted_random"]
        for coef in coefficients:
            s, rs = planted.shifts(vector, unit["trait"], unit["randoms"], coef=coef, norm=unit["norm"])
            a = auc(y, np.r_[trigger + s, control])
            p95 = float(np.percentile(column_aucs(y, np.vstack([random_trigger + rs[None, :], random_control])), 95))
            rows.append(
                {"planted": what, "coef": coef, "score_shift": s, "auc": a, "random_auc_p95": p95, "detected": a > p95}
            )
    return {
        "norm": float(unit["norm"]),
        "n_trigger": int(len(trigger)),
        "n_control": int(len(control)),
        "detection_limit": planted.detection_limit(rows, "trait"),
        "random_detected_at": planted.detection_limit(rows, "random"),
        "rows": rows,
    }


def with_baseline(pooled: pd.DataFrame, baselines: dict[str, pd.DataFrame], sites: dict[str, str]) -> pd.DataFrame:
    """``pooled`` (from :func:`pooled_auc`) with each row's random baseline (``baselines``: variant -> table of
    :func:`random_baseline`) at its trait's site (``sites``: trait -> site) and ``beats_random`` (its AUC above the
    random 95th percentile)."""
    pooled = pooled.assign(site=pooled["trait"].map(sites))
    parts = [
        pooled[pooled["variant"] == v].merge(b, on=["site", "layer", "position"], how="left")
        for v, b in baselines.items()
    ]
    out = pd.concat(parts, ignore_index=True) if parts else pooled
    out["beats_random"] = out["auc"] > out["random_auc_p95"]
    return out


def summary(
    pooled: pd.DataFrame, tokens: pd.DataFrame, *, variant: str, baseline: str | None, info: dict[str, Any]
) -> dict[str, Any]:
    traits: dict[str, Any] = {}
    for trait_key, d in pooled.groupby("trait"):
        trait = str(trait_key)
        entry: dict[str, Any] = {"layer": int(d["layer"].iloc[0]), "positions": {}}
        if "site" in d:
            entry["site"] = str(d["site"].iloc[0])
        for pos, dp in d.groupby("position"):
            keys = (
                "auc",
                "ci_low",
                "ci_high",
                "cohens_d",
                "mean_paired_difference",
                "wilcoxon_p",
                "n_trigger",
                "n_control",
                "n_pairs",
                "random_auc_p95",
                "beats_random",
            )
            entry["positions"][pos] = {
                r["variant"]: {k: r[k] for k in keys if k in r} for r in dp.to_dict(orient="records")
            }
            if baseline is not None and baseline in entry["positions"][pos] and variant in entry["positions"][pos]:
                entry["positions"][pos]["auc_minus_baseline"] = (
                    entry["positions"][pos][variant]["auc"] - entry["positions"][pos][baseline]["auc"]
                )
        variants: list[str] = [str(v) for v in tokens["variant"].unique()] if len(tokens) else []
        entry["onset_token"] = {v: onset(tokens, v, trait) for v in variants}
        entry["onset_token_beyond_random"] = {v: onset(tokens, v, trait, beyond_random=True) for v in variants}
        traits[trait] = entry
    return {
        **info,
        "variant": variant,
        "baseline": baseline,
        "traits": traits,
        "definitions": {
            "auc": "ROC-AUC of trait scores, trigger (1) vs control (0) prompts; 95% stratified bootstrap CI",
            "wilcoxon_p": "paired Wilcoxon signed-rank test on trigger minus control scores of the same question",
            "onset_token": "first position (-1 = last prompt token, 0.. = response tokens) whose AUC CI lies above 0.5",
            "onset_token_beyond_random": "the first such position whose AUC also beats the random directions' 95th "
            "percentile at that token (token_auc.parquet: random_auc_p95 per token)",
            "auc_minus_baseline": "AUC of the backdoored variant minus that of the baseline on the same prompts",
            "random_auc_p95": "95th percentile of the same AUC for 100 seeded random unit directions at "
            "the layer and position (the control baseline: when random directions "
            "separate trigger from control too, the AUC shows that the activations "
            "changed, not that the trait carries the change)",
            "beats_random": "auc above random_auc_p95",
        },
    }


# ---------------------------------------------------------------------------------------------- figures


def backdoor_trait_comparison(auc: pd.DataFrame, title: str) -> plt.Figure:
    """ROC-AUC trigger vs control per trait with 95% CIs; one panel per pooled position, one bar per variant."""
    positions = list(dict.fromkeys(auc["position"]))
    variants = list(dict.fromkeys(auc["variant"]))
    traits = sorted(auc["trait"].unique())
    fig, axes = plt.subplots(
        1, len(positions), figsize=(5.5 * len(positions), 0.5 * len(traits) + 2.5), squeeze=False, sharey=True
    )
    height = 0.8 / len(variants)
    for ax, pos in zip(axes.flat, positions):
        for k, variant in enumerate(variants):
            d = auc[(auc["position"] == pos) & (auc["variant"] == variant)].set_index("trait").reindex(traits)
            y = [i + k * height for i in range(len(traits))]
            err = [d["auc"] - d["ci_low"], d["ci_high"] - d["auc"]]
            ax.barh(y, d["auc"], height=height, xerr=err, capsize=2, label=variant)
            if "random_auc_p95" in d:  # the control: random directions on the same prompts, at the same layer
                ax.scatter(
                    d["random_auc_p95"],
                    y,
                    marker="D",
                    s=28,
                    color="crimson",
                    zorder=3,
                    label="random directions, 95th pct" if k == 0 else None,
                )
                for yi, value, beats in zip(y, d["auc"], d["beats_random"]):
                    if value == value:  # not NaN
                        ax.text(
                            1.01,
                            yi,
                            "beats" if beats else "no",
                            va="center",
                            fontsize=7,
                            transform=ax.get_yaxis_transform(),
                        )
        ax.set_yticks([i + 0.4 - height / 2 for i in range(len(traits))])
        ax.set_yticklabels(traits)
        ax.axvline(0.5, color="black", lw=0.8, ls=":")
        ax.set_xlim(0, 1.02)
        ax.set_xlabel("ROC-AUC, trigger vs control prompts")
        ax.set_ylabel("trait")
        n = int(auc[auc["position"] == pos]["n_trigger"].iloc[0])
        ax.set_title(f"{pos} (n={n} prompt pairs)", fontsize=10)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    axes.flat[-1].legend(handles, labels, title="variant", fontsize=8, loc="upper left", bbox_to_anchor=(1.12, 1.0))
    fig.suptitle(
        title + "\n(bars: 95% bootstrap CI; red diamond: 95th percentile of 100 random directions, the "
        "control; right of each bar: whether its AUC beats it)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def early_detection_tokens(tokens: pd.DataFrame, title: str) -> plt.Figure:
    """ROC-AUC trigger vs control at each assistant-turn token (-1 = last prompt token), 95% CI band, beside the 95th
    percentile of random directions' AUC at the same token (dashed, the control) where the table has it."""
    traits = sorted(tokens["trait"].unique())
    fig, panels = trait_panels(traits, 4.8, 3.4, sharey=True)
    for ax, trait in panels:
        d = tokens[tokens["trait"] == trait]
        notes = []
        for variant, v in d.groupby("variant", sort=False):
            v = v.sort_values("token_index")
            (line,) = ax.plot(v["token_index"], v["auc"], marker="o", ms=3, label=variant)
            ax.fill_between(v["token_index"], v["ci_low"], v["ci_high"], alpha=0.2, color=line.get_color())
            if "random_auc_p95" in v and v["random_auc_p95"].notna().any():
                ax.plot(
                    v["token_index"],
                    v["random_auc_p95"],
                    ls="--",
                    lw=1,
                    color=line.get_color(),
                    label=f"{variant}: random directions p95",
                )
                first = onset(tokens, str(variant), trait, beyond_random=True)
                notes.append(f"{variant}: {'never' if first is None else f'from token {first}'}")
        ax.axhline(0.5, color="black", lw=0.5, ls=":")
        ax.axvline(-0.5, color="grey", lw=0.8, ls="--")
        ax.set_ylim(0, 1.02)
        n = int(d["n_trigger"].min())
        head = f"{trait} (n>={n} pairs per token)"
        ax.set_title(head + ("\nbeats random, CI above 0.5: " + "; ".join(notes) if notes else ""), fontsize=9)
        ax.set_xlabel("token position (-1 = last prompt token,\n0.. = replayed response tokens)")
        ax.set_ylabel("ROC-AUC, trigger vs control")
        ax.legend(fontsize=7)
    fig.suptitle(title + " (band: 95% bootstrap CI; dashed: random directions' 95th percentile)", fontsize=10)
    fig.tight_layout()
    return fig
