"""Layer specs: ``all``, an index, ``"a-b"``, ``"a:b:step"``, ``"a,b"`` or a list, resolved against a model."""

from __future__ import annotations

import re
from typing import Any

from .errors import ConfigError


def parse_layers(spec: Any, n_layers: int, key: str = "layers") -> list[int]:
    """Resolve a layer spec against a model with ``n_layers`` decoder blocks.

    Accepted: ``"all"``; an int (negative counts from the end); ``"a-b"`` (inclusive);
    ``"a:b[:step]"`` (Python slice); ``"a,b,c"``; or a list of any of these. Layer ``i`` is the
    residual stream after decoder block ``i`` (0-based), i.e. ``hidden_states[i + 1]``.
    """
    items = spec if isinstance(spec, list) else [spec]
    out: set[int] = set()
    for item in items:
        out.update(_parse_layer_item(item, n_layers, key))
    if not out:
        raise ConfigError(
            f"config error at {key}: {spec!r} selects no layer (fix: use 'all' or indices 0..{n_layers - 1})"
        )
    return sorted(out)


def _parse_layer_item(item: Any, n: int, key: str) -> list[int]:
    def check(i: int) -> int:
        j = i + n if i < 0 else i
        if not 0 <= j < n:
            raise ConfigError(
                f"config error at {key}: layer {i} is out of range for a model with {n} layers "
                f"(fix: use indices 0..{n - 1}, negatives from the end, or 'all')"
            )
        return j

    if isinstance(item, bool):
        raise ConfigError(f"config error at {key}: {item!r} is not a layer (fix: use 'all', an index or a range)")
    if isinstance(item, int):
        return [check(item)]
    text = str(item).strip()
    if text == "all":
        return list(range(n))
    if "," in text:
        return [j for part in text.split(",") for j in _parse_layer_item(part.strip(), n, key)]
    try:
        if re.fullmatch(r"-?\d+", text):
            return [check(int(text))]
        m = re.fullmatch(r"(\d+)-(\d+)", text)
        if m:
            a, b = check(int(m.group(1))), check(int(m.group(2)))
            return list(range(a, b + 1))
        if ":" in text:
            parts = [int(p) if p.strip() else None for p in text.split(":")]
            if len(parts) > 3:
                raise ValueError
            for p in parts[:2]:
                if p is not None and not -n <= p <= n:
                    check(p)
            return list(range(n))[slice(*parts)]
    except ValueError:
        pass
    raise ConfigError(
        f"config error at {key}: cannot read layer spec {item!r} (fix: use 'all', 12, '10-20', '0:30:2' or a list)"
    )
