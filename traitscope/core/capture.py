"""Batched activation capture over a prompt table, with optional generation.

Positions (``capture.positions``):

``last``      the last token of the templated prompt (the end of the assistant header, right
              before the first response token)  -> ``last.layer_<L>``  ``[n, d]``
``mean``      mean over all templated prompt tokens  -> ``mean.layer_<L>``  ``[n, d]``
``response``  every assistant-turn token: the prefill, then the replayed or generated response,
              per token  -> ``response.layer_<L>``  ``[T, d]`` with ``response.token_ids`` ``[T]``,
              ``response.is_prefill`` ``[T]`` and ``response.offsets`` ``[n + 1]`` (row ``i`` owns
              tokens ``offsets[i]:offsets[i+1]``)

Sites (``CaptureJob.sites``): ``resid`` is the residual stream after block ``L`` (the keys above); ``attn`` and
``mlp`` are the outputs of its attention and MLP sublayers, keyed ``<position>.attn.layer_<L>`` and
``<position>.mlp.layer_<L>``.

Activations are stored as ``capture.dtype`` (float16 by default; bfloat16 or float32 where float16's range of
±65504 is not enough). Work is split into chunks of ``chunk_size`` prompts; each
chunk is cached under a key derived from the model, the chunk's prompts and the settings, so a
killed job resumes at the first missing chunk and identical work is never redone.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import torch

from .architecture import input_device
from .artifacts import tensor_key
from .chat import Encoded, encode_rows
from .errors import TraitscopeError, __version__
from .generation import generate_responses, run_batches
from .hooks import SiteCapture
from .io import content_hash, read_verified, write_parquet, write_text, write_verified
from .models import torch_dtype
from .progress import Progress
from .secrets import holds_secret, secret_values
from .specs import CaptureJob, ModelSpec, as_dict

log = logging.getLogger(__name__)
POSITIONS = ("last", "mean", "response")


# ------------------------------------------------------------------------------------- capturing


def capture_batch(
    model: Any,
    batch: list[tuple[list[int], list[int]]],
    layers: Sequence[int],
    positions: Sequence[str],
    pad_id: int,
    sites: Sequence[str] = ("resid",),
    dtype: str = "float16",
) -> dict[str, Any]:
    """One right-padded forward pass; returns gathered CPU tensors (stored as ``dtype``) per position and (site,
    layer).

    ``batch`` holds (prompt ids, assistant-turn ids) per row.
    """
    device = input_device(model)
    plen = torch.tensor([len(p) for p, _ in batch])
    rlen = torch.tensor([len(r) for _, r in batch])
    width = int((plen + rlen).max())
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    for b, (p, r) in enumerate(batch):
        ids[b, : len(p) + len(r)] = torch.tensor(p + r, dtype=torch.long)
    pos = torch.arange(width)[None, :]
    attn = (pos < (plen + rlen)[:, None]).long()
    cpu_index = {
        "pmask": pos < plen[:, None],
        "rmask": (pos >= plen[:, None]) & (pos < (plen + rlen)[:, None]),
        "last": plen - 1,
        "rows": torch.arange(len(batch)),
        "denom": plen[:, None].float(),
    }
    on_device: dict[torch.device, dict[str, torch.Tensor]] = {}
    store = torch_dtype(dtype)  # capture.dtype: how activations are stored

    def reduce(_site: str, _layer: int, h: torch.Tensor) -> dict[str, torch.Tensor]:
        # blocks may live on different devices (accelerate): every index goes where the hooked tensor is
        if h.device not in on_device:
            on_device[h.device] = {k: v.to(h.device) for k, v in cpu_index.items()}
        ix = on_device[h.device]
        out: dict[str, torch.Tensor] = {}
        if "last" in positions:
            out["last"] = h[ix["rows"], ix["last"]].to(store).cpu()
        if "mean" in positions:
            out["mean"] = ((h.float() * ix["pmask"][..., None]).sum(1) / ix["denom"]).to(store).cpu()
        if "response" in positions:
            out["response"] = h[ix["rmask"]].to(store).cpu()
        return out

    with SiteCapture(model, layers, sites, reduce=reduce, stop=True) as cap:
        outputs = cap.run(input_ids=ids.to(device), attention_mask=attn.to(device))
    return {"outputs": outputs, "plen": plen, "rlen": rlen}


def _capture_chunk(
    model: Any, tokenizer: Any, df: pd.DataFrame, settings: CaptureJob, seed: int, progress: Progress | None = None
) -> tuple[dict[str, torch.Tensor], pd.DataFrame]:
    encoded = encode_rows(tokenizer, df, settings.max_length)
    gen = settings.generation
    needs_response = "response" in settings.positions and gen is not None and gen.enabled
    generated = (
        generate_responses(model, tokenizer, encoded, gen, settings.batch_size, seed)
        if needs_response and gen is not None
        else [[] for _ in encoded]
    )
    turns = [e.prefill + (e.response or g) for e, g in zip(encoded, generated)]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].prompt) + len(turns[i]))
    pad = tokenizer.pad_token_id
    per_row: list[dict[str, Any]] = [dict() for _ in encoded]

    def run(start: int, stop: int) -> None:
        idx = order[start:stop]
        res = capture_batch(
            model,
            [(encoded[i].prompt, turns[i]) for i in idx],
            settings.layers,
            settings.positions,
            pad,
            settings.sites,
            settings.dtype,
        )
        rl = res["rlen"].tolist()
        for (site, layer), got in res["outputs"].items():
            splits = torch.split(got["response"], rl) if "response" in got else None
            for b, i in enumerate(idx):
                if "last" in got:
                    per_row[i][tensor_key("last", layer, site)] = got["last"][b]
                if "mean" in got:
                    per_row[i][tensor_key("mean", layer, site)] = got["mean"][b]
                if splits is not None:
                    per_row[i][tensor_key("response", layer, site)] = splits[b]
        if progress is not None:
            progress.update(len(idx))

    run_batches(len(order), settings.batch_size, run, label="capture")
    tensors = _stack_rows(per_row, settings, encoded, turns)
    responses = pd.DataFrame(
        {
            "id": df["id"].tolist(),
            "response": [
                tokenizer.decode(g if g else e.response, skip_special_tokens=True) if (g or e.response) else None
                for e, g in zip(encoded, generated)
            ],
            "generated": [bool(g) for g in generated],
            "n_prompt_tokens": [len(e.prompt) for e in encoded],
            "n_prefill_tokens": [len(e.prefill) for e in encoded],
            "n_response_tokens": [len(t) - len(e.prefill) for e, t in zip(encoded, turns)],
            "truncated": [e.truncated for e in encoded],
            "special_text": [e.special_text for e in encoded],
        }
    )
    secrets = secret_values()  # written text is scrubbed (io.write_parquet); the model saw it verbatim
    texts = [df[c].tolist() for c in ("prompt", "system", "prefill", "response")] + [responses["response"].tolist()]
    responses["scrubbed"] = [any(holds_secret(t, secrets) for t in row) for row in zip(*texts)]
    return tensors, responses


def _stack_rows(
    per_row: list[dict[str, Any]], settings: CaptureJob, encoded: list[Encoded], turns: list[list[int]]
) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for site in settings.sites:
        for layer in settings.layers:
            for position in ("last", "mean"):
                if position in settings.positions:
                    key = tensor_key(position, layer, site)
                    tensors[key] = torch.stack([r[key] for r in per_row])
            if "response" in settings.positions:
                key = tensor_key("response", layer, site)
                tensors[key] = torch.cat([r[key] for r in per_row])
    if "response" in settings.positions:
        lengths = torch.tensor([len(t) for t in turns], dtype=torch.long)
        tensors["response.offsets"] = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
        tensors["response.token_ids"] = torch.tensor([t for turn in turns for t in turn], dtype=torch.long)
        tensors["response.is_prefill"] = torch.tensor(
            [k < len(e.prefill) for e, turn in zip(encoded, turns) for k in range(len(turn))], dtype=torch.bool
        )
    tensors["prompt.length"] = torch.tensor([len(e.prompt) for e in encoded], dtype=torch.long)
    return tensors


def merge_chunks(chunks: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Concatenate chunk tensors; offsets are re-based so they index the merged token arrays."""
    merged: dict[str, torch.Tensor] = {}
    for name in chunks[0]:
        if name == "response.offsets":
            parts, base = [torch.zeros(1, dtype=torch.long)], 0
            for c in chunks:
                parts.append(c[name][1:] + base)
                base += int(c[name][-1])
            merged[name] = torch.cat(parts)
        else:
            merged[name] = torch.cat([c[name] for c in chunks])
    return merged


Reduce = Callable[[dict[str, torch.Tensor], list[str]], dict[str, torch.Tensor]]


class Chunk(NamedTuple):
    """One chunk of a capture: its rows' ids, cache key and file (None without a cache), tensors (None when they were
    written to the cache and let go: :func:`capture_shard` reads them back from the file), and responses table."""

    ids: list[str]
    key: str
    path: Path | None
    tensors: dict[str, torch.Tensor] | None
    responses: pd.DataFrame


def iter_chunks(
    model: Any,
    tokenizer: Any,
    df: pd.DataFrame,
    settings: CaptureJob,
    *,
    model_key: Any,
    cache_dir: str | Path | None = None,
    progress_label: str = "capture",
    reduce: Reduce | None = None,
    reduce_key: Any = None,
    keep: bool = True,
) -> Iterator[Chunk]:
    """Capture ``df`` chunk by chunk (``settings.chunk_size`` prompts), each cached under ``cache_dir`` with a key
    from the model, the capture settings and the chunk's prompts (a killed job resumes at its first missing chunk).
    With ``keep=False`` and a cache, a chunk's tensors are written and let go, so memory holds one chunk at most."""
    unknown = set(settings.positions) - set(POSITIONS)
    if unknown:
        raise ValueError(f"unknown positions {sorted(unknown)}; use {POSITIONS}")
    base_key = capture_key(settings, model_key, reduce_key if reduce is not None else None)
    parts = chunk_parts(df, settings.chunk_size)
    n_chunks = len(parts)
    started = time.time()
    progress = Progress(progress_label, len(df), "prompts")
    for j, part in enumerate(parts):
        key = chunk_key(base_key, part)
        path = Path(cache_dir) / f"chunk-{key}.safetensors" if cache_dir else None
        cached = read_verified(path, path.with_suffix(".parquet")) if path is not None and path.exists() else None
        tensors: dict[str, torch.Tensor] | None
        if cached is not None and path is not None:
            tensors = cached[0]
            resp = pd.read_parquet(path.with_suffix(".parquet"))
            status = "cached"
            progress.update(len(part))
        else:
            tensors, resp = _capture_chunk(model, tokenizer, part, settings, seed=settings.seed + j, progress=progress)
            check_finite(tensors, part["id"].tolist(), settings.dtype)
            if reduce is not None:
                tensors = reduce(tensors, part["id"].tolist())
            if path is not None:
                write_parquet(path.with_suffix(".parquet"), resp)
                write_verified(path, tensors, {"key": key}, path.with_suffix(".parquet"))
            status = "done"
        elapsed = time.time() - started
        print(
            f"[{progress_label}] chunk {j + 1}/{n_chunks} {status} ({min((j + 1) * settings.chunk_size, len(df))}"
            f"/{len(df)} prompts, {elapsed:.1f}s)",
            file=sys.stderr,
            flush=True,
        )
        yield Chunk(part["id"].tolist(), key, path, tensors if keep or path is None else None, resp)
        tensors = cached = None  # let the chunk go before the next one is computed
    progress.close(
        f"{len(df)} prompts at {len(settings.layers)} layers, positions {', '.join(settings.positions)}, "
        f"sites {', '.join(settings.sites)}"
    )


def capture_key(settings: CaptureJob, model_key: Any, reduce_key: Any = None) -> str:
    """The part of every chunk's cache key shared by a job: model, capture settings, code version (and what the
    stream capture keeps of each chunk)."""
    return content_hash(model_key, repr(settings), __version__, *([reduce_key] if reduce_key is not None else []))


def chunk_parts(df: pd.DataFrame, chunk_size: int) -> list[pd.DataFrame]:
    """The chunks of a capture: ``chunk_size`` rows each, in order (one, empty, for an empty table)."""
    return [df.iloc[j : j + chunk_size] for j in range(0, max(len(df), 1), chunk_size)]


def chunk_key(base_key: str, part: pd.DataFrame) -> str:
    return content_hash(base_key, part[["id", "prompt", "system", "prefill", "response"]].to_dict(orient="list"))


def capture_meta(df: pd.DataFrame, settings: CaptureJob, model_key: Any, table: pd.DataFrame) -> dict[str, Any]:
    """A shard's metadata: ids, layers, positions, sites, settings, the model fingerprint and the chat format it
    applied, and the rows cut at max_length, over the context, or with special-token text kept as text."""
    meta = {
        "ids": df["id"].tolist(),
        "layers": settings.layers,
        "positions": settings.positions,
        "sites": settings.sites,
        "settings": as_dict(settings),
        "model": model_key,
        "key": capture_key(settings, model_key),
        "traitscope": __version__,
        "n_truncated": int(table["truncated"].sum()),
        "n_over_context": int(table["over_context"].sum()),
        "n_special_text": int(table["special_text"].sum()),
    }
    if isinstance(model_key, dict) and "chat_format" in model_key:
        meta["chat_format"] = model_key["chat_format"]
    return meta


def responses_table(chunks: list[pd.DataFrame], context_length: int | None) -> pd.DataFrame:
    """The chunks' responses as one table, with ``over_context`` (prompt, prefill and response together longer
    than ``context_length``, the model's ``max_position_embeddings``)."""
    table = pd.concat(chunks, ignore_index=True)
    total = table["n_prompt_tokens"] + table["n_prefill_tokens"] + table["n_response_tokens"]
    table["over_context"] = (total > context_length) if context_length else False
    return table


def capture_prompts(
    model: Any,
    tokenizer: Any,
    df: pd.DataFrame,
    settings: CaptureJob,
    *,
    model_key: Any,
    cache_dir: str | Path | None = None,
    progress_label: str = "capture",
    context_length: int | None = None,
    reduce: Reduce | None = None,
    reduce_key: Any = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any], pd.DataFrame]:
    """Capture a whole prompt table in memory; resumable through ``cache_dir``. Returns (tensors, meta, responses).
    For a shard of any size use :func:`capture_shard`, which streams to a file at the memory of one chunk.

    The responses table flags per row ``truncated`` (prompt cut at ``max_length``), ``over_context`` (see
    :func:`responses_table`), ``special_text`` and ``scrubbed``.

    ``reduce(tensors, ids)`` turns each chunk's activations into what is kept (the stream capture projects them onto
    the trait vectors) before the chunk is cached, so raw activations are never written; ``reduce_key`` identifies
    it in the cache key (the vectors' content)."""
    chunks = list(
        iter_chunks(
            model,
            tokenizer,
            df,
            settings,
            model_key=model_key,
            cache_dir=cache_dir,
            progress_label=progress_label,
            reduce=reduce,
            reduce_key=reduce_key,
        )
    )
    table = responses_table([c.responses for c in chunks], context_length)
    tensors = merge_chunks([c.tensors for c in chunks if c.tensors is not None])
    return tensors, capture_meta(df, settings, model_key, table), table


def capture_shard(
    model: Any,
    tokenizer: Any,
    df: pd.DataFrame,
    settings: CaptureJob,
    out: str | Path,
    *,
    model_key: Any,
    cache_dir: str | Path,
    progress_label: str = "capture",
    context_length: int | None = None,
    extra_meta: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Capture ``df`` into the activation shard ``out`` at the memory of one chunk, with one copy on disk; returns
    (meta, responses).

    Each chunk is written to the cache (``chunk-<key>.safetensors``, verified) and let go. Once all are there, they
    are concatenated into ``shard-<key>.safetensors`` in the cache by a streaming copy
    (:func:`~traitscope.core.io.concat_safetensors`), the sha256 of its data beside it; the chunk tensors are then
    removed (their small responses tables stay), and ``out`` becomes a hard link to that file: one copy on disk,
    two names. A killed job resumes at its first missing chunk; a job whose shard is already in the cache (same
    model, settings, prompts and metadata), after its data is verified, only links it again. Without hard links
    (some network file systems) the file is moved to ``out`` instead, and the shard cache is given up."""
    import logging

    from .io import concat_safetensors, data_sha256

    cache = Path(cache_dir)
    base_key = capture_key(settings, model_key)
    keys = [chunk_key(base_key, part) for part in chunk_parts(df, settings.chunk_size)]
    stored = cache / f"shard-{content_hash(base_key, keys, extra_meta or {})}.safetensors"
    digest_file = stored.with_suffix(".sha256")
    parquets = [cache / f"chunk-{k}.parquet" for k in keys]
    if stored.exists() and digest_file.exists() and all(p.exists() for p in parquets):
        if data_sha256(stored) == digest_file.read_text().strip():
            table = responses_table([pd.read_parquet(p) for p in parquets], context_length)
            print(f"[{progress_label}] shard cached ({len(df)} prompts)", file=sys.stderr, flush=True)
            _link(stored, Path(out))
            return capture_meta(df, settings, model_key, table) | (extra_meta or {}), table
        logging.getLogger("traitscope.cache").warning("cache entry %s: checksum mismatch; computing it again", stored)
        stored.unlink()
    chunks = list(
        iter_chunks(
            model,
            tokenizer,
            df,
            settings,
            model_key=model_key,
            cache_dir=cache,
            progress_label=progress_label,
            keep=False,
        )
    )
    table = responses_table([c.responses for c in chunks], context_length)
    meta = capture_meta(df, settings, model_key, table) | (extra_meta or {})
    paths = [c.path for c in chunks if c.path is not None]
    digest = concat_safetensors(paths, stored, meta)
    write_text(digest_file, f"{digest}\n")
    for p in paths:
        p.unlink(missing_ok=True)
    _link(stored, Path(out))
    return meta, table


def _link(stored: Path, out: Path) -> None:
    """``out`` as a hard link to ``stored`` (or ``stored`` moved there where links are not possible), with a fresh
    modification time, so Snakemake sees an output newer than its inputs."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    try:
        os.link(stored, out)
    except OSError:
        os.replace(stored, out)
    os.utime(out)


class CaptureError(TraitscopeError, ValueError):
    pass


def check_finite(tensors: dict[str, torch.Tensor], ids: list[str], dtype: str = "float16") -> None:
    """Refuse inf/nan activations, naming the prompts (per-prompt rows, or response tokens via offsets)."""
    offsets = tensors.get("response.offsets")
    bad: dict[str, set[int]] = {}
    for name, t in tensors.items():
        if not name.split(".")[-1].startswith("layer_") or torch.isfinite(t).all():
            continue
        rows = (~torch.isfinite(t.float())).reshape(t.shape[0], -1).any(1).nonzero().flatten()
        if name.startswith("response.") and offsets is not None:
            rows = torch.unique(torch.searchsorted(offsets, rows, right=True) - 1)
        bad.setdefault(name.split(".")[-1], set()).update(int(r) for r in rows)
    if bad:
        names = sorted({ids[r] for rows in bad.values() for r in rows})
        fix = (
            "float16 storage overflows beyond ±65504, common on large models: set capture.dtype: bfloat16 (same "
            "size, float32's range) or float32"
            if dtype == "float16"
            else "the model itself produced them: check it in float32 (variants.<name>.dtype)"
        )
        raise CaptureError(
            f"non-finite activations (inf/nan) for {len(names)} prompts, e.g. {names[:5]}, at "
            f"{sorted(bad)} (fix: {fix})"
        )


def model_fingerprint(variant: ModelSpec, resolved_path: str, tokenizer: Any = None) -> dict[str, Any]:
    """What identifies what the model computes and sees: the spec; every file of a local model folder
    (:func:`~traitscope.core.sources.folder_fingerprint`: tokenizer, chat template, configs by content, large weight
    files by size and mtime); every adapter file by content; and, given the loaded tokenizer, the chat format it
    applies (:func:`~traitscope.core.chat.chat_format`), so that a hub model whose template changes is noticed too."""
    from .chat import chat_format
    from .sources import folder_fingerprint

    fp: dict[str, Any] = {k: getattr(variant, k) for k in ("model", "adapter", "dtype", "quantization", "revision")}
    if resolved_path and Path(resolved_path).is_dir():
        fp["model_files"] = folder_fingerprint(resolved_path)
    if variant.adapter and Path(variant.adapter).is_dir():
        fp["adapter_files"] = folder_fingerprint(variant.adapter, hash_all=True)
    if tokenizer is not None:
        fp["chat_format"] = chat_format(tokenizer)
    return fp
