"""Figures: seaborn/matplotlib PNGs with titles, labelled axes (with units) and n per group."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .io import atomic_path  # noqa: E402

BOOT_SEED = 0
"""Seed of seaborn's bootstrap CIs: the same data give the same figure, byte for byte."""
SITE_WORDS = {"resid": "residual-stream", "attn": "attention-output", "mlp": "MLP-output"}


def score_unit(site: str = "resid") -> str:
    return f"projection on unit trait vector ({SITE_WORDS[site]} units)"


def save(fig: plt.Figure, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)


def trait_panels(traits: list[str], width: float, height: float, **subplots: Any) -> tuple[plt.Figure, list]:
    """A grid of up to three panels per row, one per trait (``width`` x ``height`` inches each), unused panels
    hidden. Returns the figure and the (axis, trait) pairs."""
    ncol = min(3, len(traits))
    nrow = -(-len(traits) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(width * ncol, height * nrow), squeeze=False, **subplots)
    for ax in list(axes.flat)[len(traits) :]:
        ax.set_visible(False)
    return fig, list(zip(axes.flat, traits))


def layer_axis(site: str = "resid") -> str:
    """The x label of a per-layer axis at a site (``resid``, ``attn``, ``mlp``)."""
    return {
        "resid": "layer (residual stream after block)",
        "attn": "layer (attention output of block)",
        "mlp": "layer (MLP output of block)",
    }[site]


def extraction_summary(metrics: pd.DataFrame, best: dict[str, int], variant: str) -> plt.Figure:
    """ROC-AUC per layer, one panel per trait, one colour per method: solid the test split (reported), dashed
    the cross-validation inside train that chose the best layer (marked); the grey band is the control baseline,
    the 95th percentile of random directions' test AUCs at each layer."""
    traits = sorted(metrics["trait"].unique())
    fig, panels = trait_panels(traits, 4.6, 3.4, sharey=True)
    long = metrics.melt(
        id_vars=["trait", "layer", "method", "n_train", "n_test"],
        value_vars=["auc", "val_auc"],
        var_name="split",
        value_name="roc_auc",
    )
    long["split"] = long["split"].map({"auc": "test (reported)", "val_auc": "train CV (chooses layer)"})
    for ax, trait in panels:
        m = long[long["trait"] == trait]
        sns.lineplot(
            data=m,
            x="layer",
            y="roc_auc",
            hue="method",
            style="split",
            errorbar=None,
            ax=ax,
            style_order=["test (reported)", "train CV (chooses layer)"],  # distinct markers and dashes
            markers={"test (reported)": "o", "train CV (chooses layer)": "^"},
            dashes={"test (reported)": "", "train CV (chooses layer)": (3, 2)},
        )
        ax.axvline(best[trait], color="grey", ls="--", lw=1)
        if "random_auc_p95" in metrics:
            band = metrics[metrics["trait"] == trait].groupby("layer")["random_auc_p95"].first()
            n_random = int(metrics["n_random"].iloc[0])
            ax.fill_between(
                band.index,
                0.5,
                band.to_numpy(),
                color="grey",
                alpha=0.25,
                lw=0,
                label=f"random directions, 95th pct (n={n_random})",
            )
        n_test, n_train = int(m["n_test"].iloc[0]), int(m["n_train"].iloc[0])
        ax.set_title(f"{trait} (best layer {best[trait]}, n_train={n_train}, n_test={n_test})", fontsize=9)
        ax.set_xlabel(
            layer_axis(str(metrics.loc[metrics["trait"] == trait, "site"].iloc[0]) if "site" in metrics else "resid")
        )
        ax.set_ylabel("ROC-AUC")
        ax.legend(fontsize=6)
        ax.set_ylim(0.0, 1.02)
        ax.axhline(0.5, color="black", lw=0.5, ls=":")
    fig.suptitle(
        f"Trait vector quality per layer on contrastive data (variant {variant}); the test split chose nothing"
    )
    fig.tight_layout()
    return fig


def trait_scores(summary: pd.DataFrame) -> plt.Figure:
    """Mean pooled score per prompt set and variant, one panel per trait, 95% CI bars."""
    traits = sorted(summary["trait"].unique())
    fig, panels = trait_panels(traits, 4.8, 3.6)
    for ax, trait in panels:
        d = summary[summary["trait"] == trait]
        ns = d.groupby("prompt_set")["id"].nunique()  # sorted by prompt set name
        order = list(ns.index)
        # points with CIs, not bars from zero: a score's zero is no reference point
        sns.pointplot(
            data=d,
            x="prompt_set",
            y="score",
            hue="variant",
            order=order,
            errorbar=("ci", 95),
            seed=BOOT_SEED,
            dodge=0.35 if d["variant"].nunique() > 1 else False,
            linestyle="none",
            capsize=0.1,
            ax=ax,
        )
        layer, position = int(d["layer"].iloc[0]), d["position"].iloc[0]
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels([f"{s}\n(n={ns[s]})" for s in order], fontsize=8)
        ax.set_title(f"{trait}, layer {layer}, {position}", fontsize=10)
        ax.set_xlabel("prompt set")
        ax.set_ylabel("mean score (projection units)")
    fig.suptitle("Mean trait score per prompt set (points: means; error bars: 95% bootstrap CI)")
    fig.tight_layout()
    return fig


def _site_name(table: pd.DataFrame) -> str:
    """What a steering table's vectors were added to (its ``site`` column; the residual stream without one)."""
    return SITE_WORDS[str(table["site"].iloc[0]) if "site" in table and len(table) else "resid"]


def steering_sweep(table: pd.DataFrame, trait: str, judge_kind: str, variant: str | None = None) -> plt.Figure:
    """Judged trait score and coherence against the steering coefficient, one line per layer; where the table has a
    ``vector`` column, the same-norm random direction's rows (``random``) as a grey dashed line beside them, the
    control."""
    has_control = "vector" in table and (table["vector"] == "random").any()
    steered = table[table["vector"] != "random"] if "vector" in table else table
    control = table[table["vector"] == "random"] if has_control else None
    n = steered.groupby(["layer", "coef"]).size().max()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.9))
    for ax, col, label in (
        (axes[0], "trait_score", f"judged {trait} score (0-100)"),
        (axes[1], "coherence", "judged coherence (0-100)"),
    ):
        sns.lineplot(
            data=steered,
            x="coef",
            y=col,
            hue="layer",
            marker="o",
            errorbar=("ci", 95),
            seed=BOOT_SEED,
            ax=ax,
            palette="viridis",
        )
        if control is not None:
            sns.lineplot(
                data=control,
                x="coef",
                y=col,
                color="0.45",
                ls="--",
                marker="x",
                errorbar=("ci", 95),
                seed=BOOT_SEED,
                ax=ax,
                label=f"random direction, same norm (layer {int(control['layer'].iloc[0])})",
            )
            ax.legend(fontsize=7, title="layer")
        ax.set_xlabel(f"steering coefficient (x mean {_site_name(table)} norm at the layer)")
        ax.set_ylabel(label)
        ax.set_ylim(-2, 102)
    on = f" on {variant}" if variant else ""
    head = f"Steering with the {trait} vector{on} (n={n} prompts per point, 95% CI)"
    if control is not None:
        top = max(c for c in control["coef"].unique())
        at = steered[(steered["coef"] == top) & (steered["layer"] == control["layer"].iloc[0])]
        rt = control[control["coef"] == top]
        head += (
            f"\nat coefficient {top:g}: trait {at['trait_score'].mean():.0f} vs {rt['trait_score'].mean():.0f} for the "
            f"random direction, coherence {at['coherence'].mean():.0f} vs {rt['coherence'].mean():.0f}"
        )
    fig.suptitle(f"{head}\njudge: {judge_kind}", fontsize=10)
    fig.tight_layout()
    return fig


def layer_choice(table: pd.DataFrame, trait: str, judge_kind: str, coherence_floor: float) -> plt.Figure:
    """The steering sweep of the layer choice: the unsteered answers (layer -1) drawn at coefficient 0 of every
    candidate layer, the coherence floor as a dashed line."""
    unsteered = table[table["layer"] == -1]
    layers = sorted(int(v) for v in table["layer"].unique() if v >= 0)
    plot = pd.concat([table[table["layer"] >= 0], *[unsteered.assign(layer=v) for v in layers]], ignore_index=True)
    fig = steering_sweep(plot, trait, judge_kind)
    fig.axes[1].axhline(coherence_floor, color="black", ls="--", lw=0.8, label=f"coherence floor {coherence_floor:g}")
    fig.axes[1].legend(fontsize=7, title="layer")
    fig.suptitle(
        f"Layer choice for {trait}: steering at the {len(layers)} layers of highest cross-validated AUC, "
        f"on its training-split questions (n={len(unsteered)} per point, 95% CI)\njudge: {judge_kind}",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def loss_curve(history: pd.DataFrame, name: str, provenance: dict) -> plt.Figure:
    """LoRA training loss per optimizer step, held-out loss before training and after each epoch."""
    fig, ax = plt.subplots(figsize=(7, 4))
    train = history[history["split"] == "train"]
    held = history[history["split"] == "eval"]
    ax.plot(train["step"], train["loss"], lw=1, marker=".", label=f"train batches (n={provenance['n_train']} examples)")
    if len(held):
        ax.plot(held["step"], held["loss"], marker="o", ls="--", label=f"held-out (n={provenance['n_eval']} examples)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy on assistant tokens (nats/token)")
    s = provenance["settings"]
    ax.set_title(
        f"LoRA finetune '{name}' of variant {s['base']}\nrank {s['rank']}, alpha {s['alpha']}, "
        f"lr {s['lr']:g}, {s['epochs']} epochs, batch {s['batch_size']}, seed {s['seed']}",
        fontsize=10,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
