"""Projection of captured activations onto trait vectors.

The score of an activation ``a`` on a trait vector ``v`` is the scalar projection onto the unit
vector: ``score = a . v / ||v||`` (units of the residual stream; comparable across prompts and
variants for one trait and layer, not across layers). Pooled scores:

``last``, ``mean``     projection of the pooled activation captured at that position
``response_mean``      mean of the per-token scores over the assistant turn (prefill + response)

Projection reads only activation shards and vector files, so new vectors never re-run a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import TraitscopeError
from .config import parse_layers
from .io import read_json, read_safetensors


class ProjectionError(TraitscopeError):
    pass


def best_layers(sidecars: list[dict[str, Any]]) -> dict[str, int]:
    """Trait -> the best layer chosen at extraction, from the vectors' JSON sidecars."""
    return {s["trait"]: s["best"]["layer"] for s in sidecars}


def at_layer(scores: pd.DataFrame, trait: str, layer: int, method: str) -> pd.DataFrame:
    """The rows of a pooled or per-token score table for one trait, layer and vector method."""
    return scores[(scores["trait"] == trait) & (scores["layer"] == layer) & (scores["method"] == method)]


def load_trait_vectors(vectors_path: str | Path, sidecar_path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, _ = read_safetensors(vectors_path)
    return tensors, read_json(sidecar_path)


def select_layers(mode: Any, sidecar: dict[str, Any], captured: list[int], n_layers: int, trait: str) -> list[int]:
    wanted = [sidecar["best"]["layer"]] if mode == "best" else parse_layers(mode, n_layers, "project.layers")
    missing = sorted(set(wanted) - set(captured))
    if missing:
        raise ProjectionError(f"trait {trait}: layer(s) {missing} were not captured "
                              f"(fix: add them to capture.layers, or set project.layers to captured layers {captured})")
    return wanted


def project_shard(tensors: dict[str, torch.Tensor], meta: dict[str, Any], traits: dict[str, tuple[dict[str, torch.Tensor], dict[str, Any]]],
                  *, layers_mode: Any, methods: list[str], per_token: bool, n_layers: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scores of one activation shard on every trait vector: (pooled scores, per-token scores)."""
    ids = np.asarray(meta["ids"])
    captured = [int(x) for x in meta["layers"]]
    positions = meta["positions"]
    pooled, tokens = [], []
    has_resp = "response" in positions
    if has_resp:
        off = tensors["response.offsets"]
        lengths = (off[1:] - off[:-1])
        row_of_token = torch.repeat_interleave(torch.arange(len(ids)), lengths)
        tok_index = torch.arange(int(off[-1])) - off[:-1].repeat_interleave(lengths)
    for trait, (vecs, sidecar) in traits.items():
        d_vec = next(iter(vecs.values())).shape[0]
        d_act = next(v for k, v in tensors.items() if ".layer_" in k).shape[-1]
        if d_vec != d_act:
            raise ProjectionError(f"trait {trait}: vectors have hidden size {d_vec} but activations {d_act} "
                                  "(fix: project only variants whose hidden size matches the extraction model)")
        for layer in select_layers(layers_mode, sidecar, captured, n_layers, trait):
            for method in methods:
                v = vecs[f"{method}.layer_{layer}"].float()
                u = v / v.norm()
                for position in ("last", "mean"):
                    if position in positions:
                        s = (tensors[f"{position}.layer_{layer}"].float() @ u).numpy()
                        pooled.append(pd.DataFrame({"id": ids, "trait": trait, "method": method, "layer": layer,
                                                    "position": position, "score": s}))
                if has_resp:
                    ts = tensors[f"response.layer_{layer}"].float() @ u
                    sums = torch.zeros(len(ids)).index_add_(0, row_of_token, ts)
                    mean = torch.where(lengths > 0, sums / lengths.clamp(min=1), torch.tensor(float("nan")))
                    pooled.append(pd.DataFrame({"id": ids, "trait": trait, "method": method, "layer": layer,
                                                "position": "response_mean", "score": mean.numpy()}))
                    if per_token and len(ts):
                        tokens.append(pd.DataFrame({
                            "id": ids[row_of_token.numpy()], "token_index": tok_index.numpy(),
                            "token_id": tensors["response.token_ids"].numpy(),
                            "is_prefill": tensors["response.is_prefill"].numpy(),
                            "trait": trait, "method": method, "layer": layer, "score": ts.numpy()}))
    pooled_df = pd.concat(pooled, ignore_index=True) if pooled else pd.DataFrame(
        columns=["id", "trait", "method", "layer", "position", "score"])
    token_df = pd.concat(tokens, ignore_index=True) if tokens else pd.DataFrame(
        columns=["id", "token_index", "token_id", "is_prefill", "trait", "method", "layer", "score"])
    return pooled_df, token_df
