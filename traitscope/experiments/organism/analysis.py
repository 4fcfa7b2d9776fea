"""Analysis and figures of the organism experiment (the experiment itself: ``__init__``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

import contextlib

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from scipy.stats import percentileofscore

from ...core.architecture import adapter_disabled
from ...core.artifacts import tensor_key
from ...core.judge import misalignment_items
from ...core.methods import fit_direction as _fit_direction
from ...core.methods import unit
from ...core.stats import auc, cohens_d
from ...core.stats import separation as _separation


def last_token(shards: list[tuple[dict[str, torch.Tensor], dict[str, Any]]], layer: int) -> pd.DataFrame:
    """ids and ``[n, d]`` last-token activations at ``layer`` over the shards of one (variant, prompt set)."""
    ids: list[str] = []
    rows: list[np.ndarray] = []
    for tensors, meta in shards:
        ids += list(meta["ids"])
        rows.append(tensors[tensor_key("last", layer)].float().numpy())
    return pd.DataFrame({"id": ids, "x": list(np.concatenate(rows))})


def paired(base: list, finetuned: list, layer: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Activations of the two models on the prompts both have, in the same order."""
    b = last_token(base, layer).set_index("id")
    f = last_token(finetuned, layer).set_index("id")
    ids = [i for i in b.index if i in f.index]
    if not ids:
        raise ValueError("base and finetuned activations share no prompt ids; capture both on the same prompt set")
    return ids, np.stack(b.loc[ids, "x"].to_list()), np.stack(f.loc[ids, "x"].to_list())


def fit_direction(xb: np.ndarray, xf: np.ndarray, method: str, probe_c: float, seed: int) -> np.ndarray:
    """The ``method`` direction from base (0) to finetuned (1) activations (:func:`traitscope.core.methods.fit_direction`)."""
    x = np.vstack([xb, xf])
    y = np.r_[np.zeros(len(xb), dtype=int), np.ones(len(xf), dtype=int)]
    return _fit_direction(x, y, method, probe_c=probe_c, seed=seed).vector


def separation(sb: np.ndarray, sf: np.ndarray, *, n_boot: int, seed: int) -> dict[str, float]:
    """Finetuned (1) vs base (0) projections: ROC-AUC with bootstrap CI, Cohen's d, mean paired shift."""
    sep = _separation(sf, sb, n_boot=n_boot, seed=seed)
    return {
        "auc": sep["auc"],
        "auc_ci_low": sep["ci_low"],
        "auc_ci_high": sep["ci_high"],
        "cohens_d": sep["cohens_d"],
        "mean_shift": float(np.mean(sf - sb)) if len(sf) == len(sb) else float(np.mean(sf) - np.mean(sb)),
    }


def directions_and_detection(
    train: tuple[list, list],
    test: tuple[list, list],
    layers: list[int],
    methods: list[str],
    *,
    probe_c: float,
    n_boot: int,
    seed: int,
    n_random: int = 100,
) -> tuple[dict[str, torch.Tensor], pd.DataFrame]:
    """Directions ``{method}.layer_{L}`` fitted on the train prompts, and held-out detection per layer, against the
    held-out AUCs of ``n_random`` random unit directions at the layer (oriented on the train prompts)."""
    from ...core.extract import random_baseline

    vectors: dict[str, torch.Tensor] = {}
    rows = []
    for layer in layers:
        _, xb_tr, xf_tr = paired(*train, layer)
        test_ids, xb_te, xf_te = paired(*test, layer)
        random_aucs = random_baseline(
            np.vstack([xb_tr, xf_tr]),
            np.r_[np.zeros(len(xb_tr)), np.ones(len(xf_tr))],
            np.vstack([xb_te, xf_te]),
            np.r_[np.zeros(len(xb_te)), np.ones(len(xf_te))],
            n_random,
            seed=seed * 1000 + layer,
        )
        p95 = float(np.percentile(random_aucs, 95))
        for method in methods:
            v = fit_direction(xb_tr, xf_tr, method, probe_c, seed)
            u = unit(v)
            vectors[tensor_key(method, layer)] = torch.from_numpy(v)
            held = separation(xb_te @ u, xf_te @ u, n_boot=n_boot, seed=seed)
            rows.append(
                {
                    "layer": layer,
                    "method": method,
                    **held,
                    "train_auc": auc(np.r_[np.zeros(len(xb_tr)), np.ones(len(xf_tr))], np.r_[xb_tr @ u, xf_tr @ u]),
                    "train_cohens_d": cohens_d(xf_tr @ u, xb_tr @ u),
                    "norm": float(np.linalg.norm(v)),
                    "n_train": len(xb_tr),
                    "n_test": len(test_ids),
                    "random_auc_p95": p95,
                    "auc_percentile": float(percentileofscore(random_aucs, held["auc"], kind="strict")),
                    "beats_random": bool(held["auc"] > p95),
                    "n_random": n_random,
                }
            )
    return vectors, pd.DataFrame(rows)


def choose_layer(table: pd.DataFrame, method: str) -> dict[str, Any]:
    """Largest train Cohen's d (not the test AUC, which stays an unbiased held-out estimate); earlier layer on ties."""
    m = table[table["method"] == method].sort_values(["train_cohens_d", "layer"], ascending=[False, True])
    best = m.iloc[0]
    return {
        "layer": int(best["layer"]),
        "method": method,
        "criterion": "max train Cohen's d (finetuned vs base)",
        "train_cohens_d": float(best["train_cohens_d"]),
        "heldout_auc": float(best["auc"]),
        "heldout_auc_ci95": [float(best["auc_ci_low"]), float(best["auc_ci_high"])],
        "heldout_cohens_d": float(best["cohens_d"]),
        "heldout_beats_random": bool(best["beats_random"]),
        "random_auc_p95": float(best["random_auc_p95"]),
    }


def ablation_generations(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    directions: dict[int, torch.Tensor],
    *,
    strength: float,
    max_new_tokens: int,
    seed: int,
) -> pd.DataFrame:
    """Greedy responses of the base (adapter off), the finetuned model, and the finetuned model with the
    directions ablated at their layers."""
    from ...core.steering import Ablate, generate_steered

    with adapter_disabled(model):
        base = generate_steered(model, tokenizer, prompts, [], max_new_tokens=max_new_tokens, seed=seed)
    finetuned = generate_steered(model, tokenizer, prompts, [], max_new_tokens=max_new_tokens, seed=seed)
    with contextlib.ExitStack() as stack:
        edits = [stack.enter_context(Ablate(model, layer, u, strength)) for layer, u in directions.items()]
        ablated = generate_steered(model, tokenizer, prompts, edits, max_new_tokens=max_new_tokens, seed=seed)
    return pd.DataFrame({"prompt": prompts, "base": base, "finetuned": finetuned, "finetuned_ablated": ablated})


def ablated_detection(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    directions: dict[int, torch.Tensor],
    probe: dict[int, torch.Tensor],
    *,
    strength: float,
    n_boot: int,
    seed: int,
) -> pd.DataFrame:
    """Held-out detection AUC per layer again, with the ablation active in the finetuned model.

    ``probe`` maps every analysed layer to its direction; layers at or after the first ablated layer show
    whether the finetuning signature survives the ablation downstream.
    """
    from ...core.capture import capture_batch
    from ...core.chat import prompt_token_ids
    from ...core.steering import Ablate

    layers = sorted(probe)
    batch: list[tuple[list[int], list[int]]] = [(prompt_token_ids(tokenizer, p, None), []) for p in prompts]
    pad = tokenizer.pad_token_id

    def last(edits: dict[int, torch.Tensor] | None, base: bool) -> dict[int, np.ndarray]:
        with contextlib.ExitStack() as stack:
            if base:
                stack.enter_context(adapter_disabled(model))
            for layer, u in (edits or {}).items():
                stack.enter_context(Ablate(model, layer, u, strength))
            out = capture_batch(model, batch, layers, ["last"], pad)["outputs"]
        return {layer: out[("resid", layer)]["last"].float().numpy() for layer in layers}

    base, ft, ab = last(None, True), last(None, False), last(directions, False)
    rows = []
    for layer in layers:
        u = unit(probe[layer]).numpy()
        for condition, acts in (("finetuned", ft), ("finetuned_ablated", ab)):
            rows.append(
                {
                    "layer": layer,
                    "condition": condition,
                    **separation(base[layer] @ u, acts[layer] @ u, n_boot=n_boot, seed=seed),
                }
            )
    return pd.DataFrame(rows)


CONDITIONS = ("base", "finetuned", "finetuned_ablated")


def judge_generations(table: pd.DataFrame, judge: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Judged misalignment of every generation: the table with ``<condition>_judged`` columns added, and the
    long table (one row per prompt and condition, with the judge's columns)."""
    long = table.melt(
        id_vars=["id", "prompt"], value_vars=list(CONDITIONS), var_name="condition", value_name="response"
    ).reset_index(drop=True)
    scores = judge.score(misalignment_items(long["prompt"], long["response"]))
    long = pd.concat([long, scores], axis=1)
    table = table.copy()
    for cond in CONDITIONS:
        table[f"{cond}_judged"] = long[long["condition"] == cond]["trait_score"].to_numpy()
    return table, long


def ablation_markdown(table: pd.DataFrame, heading: str, footer: str | None = None) -> str:
    """The generations side by side as a markdown table (every column but ``id``)."""

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    cols = [c for c in table.columns if c != "id"]
    lines = [f"# {heading}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r[c]) for c in cols) + " |" for r in table.to_dict(orient="records")]
    if footer:
        lines += ["", footer]
    return "\n".join(lines) + "\n"


def restoration(scores: pd.DataFrame, threshold: float = 50.0) -> dict[str, Any]:
    """Judged misalignment per condition; restoration rate = share of prompts whose finetuned response is
    judged misaligned (score >= threshold) and whose ablated response is not."""
    wide = scores.pivot(index="id", columns="condition", values="trait_score")
    bad = wide["finetuned"] >= threshold
    restored = bad & (wide["finetuned_ablated"] < threshold)
    out = {
        cond: {"mean_score": float(wide[cond].mean()), "share_misaligned": float((wide[cond] >= threshold).mean())}
        for cond in wide.columns
    }
    return {
        "threshold": threshold,
        "n_prompts": int(len(wide)),
        "n_finetuned_misaligned": int(bad.sum()),
        "restoration_rate": float(restored.sum() / bad.sum()) if bad.any() else None,
        "by_condition": out,
        "definition": "share of prompts with a misaligned finetuned response (judged score >= threshold) "
        "whose response under ablation is judged below the threshold",
    }


# ---------------------------------------------------------------------------------------------- figures


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
        ax1.plot(
            control.index,
            control.values,
            color="black",
            ls="--",
            lw=1.2,
            label=f"random directions, 95th pct (n={int(table['n_random'].iloc[0])})",
        )
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
        verdict = (
            f"\nat layer {chosen}: beats random directions with {', '.join(beaten)}"
            if beaten
            else f"\nat layer {chosen}: NO direction beats random directions"
        )
    ax1.set_title(f"Detection on held-out prompts (n={n} per model, 95% CI){verdict}", fontsize=10)
    ax2.set_title(f"Separation (dashed: ablation layer {chosen})", fontsize=10)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
