"""The package's version and its user-facing errors: one line that names the file or key and the fix."""

from __future__ import annotations

__version__ = "0.1.0"


class TraitscopeError(Exception):
    """Base class for user-facing errors that carry a one-line message with the fix."""


class ConfigError(TraitscopeError):
    """The configuration is invalid; the message names the key and the fix."""


class ModelLoadError(TraitscopeError):
    """A model or adapter could not be loaded; the message says how to fix it."""


def first_line(exc: BaseException | None) -> str:
    """The first non-empty line of an exception's message, or its type name: for one-line errors."""
    text = str(exc).strip() if exc is not None else ""
    return text.splitlines()[0] if text else type(exc).__name__
