"""Glue for ``workflow/scripts``: logging to the rule's log file, threads, seeds, settings."""

from __future__ import annotations

import logging
import random
import sys
from typing import Any

import numpy as np
import torch

from .capture import CaptureSettings


def setup(smk: Any) -> logging.Logger:
    """Send logging and stderr of a script to its Snakemake log; fix threads and seeds."""
    if getattr(smk, "log", None):
        handle = open(smk.log[0], "a", buffering=1)  # noqa: SIM115 - lives as long as the job
        sys.stderr = handle
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        force=True)
    torch.set_num_threads(max(1, int(getattr(smk, "threads", 1) or 1)))
    seed = int(smk.params.get("seed", 1234)) if hasattr(smk.params, "get") else 1234
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return logging.getLogger("traitscope")


def capture_settings(capture: dict[str, Any], layers: list[int], seed: int, *, positions: list[str] | None = None,
                     generate: bool | None = None, max_new_tokens: int | None = None) -> CaptureSettings:
    gen = capture.get("generate") or {}
    return CaptureSettings(
        layers=list(layers),
        positions=list(positions or capture["positions"]),
        batch_size=int(capture["batch_size"]),
        max_length=int(capture["max_length"]),
        chunk_size=int(capture["chunk_size"]),
        generate=bool(gen.get("enabled", True) if generate is None else generate),
        max_new_tokens=int(max_new_tokens or gen.get("max_new_tokens", 32)),
        do_sample=bool(gen.get("do_sample", False)),
        temperature=float(gen.get("temperature", 1.0)),
        top_p=float(gen.get("top_p", 1.0)),
        seed=seed,
    )
