"""Adapter probing: what a LoRA finetune wrote into the weights, read without running the model.

For every LoRA module of a finetune's adapter (``q_proj`` ... ``down_proj`` in each block), the weight update is
``dW = scale * B @ A`` (``scale = alpha / r``, or ``alpha / sqrt(r)`` with rsLoRA). Its singular value decomposition
gives the update's spectrum and its top directions on the residual-stream side: the output directions of a module
that writes into the stream (``o_proj``, ``down_proj``: :data:`~traitscope.core.models.LORA_OUTPUTS`), the input
directions of one that reads from it (``q_proj``, ``gate_proj``, ...: :data:`~traitscope.core.models.LORA_INPUTS`).

Each module's top ``top_k`` directions are compared, by absolute cosine, with the reference directions at the
residual-stream layer they touch: a writer in block ``L`` writes the stream after block ``L`` (trait layer ``L``), a
reader in block ``L`` reads the stream after block ``L - 1`` (block 0 reads the embeddings: no reference there). The
references are each ``resid`` trait's vector (its selection method) and, when the study's organism is this finetune,
the organism's misalignment direction (its chosen method). The control: the same maximum |cosine| of the top
directions with ``n_random`` seeded random unit directions; a cell ``beats_random`` above their 95th percentile. By
construction about 5% of cells beat it by chance.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from ..core.io import read_json, read_safetensors
from ..core.methods import random_directions
from ..core.models import LORA_INPUTS, LORA_OUTPUTS
from ..workflow.config import config_error
from ..workflow.experiment import Experiment, Finding
from ..workflow.tables import fmt, table, yes

if TYPE_CHECKING:
    from ..workflow.layout import Layout
    from ..workflow.settings import Study

ORGANISM = "organism direction"
"""The reference name of the organism's misalignment direction in the tables."""


class AdapterProbeSettings(NamedTuple):
    finetunes: tuple[str, ...]  # empty: every finetune of the study
    top_k: int
    n_random: int


class AdapterProbe(Experiment):
    name = "adapter_probe"
    title = "Adapter probe"
    settings = AdapterProbeSettings
    schema = Path(__file__).with_suffix(".schema.yaml")

    def check(self, cfg: dict[str, Any], dims: dict[str, Any], base_dir: Path, configured: list[Any]) -> None:
        section = self.section(cfg) or {}
        if not cfg["finetune"]:
            raise config_error(self.name, "the study trains no LoRA adapter to probe", "add a finetune: section")
        for ft in section.get("finetunes") or []:
            if ft not in cfg["finetune"]:
                raise config_error(
                    self.dotted("finetunes"), f"unknown finetune {ft!r}", f"use one of {sorted(cfg['finetune'])}"
                )

    def finetunes(self, study: Study, s: AdapterProbeSettings) -> list[str]:
        return list(s.finetunes or sorted(study.finetune))

    def files(self, lay: Layout, ft: str = "{ft}") -> dict[str, str]:
        return {
            "json": self.folder(lay, ft, "adapter_probe.json"),
            "table": self.folder(lay, ft, "adapter_probe.parquet"),
            "figure": self.folder(lay, ft, "adapter_probe.png"),
        }

    def targets(self, study: Study, s: AdapterProbeSettings, lay: Layout) -> list[str]:
        return [self.files(lay, ft)[k] for ft in self.finetunes(study, s) for k in ("json", "figure")]

    def results(self) -> dict[str, str]:
        return {"adapter_probe/{}": "adapter_probe/*/adapter_probe.json"}

    def findings(self, res: Any) -> Iterator[Finding]:
        for name in (n for n in res.experiments() if n.startswith("adapter_probe/")):
            r = res.experiment(name)
            refs = r["references"]
            parts = [
                f"{ref} {v['n_beats_random']}/{v['n_cells']} (best |cos| {v['best']['cos']:.2f} vs {v['best']['random_p95']:.2f})"
                for ref, v in refs.items()
            ]
            beaten = [ref for ref, v in refs.items() if v["share_beats_random"] > 0.05]
            yield (
                f"Adapter probe: {r['finetune']}",
                "LoRA updates whose top directions align with a reference beyond "
                f"random directions (chance: about 5% of cells): {'; '.join(parts)}",
                bool(beaten),
            )

    def measurements(self, res: Any) -> list[str]:
        out: list[str] = []
        for name in sorted(n for n in res.experiments() if n.startswith("adapter_probe/")):
            r = res.experiment(name)
            out += [
                f"## Adapter probe: {r['finetune']}",
                "",
                f"{r['n_modules']} LoRA updates (module x block); top {r['top_k']} directions of each against "
                f"{r['n_random']} random directions. Chance: about 5% of cells beat random.",
                "",
            ]
            rows = [
                [
                    ref,
                    v["n_cells"],
                    v["n_beats_random"],
                    fmt(v["share_beats_random"]),
                    f"{v['best']['module']} block {v['best']['block']}",
                    fmt(v["best"]["cos"]),
                    fmt(v["best"]["random_p95"]),
                    yes(v["share_beats_random"] > 0.05),
                ]
                for ref, v in r["references"].items()
            ]
            out += table(
                [
                    "reference",
                    "cells",
                    "beat random",
                    "share",
                    "best cell",
                    "its \\|cos\\|",
                    "random p95",
                    "above chance",
                ],
                rows,
            )
        return out


EXPERIMENT = AdapterProbe()


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
