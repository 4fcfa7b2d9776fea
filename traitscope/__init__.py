"""traitscope: trait vectors, activation capture and projection for AI-safety research."""

from __future__ import annotations

import os

# litellm must never fetch its model cost map from the network at import time.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from .core.errors import ConfigError, TraitscopeError, __version__, first_line

__all__ = ["ConfigError", "TraitscopeError", "__version__", "first_line", "open_results"]


def open_results(results_dir: str | os.PathLike[str] = "results", workdir: str | os.PathLike[str] | None = None):  # noqa: ANN201
    """A finished study's results as tidy pandas frames: :class:`traitscope.results.Results` (the Python entry point
    for notebooks; see ``docs/results.md``)."""
    from .results import open_results as _open

    return _open(results_dir, workdir)
