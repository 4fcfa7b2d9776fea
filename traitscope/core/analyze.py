"""Analyses that turn vectors and projections into tables, JSON and figures."""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .artifacts import ActivationShard, ShardFiles, TraitVectors, tensor_key
from .errors import __version__
from .io import file_sha256
from .methods import random_directions
from .project import at_layer
from .stats import auc, column_aucs, separation, versus_random


def harm_check(vectors: TraitVectors, harmful: list[ActivationShard] | list[ShardFiles],
               harmless: list[ActivationShard] | list[ShardFiles], *,
               min_auc: float, seed: int) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """Does the trait vector separate held-out harmful from harmless prompts?

    Two held-out views: the extraction split (metrics stored in the sidecar) and independent eval
    prompt sets that were never used for extraction, projected at every captured layer, at the trait's
    extraction position and site, with the vectors of the method that chose the best layer.
    """
    sidecar = vectors.info
    best, method, position, site = vectors.best_layer, vectors.best_method, vectors.position, vectors.site
    rows = [{"layer": v["layer"], "auc": v["metrics"]["auc"], "data": f"extraction test split ({m})"}
            for v in sidecar["vectors"] for m in [v["method"]]]

    def scores(shards: list[ActivationShard] | list[ShardFiles], layer: int, u: torch.Tensor | np.ndarray) -> np.ndarray:
        direction = u.numpy() if isinstance(u, torch.Tensor) else u
        return np.concatenate([shard.project(position, layer, site, direction) for shard in shards])

    layers = harmful[0].layers
    per_layer_scores: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for layer in layers:
        if tensor_key(method, layer) not in vectors.tensors:
            continue
        u = vectors.unit(method, layer)
        h, b = scores(harmful, layer, u), scores(harmless, layer, u)
        per_layer_scores[layer] = (h, b)
        y = np.r_[np.ones(len(h)), np.zeros(len(b))]
        rows.append({"layer": layer, "auc": auc(y, np.r_[h, b]), "data": f"independent eval sets ({method})"})
    if best not in per_layer_scores:
        raise ValueError(f"best layer {best} was not captured for the eval sets; add it to capture.layers")
    h, b = per_layer_scores[best]
    y, s = np.r_[np.ones(len(h)), np.zeros(len(b))], np.r_[h, b]
    sep = separation(h, b, seed=seed)
    eval_auc = sep["auc"]
    chosen = next(v["metrics"] for v in sidecar["vectors"] if v["layer"] == best and v["method"] == method)
    extraction_auc = float(chosen["auc"])
    # control baseline on the eval sets: random unit directions at the best layer, each given the sign that agrees
    # with the trait vector (no eval label is used), as many as extraction drew
    trait_dir = vectors.unit(method, best).numpy()
    rand = random_directions(int(chosen.get("n_random", 100)), len(trait_dir), seed)
    rand *= np.where(rand @ trait_dir >= 0, 1.0, -1.0)[:, None]
    ph, pb = scores(harmful, best, rand.T), scores(harmless, best, rand.T)
    random_aucs = column_aucs(y, np.vstack([ph, pb]))
    result = {
        "trait": sidecar["trait"], "model": sidecar["model"], "position": position, "site": site, "method": method,
        "best_layer": best, "best_layer_reason": sidecar["best"]["reason"],
        "extraction_val_auc": float(chosen["val_auc"]), "extraction_test_auc": extraction_auc,
        "eval_auc": eval_auc, "eval_auc_ci95": [sep["ci_low"], sep["ci_high"]], "eval_cohens_d": sep["cohens_d"],
        "extraction_baseline": {k: chosen.get(k) for k in ("random_auc_p95", "auc_percentile", "beats_random",
                                                           "shuffled_auc", "n_random")},
        "eval_baseline": versus_random(eval_auc, random_aucs),
        "n_eval_harmful": int(len(h)), "n_eval_harmless": int(len(b)),
        "min_auc": min_auc, "passed": bool(extraction_auc >= min_auc and eval_auc >= min_auc),
        "criterion": "ROC-AUC >= min_auc at the best layer, on the extraction test split and on the eval sets",
        "definitions": {
            "extraction_val_auc": "cross-validated ROC-AUC inside the extraction training split: chose the best layer",
            "extraction_test_auc": "ROC-AUC on the extraction test split at that layer (not used for any choice)",
            "eval_auc": "ROC-AUC on the independent eval prompt sets at that layer (not used for any choice)",
            "*_baseline": "the same AUC of random unit directions at that layer (extraction: oriented on the training "
                          "split; eval: given the trait vector's sign): their 95th percentile, the vector's percentile "
                          "among them, whether it beats the 95th percentile, and (extraction) a shuffled-label vector"},
    }
    dist = pd.DataFrame({"score": s, "group": np.where(y == 1, "harmful", "harmless")})
    return result, pd.DataFrame(rows), dist


def score_summary(frames: list[tuple[str, str, pd.DataFrame]], best_layers: dict[str, int], positions: dict[str, str],
                  method: str) -> pd.DataFrame:
    """Per-prompt pooled scores at each trait's best layer and extraction position."""
    out = []
    for variant, prompt_set, df in frames:
        for trait, layer in best_layers.items():
            want = positions[trait]
            m = at_layer(df, trait, layer, method)
            pos = want if want in set(m["position"]) else ("last" if "last" in set(m["position"]) else None)
            if pos is None:
                continue
            sel = m[m["position"] == pos]
            out.append(sel.assign(variant=variant, prompt_set=prompt_set))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def capture_counts(tables: dict[str, list[str | Path]]) -> dict[str, dict[str, int]]:
    """Per captured table (label -> its shards' responses parquets): rows, prompts cut at ``capture.max_length``
    and rows longer than the model's context (tables written before that column count 0 there)."""
    out = {}
    for label, files in sorted(tables.items()):
        cols = [pd.read_parquet(f, columns=[c for c in ("truncated", "over_context")
                                             if c in _columns(f)]) for f in files]
        df = pd.concat(cols, ignore_index=True) if cols else pd.DataFrame()
        out[label] = {"rows": len(df), **{c: int(df[c].sum()) if c in df else 0 for c in ("truncated", "over_context")}}
    return out


def _columns(path: str | Path) -> list[str]:
    import pyarrow.parquet as pq

    return list(pq.read_schema(path).names)


def provenance(config: dict[str, Any], outputs: list[str | Path], overlaps: dict[str, Any] | None = None,
               prep: dict[str, Any] | None = None, captures: dict[str, dict[str, int]] | None = None) -> dict[str, Any]:
    """What produced the results: versions, git commit, config, the overlaps between scored and extraction
    prompts that ``checks.allow_overlap`` accepted, and a checksum of every output."""
    pkgs: dict[str, str | None] = {}
    for name in ("torch", "transformers", "snakemake", "scikit-learn", "statsmodels", "pandas", "numpy", "peft",
                 "safetensors"):
        try:
            pkgs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pkgs[name] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        commit = ""
    return {
        "traitscope": __version__, "git_commit": commit or None, "python": platform.python_version(),
        "platform": platform.platform(), "packages": pkgs,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "config": {k: v for k, v in config.items() if not k.startswith("_")},
        "prompt_sets": {"definition": "per prompt set: rows read, dropped (no prompt, exact duplicate; a replay: "
                                      "no response to replay), repeated prompts kept, not sampled, rows kept",
                        "counts": prep or {}},
        "captured_rows": {"definition": "per captured table (variant/prompt set, or extract/<trait>): rows, prompts cut "
                                        "at capture.max_length (their start is lost), rows whose prompt + prefill + "
                                        "response exceed the model's context length",
                          "counts": captures or {}},
        "overlap_with_extraction": {
            "definition": "allowed: scored prompt set -> trait -> prompts it shares with that trait's extraction data "
                          "(accepted by checks.allow_overlap; any other overlap stops start-up); unchecked: sets "
                          "start-up could not load (hub or large files), so not compared",
            **(overlaps or {"allowed": {}, "unchecked": []})},
        "outputs": {str(p): file_sha256(p) for p in sorted(map(str, outputs)) if Path(p).is_file()},
    }
