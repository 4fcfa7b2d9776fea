"""traitscope: trait vectors, activation capture and projection for AI-safety research."""

from __future__ import annotations

import os

# litellm must never fetch its model cost map from the network at import time.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from .core.errors import ConfigError, TraitscopeError, __version__, first_line

API = (
    "LiveModel",
    "load_model",
    "prompt_set",
    "capture",
    "extract",
    "project",
    "random_aucs",
    "steer",
    "ablate",
    "generate",
    "judge",
    "export",
)
"""The live-model API (:mod:`traitscope.api`, whose ``__all__`` this is), imported on first use so that
``import traitscope`` stays light."""
__all__ = ["ConfigError", "TraitscopeError", "__version__", "first_line", "open_results", *API]


def __getattr__(name: str):  # noqa: ANN202
    if name in API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'traitscope' has no attribute {name!r}")


def open_results(results_dir: str | os.PathLike[str] = "results", workdir: str | os.PathLike[str] | None = None):  # noqa: ANN201
    """A finished study's results as tidy pandas frames: :class:`traitscope.results.Results` (the Python entry point
    for notebooks; see ``docs/results.md``)."""
    from .results import open_results as _open

    return _open(results_dir, workdir)
