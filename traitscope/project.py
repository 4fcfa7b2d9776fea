"""Projection of captured activations onto trait vectors.

The score of an activation ``a`` on a trait vector ``v`` is the scalar projection onto the unit
vector: ``score = a . v / ||v||`` (units of the residual stream; comparable across prompts and
variants for one trait and layer, not across layers). Pooled scores:

``last``, ``mean``     projection of the pooled activation captured at that position
``response_mean``      mean of the per-token scores over the assistant turn (prefill + response)

Projection reads only activation shards and vector files, so new vectors never re-run a model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from . import TraitscopeError
from .artifacts import ActivationShard, TraitVectors
from .layers import parse_layers
from .methods import segment_mean
from .settings import ProjectSettings


class ProjectionError(TraitscopeError):
    pass


def at_layer(scores: pd.DataFrame, trait: str, layer: int, method: str) -> pd.DataFrame:
    """The rows of a pooled or per-token score table for one trait, layer and vector method."""
    return scores[(scores["trait"] == trait) & (scores["layer"] == layer) & (scores["method"] == method)]


def select_layers(mode: Any, vectors: TraitVectors, captured: list[int], n_layers: int) -> list[int]:
    wanted = [vectors.best_layer] if mode == "best" else parse_layers(mode, n_layers, "project.layers")
    missing = sorted(set(wanted) - set(captured))
    if missing:
        raise ProjectionError(f"trait {vectors.trait}: layer(s) {missing} were not captured "
                              f"(fix: add them to capture.layers, or set project.layers to captured layers {captured})")
    return wanted


def project_shard(shard: ActivationShard, traits: list[TraitVectors], job: ProjectSettings,
                  n_layers: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scores of one activation shard on every trait vector: (pooled scores, per-token scores)."""
    ids = np.asarray(shard.ids)
    captured = shard.layers
    positions = shard.positions
    pooled, tokens = [], []
    has_resp = "response" in positions
    if has_resp:
        lengths = shard.response_lengths
        row_of_token = torch.repeat_interleave(torch.arange(len(ids)), lengths)
        tok_index = torch.arange(int(shard.offsets[-1])) - shard.offsets[:-1].repeat_interleave(lengths)
    for vectors in traits:
        trait = vectors.trait
        if vectors.hidden_size != shard.hidden_size:
            raise ProjectionError(f"trait {trait}: vectors have hidden size {vectors.hidden_size} but activations "
                                  f"{shard.hidden_size} (fix: project only variants whose hidden size matches the "
                                  "extraction model)")
        for layer in select_layers(job.layers, vectors, captured, n_layers):
            for method in job.methods:
                u = vectors.unit(method, layer)
                for position in ("last", "mean"):
                    if position in positions:
                        s = (shard.stored(position, layer).float() @ u).numpy()
                        pooled.append(pd.DataFrame({"id": ids, "trait": trait, "method": method, "layer": layer,
                                                    "position": position, "score": s}))
                if has_resp:
                    ts = shard.response(layer).float() @ u
                    mean, _ = segment_mean(ts, shard.offsets)
                    pooled.append(pd.DataFrame({"id": ids, "trait": trait, "method": method, "layer": layer,
                                                "position": "response_mean", "score": mean.numpy()}))
                    if job.per_token and len(ts):
                        tokens.append(pd.DataFrame({
                            "id": ids[row_of_token.numpy()], "token_index": tok_index.numpy(),
                            "token_id": shard.tensors["response.token_ids"].numpy(),
                            "is_prefill": shard.tensors["response.is_prefill"].numpy(),
                            "trait": trait, "method": method, "layer": layer, "score": ts.numpy()}))
    pooled_df = pd.concat(pooled, ignore_index=True) if pooled else pd.DataFrame(
        columns=["id", "trait", "method", "layer", "position", "score"])
    token_df = pd.concat(tokens, ignore_index=True) if tokens else pd.DataFrame(
        columns=["id", "token_index", "token_id", "is_prefill", "trait", "method", "layer", "score"])
    return pooled_df, token_df
