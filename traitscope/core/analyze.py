"""Analyses that turn vectors and projections into tables, JSON and figures."""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import __version__
from .io import file_sha256
from .project import at_layer


def score_summary(
    frames: list[tuple[str, str, pd.DataFrame]], best_layers: dict[str, int], positions: dict[str, str], method: str
) -> pd.DataFrame:
    """Per-prompt pooled scores at each trait's best layer and extraction position."""
    out = []
    for variant, prompt_set, df in frames:
        for trait, layer in best_layers.items():
            want = positions[trait]
            m = at_layer(df, trait, layer, method)
            pos = want if want in set(m["position"]) else ("last" if "last" in set(m["position"]) else None)
            if pos is None:
                continue
            sel = m[m["position"] == pos]
            out.append(sel.assign(variant=variant, prompt_set=prompt_set))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def score_table(summary: pd.DataFrame) -> pd.DataFrame:
    """:func:`score_summary`'s per-prompt scores described per (variant, prompt set, trait, layer, position): n,
    mean, standard deviation and quartiles (the report's table; a table of every prompt would not be read)."""
    keys = ["variant", "prompt_set", "trait", "layer", "position"]
    if summary.empty:
        return pd.DataFrame(columns=[*keys, "n", "mean", "sd", "q25", "median", "q75"])
    g = summary.groupby(keys, sort=True)["score"]
    quartiles = {name: g.quantile(q) for name, q in (("q25", 0.25), ("median", 0.5), ("q75", 0.75))}
    return g.agg(n="size", mean="mean", sd="std").assign(**quartiles).reset_index()


def capture_counts(tables: dict[str, list[str | Path]]) -> dict[str, dict[str, int]]:
    """Per captured table (label -> its shards' responses parquets): rows, prompts cut at ``capture.max_length``
    and rows longer than the model's context (tables written before that column count 0 there)."""
    out = {}
    for label, files in sorted(tables.items()):
        cols = [
            pd.read_parquet(f, columns=[c for c in ("truncated", "over_context") if c in _columns(f)]) for f in files
        ]
        df = pd.concat(cols, ignore_index=True) if cols else pd.DataFrame()
        out[label] = {"rows": len(df), **{c: int(df[c].sum()) if c in df else 0 for c in ("truncated", "over_context")}}
    return out


def _columns(path: str | Path) -> list[str]:
    import pyarrow.parquet as pq

    return list(pq.read_schema(path).names)


def provenance(
    config: dict[str, Any],
    outputs: list[str | Path],
    overlaps: dict[str, Any] | None = None,
    prep: dict[str, Any] | None = None,
    captures: dict[str, dict[str, int]] | None = None,
) -> dict[str, Any]:
    """What produced the results: versions, git commit, config, the overlaps between scored and extraction
    prompts that ``checks.allow_overlap`` accepted, and a checksum of every output."""
    pkgs: dict[str, str | None] = {}
    for name in (
        "torch",
        "transformers",
        "snakemake",
        "scikit-learn",
        "statsmodels",
        "pandas",
        "numpy",
        "peft",
        "safetensors",
    ):
        try:
            pkgs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pkgs[name] = None
    try:
        # the commit of the traitscope code that ran (its checkout), not of the folder the study runs in
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False, cwd=Path(__file__).parent
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "traitscope": __version__,
        "git_commit": commit or None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": pkgs,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "config": {k: v for k, v in config.items() if not k.startswith("_")},
        "prompt_sets": {
            "definition": "per prompt set: rows read, dropped (no prompt, exact duplicate; a replay: "
            "no response to replay), repeated prompts kept, not sampled, rows kept",
            "counts": prep or {},
        },
        "captured_rows": {
            "definition": "per captured table (variant/prompt set, or extract/<trait>): rows, prompts cut "
            "at capture.max_length (their start is lost), rows whose prompt + prefill + "
            "response exceed the model's context length",
            "counts": captures or {},
        },
        "overlap_with_extraction": {
            "definition": "allowed: scored prompt set -> trait -> prompts it shares with that trait's extraction data "
            "(accepted by checks.allow_overlap; any other overlap stops start-up); unchecked: sets "
            "start-up could not load (hub or large files), so not compared",
            **(overlaps or {"allowed": {}, "unchecked": []}),
        },
        "outputs": {str(p): file_sha256(p) for p in sorted(map(str, outputs)) if Path(p).is_file()},
    }
