"""Analysis and figures of the external experiment (the experiment itself: ``__init__``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ...core.plots import trait_panels
from ...core.prompts import split_categories
from ...core.stats import column_aucs, separation, spearman, versus_random

SEVERITY_FIELDS = ("severity", "severity_level")
NEGATIVES = ("same_category", "same_prompts", "all_safe")


def attach_rows(scores: pd.DataFrame, prompts: pd.DataFrame, severity_field: str | None) -> pd.DataFrame:
    """Scores (id, trait, layer, position, score) joined with each row's label, category, text and severity."""
    rows = prompts.drop_duplicates("id").set_index("id")
    missing = rows["label"].isna()
    if missing.all():
        raise ValueError("no row has a label (fix: use a dataset format with labels, or set label: on the prompt set)")
    sev = rows["meta"].map(lambda m: _severity(m, severity_field))
    out = scores.join(rows[["label", "category", "prompt", "response"]], on="id").assign(severity=scores["id"].map(sev))
    out = out[out["label"].notna()].copy()
    out["label"] = out["label"].astype(int)
    return out.reset_index(drop=True)


def _severity(meta: Any, field: str | None) -> float:
    try:
        data = json.loads(meta) if isinstance(meta, str) else {}
    except json.JSONDecodeError:
        return float("nan")
    for key in [field] if field else SEVERITY_FIELDS:
        v = data.get(key)
        if v is not None and v != "":
            try:
                return float(v)
            except (TypeError, ValueError):
                return float("nan")
    return float("nan")


def _negatives(safe: pd.DataFrame, pos: pd.DataFrame, category: str, min_n: int) -> tuple[pd.DataFrame, str]:
    same_cat = safe[safe["category"].map(lambda c: category in split_categories(c))]
    if len(same_cat) >= min_n:
        return same_cat, "same_category"
    same_prompts = safe[safe["prompt"].isin(set(pos["prompt"]))]
    if len(same_prompts) >= min_n:
        return same_prompts, "same_prompts"
    return safe, "all_safe"


def _compare(pos: pd.Series, neg: pd.Series, *, n_boot: int, seed: int) -> dict[str, Any]:
    return {
        **separation(pos.to_numpy(float), neg.to_numpy(float), n_boot=n_boot, seed=seed),
        "mean_unsafe": float(pos.mean()) if len(pos) else float("nan"),
        "mean_safe": float(neg.mean()) if len(neg) else float("nan"),
        "n_unsafe": int(len(pos)),
        "n_safe": int(len(neg)),
    }


def _versus_random(
    res: dict[str, Any], pos: pd.DataFrame, neg: pd.DataFrame, random: pd.DataFrame | None
) -> dict[str, Any]:
    """``res`` (an AUC of ``pos`` vs ``neg`` rows) with the AUCs of the random directions on the same rows."""
    if random is None:
        return res
    aucs = (
        column_aucs(
            np.r_[np.ones(len(pos)), np.zeros(len(neg))], random.loc[pd.concat([pos["id"], neg["id"]])].to_numpy(float)
        )
        if not np.isnan(res["auc"])
        else np.array([])
    )
    return {**res, **versus_random(res["auc"], aucs)}


def category_auc(
    scores: pd.DataFrame, *, min_per_class: int, n_boot: int, seed: int, random: dict[str, pd.DataFrame] | None = None
) -> pd.DataFrame:
    """One row per trait and category (plus ``overall``): AUC unsafe vs safe with CI, d, group means and sizes;
    with ``random`` (trait -> random-direction scores ``[ids, R]`` at its layer and position), the AUC against them.
    """
    rows = []
    for trait, d in scores.groupby("trait", sort=True):
        d = d.dropna(subset=["score"])
        unsafe, safe = d[d["label"] == 1], d[d["label"] == 0]
        layer, position = int(d["layer"].iloc[0]), d["position"].iloc[0]
        base = {"trait": trait, "layer": layer, "position": position}
        rnd = None if random is None else random[str(trait)]
        rows.append(
            {
                **base,
                "category": "overall",
                "negatives": "all_safe",
                **_versus_random(_compare(unsafe["score"], safe["score"], n_boot=n_boot, seed=seed), unsafe, safe, rnd),
            }
        )
        cats = sorted({c for v in unsafe["category"] for c in split_categories(v)})
        for cat in cats:
            pos = unsafe[unsafe["category"].map(lambda v, cat=cat: cat in split_categories(v))]
            neg, kind = _negatives(safe, pos, cat, min_per_class)
            res = _compare(pos["score"], neg["score"], n_boot=n_boot, seed=seed)
            if len(pos) < min_per_class or len(neg) < min_per_class:  # too few to estimate: keep the means only
                res.update(auc=float("nan"), ci_low=float("nan"), ci_high=float("nan"))
            rows.append({**base, "category": cat, "negatives": kind, **_versus_random(res, pos, neg, rnd)})
    return pd.DataFrame(rows)


def severity_correlation(scores: pd.DataFrame, *, n_boot: int, seed: int) -> dict[str, Any] | None:
    """Spearman's rho of score vs severity per trait, over all rows with a severity and the unsafe rows only."""
    has = scores.dropna(subset=["severity", "score"])
    if has.empty:
        return None
    out: dict[str, Any] = {}
    for trait, d in has.groupby("trait", sort=True):
        unsafe = d[d["label"] == 1]
        out[str(trait)] = {
            "all_rows": spearman(d["severity"].to_numpy(), d["score"].to_numpy(), n_boot=n_boot, seed=seed),
            "unsafe_rows": spearman(
                unsafe["severity"].to_numpy(), unsafe["score"].to_numpy(), n_boot=n_boot, seed=seed
            ),
        }
    return out


def failure_cases(scores: pd.DataFrame, *, fpr: float, n_cases: int, max_chars: int = 2000) -> dict[str, Any]:
    """Per trait: unsafe rows missed at the threshold that flags ``fpr`` of safe rows, lowest score first."""
    out: dict[str, Any] = {}
    for trait, d in scores.groupby("trait", sort=True):
        d = d.dropna(subset=["score"])
        unsafe, safe = d[d["label"] == 1], d[d["label"] == 0]
        if unsafe.empty or safe.empty:
            continue
        threshold = float(np.quantile(safe["score"], 1 - fpr))
        missed = unsafe[unsafe["score"] < threshold].sort_values("score", kind="stable")
        cases = [
            {
                "id": r["id"],
                "category": r["category"],
                "score": float(r["score"]),
                "prompt": _clip(r["prompt"], max_chars),
                "response": _clip(r.get("response"), max_chars),
            }
            for r in missed.head(n_cases).to_dict(orient="records")
        ]
        out[str(trait)] = {
            "layer": int(d["layer"].iloc[0]),
            "position": d["position"].iloc[0],
            "threshold": threshold,
            "target_fpr": fpr,
            "observed_fpr": float((safe["score"] >= threshold).mean()),
            "n_unsafe": int(len(unsafe)),
            "n_missed": int(len(missed)),
            "miss_rate": float(len(missed) / len(unsafe)),
            "cases": cases,
        }
    return out


def _clip(text: Any, n: int) -> str | None:
    if not isinstance(text, str):
        return None
    return text if len(text) <= n else text[:n] + " [...]"


def baseline_verdict(row: dict[str, Any]) -> str | None:
    """One line on an AUC against its random baseline (None without one)."""
    if not row.get("n_random"):
        return None
    text = (
        f"AUC {row['auc']:.3f} vs {row['n_random']} random directions: 95th percentile {row['random_auc_p95']:.3f}, "
        f"AUC at percentile {row['auc_percentile']:.0f}"
    )
    return ("beats its random baseline: " if row["beats_random"] else "DOES NOT BEAT ITS RANDOM BASELINE: ") + text


def summary(table: pd.DataFrame, severity: dict[str, Any] | None, info: dict[str, Any]) -> dict[str, Any]:
    traits: dict[str, Any] = {}
    for trait, d in table.groupby("trait", sort=True):
        keys = (
            "auc",
            "ci_low",
            "ci_high",
            "cohens_d",
            "mean_unsafe",
            "mean_safe",
            "n_unsafe",
            "n_safe",
            "negatives",
            "random_auc_mean",
            "random_auc_p95",
            "auc_percentile",
            "beats_random",
            "n_random",
        )
        cats = {r["category"]: {k: r[k] for k in keys if k in r} for r in d.to_dict(orient="records")}
        overall = cats.pop("overall")
        traits[str(trait)] = {
            "layer": int(d["layer"].iloc[0]),
            "position": d["position"].iloc[0],
            "overall": overall,
            "baseline": baseline_verdict(overall),
            "categories": cats,
            "severity": (severity or {}).get(str(trait)),
        }
    return {
        **info,
        "traits": traits,
        "severity_available": severity is not None,
        "definitions": {
            "auc": "ROC-AUC of trait scores, unsafe (1) vs safe (0) rows; 95% stratified percentile bootstrap CI "
            "(null where a group has fewer than min_per_class rows)",
            "negatives": "safe rows compared with a category: same_category (safe rows of that category), "
            "same_prompts (safe answers to the same prompts) or all_safe (every safe row)",
            "cohens_d": "(mean unsafe - mean safe) / pooled SD",
            "random_auc_p95": "control baseline: 95th percentile of the AUCs of n_random seeded random unit "
            "directions at the trait's layer and position on the same rows (random_auc_mean: "
            "their mean; auc_percentile: the share of them the trait's AUC beats; beats_random: "
            "AUC above random_auc_p95)",
            "severity": "Spearman's rho of score vs the data's severity field (scipy.stats.spearmanr), "
            "95% paired bootstrap CI; null where the data has no severity",
            "score": "projection on the unit trait vector at the trait's best layer (residual-stream units)",
        },
    }


# ---------------------------------------------------------------------------------------------- figures


def per_category_auc(table: pd.DataFrame, title: str) -> plt.Figure:
    """ROC-AUC unsafe vs safe per harm category (and overall) with 95% CIs, one panel per trait."""
    traits = sorted(table["trait"].unique())
    cats = ["overall"] + sorted(c for c in table["category"].unique() if c != "overall")
    fig, panels = trait_panels(traits, 5.2, 0.42 * len(cats) + 1.6, sharey=False)
    for ax, trait in panels:
        d = table[table["trait"] == trait].set_index("category").reindex(cats)
        y = list(range(len(cats)))[::-1]
        ok = d["auc"].notna().to_numpy()
        ax.errorbar(
            d["auc"][ok],
            [v for v, k in zip(y, ok) if k],
            xerr=[(d["auc"] - d["ci_low"])[ok], (d["ci_high"] - d["auc"])[ok]],
            fmt="o",
            ms=4,
            capsize=2,
            color="tab:blue",
            label="trait vector (95% CI)",
        )
        if "random_auc_p95" in d and d["random_auc_p95"].notna().any():
            has = d["random_auc_p95"].notna().to_numpy()
            ax.scatter(
                d["random_auc_p95"][has],
                [v for v, k in zip(y, has) if k],
                marker="|",
                s=90,
                color="tab:red",
                label=f"95th pct of {int(d['n_random'].max())} random directions",
            )
            ax.legend(fontsize=6, loc="lower left")
        for v, k, (_cat, r) in zip(y, ok, d.iterrows()):
            if not k and pd.notna(r["n_unsafe"]):
                ax.text(0.03, v, "too few rows for an AUC", va="center", fontsize=7, color="grey")
        labels = [
            f"{c} ({int(r['n_unsafe']) if pd.notna(r['n_unsafe']) else 0} vs {int(r['n_safe']) if pd.notna(r['n_safe']) else 0})"
            for c, r in d.iterrows()
        ]
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize=7)
        ax.set_ylim(-0.6, len(cats) - 0.4)
        ax.axvline(0.5, color="black", lw=0.8, ls=":")
        ax.set_xlim(0, 1.02)
        ax.set_xlabel("ROC-AUC, unsafe vs safe (0.5 = chance)")
        first = d.iloc[0]
        ax.set_title(f"{trait}\nlayer {int(first['layer'])}, {first['position']}", fontsize=9)
    fig.suptitle(title + "\n(labels: category (n unsafe vs n safe); bars: 95% bootstrap CI)", fontsize=10)
    fig.tight_layout()
    return fig
