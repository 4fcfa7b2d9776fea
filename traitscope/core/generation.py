"""Batched generation after a prompt (and prefill), with out-of-memory back-off."""

from __future__ import annotations

import logging
from typing import Any

import torch

from .architecture import input_device
from .chat import Encoded
from .specs import Generation

log = logging.getLogger(__name__)


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for src in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(src, int):
            ids.add(src)
        elif src:
            ids.update(int(i) for i in src)
    return ids


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def run_batches(n: int, batch_size: int, run: Any, label: str = "batch") -> int:
    """Call ``run(start, stop)`` over consecutive slices of ``range(n)``.

    On an out-of-memory error the batch size is halved and the same slice retried (down to 1); the
    smaller size is kept for the remaining slices. Returns the final batch size.
    """
    start, size = 0, max(1, batch_size)
    while start < n:
        stop = min(n, start + size)
        try:
            run(start, stop)
        except Exception as exc:  # noqa: BLE001 - only OOM is retried
            if not is_oom(exc) or size == 1:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            size = max(1, size // 2)
            log.warning("%s: out of memory at batch size %d, retrying with %d", label, stop - start, size)
            continue
        start = stop
    return size


def generate_responses(
    model: Any,
    tokenizer: Any,
    encoded: list[Encoded],
    generation: Generation,
    batch_size: int,
    seed: int,
    before_batch: Any = None,
) -> list[list[int]]:
    """Greedy or sampled continuation after prompt + prefill, for rows without a given response.

    ``before_batch(width)``, if given, is called before each ``generate`` with the left-padded width.
    """
    device = input_device(model)
    eos = eos_ids(model, tokenizer)
    pad = tokenizer.pad_token_id
    results: list[list[int]] = [[] for _ in encoded]
    todo = [i for i, e in enumerate(encoded) if not e.response]
    todo.sort(key=lambda i: len(encoded[i].prompt) + len(encoded[i].prefill))
    torch.manual_seed(seed)

    def run(start: int, stop: int) -> None:
        idx = todo[start:stop]
        seqs = [encoded[i].prompt + encoded[i].prefill for i in idx]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for b, s in enumerate(seqs):  # left padding for generation
            ids[b, width - len(s) :] = torch.tensor(s)
            mask[b, width - len(s) :] = 1
        if before_batch is not None:
            before_batch(width)
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": generation.max_new_tokens,
            "do_sample": generation.do_sample,
            "pad_token_id": pad,
            "eos_token_id": sorted(eos) or None,
        }
        if generation.do_sample:
            gen_kwargs.update(temperature=generation.temperature, top_p=generation.top_p)
        else:
            gen_kwargs.update(temperature=None, top_p=None, top_k=None)
        with torch.no_grad():
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **gen_kwargs)
        for b, i in enumerate(idx):
            new = out[b, width:].tolist()
            cut = next((k for k, t in enumerate(new) if t in eos), len(new))
            results[i] = new[:cut]

    run_batches(len(todo), batch_size, run, label="generate")
    return results
