"""traitscope: trait vectors, activation capture and projection for AI-safety research."""

from __future__ import annotations

import os

# litellm must never fetch its model cost map from the network at import time.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__version__ = "0.1.0"


class TraitscopeError(Exception):
    """Base class for user-facing errors that carry a one-line message with the fix."""


class ConfigError(TraitscopeError):
    """The configuration is invalid; the message names the key and the fix."""


def first_line(exc: BaseException | None) -> str:
    """The first non-empty line of an exception's message, or its type name: for one-line errors."""
    text = str(exc).strip() if exc is not None else ""
    return text.splitlines()[0] if text else type(exc).__name__


def open_results(results_dir: str | os.PathLike[str] = "results", workdir: str | os.PathLike[str] | None = None):  # noqa: ANN201
    """A finished study's results as tidy pandas frames: :class:`traitscope.results.Results` (the Python entry point
    for notebooks; see ``docs/results.md``)."""
    from .results import open_results as _open

    return _open(results_dir, workdir)
