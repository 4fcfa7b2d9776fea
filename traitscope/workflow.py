"""Glue for ``workflow/scripts``: logging to the rule's log file, threads, seeds, settings."""

from __future__ import annotations

import logging
import random
import sys
from typing import Any

import numpy as np
import torch

from .secrets import ScrubbedStream


def setup(smk: Any) -> logging.Logger:
    """Send logging and stderr of a script to its Snakemake log; fix threads and seeds."""
    if getattr(smk, "log", None):
        handle = open(smk.log[0], "a", buffering=1)  # noqa: SIM115 - lives as long as the job
        sys.stderr = ScrubbedStream(handle)  # no secret reaches the log
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        force=True)
    torch.set_num_threads(max(1, int(getattr(smk, "threads", 1) or 1)))
    seed = int(smk.params.get("seed", 1234)) if hasattr(smk.params, "get") else 1234
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return logging.getLogger("traitscope")
