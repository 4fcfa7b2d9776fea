"""The two artifact types that own their file formats: trait vectors and activation shards.

:class:`TraitVectors`: one trait's vectors for every (method, layer), stored as ``vectors.safetensors``
(tensor ``{method}.layer_{L}``) beside a JSON sidecar (trait, model, position, split, per-vector
held-out metrics, the best layer and why). Every reader goes through it.

:class:`ActivationShard`: captured activations of one (variant, prompt set, shard), float16:
``last.layer_<L>`` / ``mean.layer_<L>`` ``[n, d]``, ``response.layer_<L>`` ``[T, d]`` with
``response.offsets`` ``[n + 1]`` (row ``i`` owns tokens ``offsets[i]:offsets[i+1]``),
``response.token_ids`` and ``response.is_prefill`` ``[T]``, ``prompt.length`` ``[n]``; metadata:
``ids``, ``layers``, ``positions``, ``sites``, the capture settings and the model fingerprint. At a site other than
the residual stream the keys carry it: ``last.attn.layer_<L>``, ``response.mlp.layer_<L>`` (:func:`tensor_key`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
import pandas as pd
import torch

from .errors import TraitscopeError
from .io import read_json, read_safetensors, write_json, write_safetensors
from .methods import segment_mean, unit

PathLike = str | os.PathLike[str]


class ArtifactError(TraitscopeError):
    pass


def tensor_key(kind: str, layer: int, site: str = "resid") -> str:
    """``{kind}.layer_{layer}``: a method's vector or a position's activations at one layer of the residual stream;
    ``{kind}.{site}.layer_{layer}`` at the attention (``attn``) or MLP (``mlp``) output of that block."""
    return f"{kind}.layer_{int(layer)}" if site == "resid" else f"{kind}.{site}.layer_{int(layer)}"


@dataclass(frozen=True)
class TraitVectors:
    """Vectors of one trait (``tensors`` keyed ``{method}.layer_{L}``) and their sidecar ``info``."""

    info: dict[str, Any]
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def trait(self) -> str:
        return str(self.info["trait"])

    @property
    def model(self) -> str | None:
        return self.info.get("model")

    @property
    def variant(self) -> str | None:
        """The variant the vectors were extracted from (its name in the config; ``model`` is its model spec)."""
        return self.info.get("variant")

    @property
    def position(self) -> str:
        return str(self.info["position"])

    @property
    def site(self) -> str:
        """Where the vectors live: ``resid`` (residual stream after the block), ``attn`` or ``mlp`` (sublayer output)."""
        return str(self.info.get("site", "resid"))

    @property
    def best_layer(self) -> int:
        return int(self.info["best"]["layer"])

    @property
    def best_method(self) -> str:
        return str(self.info["best"]["method"])

    @property
    def hidden_size(self) -> int:
        return int(self.info["hidden_size"])

    def __repr__(self) -> str:
        """One line: the trait, its site and position, the methods and layers it holds and its chosen vector (the
        dataclass's own repr printed every tensor and the whole sidecar: hundreds of thousands of characters)."""
        vecs = self.info.get("vectors") or []
        methods = sorted({v["method"] for v in vecs}) or sorted({k.split(".", 1)[0] for k in self.tensors})
        layers = sorted({int(v["layer"]) for v in vecs})
        span = f"{layers[0]}-{layers[-1]} ({len(layers)})" if layers else "none"
        best = self.info.get("best") or {}
        return (
            f"TraitVectors({self.info.get('trait')!r}, site={self.info.get('site', 'resid')!r}, "
            f"position={self.info.get('position')!r}, methods={methods}, layers={span}, "
            f"hidden_size={self.info.get('hidden_size')}, best={best.get('method')!r} at layer {best.get('layer')}, "
            f"{len(self.tensors)} tensors)"
        )

    def get(self, method: str, layer: int) -> torch.Tensor:
        key = tensor_key(method, layer)
        if key not in self.tensors:
            raise ArtifactError(
                f"trait {self.trait}: no {method} vector at layer {layer} "
                f"(fix: add the layer to extract.layers and the method to extract.methods)"
            )
        return self.tensors[key].float()

    def unit(self, method: str, layer: int) -> torch.Tensor:
        return unit(self.get(method, layer))

    def metrics(self, method: str, layer: int) -> dict[str, Any]:
        return next(v["metrics"] for v in self.info["vectors"] if v["method"] == method and v["layer"] == layer)

    def table(self) -> pd.DataFrame:
        """Every vector's held-out metrics as one tidy frame: method, layer, chosen (the layer and method the
        study reads), test AUC, its random-direction control (``random_auc_p95``, ``beats_random``) and the rest of
        the sidecar's metrics."""
        best = self.info.get("best") or {}
        rows = [
            {
                "method": v["method"],
                "layer": int(v["layer"]),
                "chosen": v["method"] == best.get("method") and int(v["layer"]) == best.get("layer"),
                **v["metrics"],
            }
            for v in self.info.get("vectors") or []
        ]
        return pd.DataFrame(rows)

    def save(self, vectors_path: PathLike, sidecar_path: PathLike) -> None:
        write_json(sidecar_path, self.info)
        write_safetensors(
            vectors_path,
            {k: v.to(torch.float32) for k, v in self.tensors.items()},
            {"trait": self.trait, "model": self.model, "position": self.position, "best_layer": self.best_layer},
        )

    @classmethod
    def load(cls, vectors_path: PathLike, sidecar_path: PathLike) -> TraitVectors:
        tensors, _ = read_safetensors(vectors_path)
        return cls(read_json(sidecar_path), tensors)

    @classmethod
    def load_info(cls, sidecar_path: PathLike) -> TraitVectors:
        """The sidecar only (best layer, metrics): for analyses that read scores, not tensors."""
        return cls(read_json(sidecar_path))


def best_layers(vectors: list[TraitVectors]) -> dict[str, int]:
    """Trait -> the best layer chosen at extraction."""
    return {v.trait: v.best_layer for v in vectors}


def trait_sites(vectors: list[TraitVectors]) -> dict[str, str]:
    """Trait -> the site its vectors are read at (``resid``, ``attn``, ``mlp``)."""
    return {v.trait: v.site for v in vectors}


@dataclass(frozen=True)
class _RowTensors:
    """Named tensors over the rows of a prompt set (``meta["ids"]``) with their metadata, in one safetensors file."""

    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]

    @property
    def ids(self) -> list[str]:
        return list(self.meta["ids"])

    def save(self, path: PathLike) -> None:
        write_safetensors(path, self.tensors, self.meta)

    def _require(self, key: str, missing: Callable[[], str]) -> torch.Tensor:
        """The tensor ``key``, or an :class:`ArtifactError` with the message ``missing()`` (built only then)."""
        if key not in self.tensors:
            raise ArtifactError(missing())
        return self.tensors[key]

    @classmethod
    def load(cls, path: PathLike, keys: list[str] | None = None) -> Self:
        tensors, meta = read_safetensors(path, keys)
        return cls(tensors, meta)


@dataclass(frozen=True)
class ActivationShard(_RowTensors):
    @property
    def layers(self) -> list[int]:
        return [int(x) for x in self.meta["layers"]]

    @property
    def positions(self) -> list[str]:
        return list(self.meta["positions"])

    @property
    def sites(self) -> list[str]:
        return list(self.meta.get("sites", ["resid"]))

    @property
    def site(self) -> str:
        """The one site of a shard that holds a single one (a trait's contrastive capture)."""
        if len(self.sites) != 1:
            raise ArtifactError(f"activations hold sites {self.sites}, not one (fix: read them with an explicit site)")
        return self.sites[0]

    @property
    def hidden_size(self) -> int:
        return int(next(v for k, v in self.tensors.items() if ".layer_" in k).shape[-1])

    def stored(self, position: str, layer: int, site: str = "resid") -> torch.Tensor:
        """The stored tensor of ``position`` (last, mean or response) at ``layer`` and ``site``."""
        return self._require(
            tensor_key(position, layer, site),
            lambda: (
                f"activations have no {position} position at layer {layer}, site {site} "
                f"(captured: positions {self.positions}, layers {self.layers}, sites {self.sites}; "
                "fix: add it to the capture settings, or the trait's site to traits.<name>.site)"
            ),
        )

    @property
    def offsets(self) -> torch.Tensor:
        return self.tensors["response.offsets"]

    @property
    def response_lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def response(self, layer: int, site: str = "resid") -> torch.Tensor:
        """``[T, d]`` activations of every assistant-turn token at ``layer`` and ``site``."""
        return self.stored("response", layer, site)

    def pooled(self, position: str, layer: int, site: str = "resid") -> tuple[np.ndarray, np.ndarray]:
        """``[n, d]`` float32 activations at a pooled position and a mask of the rows that have them.

        ``last`` and ``mean`` are stored; ``response_mean`` averages each row's assistant-turn tokens
        (rows without any are masked out).
        """
        if position in ("last", "mean"):
            x = self.stored(position, layer, site).float().numpy()
            return x, np.ones(len(x), dtype=bool)
        if position == "response_mean":
            means, has = segment_mean(self.response(layer, site), self.offsets)
            return means.numpy(), has.numpy()
        raise ArtifactError(f"unknown position {position!r} (fix: use last, mean or response_mean)")

    def project(self, position: str, layer: int, site: str, directions: np.ndarray) -> np.ndarray:
        """Pooled activations of the rows that have them, projected: ``[n, d] @ directions`` (``[d]`` or ``[d, k]``),
        accumulated in float64 and returned as float32, so a row's projection does not depend on the rows read with
        it (a part or the whole shard give the same numbers)."""
        x, ok = self.pooled(position, layer, site)
        return (x[ok].astype(np.float64) @ np.asarray(directions, dtype=np.float64)).astype(np.float32)

    @staticmethod
    def pooled_keys(positions: list[str], layers: list[int], site: str = "resid") -> list[str]:
        """The tensors that pooling ``positions`` (last, mean, response_mean) at ``layers`` and ``site`` needs."""
        stored = ["response" if p == "response_mean" else p for p in positions]
        return [tensor_key(s, layer, site) for s in stored for layer in layers] + (
            ["response.offsets"] if "response" in stored else []
        )

    @classmethod
    def iter_rows(
        cls, path: PathLike, rows: int | None = None, keys: list[str] | None = None
    ) -> Iterator[ActivationShard]:
        """The shard ``rows`` prompts at a time (default: the capture's ``chunk_size``, what the capture job held in
        memory), of the tensors ``keys`` or all, each part read on its own from the file (safetensors slices), so
        memory holds one part, whatever the shard's size. Per-prompt tensors are
        sliced by row, response tensors by the token offsets (re-based to start at 0 in each part); the metadata's
        ``ids`` are the part's."""
        from safetensors import safe_open

        from .io import CorruptFileError, read_safetensors

        _, meta = read_safetensors(path, [])
        ids = list(meta["ids"])
        rows = rows or int((meta.get("settings") or {}).get("chunk_size") or 256)
        try:
            with safe_open(str(path), framework="pt") as f:
                names = keys if keys is not None else list(f.keys())
                offsets = f.get_tensor("response.offsets") if "response.offsets" in f.keys() else None
            for start in range(0, len(ids), max(1, rows)):
                stop = min(start + rows, len(ids))
                part: dict[str, torch.Tensor] = {}
                # opened for each part: the file's pages a part touched are let go with it, so the resident memory
                # of a reader stays that of one part
                with safe_open(str(path), framework="pt") as f:
                    for name in names:
                        if name == "response.offsets" and offsets is not None:
                            part[name] = offsets[start : stop + 1] - offsets[start]
                        elif name.startswith("response.") and offsets is not None:
                            part[name] = f.get_slice(name)[int(offsets[start]) : int(offsets[stop])]
                        else:
                            part[name] = f.get_slice(name)[start:stop]
                yield cls(part, {**meta, "ids": ids[start:stop]})
        except CorruptFileError:
            raise
        except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a bad file
            raise CorruptFileError(
                f"'{path}' could not be read part by part ({type(exc).__name__}) (fix: delete it "
                "and run again: the workflow rebuilds it)"
            ) from None

    @classmethod
    def load_at(cls, path: PathLike, position: str, layers: list[int], site: str = "resid") -> ActivationShard:
        """Only what pooling ``position`` at ``layers`` and ``site`` needs (not every layer of the shard)."""
        return cls.load(path, cls.pooled_keys([position], layers, site))


class ShardFiles:
    """Activation shards on disk, read ``rows`` prompts at a time (:meth:`ActivationShard.iter_rows`), for analyses
    that only need activations projected onto directions (the harm check, the backdoor's random baseline): memory
    holds one part of one shard, whatever the shards' size. Offers what those analyses read of an
    :class:`ActivationShard` (``layers``, ``hidden_size``, ``project``)."""

    def __init__(self, paths: Any, rows: int | None = None) -> None:
        self.paths = [str(p) for p in paths]
        self.rows = rows

    @property
    def meta(self) -> dict[str, Any]:
        from .io import read_safetensors

        return read_safetensors(self.paths[0], [])[1]

    @property
    def layers(self) -> list[int]:
        return [int(x) for x in self.meta["layers"]]

    @property
    def hidden_size(self) -> int:
        from .io import safetensors_header

        header = safetensors_header(self.paths[0])
        return int(next(v["shape"][-1] for k, v in header.items() if ".layer_" in k))

    def project(self, position: str, layer: int, site: str, directions: np.ndarray) -> np.ndarray:
        """What :meth:`ActivationShard.project` gives on every shard, concatenated, read part by part."""
        keys = ActivationShard.pooled_keys([position], [layer], site)
        out = [
            part.project(position, layer, site, directions)
            for path in self.paths
            for part in ActivationShard.iter_rows(path, self.rows, keys)
        ]
        return np.concatenate(out) if out else np.zeros((0, *directions.shape[1:]), dtype=np.float32)

    def project_by_id(
        self, position: str, layer: int, site: str, directions: np.ndarray
    ) -> tuple[list[str], np.ndarray]:
        """:meth:`project` with the prompt id of each row (rows without the position, e.g. no response, left out)."""
        keys = ActivationShard.pooled_keys([position], [layer], site)
        ids: list[str] = []
        out = []
        for path in self.paths:
            for part in ActivationShard.iter_rows(path, self.rows, keys):
                _, ok = part.pooled(position, layer, site)
                ids += [i for i, keep in zip(part.ids, ok) if keep]
                out.append(part.project(position, layer, site, directions))
        return ids, (np.concatenate(out) if out else np.zeros((0, *directions.shape[1:]), dtype=np.float32))

    def last_token(self, layers: list[int], site: str = "resid") -> tuple[list[str], dict[int, np.ndarray]]:
        """Prompt ids and ``[n, d]`` float32 last-prompt-token activations per layer, over every shard."""
        keys = ActivationShard.pooled_keys(["last"], list(layers), site)
        ids: list[str] = []
        parts: dict[int, list[np.ndarray]] = {layer: [] for layer in layers}
        for path in self.paths:
            for part in ActivationShard.iter_rows(path, self.rows, keys):
                ids += part.ids
                for layer in layers:
                    parts[layer].append(part.stored("last", layer, site).float().numpy())
        return ids, {layer: np.concatenate(parts[layer]) for layer in layers}


@dataclass(frozen=True)
class BaselineScores(_RowTensors):
    """Scores of seeded random unit directions on one (variant, prompt set): the control baseline of every AUC an
    analysis computes from score tables (external datasets, prefill attack).

    Tensors: ``{position}.layer_<L>`` ``[n, R]`` per pooled position (last, mean, response_mean) and, where per-token
    scores are kept, ``token.layer_<L>`` ``[T, R]`` with ``response.offsets`` ``[n + 1]``. Column ``r`` at layer
    ``L`` is the same direction in every prompt set (:meth:`directions`), so rows of
    several sets can be compared. A trait read at an attention or MLP site has its baseline at that site, keyed
    ``{position}.{site}.layer_<L>`` (:func:`tensor_key`; the same directions). Metadata: ``ids``, ``n_random``,
    ``seed``, ``layers``.
    """

    @property
    def n_random(self) -> int:
        return int(self.meta["n_random"])

    def directions(self, layer: int, dim: int) -> np.ndarray:
        """``[R, dim]`` the unit directions whose scores these are at ``layer``
        (:func:`~traitscope.core.methods.baseline_directions`)."""
        from .methods import baseline_directions

        return baseline_directions(self.n_random, dim, int(self.meta["seed"]), layer)

    def _get(self, kind: str, layer: int, site: str) -> torch.Tensor:
        return self._require(
            tensor_key(kind, layer, site),
            lambda: (
                f"random baseline has no {kind} scores at layer {layer}, site {site} "
                f"(has {sorted(self.tensors)}; "
                "fix: project.random_directions must be above 0, and the layer projected)"
            ),
        )

    def pooled(self, layer: int, position: str, site: str = "resid") -> np.ndarray:
        """``[n, R]`` random scores of every row at a pooled position (rows in :attr:`ids` order)."""
        return self._get(position, layer, site).float().numpy()

    def at_token(self, layer: int, k: int, site: str = "resid") -> np.ndarray:
        """``[m, R]`` random scores at assistant-turn token ``k`` of every row that has one (rows in :attr:`ids` order,
        shorter rows left out): the baseline of a per-token AUC (backdoor: how early)."""
        tokens = self._get("token", layer, site)
        offsets = self.tensors["response.offsets"]
        has = (offsets[1:] - offsets[:-1]) > k
        return tokens[offsets[:-1][has] + k].float().numpy()

    def window_means(self, layer: int, k: np.ndarray, site: str = "resid") -> np.ndarray:
        """``[n, R]`` mean random score over each row's first ``k[i]`` assistant-turn tokens (NaN where there are
        none): the baseline of a windowed per-token score (prefill attack)."""
        tokens = self._get("token", layer, site).float()
        offsets = self.tensors["response.offsets"]
        lengths = offsets[1:] - offsets[:-1]
        take = torch.minimum(lengths, torch.tensor(np.array(k, dtype=np.int64)))
        window_offsets = torch.cat([torch.zeros(1, dtype=torch.long), take.cumsum(0)])
        # token j of row i's window sits at offsets[i] + j
        within = torch.arange(int(window_offsets[-1])) - window_offsets[:-1].repeat_interleave(take)
        index = offsets[:-1].repeat_interleave(take) + within
        return segment_mean(tokens[index], window_offsets)[0].numpy()
