"""The per-token viewer: one self-contained HTML page of trait scores token by token.

The page is built from the per-token projection tables (``projections/<variant>/<set>/shard-*.tokens.parquet``)
and works from ``file://`` with no server, network or CDN: the data sit in the page as JSON and a small script
draws them. A reader picks the trait, method, layer, variant and prompt set and sees each prompt's assistant-turn
tokens coloured by score (the value on hover); comparison views put the same prompts side by side (variant vs
base on the same tokens, the four prefill conditions, trigger vs control).

Sizes stay bounded on large studies: at most ``viewer.max_prompts`` prompts per (variant, prompt set), a seeded
random sample drawn from the sorted ids (so sets with the same ids show the same prompts), and at most
``viewer.max_tokens`` tokens per prompt. The page states both caps and the counts it shows.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .core.specs import ViewerSettings
from .workflow.experiment import Comparison, Panel


def sample_ids(ids: Sequence[str], n: int, seed: int) -> list[str]:
    """A seeded random sample of at most ``n`` ids, in sorted order. Drawn from the sorted unique ids, so two
    sets holding the same ids give the same sample."""
    unique = sorted(set(ids))
    if len(unique) <= n:
        return unique
    rng = np.random.default_rng(seed)
    return sorted(unique[i] for i in rng.choice(len(unique), size=n, replace=False))


def combo_key(trait: str, method: str, layer: int) -> str:
    return f"{trait}|{method}|{layer}"


def panel_data(
    tokens: pd.DataFrame,
    prompts: pd.DataFrame,
    ids: list[str],
    decode: Callable[[list[int]], list[str]],
    max_tokens: int,
) -> tuple[list[dict[str, Any]], dict[str, list[list[float]]]]:
    """The shown prompts of one (variant, set): their text and tokens (``decode``: one prompt's token ids to their
    texts, :func:`traitscope.core.chat.token_texts`), and per (trait, method, layer) the scores of each prompt's
    tokens (rounded to 4 decimals), from its per-token table restricted to ``ids``."""
    tokens = tokens[tokens["id"].isin(ids)]
    text = dict(zip(prompts["id"], prompts["prompt"]))
    first = tokens.drop_duplicates(["trait", "method", "layer"])[["trait", "method", "layer"]]
    rows: list[dict[str, Any]] = []
    scores: dict[str, list[list[float]]] = {}
    if first.empty:
        return [{"id": i, "prompt": text.get(i, ""), "t": [], "p": [], "n": 0} for i in ids], scores
    t0, m0, l0 = first.iloc[0]
    ref = tokens[(tokens["trait"] == t0) & (tokens["method"] == m0) & (tokens["layer"] == l0)]
    by_id = {i: g.sort_values("token_index") for i, g in ref.groupby("id", sort=False)}
    for i in ids:
        g = by_id.get(i)
        n = 0 if g is None else len(g)
        shown = g.iloc[:max_tokens] if g is not None else None
        rows.append(
            {
                "id": i,
                "prompt": text.get(i, ""),
                "n": n,
                "t": decode([int(t) for t in g["token_id"]])[:max_tokens] if g is not None else [],
                "p": [int(b) for b in shown["is_prefill"]] if shown is not None else [],
            }
        )
    for (trait, method, layer), g in tokens.groupby(["trait", "method", "layer"], sort=True):
        per_id = {
            i: grp.sort_values("token_index")["score"].to_numpy()[:max_tokens] for i, grp in g.groupby("id", sort=False)
        }
        scores[combo_key(str(trait), str(method), int(layer))] = [  # type: ignore[call-overload]
            [round(float(x), 4) for x in per_id.get(i, np.zeros(0))] for i in ids
        ]
    return rows, scores


BAND = (5, 95)
"""The per-token random band: these percentiles of the random directions' scores at each token."""


def token_bands(
    baseline: Any, ids: list[str], sites: dict[str, str], max_tokens: int
) -> dict[tuple[str, int], dict[str, list[list[float]]]]:
    """Per (trait, layer) whose per-token random scores the panel's
    :class:`~traitscope.core.artifacts.BaselineScores` holds at the trait's site: for each shown prompt (``ids``
    order), the :data:`BAND` percentiles over the random directions of their scores at each of its first
    ``max_tokens`` assistant-turn tokens (``lo``, ``hi``, 4 decimals). A token whose trait score lies inside the band
    reads no more of the trait than a random direction reads there."""
    from .core.artifacts import tensor_key  # torch: not at the Snakefile's parse

    row = {str(i): k for k, i in enumerate(baseline.ids)}
    offsets = baseline.tensors.get("response.offsets")
    out: dict[tuple[str, int], dict[str, list[list[float]]]] = {}
    if offsets is None:
        return out
    for trait, site in sorted(sites.items()):
        for layer in baseline.meta.get("layers", []):
            key = tensor_key("token", int(layer), site)
            if key not in baseline.tensors:
                continue
            tokens = baseline.tensors[key].float().numpy()
            lo, hi = [], []
            for i in ids:
                k = row.get(str(i))
                x = tokens[int(offsets[k]) : int(offsets[k + 1])][:max_tokens] if k is not None else np.zeros((0, 1))
                q = np.percentile(x, BAND, axis=1) if len(x) else np.zeros((2, 0))
                lo.append([round(float(v), 4) for v in q[0]])
                hi.append([round(float(v), 4) for v in q[1]])
            out[(trait, int(layer))] = {"lo": lo, "hi": hi}
    return out


def colour_scale(scores: dict[str, dict[str, list[list[float]]]]) -> dict[str, float]:
    """Per (trait, method, layer): the 99th percentile of |score| over every shown token of every panel, so that
    all panels of one trait and layer share one colour scale."""
    pooled: dict[str, list[float]] = {}
    for per_combo in scores.values():
        for key, rows in per_combo.items():
            pooled.setdefault(key, []).extend(x for row in rows for x in row)
    return {k: round(float(np.percentile(np.abs(v), 99)), 4) if v else 1.0 for k, v in sorted(pooled.items())}


PanelKey = tuple[str, str]  # (variant, prompt set)


def build_data(
    panel_ids: dict[PanelKey, list[str]],
    read: Callable[[PanelKey, list[str]], tuple[pd.DataFrame, pd.DataFrame]],
    decoders: dict[str, Callable[[list[int]], list[str]]],
    comparisons: Sequence[Comparison],
    settings: ViewerSettings,
    seed: int,
    title: str = "traitscope: trait scores token by token",
    bands: Callable[[PanelKey, list[str]], dict[tuple[str, int], dict[str, list[list[float]]]]] | None = None,
    chosen: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Everything the page shows. ``panel_ids`` holds the ids with per-token scores of each (variant, prompt
    set); ``read(panel, ids)`` returns that panel's per-token rows and prompt rows for the shown ids; ``bands(panel,
    ids)`` (:func:`token_bands`) the per-token random band of the panels that have one; ``chosen`` each trait's
    layer chosen at extraction (the layer menu opens on it and marks it)."""
    by_set: dict[str, set[str]] = {}
    for (_, pset), ids in panel_ids.items():
        by_set.setdefault(pset, set()).update(ids)
    samples = {pset: sample_ids(sorted(ids), settings.max_prompts, seed) for pset, ids in by_set.items()}
    prompts_of: dict[str, list[dict[str, Any]]] = {}
    scores_of: dict[str, dict[str, list[list[float]]]] = {}
    bands_of: dict[str, dict[str, dict[str, list[list[float]]]]] = {}
    totals: dict[str, int] = {}
    combos: set[tuple[str, str, int]] = set()
    for panel in sorted(panel_ids):
        variant, pset = panel
        key = f"{variant}|{pset}"
        have = set(panel_ids[panel])
        ids = [i for i in samples[pset] if i in have]
        tokens, prompts = read(panel, ids)
        prompts_of[key], scores_of[key] = panel_data(tokens, prompts, ids, decoders[variant], settings.max_tokens)
        totals[key] = len(have)
        for (trait, layer), band in (bands(panel, ids) if bands else {}).items():
            for method in sorted(set(tokens["method"])) if len(tokens) else []:
                bands_of.setdefault(key, {})[combo_key(trait, str(method), layer)] = band
        combos |= {
            (t, m, int(la))
            for t, m, la in tokens[["trait", "method", "layer"]].drop_duplicates().itertuples(index=False)
        }
    traits = sorted({t for t, _, _ in combos})
    present = {f"{v}|{s}" for v, s in panel_ids}
    return {
        "title": title,
        "caps": {"max_prompts": settings.max_prompts, "max_tokens": settings.max_tokens, "seed": seed},
        "totals": totals,
        "traits": traits,
        "methods": sorted({m for _, m, _ in combos}),
        "layers": {t: sorted({la for tt, _, la in combos if tt == t}) for t in traits},
        "chosen": {t: int(la) for t, la in (chosen or {}).items() if t in traits},
        "panels": sorted(prompts_of),
        "prompts": prompts_of,
        "scores": scores_of,
        "scale": colour_scale(scores_of),
        "bands": bands_of,
        "band": list(BAND),
        "comparisons": [
            {
                "name": c.name,
                "note": c.note,
                "panels": [
                    {"label": p.label, "key": f"{p.variant}|{p.prompt_set}"}
                    for p in c.panels
                    if f"{p.variant}|{p.prompt_set}" in present
                ],
                "reference": sum(f"{p.variant}|{p.prompt_set}" in present for p in c.panels[: c.reference])
                if f"{c.panels[c.reference].variant}|{c.panels[c.reference].prompt_set}" in present
                else 0,
            }
            for c in comparisons
            if sum(f"{p.variant}|{p.prompt_set}" in present for p in c.panels) >= 2
        ],
    }


def read_panel(
    token_files: Sequence[str | Path], prompt_file: str | Path, ids: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-token rows and prompt rows of ``ids`` only (parquet filters: a large set is never read whole)."""
    wanted = [("id", "in", list(ids))] if ids else None
    parts = [pd.read_parquet(f, filters=wanted) for f in token_files] if ids else []
    tokens = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=["id", "token_index", "token_id", "is_prefill", "trait", "method", "layer", "score"])
    )
    prompts = (
        pd.read_parquet(prompt_file, columns=["id", "prompt"], filters=wanted)
        if ids
        else pd.DataFrame(columns=["id", "prompt"])
    )
    return tokens, prompts


def token_ids(token_files: Sequence[str | Path]) -> list[str]:
    """The ids that have per-token scores in a panel's tables (the id column only)."""
    return sorted({i for f in token_files for i in pd.read_parquet(f, columns=["id"])["id"]})


def comparisons_of(study: Any) -> list[Comparison]:
    """The side-by-side views a study supports: each configured experiment's (variant vs base on the compared set,
    the four prefill conditions, trigger vs control of each backdoor variant, ...), then every captured set that more
    than one variant was captured on, its reference the study's base (``extract.variant``), never the alphabetically
    first variant; the note says which."""
    out: list[Comparison] = [c for experiment, settings in study.configured() for c in experiment.comparisons(settings)]
    by_set: dict[str, list[str]] = {}
    for v, s in study.projected_pairs():
        by_set.setdefault(s, []).append(v)
    shown = {
        (c.panels[0].prompt_set, tuple(sorted(q.variant for q in c.panels)))
        for c in out
        if len({q.prompt_set for q in c.panels}) == 1
    }
    base = study.extract.variant  # the reference of "all variants": the model the vectors come from
    for s, variants in sorted(by_set.items()):
        if len(variants) > 1 and (s, tuple(sorted(variants))) not in shown:
            ordered = sorted(variants, key=lambda v: (v != base, v))  # the base first where it is captured
            note = (
                f"differences from {ordered[0]}, the variant the trait vectors were extracted from"
                if ordered[0] == base
                else f"differences from {ordered[0]} (the extraction variant {base} was not captured on {s})"
            )
            out.append(Comparison(f"all variants on {s}", tuple(Panel(v, v, s) for v in ordered), note))
    return out


PAGE = Path(__file__).with_name("viewer.html")
"""The page (HTML, CSS and the script that draws it): ``__TITLE__`` and ``__DATA__`` are filled in by :func:`render`."""


def render(data: dict[str, Any]) -> str:
    """The self-contained page: the data as JSON inside the page, drawn by a small inline script."""
    payload = json.dumps(data, separators=(",", ":"), sort_keys=True, allow_nan=False).replace("</", "<\\/")
    page = PAGE.read_text(encoding="utf-8")
    return page.replace("__TITLE__", html.escape(data["title"])).replace("__DATA__", payload)


def write_viewer(path: str | Path, data: dict[str, Any]) -> int:
    """Write the page atomically; returns its size in bytes."""
    from .core.io import write_text

    text = render(data)
    write_text(path, text)
    return len(text.encode())
