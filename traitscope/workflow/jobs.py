"""Glue for ``workflow/scripts``: logging to the rule's log file, threads, seeds, settings."""

from __future__ import annotations

import logging
import random
import sys
from typing import Any

import numpy as np
import torch

from ..core.errors import TraitscopeError
from ..core.io import verify_inputs
from ..core.secrets import ScrubbedStream, scrub


def one_line_errors(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
    """The job's exception hook: a :class:`~traitscope.TraitscopeError` (a bad file, a bad setting) is one line,
    naming the file or key and the fix, in the log and on the console; anything else keeps its traceback."""
    if isinstance(exc, TraitscopeError):
        line = scrub(f"ERROR: {exc}\n")
        sys.stderr.write(line)
        if sys.__stderr__ is not None and sys.stderr is not sys.__stderr__:
            sys.__stderr__.write(line)
        return
    sys.__excepthook__(kind, exc, tb)


def steady_memory() -> None:
    """Keep a job's resident memory at its working set: glibc raises its mmap threshold each time a large block is
    freed, so later large tensors come from the heap, which fragments and never shrinks, and a job that handles many
    chunks one after another ends with many chunks' worth of memory. A fixed threshold (128 KiB, the default
    before any adjustment) serves every large tensor from mmap and returns it on free. No effect off glibc."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def setup(smk: Any) -> logging.Logger:
    """Send logging and stderr of a script to its Snakemake log; fix threads and seeds; refuse, in one line naming
    it, an input file that cannot be read back (truncated or garbled: :func:`~traitscope.core.io.verify_inputs`)."""
    sys.excepthook = one_line_errors
    steady_memory()
    if getattr(smk, "log", None):
        handle = open(smk.log[0], "a", buffering=1)  # noqa: SIM115 - lives as long as the job
        sys.stderr = ScrubbedStream(handle)  # no secret reaches the log
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    torch.set_num_threads(max(1, int(getattr(smk, "threads", 1) or 1)))
    seed = smk.params.get("seed") if hasattr(smk.params, "get") else None
    seed = int(default_seed() if seed is None else seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    verify_inputs(str(f) for f in getattr(smk, "input", []) or [])
    return logging.getLogger("traitscope")


def default_seed() -> int:
    """The seed of a job without a ``seed`` param (their outputs do not depend on it): the schema's default seed, the
    one home of that number."""
    from .config import load_schema

    return int(load_schema()["properties"]["seed"]["default"])
