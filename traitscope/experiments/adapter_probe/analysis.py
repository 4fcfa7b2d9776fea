"""Analysis and figures of the adapter probe experiment (the experiment itself: ``__init__``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from ...core.dims import LORA_INPUTS, LORA_OUTPUTS
from ...core.io import read_json, read_safetensors
from ...core.methods import random_directions

if TYPE_CHECKING:
    pass

ORGANISM = "organism direction"
"""The reference name of the organism's misalignment direction in the tables."""


# ---------------------------------------------------------------------------------------------- analysis

LORA_KEY = re.compile(r"\.(?:layers|h|blocks)\.(\d+)\.(?:[A-Za-z0-9_]+\.)*?([A-Za-z0-9_]+)\.lora_([AB])\.weight$")


def lora_updates(adapter_dir: str | Path) -> dict[tuple[int, str], torch.Tensor]:
    """(block, module) -> the float64 weight update ``scale * B @ A`` ``[d_out, d_in]`` of a PEFT LoRA adapter folder."""
    folder = Path(adapter_dir)
    cfg = read_json(folder / "adapter_config.json")
    rank, alpha = int(cfg["r"]), float(cfg["lora_alpha"])
    scale = alpha / (rank**0.5 if cfg.get("use_rslora") else rank)
    tensors, _ = read_safetensors(folder / "adapter_model.safetensors")
    parts: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        m = LORA_KEY.search(key)
        if m:
            parts.setdefault((int(m.group(1)), m.group(2)), {})[m.group(3)] = value.double()
    return {k: scale * (p["B"] @ p["A"]) for k, p in sorted(parts.items()) if "A" in p and "B" in p}


def stream_side(module: str) -> str | None:
    """``writes`` (the update's output joins the residual stream), ``reads`` (its input is the stream) or None."""
    return "writes" if module in LORA_OUTPUTS else "reads" if module in LORA_INPUTS else None


def stream_layer(block: int, side: str) -> int | None:
    """The residual-stream layer (after block ``L``) a module touches: its own block's output for a writer, the previous
    block's for a reader (None for block 0, which reads the embeddings)."""
    return block if side == "writes" else (block - 1 if block > 0 else None)


def top_directions(delta: torch.Tensor, side: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The singular values of ``delta`` and its top ``k`` unit directions on the residual-stream side ``[k, d]``."""
    u, s, vh = torch.linalg.svd(delta, full_matrices=False)
    dirs = u[:, :k].T if side == "writes" else vh[:k]
    return s.numpy(), dirs.numpy()


def probe(
    updates: dict[tuple[int, str], torch.Tensor],
    references: dict[str, dict[int, np.ndarray]],
    *,
    top_k: int,
    n_random: int,
    seed: int,
) -> pd.DataFrame:
    """One row per (module, block, reference): the largest |cosine| between the update's top directions and the
    reference at the stream layer it touches, and the 95th percentile of the same statistic for random unit
    directions (the same ones for every cell of a width)."""
    rows = []
    randoms: dict[int, np.ndarray] = {}
    for (block, module), delta in updates.items():
        side = stream_side(module)
        layer = stream_layer(block, side) if side else None
        if side is None or layer is None:
            continue
        values, dirs = top_directions(delta, side, top_k)
        d = dirs.shape[1]
        rand = randoms.setdefault(d, random_directions(n_random, d, seed).astype(np.float64))
        random_max = np.abs(dirs @ rand.T).max(axis=0)
        p95 = float(np.percentile(random_max, 95))
        energy = values**2 / float((values**2).sum()) if float((values**2).sum()) > 0 else values * 0
        for ref, by_layer in references.items():
            v = by_layer.get(layer)
            if v is None:
                continue
            cos = np.abs(dirs @ (v / np.linalg.norm(v)))
            rows.append(
                {
                    "module": module,
                    "block": block,
                    "side": side,
                    "stream_layer": layer,
                    "reference": ref,
                    "cos": float(cos.max()),
                    "rank": int(cos.argmax()) + 1,
                    "random_p95": p95,
                    "beats_random": bool(cos.max() > p95),
                    "sv1": float(values[0]),
                    "top_k_energy": float(energy[:top_k].sum()),
                }
            )
    return pd.DataFrame(rows)


def summary(cells: pd.DataFrame, info: dict[str, Any]) -> dict[str, Any]:
    """Per reference: cells, how many beat random (and the share), and the best cell."""
    refs = {}
    for ref, group in cells.groupby("reference", sort=False):
        best = group.iloc[int(np.argmax(group["cos"].to_numpy()))]
        refs[str(ref)] = {
            "n_cells": int(len(group)),
            "n_beats_random": int(group["beats_random"].sum()),
            "share_beats_random": float(group["beats_random"].mean()),
            "best": {
                "module": str(best["module"]),
                "block": int(best["block"]),
                "stream_layer": int(best["stream_layer"]),
                "cos": float(best["cos"]),
                "random_p95": float(best["random_p95"]),
            },
        }
    return {
        **info,
        "references": refs,
        "definitions": {
            "cos": "largest |cosine| between the update's top_k singular directions on the "
            "residual-stream side and the reference at the stream layer the module touches",
            "random_p95": "95th percentile of the same statistic for n_random seeded random unit directions",
            "share_beats_random": "share of cells above random_p95 (about 0.05 by chance)",
        },
    }


def references(vectors: list[Any], organism: str | Path | None) -> dict[str, dict[int, np.ndarray]]:
    """Reference directions by layer: each ``resid`` trait's vectors of its selection method, and the organism's
    misalignment direction of its chosen method (``directions.safetensors``, keyed ``{method}.layer_{L}``)."""
    out: dict[str, dict[int, np.ndarray]] = {}
    for tv in vectors:
        if tv.site == "resid":
            out[tv.trait] = _by_layer(tv.tensors, tv.best_method)
    if organism is not None:
        tensors, meta = read_safetensors(organism)
        chosen = meta.get("chosen") or {}
        out[ORGANISM] = _by_layer(tensors, str(chosen.get("method", "mean_diff")))
    return out


def _by_layer(tensors: dict[str, torch.Tensor], method: str) -> dict[int, np.ndarray]:
    """``{method}.layer_{L}`` tensors (residual stream) as layer -> float64 vector."""
    found = (re.fullmatch(rf"{re.escape(method)}\.layer_(\d+)", k) for k in tensors)
    return {int(m.group(1)): tensors[m.group(0)].double().numpy() for m in found if m}


# ---------------------------------------------------------------------------------------------- figures


def adapter_probe_figure(cells: pd.DataFrame, result: dict[str, Any]) -> plt.Figure:
    """Left: |cosine| with the organism direction (or the first trait) per module and block, cells above the random
    95th percentile marked. Right: per reference, the share of cells above random, against the 5% expected by chance."""
    refs = list(result["references"])
    shown = ORGANISM if ORGANISM in refs else refs[0]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.6), gridspec_kw={"width_ratios": [2.2, 1]})
    grid = cells[cells["reference"] == shown].pivot(index="module", columns="block", values="cos")
    beats = cells[cells["reference"] == shown].pivot(index="module", columns="block", values="beats_random")
    sns.heatmap(
        grid,
        ax=ax1,
        cmap="viridis",
        vmin=0,
        cbar_kws={"label": "max |cosine| of top directions"},
        annot=beats.reindex_like(grid).map(lambda b: "*" if b is True else ""),
        fmt="",
    )
    ax1.set_xlabel("block (LoRA module's block)")
    ax1.set_ylabel("LoRA module")
    ax1.set_title(
        f"Top-{result['top_k']} update directions vs the {shown} (* above random p95, "
        f"n={result['n_random']} random directions)",
        fontsize=9,
    )
    share = pd.DataFrame(
        [{"reference": r, "share": v["share_beats_random"], "n": v["n_cells"]} for r, v in result["references"].items()]
    )
    sns.barplot(data=share, y="reference", x="share", ax=ax2, color="tab:blue")
    ax2.axvline(0.05, color="red", ls="--", lw=1, label="chance (5%)")
    ax2.set_xlim(0, 1)
    ax2.set_xlabel("share of (module, block) cells above random p95")
    ax2.set_ylabel("")
    ax2.set_yticks(range(len(share)))
    ax2.set_yticklabels([f"{r} (n={n})" for r, n in zip(share["reference"], share["n"])], fontsize=8)
    ax2.legend(fontsize=8)
    fig.suptitle(
        f"What the LoRA finetune '{result['finetune']}' wrote into the weights ({result['n_modules']} updates)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig
