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
    for ax in list(axes.flat)[len(traits):]:
        ax.set_visible(False)
    return fig, list(zip(axes.flat, traits))


def layer_axis(site: str = "resid") -> str:
    """The x label of a per-layer axis at a site (``resid``, ``attn``, ``mlp``)."""
    return {"resid": "layer (residual stream after block)", "attn": "layer (attention output of block)",
            "mlp": "layer (MLP output of block)"}[site]


def extraction_summary(metrics: pd.DataFrame, best: dict[str, int], model: str) -> plt.Figure:
    """ROC-AUC per layer, one panel per trait, one colour per method: solid the test split (reported), dashed
    the cross-validation inside train that chose the best layer (marked); the grey band is the control baseline,
    the 95th percentile of random directions' test AUCs at each layer."""
    traits = sorted(metrics["trait"].unique())
    fig, panels = trait_panels(traits, 4.6, 3.4, sharey=True)
    long = metrics.melt(id_vars=["trait", "layer", "method", "n_train", "n_test"], value_vars=["auc", "val_auc"],
                        var_name="split", value_name="roc_auc")
    long["split"] = long["split"].map({"auc": "test (reported)", "val_auc": "train CV (chooses layer)"})
    for ax, trait in panels:
        m = long[long["trait"] == trait]
        sns.lineplot(data=m, x="layer", y="roc_auc", hue="method", style="split", errorbar=None, ax=ax,
                     style_order=["test (reported)", "train CV (chooses layer)"],  # distinct markers and dashes
                     markers={"test (reported)": "o", "train CV (chooses layer)": "^"},
                     dashes={"test (reported)": "", "train CV (chooses layer)": (3, 2)})
        ax.axvline(best[trait], color="grey", ls="--", lw=1)
        if "random_auc_p95" in metrics:
            band = metrics[metrics["trait"] == trait].groupby("layer")["random_auc_p95"].first()
            n_random = int(metrics["n_random"].iloc[0])
            ax.fill_between(band.index, 0.5, band.to_numpy(), color="grey", alpha=0.25, lw=0,
                            label=f"random directions, 95th pct (n={n_random})")
        n_test, n_train = int(m["n_test"].iloc[0]), int(m["n_train"].iloc[0])
        ax.set_title(f"{trait} (best layer {best[trait]}, n_train={n_train}, n_test={n_test})", fontsize=9)
        ax.set_xlabel(layer_axis(str(metrics.loc[metrics["trait"] == trait, "site"].iloc[0])
                                 if "site" in metrics else "resid"))
        ax.set_ylabel("ROC-AUC")
        ax.legend(fontsize=6)
        ax.set_ylim(0.0, 1.02)
        ax.axhline(0.5, color="black", lw=0.5, ls=":")
    fig.suptitle(f"Trait vector quality per layer on contrastive data ({model}); the test split chose nothing")
    fig.tight_layout()
    return fig


def harm_separation(layer_auc: pd.DataFrame, scores: pd.DataFrame, best_layer: int, min_auc: float,
                    trait: str, model: str, site: str = "resid") -> plt.Figure:
    """Left: ROC-AUC per layer (extraction test split and independent eval sets). Right: score
    distributions of the eval sets at the best layer."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    sns.lineplot(data=layer_auc, x="layer", y="auc", hue="data", style="data", markers=True, errorbar=None, ax=ax1)
    ax1.axhline(min_auc, color="red", ls="--", lw=1, label=f"required AUC {min_auc}")
    ax1.axvline(best_layer, color="grey", ls=":", lw=1)
    ax1.set_ylim(0.0, 1.02)
    ax1.set_xlabel(layer_axis(site))
    ax1.set_ylabel("ROC-AUC, harmful vs harmless")
    ax1.set_title(f"Separation by layer (best layer {best_layer})")
    ax1.legend(fontsize=8)
    counts = scores.groupby("group").size().to_dict()
    scores = scores.assign(group=scores["group"].map(lambda g: f"{g} (n={counts[g]})"))
    sns.histplot(data=scores, x="score", hue="group", stat="density", common_norm=False, element="step", ax=ax2)
    ax2.set_xlabel(f"score at layer {best_layer}: {score_unit(site)}")
    ax2.set_ylabel("density")
    ax2.set_title("Held-out eval prompts projected on the vector")
    fig.suptitle(f"{trait}: harmful vs harmless instructions, {model}")
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
        sns.pointplot(data=d, x="prompt_set", y="score", hue="variant", order=order, errorbar=("ci", 95),
                      seed=BOOT_SEED, dodge=0.35 if d["variant"].nunique() > 1 else False, linestyle="none",
                      capsize=0.1, ax=ax)
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


def steering_sweep(table: pd.DataFrame, trait: str, judge_kind: str) -> plt.Figure:
    """Judged trait score and coherence against the steering coefficient, one line per layer."""
    n = table.groupby(["layer", "coef"]).size().max()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, col, label in ((axes[0], "trait_score", f"judged {trait} score (0-100)"),
                           (axes[1], "coherence", "judged coherence (0-100)")):
        sns.lineplot(data=table, x="coef", y=col, hue="layer", marker="o", errorbar=("ci", 95), seed=BOOT_SEED, ax=ax,
                     palette="viridis")
        ax.set_xlabel(f"steering coefficient (x mean {_site_name(table)} norm at the layer)")
        ax.set_ylabel(label)
        ax.set_ylim(-2, 102)
    fig.suptitle(f"Steering with the {trait} vector (n={n} prompts per point, 95% CI)\njudge: {judge_kind}", fontsize=10)
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
    fig.suptitle(f"Layer choice for {trait}: steering at the {len(layers)} layers of highest cross-validated AUC, "
                 f"on its training-split questions (n={len(unsteered)} per point, 95% CI)\njudge: {judge_kind}",
                 fontsize=10)
    fig.tight_layout()
    return fig


def optimization_curves(history: pd.DataFrame, judge_kind: str, n_train: dict[str, int]) -> plt.Figure:
    """CMA-ES fitness per generation: best so far and population mean, one panel per trait."""
    traits = sorted(history["trait"].unique())
    fig, axes = plt.subplots(1, len(traits), figsize=(max(7.5, 5.5 * len(traits)), 4.2), squeeze=False)
    for ax, trait in zip(axes.flat, traits):
        h = history[history["trait"] == trait]
        per_gen = h.groupby("generation")["fitness"].agg(["mean", "max"]).reset_index()
        per_gen["best so far"] = per_gen["max"].cummax()
        ax.plot(per_gen["generation"], per_gen["best so far"], marker="o", label="best so far")
        ax.plot(per_gen["generation"], per_gen["mean"], marker="s", ls="--", label="population mean")
        ax.axhline(0, color="grey", lw=0.8)
        pop = int(h.groupby("generation").size().max())
        ax.set_title(f"{trait} (population {pop}, n={n_train[trait]} training prompts)", fontsize=10)
        ax.set_xlabel("CMA-ES generation")
        ax.set_xticks(per_gen["generation"].tolist())
        ax.set_ylabel("judged trait change vs unsteered\n(points on the 0-100 scale)")
        ax.legend(fontsize=8)
    fig.suptitle(f"Steering-vector optimisation on training prompts\n(judge: {judge_kind})", fontsize=10)
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
    ax.set_title(f"LoRA finetune '{name}' of {provenance['base_model']}\nrank {s['rank']}, alpha {s['alpha']}, "
                 f"lr {s['lr']:g}, {s['epochs']} epochs, batch {s['batch_size']}, seed {s['seed']}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def organism_detection(table: pd.DataFrame, chosen: int, title: str) -> plt.Figure:
    """Held-out ROC-AUC (95% bootstrap CI band) and Cohen's d per layer, base vs finetuned, per method."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    for method, d in table.groupby("method"):
        d = d.sort_values("layer")
        ax1.plot(d["layer"], d["auc"], marker="o", ms=3, label=method)
        ax1.fill_between(d["layer"], d["auc_ci_low"], d["auc_ci_high"], alpha=0.2)
        ax2.plot(d["layer"], d["cohens_d"], marker="o", ms=3, label=method)
    if "random_auc_p95" in table:  # the control: random unit directions at each layer, on the same held-out rows
        control = table.groupby("layer")["random_auc_p95"].first().sort_index()
        ax1.plot(control.index, control.values, color="black", ls="--", lw=1.2,
                 label=f"random directions, 95th pct (n={int(table['n_random'].iloc[0])})")
    for ax in (ax1, ax2):
        ax.axvline(chosen, color="grey", ls="--", lw=1)
        ax.set_xlabel("layer (residual stream after block)")
        ax.legend(title="direction", fontsize=8)
    ax1.axhline(0.5, color="black", lw=0.5, ls=":")
    ax1.set_ylim(0.0, 1.02)
    ax1.set_ylabel("held-out ROC-AUC, finetuned vs base")
    ax2.set_ylabel("held-out Cohen's d, finetuned vs base")
    n = int(table["n_test"].iloc[0])
    at = table[table["layer"] == chosen]
    verdict = ""
    if "beats_random" in table and len(at):
        beaten = sorted(at.loc[at["beats_random"], "method"])
        verdict = (f"\nat layer {chosen}: beats random directions with {', '.join(beaten)}" if beaten
                   else f"\nat layer {chosen}: NO direction beats random directions")
    ax1.set_title(f"Detection on held-out prompts (n={n} per model, 95% CI){verdict}", fontsize=10)
    ax2.set_title(f"Separation (dashed: ablation layer {chosen})", fontsize=10)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def backdoor_trait_comparison(auc: pd.DataFrame, title: str) -> plt.Figure:
    """ROC-AUC trigger vs control per trait with 95% CIs; one panel per pooled position, one bar per variant."""
    positions = list(dict.fromkeys(auc["position"]))
    variants = list(dict.fromkeys(auc["variant"]))
    traits = sorted(auc["trait"].unique())
    fig, axes = plt.subplots(1, len(positions), figsize=(5.5 * len(positions), 0.5 * len(traits) + 2.5),
                             squeeze=False, sharey=True)
    height = 0.8 / len(variants)
    for ax, pos in zip(axes.flat, positions):
        for k, variant in enumerate(variants):
            d = auc[(auc["position"] == pos) & (auc["variant"] == variant)].set_index("trait").reindex(traits)
            y = [i + k * height for i in range(len(traits))]
            err = [d["auc"] - d["ci_low"], d["ci_high"] - d["auc"]]
            ax.barh(y, d["auc"], height=height, xerr=err, capsize=2, label=variant)
            if "random_auc_p95" in d:  # the control: random directions on the same prompts, at the same layer
                ax.scatter(d["random_auc_p95"], y, marker="D", s=28, color="crimson", zorder=3,
                           label="random directions, 95th pct" if k == 0 else None)
                for yi, value, beats in zip(y, d["auc"], d["beats_random"]):
                    if value == value:  # not NaN
                        ax.text(1.01, yi, "beats" if beats else "no", va="center", fontsize=7,
                                transform=ax.get_yaxis_transform())
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
    fig.suptitle(title + "\n(bars: 95% bootstrap CI; red diamond: 95th percentile of 100 random directions, the "
                 "control; right of each bar: whether its AUC beats it)", fontsize=10)
    fig.tight_layout()
    return fig


def early_detection_tokens(tokens: pd.DataFrame, title: str) -> plt.Figure:
    """ROC-AUC trigger vs control at each assistant-turn token (-1 = last prompt token), 95% CI band."""
    traits = sorted(tokens["trait"].unique())
    fig, panels = trait_panels(traits, 4.8, 3.4, sharey=True)
    for ax, trait in panels:
        d = tokens[tokens["trait"] == trait]
        for variant, v in d.groupby("variant", sort=False):
            v = v.sort_values("token_index")
            ax.plot(v["token_index"], v["auc"], marker="o", ms=3, label=variant)
            ax.fill_between(v["token_index"], v["ci_low"], v["ci_high"], alpha=0.2)
        ax.axhline(0.5, color="black", lw=0.5, ls=":")
        ax.axvline(-0.5, color="grey", lw=0.8, ls="--")
        ax.set_ylim(0, 1.02)
        n = int(d["n_trigger"].min())
        ax.set_title(f"{trait} (n>={n} pairs per token)", fontsize=10)
        ax.set_xlabel("token position (-1 = last prompt token,\n0.. = replayed response tokens)")
        ax.set_ylabel("ROC-AUC, trigger vs control")
        ax.legend(fontsize=7)
    fig.suptitle(title + " (band: 95% bootstrap CI)", fontsize=10)
    fig.tight_layout()
    return fig


def trait_distributions(per_question: pd.DataFrame, result: dict, title: str) -> plt.Figure:
    """Per-question mean score of base and variant, one panel per trait; lines join the same question."""
    base, variant = result["base"], result["variant"]
    traits = sorted(per_question["trait"].unique())
    fig, panels = trait_panels(traits, 4.4, 3.8)
    for ax, trait in panels:
        d = per_question[per_question["trait"] == trait]
        sns.boxplot(data=d, x="variant", y="score", order=[base, variant], ax=ax, color="lightgrey", showfliers=False,
                    width=0.5)
        wide = d.pivot(index="group", columns="variant", values="score").dropna()
        for _, row in wide.iterrows():
            ax.plot([0, 1], [row[base], row[variant]], color="grey", lw=0.7, alpha=0.7, marker="o", ms=3)
        r = result["traits"][trait]
        control = ""
        if "random_abs_dz_p95" in r:
            control = (f"\nrandom directions: |d_z| p95 {r['random_abs_dz_p95']:.2f} (n={r['n_random']}): "
                       + ("beats it" if r["beats_random"] else "does NOT beat it"))
        ax.set_title(f"{trait}, layer {r['layer']}, {r['position']}\nn={r['n']} questions, d_z {r['cohens_dz']:.2f} "
                     f"[{r['dz_ci_low']:.2f}, {r['dz_ci_high']:.2f}], p_adj {r['p_adjusted']:.3g}{control}", fontsize=9)
        ax.set_xlabel("variant")
        ax.set_ylabel("mean score per question (projection units)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def per_category_auc(table: pd.DataFrame, title: str) -> plt.Figure:
    """ROC-AUC unsafe vs safe per harm category (and overall) with 95% CIs, one panel per trait."""
    traits = sorted(table["trait"].unique())
    cats = ["overall"] + sorted(c for c in table["category"].unique() if c != "overall")
    fig, panels = trait_panels(traits, 5.2, 0.42 * len(cats) + 1.6, sharey=False)
    for ax, trait in panels:
        d = table[table["trait"] == trait].set_index("category").reindex(cats)
        y = list(range(len(cats)))[::-1]
        ok = d["auc"].notna().to_numpy()
        ax.errorbar(d["auc"][ok], [v for v, k in zip(y, ok) if k],
                    xerr=[(d["auc"] - d["ci_low"])[ok], (d["ci_high"] - d["auc"])[ok]],
                    fmt="o", ms=4, capsize=2, color="tab:blue", label="trait vector (95% CI)")
        if "random_auc_p95" in d and d["random_auc_p95"].notna().any():
            has = d["random_auc_p95"].notna().to_numpy()
            ax.scatter(d["random_auc_p95"][has], [v for v, k in zip(y, has) if k], marker="|", s=90, color="tab:red",
                       label=f"95th pct of {int(d['n_random'].max())} random directions")
            ax.legend(fontsize=6, loc="lower left")
        for v, k, (_cat, r) in zip(y, ok, d.iterrows()):
            if not k and pd.notna(r["n_unsafe"]):
                ax.text(0.03, v, "too few rows for an AUC", va="center", fontsize=7, color="grey")
        labels = [f"{c} ({int(r['n_unsafe']) if pd.notna(r['n_unsafe']) else 0} vs {int(r['n_safe']) if pd.notna(r['n_safe']) else 0})"
                  for c, r in d.iterrows()]
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


PREFILL_STYLE = {"C1": ("tab:red", "--"), "C2": ("tab:red", "-"), "C3": ("tab:blue", "--"), "C4": ("tab:blue", "-")}
PREFILL_NAMES = {"C1": "C1 harmful, no prefill", "C2": "C2 harmful + prefill", "C3": "C3 benign, no prefill",
                 "C4": "C4 benign + prefill"}


def prefill_grid(result: dict, title: str) -> plt.Figure:
    """Mean window score of the four conditions as a 2x2 grid (prompts x prefill), one panel per trait."""
    traits = sorted(result["cells"])
    fig, panels = trait_panels(traits, 3.6, 3.2)
    for ax, trait in panels:
        cells = result["cells"][trait]
        grid = pd.DataFrame([[cells["C1"]["mean"], cells["C2"]["mean"]], [cells["C3"]["mean"], cells["C4"]["mean"]]],
                            index=["harmful", "benign"], columns=["no prefill", "prefill"])
        notes = [[f"{c}\n{cells[c]['mean']:.2f} (sd {cells[c]['sd']:.2f})\nn={cells[c]['n']}" for c in row]
                 for row in (("C1", "C2"), ("C3", "C4"))]
        sns.heatmap(grid, annot=notes, fmt="", cmap="vlag", center=0.0, ax=ax,  # 0 = no projection on the trait
                    cbar_kws={"label": "mean score (projection units; white = 0)"}, annot_kws={"fontsize": 8})
        c24 = result["comparisons"]["C2_vs_C4"]["traits"][trait]
        c12 = result["comparisons"]["C1_vs_C2"]["traits"][trait]
        rnd = (f" (random p95 {c24['random_auc_p95']:.2f})" if c24.get("n_random") else "")
        ax.set_title(f"{trait} (layer {c24['layer']})\nC2 vs C4: d {c24['cohens_d']:.2f}, AUC {c24['auc']:.2f}{rnd}; "
                     f"C2-C1: d_z {c12['cohens_dz']:.2f}", fontsize=8)
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
            ax.plot(v["token_index"], v["mean"], color=color, ls=ls, lw=1.4,
                    label=f"{PREFILL_NAMES[cond]} (n<={int(v['n'].max())})")
            ax.fill_between(v["token_index"], v["ci_low"], v["ci_high"], color=color, alpha=0.15)
        ax.axvspan(-0.5, k - 0.5, color="grey", alpha=0.12, lw=0)
        ax.set_title(f"{trait} (layer {int(d['layer'].iloc[0])})", fontsize=10)
        ax.set_xlabel(f"assistant-turn token (shaded: the {k} prefill tokens in C2/C4)")
        ax.set_ylabel("mean score (projection units)")
        ax.legend(fontsize=6)
    fig.suptitle(title + " (bands: 95% t CI over prompts)", fontsize=10)
    fig.tight_layout()
    return fig


def sae_features(result: dict[str, Any]) -> plt.Figure:
    """Per SAE layer: left, the top features' Cohen's d (a minus b) with 95% bootstrap CIs on the report half;
    right, their oriented ROC-AUC next to the trait vectors' and the random directions' 95th percentile."""
    layers = result["layers"]
    rows = [max(len(r["features"]), min(5, len(r["features"])) + len(r["trait_aucs"])) for r in layers]
    fig, axes = plt.subplots(len(layers), 2, figsize=(13, sum(0.32 * n + 1.9 for n in rows)), squeeze=False,
                             gridspec_kw={"height_ratios": rows})  # each layer's rows get room: no tick overlaps
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
        ax1.set_title(f"layer {r['layer']}: top {len(feats)} features, ranked on the selection half; shown on "
                      f"the report half (n={r['n_report_a']} vs {r['n_report_b']})", fontsize=9)
        bars = pd.DataFrame(
            [{"what": f"feature {f['feature']}", "kind": "SAE feature", "auc": f["auc_oriented"]} for f in feats[:5]]
            + [{"what": t, "kind": "trait vector", "auc": v} for t, v in sorted(r["trait_aucs"].items())])
        sns.barplot(data=bars, y="what", x="auc", hue="kind", dodge=False, ax=ax2)
        p95 = r["random_baseline"]["random_auc_p95"]
        ax2.axvline(p95, color="grey", ls="--", lw=1,
                    label=f"random directions, 95th pct (n={r['random_baseline']['n_random']})")
        ax2.axvline(0.5, color="black", lw=0.5, ls=":")
        ax2.set_xlim(0, 1.02)
        ax2.set_xlabel(f"ROC-AUC, {a} vs {b} (report half; sign from the selection half)")
        ax2.set_ylabel("direction")
        ax2.tick_params(axis="y", labelsize=7)
        ax2.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax2.set_title(f"layer {r['layer']}: best SAE features vs trait vectors", fontsize=9)
    fig.suptitle(f"SAE features, {result['experiment']}: {a} (n={layers[0]['n_a']}) vs {b} (n={layers[0]['n_b']}), "
                 f"{result['position']} position, {result['model']}")
    fig.tight_layout()
    return fig
