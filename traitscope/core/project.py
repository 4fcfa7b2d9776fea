"""Projection of captured activations onto trait vectors.

The score of an activation ``a`` on a trait vector ``v`` is the scalar projection onto the unit
vector: ``score = a . v / ||v||`` (units of the activations at the trait's site; comparable across prompts and
variants for one trait and layer, not across layers). A trait read at another site than the residual stream
(``traits.<name>.site``: ``attn`` or ``mlp``) is projected on the activations captured at that site, and so is its
random baseline. Pooled scores:

``last``, ``mean``     projection of the pooled activation captured at that position
``response_mean``      mean of the per-token scores over the assistant turn (prefill + response)

Projection reads only activation shards and vector files, so new vectors never re-run a model.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .architecture import SITES
from .artifacts import ActivationShard, BaselineScores, TraitVectors, tensor_key
from .errors import TraitscopeError
from .layers import parse_layers
from .methods import baseline_directions, segment_mean
from .specs import BaselineJob, ProjectSettings


class ProjectionError(TraitscopeError):
    pass


def at_layer(scores: pd.DataFrame, trait: str, layer: int, method: str) -> pd.DataFrame:
    """The rows of a pooled or per-token score table for one trait, layer and vector method."""
    return scores[(scores["trait"] == trait) & (scores["layer"] == layer) & (scores["method"] == method)]


def select_layers(mode: Any, vectors: TraitVectors, captured: list[int], n_layers: int) -> list[int]:
    """The layers a trait is projected at under ``project.layers``.

    ``"best"``: the layer chosen at extraction. ``"neighbours"`` (the default): the chosen layer and the nearest
    captured layer on each side of it (one or two more), so a reader can see whether an effect is particular to
    the chosen layer. Anything else is a layer spec (:func:`traitscope.core.layers.parse_layers`). The analyses
    always read the chosen layer; the others are for the score tables, the viewer and :func:`open_results`.

    >>> from types import SimpleNamespace
    >>> select_layers("neighbours", SimpleNamespace(best_layer=4, trait="t"), [0, 2, 4, 6], 8)
    [2, 4, 6]
    >>> select_layers("neighbours", SimpleNamespace(best_layer=0, trait="t"), [0, 1, 2], 3)
    [0, 1]
    """
    if mode in ("best", "neighbours"):
        best = vectors.best_layer
        wanted = [best]
        if mode == "neighbours" and best in captured:
            below = [la for la in captured if la < best]
            above = [la for la in captured if la > best]
            wanted = sorted({best, *below[-1:], *above[:1]})
    else:
        wanted = parse_layers(mode, n_layers, "project.layers")
    missing = sorted(set(wanted) - set(captured))
    if missing:
        raise ProjectionError(
            f"trait {vectors.trait}: layer(s) {missing} were not captured "
            f"(fix: add them to capture.layers, or set project.layers to captured layers {captured})"
        )
    return wanted


POOLED = ("last", "mean", "response_mean")
TOKEN_KEYS = ("response.offsets", "response.token_ids", "response.is_prefill")
"""What per-token score tables need from a shard besides the scores: token boundaries, ids and prefill marks."""


def score_key(trait: str, method: str, layer: int, position: str) -> str:
    """Tensor name of one score vector: ``position`` is a pooled position or ``token`` (per-token scores)."""
    return f"score|{trait}|{method}|{layer}|{position}"


def needed_points(
    traits: list[TraitVectors], job: ProjectSettings, captured: list[int], n_layers: int
) -> list[tuple[str, int]]:
    """Every (site, layer) some trait is projected at (layers checked against the captured layers)."""
    return sorted({(v.site, layer) for v in traits for layer in select_layers(job.layers, v, captured, n_layers)})


def needed_layers(traits: list[TraitVectors], job: ProjectSettings, captured: list[int], n_layers: int) -> list[int]:
    """Every layer some trait is projected at (checked against the captured layers)."""
    return sorted({layer for _site, layer in needed_points(traits, job, captured, n_layers)})


def needed_sites(traits: list[TraitVectors]) -> tuple[str, ...]:
    """The sites the traits are read at, in :data:`traitscope.core.architecture.SITES` order."""
    return tuple(s for s in SITES if s in {v.site for v in traits})


def baseline_key(layer: int, position: str, site: str = "resid") -> str:
    """Tensor name of the random-direction scores ``[rows or tokens, R]`` at one layer and position (or ``token``)
    of the residual stream, or of another site's activations."""
    return f"baseline|{layer}|{position}" + ("" if site == "resid" else f"|{site}")


def score_tensors(
    shard: ActivationShard,
    traits: list[TraitVectors],
    job: ProjectSettings,
    n_layers: int,
    baseline: BaselineJob | None = None,
) -> dict[str, torch.Tensor]:
    """Scores of one shard (or one capture chunk) as tensors: one float32 vector per (trait, method, layer, pooled
    position) over rows, one per (trait, method, layer) over response tokens, and the token arrays of the shard.
    With ``baseline`` (``n_random`` above 0), also the scores of its random unit directions at every projected layer
    (:func:`baseline_key`), on the same rows and tokens.

    Every score depends on its own row or token only, so the scores of chunks, concatenated, equal the scores of the
    shard: capture projects chunk by chunk (``capture.stream``), ``project`` shard by shard, with this one function.
    """
    positions = shard.positions
    has_resp = "response" in positions
    out: dict[str, torch.Tensor] = {}
    for vectors in traits:
        trait, site = vectors.trait, vectors.site
        if vectors.hidden_size != shard.hidden_size:
            raise ProjectionError(
                f"trait {trait}: vectors have hidden size {vectors.hidden_size} but activations "
                f"{shard.hidden_size} (fix: project only variants whose hidden size matches the "
                "extraction model)"
            )
        for layer in select_layers(job.layers, vectors, shard.layers, n_layers):
            for method in job.methods:
                u = vectors.unit(method, layer)
                for position in ("last", "mean"):
                    if position in positions:
                        out[score_key(trait, method, layer, position)] = shard.stored(position, layer, site).float() @ u
                if has_resp:
                    ts = shard.response(layer, site).float() @ u
                    out[score_key(trait, method, layer, "response_mean")] = segment_mean(ts, shard.offsets)[0]
                    if job.per_token:
                        out[score_key(trait, method, layer, "token")] = ts
    token_baseline = False
    if baseline is not None and baseline.n_random > 0:
        token_baseline = baseline.per_token and has_resp
        for site, layer in needed_points(traits, job, shard.layers, n_layers):
            r = torch.from_numpy(baseline_directions(baseline.n_random, shard.hidden_size, baseline.seed, layer))
            for position in ("last", "mean"):
                if position in positions:
                    out[baseline_key(layer, position, site)] = _project_each(
                        shard.stored(position, layer, site).float(), r
                    )
            if has_resp:
                ts = _project_each(shard.response(layer, site).float(), r)
                out[baseline_key(layer, "response_mean", site)] = segment_mean(ts, shard.offsets)[0]
                if token_baseline:
                    out[baseline_key(layer, "token", site)] = ts
    if has_resp and (job.per_token or token_baseline):
        out.update({k: shard.tensors[k] for k in TOKEN_KEYS})
    return out


def _baseline_tensor_key(key: str) -> str:
    """The :class:`BaselineScores` tensor name of a :func:`baseline_key` (its site part is absent for ``resid``)."""
    _, layer, position, *site = key.split("|")
    return tensor_key(position, int(layer), *site)


def _project_each(x: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """``[n, R]`` projections of ``x [n, d]`` on unit ``directions [R, d]``, accumulated in float64 and stored as
    float32, so that a row's scores do not depend on the rows multiplied with it (a capture chunk or a whole shard:
    the float32 matrix product's blocking would change the last bits)."""
    return (x.double() @ directions.double().T).float()


def baseline_scores(parts: list[dict[str, torch.Tensor]], ids: list[str], job: BaselineJob) -> BaselineScores:
    """The random-direction scores of :func:`score_tensors` outputs (shards or chunks in row order) as one
    :class:`BaselineScores` (token offsets re-based across parts)."""
    from .capture import merge_chunks

    kept = []
    for part in parts:
        t = {_baseline_tensor_key(k): v for k, v in part.items() if k.startswith("baseline|")}
        if any(k.startswith("token.") for k in t):
            t["response.offsets"] = part["response.offsets"]
        kept.append(t)
    tensors = merge_chunks(kept) if kept and kept[0] else {}
    layers = sorted({int(k.split("layer_")[1]) for k in tensors if ".layer_" in k})
    return BaselineScores(tensors, {"ids": list(ids), "n_random": job.n_random, "seed": job.seed, "layers": layers})


POOLED_COLUMNS = ["id", "trait", "method", "layer", "position", "score"]
TOKEN_COLUMNS = ["id", "token_index", "token_id", "is_prefill", "trait", "method", "layer", "score"]


def score_frames(scores: dict[str, torch.Tensor], ids: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The pooled and per-token score tables of :func:`score_tensors` (rows in trait, layer, method, position
    order)."""
    ids_arr = np.asarray(ids)
    keys = [k.split("|")[1:] for k in scores if k.startswith("score|")]
    order = {p: i for i, p in enumerate((*POOLED, "token"))}
    keys.sort(key=lambda k: (k[0], int(k[2]), k[1], order[k[3]]))
    pooled, tokens = [], []
    if "response.offsets" in scores:
        offsets = scores["response.offsets"]
        lengths = offsets[1:] - offsets[:-1]
        row_of_token = torch.repeat_interleave(torch.arange(len(ids_arr)), lengths).numpy()
        tok_index = (torch.arange(int(offsets[-1])) - offsets[:-1].repeat_interleave(lengths)).numpy()
    for trait, method, layer, position in keys:
        s = scores[score_key(trait, method, int(layer), position)].numpy()
        if position != "token":
            pooled.append(
                pd.DataFrame(
                    {
                        "id": ids_arr,
                        "trait": trait,
                        "method": method,
                        "layer": int(layer),
                        "position": position,
                        "score": s,
                    }
                )
            )
        elif len(s):
            tokens.append(
                pd.DataFrame(
                    {
                        "id": ids_arr[row_of_token],
                        "token_index": tok_index,
                        "token_id": scores["response.token_ids"].numpy(),
                        "is_prefill": scores["response.is_prefill"].numpy(),
                        "trait": trait,
                        "method": method,
                        "layer": int(layer),
                        "score": s,
                    }
                )
            )
    pooled_df = pd.concat(pooled, ignore_index=True) if pooled else pd.DataFrame(columns=POOLED_COLUMNS)
    token_df = pd.concat(tokens, ignore_index=True) if tokens else pd.DataFrame(columns=TOKEN_COLUMNS)
    return pooled_df, token_df


def write_scores(
    parts: Iterable[tuple[dict[str, torch.Tensor], list[str]]],
    baseline: BaselineJob | None,
    scores_path: str | Path,
    tokens_path: str | Path,
    baseline_path: str | Path,
) -> tuple[int, int, int]:
    """Write the pooled and per-token score tables and the random baseline of :func:`score_tensors` outputs given
    part by part (capture chunks or shard chunks, in row order, with their ids), holding one part in memory: the
    tables grow part by part (:class:`~traitscope.core.io.ParquetParts`), each part's baseline goes to a file in a
    temporary folder beside the baseline (``.baseline-*.tmp``, removed after, and by start-up after a kill), and the
    files are concatenated by a streaming copy. Returns (pooled rows, token rows, parts)."""
    from .io import ParquetParts, concat_safetensors, temporary_folder

    Path(baseline_path).parent.mkdir(parents=True, exist_ok=True)
    ids: list[str] = []
    meta: dict[str, Any] = {}
    with (
        temporary_folder(baseline_path, "baseline") as tmp,
        ParquetParts(scores_path) as pooled_out,
        ParquetParts(tokens_path) as token_out,
    ):
        files = []
        for n, (scores, part_ids) in enumerate(parts):
            pooled, tokens = score_frames(scores, part_ids)
            pooled_out.write(pooled)
            token_out.write(tokens)
            part = baseline_scores([scores], part_ids, baseline or BaselineJob(0, 0, False))
            meta = {**part.meta, "layers": sorted(set(meta.get("layers", [])) | set(part.meta["layers"]))}
            part.save(Path(tmp) / f"{n:06d}.safetensors")
            files.append(Path(tmp) / f"{n:06d}.safetensors")
            ids += part_ids
            del scores, pooled, tokens, part  # before the next part is read: one part in memory, not two
        concat_safetensors(files, baseline_path, {**meta, "ids": ids}, digest=False)
    return pooled_out.rows, token_out.rows, len(files)


def project_files(
    paths: Iterable[str | Path],
    traits: list[TraitVectors],
    job: ProjectSettings,
    n_layers: int,
    baseline: BaselineJob | None = None,
) -> Iterator[tuple[dict[str, torch.Tensor], list[str]]]:
    """:func:`score_tensors` of activation shards read one capture chunk at a time (:meth:`ActivationShard.iter_rows`),
    with their ids, for :func:`write_scores`; a part's activations are let go before the next is read."""
    for path in paths:
        for part in ActivationShard.iter_rows(path):
            scores, ids = score_tensors(part, traits, job, n_layers, baseline), part.ids
            del part
            yield scores, ids


def project_shard(
    shard: ActivationShard, traits: list[TraitVectors], job: ProjectSettings, n_layers: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scores of one activation shard on every trait vector: (pooled scores, per-token scores)."""
    return score_frames(score_tensors(shard, traits, job, n_layers), shard.ids)


def pooled_scores(
    frames: dict[str, pd.DataFrame], prompts: pd.DataFrame, best: dict[str, int], positions: dict[str, str], method: str
) -> pd.DataFrame:
    """Long table: variant, trait, layer, position, id, group, score: one pooled score per prompt of each variant's
    score table, at each trait's best layer and position, ``method`` vectors."""
    groups = prompts.set_index("id")["group"]
    out = []
    for variant, df in frames.items():
        for trait, layer in best.items():
            sel = at_layer(df, trait, layer, method)
            sel = sel[sel["position"] == positions[trait]]
            out.append(sel.assign(variant=variant, group=sel["id"].map(groups)))
    return pd.concat(out, ignore_index=True)
