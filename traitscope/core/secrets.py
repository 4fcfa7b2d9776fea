"""Secrets come from the environment only and are never written: :func:`scrub` replaces every known secret
value (environment variables named like a key, token, secret or password) in text the project writes
(JSON, Markdown, parquet strings, job logs and tracebacks)."""

from __future__ import annotations

import os
import re
from typing import IO, Any

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
MIN_LENGTH = 8  # shorter values ("1", "true") would redact ordinary words


def secret_values(environ: Any = None) -> dict[str, str]:
    """Secret value -> the variable it came from, longest first (so a key's prefix never hides the key)."""
    env = os.environ if environ is None else environ
    found = {v: k for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= MIN_LENGTH}
    return dict(sorted(found.items(), key=lambda kv: -len(kv[0])))


def holds_secret(value: Any, secrets: dict[str, str]) -> bool:
    """Does ``value`` (any cell of a table) contain one of ``secrets`` (from :func:`secret_values`)?"""
    return isinstance(value, str) and any(s in value for s in secrets)


def scrub(text: str, environ: Any = None) -> str:
    """``text`` with every secret value from the environment replaced by ``[redacted $NAME]``."""
    for value, name in secret_values(environ).items():
        if value in text:
            text = text.replace(value, f"[redacted ${name}]")
    return text


class ScrubbedStream:
    """A text stream (a job's log) that scrubs secrets from everything written to it."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(scrub(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
