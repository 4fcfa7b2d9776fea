"""Glue for the job scripts (``workflow/scripts``, each experiment's ``scripts/``): logging to the rule's log file, threads, seeds, settings."""

from __future__ import annotations

import logging
import random
import sys
from typing import Any

import numpy as np
import torch

from ..core.errors import TraitscopeError
from ..core.io import verify_inputs
from ..core.models import quiet_bitsandbytes_hub_kernel
from ..core.secrets import ScrubbedStream, scrub
from . import guard


def one_line_errors(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
    """The job's exception hook: a :class:`~traitscope.TraitscopeError` (a bad file, a bad setting) is one line,
    naming the file or key and the fix, in the log and on the console; anything else keeps its traceback. Either way
    the job's outputs are not recorded as written (:func:`traitscope.workflow.guard.job_failed`)."""
    guard.job_failed()
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
    study = (getattr(smk, "config", None) or {}).get("_study") or {}
    if study.get("quantizes") is False:
        without_bitsandbytes()
    quiet_bitsandbytes_hub_kernel()  # a study that quantizes: no advice to set trust_remote_code in its logs
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
    mark_job(smk)
    return logging.getLogger("traitscope")


def mark_job(smk: Any) -> None:
    """Mark this process as the job writing ``smk``'s outputs in its study's results folder while it runs, and record
    them in the folder's ledger when it ends without an error (:func:`traitscope.workflow.guard.job_started`): how
    start-up knows a job of a killed run still writes, and which files the workflow wrote."""
    results_dir = ((getattr(smk, "config", None) or {}).get("_study") or {}).get("results_dir")
    if not results_dir:
        return
    wildcards = dict(smk.wildcards.items()) if hasattr(getattr(smk, "wildcards", None), "items") else {}
    outputs = [str(f) for f in getattr(smk, "output", []) or []] + [str(f) for f in getattr(smk, "log", []) or []]
    guard.job_started(results_dir, str(getattr(smk, "rule", "?")), wildcards, outputs)


def without_bitsandbytes() -> None:
    """Keep bitsandbytes out of a job of a study that quantizes nothing. peft imports it whenever it is installed,
    which costs a second per job and, on a CPU with AVX-512 BF16, logs a failed kernel download from the hub that
    advises trust_remote_code (which this project never sets). Only a job's process does this: a notebook or test
    that loads a quantised model later in the same process keeps it."""
    if "bitsandbytes" not in sys.modules:
        sys.modules["bitsandbytes"] = None  # type: ignore[assignment]  # what import machinery reads as "absent"


def default_seed() -> int:
    """The seed of a job without a ``seed`` param (their outputs do not depend on it): the schema's default seed, the
    one home of that number."""
    from .config import load_schema

    return int(load_schema()["properties"]["seed"]["default"])
