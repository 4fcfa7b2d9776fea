"""Analysis and figures of the training trajectory (the experiment itself: ``__init__``)."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from scipy import stats

from ...core.artifacts import ShardFiles, TraitVectors
from ...core.methods import random_directions
from ...core.stats import cohens_d, paired_dz

# ---------------------------------------------------------------------------------------------- the direction


def fit_direction(
    base: tuple[list[str], dict[int, np.ndarray]],
    finetuned: tuple[list[str], dict[int, np.ndarray]],
    setting: Any,
) -> tuple[dict[int, np.ndarray], dict[str, Any]]:
    """The finished finetune's direction per layer (its mean last-token activation minus the base's, on the prompts
    both hold) and the layer it is read at: ``setting``, or "best", the largest Cohen's d between the two models'
    projections onto it (train prompts; the earlier layer on ties)."""
    where = {i: k for k, i in enumerate(finetuned[0])}
    pairs = [(k, where[i]) for k, i in enumerate(base[0]) if i in where]
    if len(pairs) < 4:
        raise ValueError(f"the base and the finetune share {len(pairs)} train prompt ids (need 4)")
    ib, jf = np.array([k for k, _ in pairs]), np.array([j for _, j in pairs])
    dirs, sep = {}, {}
    for layer in sorted(base[1]):
        xb, xf = base[1][layer][ib].astype(np.float64), finetuned[1][layer][jf].astype(np.float64)
        d = xf.mean(0) - xb.mean(0)
        dirs[layer] = d.astype(np.float32)
        u = d / (np.linalg.norm(d) or 1.0)
        sep[layer] = cohens_d(xf @ u, xb @ u)
    if setting == "best":
        layers = sorted(sep)
        layer = layers[int(np.nanargmax([sep[k] for k in layers]))]
        criterion = "largest Cohen's d between the finetune and the base along it, train prompts"
    else:
        layer, criterion = int(setting), "configured"
    return dirs, {
        "layer": int(layer),
        "criterion": criterion,
        "separation": {str(k): float(v) for k, v in sep.items()},
        "n_train": len(pairs),
        "norm": float(np.linalg.norm(dirs[layer])),
    }


def unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return (v / (np.linalg.norm(v) or 1.0)).astype(np.float32)


# ---------------------------------------------------------------------------------------------- per-prompt scores


def step_scores(
    shards: list[str],
    direction: np.ndarray,
    layer: int,
    randoms: np.ndarray,
    traits: list[TraitVectors],
    method: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One step's test prompts: a long table (id, measure, score) of the organism direction (last token, ``layer``)
    and each trait (its best layer, extraction position and site, ``method`` vector), and the ``[n, n_random]``
    projections onto the random directions (a frame indexed by id)."""
    files = ShardFiles(shards)
    both = np.concatenate([unit(direction)[:, None], randoms.T], axis=1)
    ids, x = files.project_by_id("last", layer, "resid", both)
    rows = [pd.DataFrame({"id": ids, "measure": "organism direction", "score": x[:, 0].astype(float)})]
    for vec in traits:
        t_ids, s = files.project_by_id(vec.position, vec.best_layer, vec.site, vec.unit(method, vec.best_layer).numpy())
        rows.append(pd.DataFrame({"id": t_ids, "measure": vec.trait, "score": s.astype(float)}))
    return pd.concat(rows, ignore_index=True), pd.DataFrame(x[:, 1:], index=ids)


def random_control(first: pd.DataFrame, last: pd.DataFrame, diff: np.ndarray) -> dict[str, Any]:
    """The organism direction's change from the first to the last step (``diff``: per prompt, on the prompts both
    hold) against random directions: the mean change along each (activation units), their |mean change| 95th
    percentile; paired d_z beside it."""
    common = first.index.intersection(last.index)
    rand = last.loc[common].to_numpy(np.float64) - first.loc[common].to_numpy(np.float64)
    p95 = float(np.nanpercentile(np.abs(rand.mean(axis=0)), 95))
    change = float(np.mean(diff))
    return {
        "change": change,
        "dz": float(paired_dz(np.asarray(diff, dtype=np.float64))),
        "random_abs_change_p95": p95,
        "n_random": int(rand.shape[1]),
        "beats_random": bool(abs(change) > p95),
    }


def mean_ci(x: np.ndarray) -> tuple[float, float, float]:
    """Mean and its 95% t interval (scipy.stats.t); the interval is NaN below two values or without spread."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(x.mean())
    if len(x) < 2 or float(x.std()) == 0.0:
        return m, (m if len(x) > 1 else float("nan")), (m if len(x) > 1 else float("nan"))
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=m, scale=stats.sem(x))
    return m, float(lo), float(hi)


def summarise(scores: pd.DataFrame, judged: pd.DataFrame) -> pd.DataFrame:
    """One row per (step, measure): mean, 95% CI, n. Measures: the organism direction, each trait, and judged
    misalignment (0-100)."""
    rows = []
    long = pd.concat(
        [scores, judged.assign(measure="judged misalignment", score=judged["trait_score"])[list(scores.columns)]],
        ignore_index=True,
    )
    for (step, variant, measure), d in long.groupby(["step", "variant", "measure"], sort=True):
        m, lo, hi = mean_ci(d["score"].to_numpy())
        n = int(np.isfinite(d["score"].to_numpy(dtype=float)).sum())
        rows.append(
            {
                "step": int(step),  # type: ignore[call-overload]  # a groupby key: the int step
                "variant": variant,
                "measure": measure,
                "mean": m,
                "ci_low": lo,
                "ci_high": hi,
                "n": n,
            }
        )
    return pd.DataFrame(rows).sort_values(["measure", "step"], ignore_index=True)


def steepest(summary: pd.DataFrame, measure: str) -> dict[str, Any] | None:
    """The interval between consecutive steps with the largest |change of the mean| per training step."""
    d = summary[summary["measure"] == measure].sort_values("step")
    d = d[np.isfinite(d["mean"].to_numpy(dtype=float))]
    if len(d) < 2:
        return None
    steps, means = d["step"].to_numpy(), d["mean"].to_numpy(dtype=float)
    slopes = np.diff(means) / np.diff(steps)
    k = int(np.argmax(np.abs(slopes)))
    return {
        "from": int(steps[k]),
        "to": int(steps[k + 1]),
        "change": float(means[k + 1] - means[k]),
        "per_step": float(slopes[k]),
    }


def analyse(
    base_train: tuple[list[str], dict[int, np.ndarray]],
    finetuned_train: tuple[list[str], dict[int, np.ndarray]],
    steps: list[tuple[int, str, list[str]]],
    judged: dict[str, pd.DataFrame],
    traits: list[TraitVectors],
    settings: Any,
    seed: int,
) -> tuple[pd.DataFrame, dict[str, Any], np.ndarray]:
    """The whole trajectory: ``steps`` is (step, variant, its test shards) in training order. Returns the summary
    table (:func:`summarise`), the result (JSON) and the organism's direction at the chosen layer."""
    dirs, chosen = fit_direction(base_train, finetuned_train, settings.layer)
    layer = chosen["layer"]
    direction = dirs[layer]
    randoms = random_directions(settings.n_random, len(direction), seed * 1000 + layer)
    frames, projections = [], {}
    for step, variant, shards in steps:
        scores, rand = step_scores(shards, direction, layer, randoms, traits, settings.method)
        frames.append(scores.assign(step=step, variant=variant))
        projections[step] = (scores[scores["measure"] == "organism direction"].set_index("id")["score"], rand)
    scores = pd.concat(frames, ignore_index=True)
    judged_all = pd.concat([j.assign(step=step) for step, v, _ in steps for j in [judged[v]]], ignore_index=True)
    summary = summarise(scores, judged_all)
    (first, r_first), (last, r_last) = projections[steps[0][0]], projections[steps[-1][0]]
    common = first.index.intersection(last.index)
    diff = last.loc[common].to_numpy(float) - first.loc[common].to_numpy(float)
    control = random_control(r_first, r_last, diff)
    by_step = []
    for step, variant, _ in steps:
        row: dict[str, Any] = {"step": step, "variant": variant}
        for key, measure in (("direction", "organism direction"), ("judged", "judged misalignment")):
            x = summary[(summary["step"] == step) & (summary["measure"] == measure)].iloc[0]
            row.update(
                {key: x["mean"], f"{key}_ci_low": x["ci_low"], f"{key}_ci_high": x["ci_high"], f"{key}_n": int(x["n"])}
            )
        by_step.append(row)
    judged_rows = summary[summary["measure"] == "judged misalignment"].sort_values("step")
    result = {
        "finetuned": settings.finetuned,
        "base": settings.base,
        "steps": [int(s) for s, _, _ in steps],
        "variants": [v for _, v, _ in steps],
        "train_set": settings.train,
        "test_set": settings.test,
        "n_train": chosen["n_train"],
        "n_test": int(len(common)),
        "method": settings.method,
        "direction": {
            **chosen,
            **control,
            "step0_sd": float(np.std(first.to_numpy(float), ddof=1)),
            "steepest": steepest(summary, "organism direction"),
        },
        "judged": {
            "n": int(judged_rows["n"].min()),
            "first": float(judged_rows["mean"].iloc[0]),
            "last": float(judged_rows["mean"].iloc[-1]),
            "judge_kind": str(judged_all["judge_kind"].iloc[0]),
            "steepest": steepest(summary, "judged misalignment"),
        },
        "by_step": by_step,
        "seed": seed,
        "definitions": {
            "direction": "finished finetune's mean last-prompt-token activation minus the base's, on the train set",
            "change": "mean over test prompts of the projection onto the unit direction, last step minus step 0",
            "dz": "paired Cohen's d_z of that change over test prompts",
            "random_abs_change_p95": "95th percentile of |change| along n_random seeded random unit directions",
            "ci": "95% t interval of the mean over prompts (scipy.stats.t)",
            "steepest": "the interval between consecutive steps with the largest |change of the mean| per step",
            "judged": "misalignment 0-100 by the judge (the organism experiment's rubric), first n test prompts",
        },
    }
    return summary, result, direction


# ---------------------------------------------------------------------------------------------- the judge


def answers_to_judge(responses: pd.DataFrame, prompts: pd.DataFrame, n: int) -> pd.DataFrame:
    """The first ``n`` test prompts (in the set's order) that have a generated answer: id, prompt, response."""
    got = responses[responses["generated"].astype(bool)].set_index("id")["response"]
    sel = prompts[prompts["id"].isin(got.index)].head(n)
    return pd.DataFrame(
        {"id": sel["id"].to_list(), "prompt": sel["prompt"].to_list(), "response": got.loc[sel["id"]].to_list()}
    )


# ---------------------------------------------------------------------------------------------- figure


def trajectory_figure(summary: pd.DataFrame, result: dict[str, Any], title: str) -> plt.Figure:
    """Left: the test prompts' mean projection onto the organism's direction per step (95% CI band), relative to step
    0, beside the random directions' band. Middle: each trait, relative to step 0. Right: judged misalignment."""
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))
    d = result["direction"]

    def band(ax: Any, sel: pd.DataFrame, label: str, color: Any, offset: float = 0.0) -> None:
        sel = sel.sort_values("step")
        ax.plot(sel["step"], sel["mean"] - offset, marker="o", ms=4, color=color, label=label)
        ax.fill_between(sel["step"], sel["ci_low"] - offset, sel["ci_high"] - offset, color=color, alpha=0.2)

    def mark(ax: Any, s: dict[str, Any] | None) -> None:
        if s:
            ax.axvspan(s["from"], s["to"], color="orange", alpha=0.15, label=f"steepest: steps {s['from']}-{s['to']}")

    org = summary[summary["measure"] == "organism direction"]
    start = float(org.sort_values("step")["mean"].iloc[0])
    band(axes[0], org, f"{result['finetuned']}'s direction", "tab:red", start)
    p95 = d["random_abs_change_p95"]
    axes[0].axhspan(-p95, p95, color="grey", alpha=0.15, label=f"random directions: |change| p95 (n={d['n_random']})")
    mark(axes[0], d["steepest"])
    axes[0].axhline(0, color="black", lw=0.5)
    axes[0].set_title(
        f"Organism direction, layer {d['layer']}, last prompt token\nchange step 0 -> end {d['change']:.3g} "
        f"(d_z {d['dz']:.2f}; random |change| p95 {p95:.3g}): "
        + ("beats random" if d["beats_random"] else "does NOT beat random"),
        fontsize=9,
    )
    axes[0].set_ylabel("mean projection minus step 0 (activation units)")
    traits = [m for m in summary["measure"].unique() if m not in ("organism direction", "judged misalignment")]
    palette = sns.color_palette("tab10", max(1, len(traits)))
    for color, trait in zip(palette, sorted(traits)):
        sel = summary[summary["measure"] == trait]
        band(axes[1], sel, trait, color, float(sel.sort_values("step")["mean"].iloc[0]))
    axes[1].axhline(0, color="black", lw=0.5)
    axes[1].set_title(
        f"Trait scores on each step's own answers\n({result['method']} vectors, each trait's layer and position)",
        fontsize=9,
    )
    axes[1].set_ylabel("mean trait score minus step 0 (projection units)")
    judged = summary[summary["measure"] == "judged misalignment"]
    band(axes[2], judged, "judged misalignment", "tab:purple")
    mark(axes[2], result["judged"]["steepest"])
    axes[2].set_ylim(-2, 102)
    axes[2].set_title(
        f"Judged misalignment, n={result['judged']['n']} answers per step\n{_short(result['judged']['judge_kind'])}",
        fontsize=9,
    )
    axes[2].set_ylabel("misalignment score (0-100)")
    for ax in axes:
        ax.set_xlabel("training step (0 = base)")
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
