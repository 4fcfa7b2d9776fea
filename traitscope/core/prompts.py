"""Prompt sets: builtin sets, loaders for real dataset formats, one normalised parquet schema.

Every prompt set becomes a table with the columns of :data:`COLUMNS`:

``id``        stable id: the source's own id where it has one, else a content hash
``prompt``    user message
``system``    system prompt or null
``prefill``   start of the assistant turn forced on the model, or null
``response``  a given assistant response to replay (scored token by token), or null
``label``     integer label (e.g. 1 harmful / 0 harmless) or null
``category``  category string or null (several categories joined by ``|``)
``group``     grouping key for train/test splits (paraphrases of one question share a group)
``source``    where the row came from
``meta``      JSON string with the source's other fields (nothing is dropped)
``shard``     capture shard index
"""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import json
import logging
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from .errors import ConfigError, TraitscopeError, first_line
from .io import YAML_MAX_BYTES, YAMLLimitError, load_yaml
from .specs import PromptSetSpec

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).parents[1] / "data"
COLUMNS = ["id", "prompt", "system", "prefill", "response", "label", "category", "group", "source", "meta", "shard"]
PROMPT_CANDIDATES = ("prompt", "instruction", "goal", "question", "Behavior", "behavior", "text", "query")
FORMATS = (
    "table",
    "advbench",
    "beavertails",
    "harmbench",
    "refusal_direction",
    "em_questions",
    "persona_questions",
    "chat_jsonl",
)
#: separates several categories of one row (BeaverTails category names themselves contain commas)
CATEGORY_SEP = "|"
#: HarmBench's own layout of a contextual behavior: the context, a separator, then the behavior
HARMBENCH_CONTEXT = "{context}\n\n---\n\n{behavior}"


class PromptSetError(TraitscopeError):
    """A prompt set could not be read or is empty."""


def builtin_names() -> list[str]:
    return sorted(p.stem for p in (DATA_DIR / "prompts").glob("*.yaml"))


def stable_id(*parts: Any) -> str:
    text = "\x1f".join("" if p is None or (isinstance(p, float) and np.isnan(p)) else str(p) for p in parts)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------ readers


def _open_text(path: Path) -> str:
    if _inner_suffix(path) in (".yaml", ".yml") and path.stat().st_size > YAML_MAX_BYTES:
        raise PromptSetError(
            f"'{path.name}' is {path.stat().st_size >> 20} MiB, over the {YAML_MAX_BYTES >> 20} MiB "
            "YAML limit (fix: store a prompt set that large as jsonl or parquet)"
        )
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise PromptSetError(
                f"'{path.name}' is not a complete gzip file ({first_line(exc)}) (fix: download or compress it again)"
            ) from None
    try:
        return raw.decode("utf-8-sig")  # a byte-order mark (Notepad writes one) is not part of the text
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PromptSetError(
            f"'{path.name}' line {line}: not UTF-8 text (byte {exc.start}) "
            "(fix: convert it, e.g. iconv -f latin1 -t utf-8)"
        ) from None


def _inner_suffix(path: Path) -> str:
    return Path(path.stem).suffix.lower() if path.suffix == ".gz" else path.suffix.lower()


def read_records(path: Path) -> Any:
    """Parse a local file into Python objects (list of dicts or a dict) or a DataFrame."""
    suffix = _inner_suffix(path)
    if suffix == ".parquet":
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
            raise PromptSetError(
                f"'{path.name}' is not a readable parquet file ({first_line(exc)[:200]}) "
                "(fix: write it again, e.g. DataFrame.to_parquet)"
            ) from None
    if suffix in (".csv", ".tsv"):
        # a real CSV parser: fields may hold quoted newlines (HarmBench ContextString)
        try:
            return pd.read_csv(
                io.StringIO(_open_text(path)), sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False
            )
        except pd.errors.ParserError as exc:
            raise PromptSetError(
                f"'{path.name}': not a valid {suffix[1:].upper()} table ({first_line(exc)}) "
                "(fix: quote fields that hold the separator or a newline)"
            ) from None
    text = _open_text(path)
    if suffix == ".jsonl":
        records = []
        # split at newlines only: str.splitlines() also splits at U+2028/U+2029 and other separators that JSON
        # strings may hold unescaped (json.dumps(..., ensure_ascii=False) writes them)
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise PromptSetError(
                    f"'{path.name}' line {number}: not JSON ({exc.msg}, column {exc.colno}) "
                    "(fix: one JSON object per line)"
                ) from None
        return records
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise PromptSetError(
                f"'{path.name}' line {exc.lineno}: not JSON ({exc.msg}) (fix: correct the file)"
            ) from None
    if suffix in (".yaml", ".yml"):
        try:
            return load_yaml(text)
        except YAMLLimitError as exc:
            raise PromptSetError(
                f"'{path.name}': refused, {exc} (fix: write the prompts out without nested aliases, or as jsonl)"
            ) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            raise PromptSetError(
                f"'{path.name}'{where}: not YAML ({first_line(exc)}) (fix: correct the file)"
            ) from None
    raise PromptSetError(
        f"unsupported file type '{path.name}' (fix: use csv, tsv, jsonl, json, yaml or parquet, optionally .gz)"
    )


#: formats recognised by their columns, in a table or in the first record of a list
COLUMN_FORMATS = (
    (frozenset({"is_safe", "category"}), "beavertails"),
    (frozenset({"Behavior", "BehaviorID"}), "harmbench"),
)


def _format_by_columns(columns: set[str]) -> str | None:
    return next((fmt for need, fmt in COLUMN_FORMATS if need <= columns), None)


def detect_format(obj: Any) -> str:
    if isinstance(obj, dict) and "instruction" in obj and "questions" in obj:
        return "persona_questions"
    if isinstance(obj, pd.DataFrame):
        return _format_by_columns(set(obj.columns)) or ("advbench" if "goal" in obj.columns else "table")
    if isinstance(obj, list) and obj and isinstance(obj[0], dict):
        first = obj[0]
        if fmt := _format_by_columns(set(first)):
            return fmt
        if "paraphrases" in first:
            return "em_questions"
        if "messages" in first:
            return "chat_jsonl"
        if set(first) <= {"instruction", "category"} and "instruction" in first:
            return "refusal_direction"
    return "table"


def _meta(row: dict[str, Any], used: set[str]) -> str:
    rest = {k: v for k, v in row.items() if k not in used}
    return json.dumps(rest, default=str, sort_keys=True) if rest else "{}"


def _rows_table(df: pd.DataFrame, fields: dict[str, str], source: str) -> list[dict[str, Any]]:
    fields = dict(fields)
    if "prompt" not in fields:
        found = next((c for c in PROMPT_CANDIDATES if c in df.columns), None)
        if found is None:
            raise PromptSetError(
                f"no prompt column among {list(df.columns)} (fix: set fields.prompt to the column name)"
            )
        fields["prompt"] = found
    for col in ("id", "system", "prefill", "response", "label", "category", "group"):  # same-named columns are used
        if col not in fields and col in df.columns and col not in fields.values():
            fields[col] = col
    missing = [f"{k}->{v}" for k, v in fields.items() if v not in df.columns]
    if missing:
        raise PromptSetError(f"fields {missing} not in columns {list(df.columns)} (fix: correct the fields mapping)")
    used = set(fields.values())
    rows = []
    for rec in df.to_dict(orient="records"):
        row = {col: rec[src] for col, src in fields.items()}
        if "category" in row and isinstance(row["category"], dict):  # BeaverTails-style {name: bool}
            row["category"] = CATEGORY_SEP.join(sorted(k for k, v in row["category"].items() if v)) or None
        row["meta"] = _meta({str(k): v for k, v in rec.items()}, used)
        row["source"] = source
        rows.append(row)
    return rows


RECORD_FORMATS = ("persona_questions", "em_questions", "refusal_direction", "chat_jsonl")
"""Formats with a fixed record layout: a ``fields`` mapping does not apply to them."""


def _rows_from(obj: Any, fmt: str, fields: dict[str, str], source: str) -> list[dict[str, Any]]:
    if fields and fmt in RECORD_FORMATS:
        raise PromptSetError(
            f"fields {sorted(fields)} cannot apply to format '{fmt}', whose record layout is fixed "
            "(fix: remove fields, or set format: table to map columns)"
        )
    if fmt == "persona_questions":
        return [{"prompt": q, "group": f"q{i}", "source": source, "meta": "{}"} for i, q in enumerate(obj["questions"])]
    if fmt == "em_questions":
        rows = []
        for q in obj:
            for k, para in enumerate(q.get("paraphrases") or []):
                rows.append(
                    {
                        "id": f"{q['id']}#{k}",
                        "prompt": para,
                        "system": q.get("system"),
                        "group": str(q["id"]),
                        "category": q.get("type"),
                        "source": source,
                        "meta": _meta(q, {"id", "paraphrases", "system", "type"}),
                    }
                )
        return rows
    if fmt == "refusal_direction":
        return [
            {"prompt": r["instruction"], "category": r.get("category"), "source": source, "meta": "{}"} for r in obj
        ]
    if fmt == "chat_jsonl":
        rows = []
        for rec in obj:
            msgs = rec["messages"]
            first = {m["role"]: m["content"] for m in reversed(msgs)}  # first message of each role
            rows.append(
                {
                    "prompt": first.get("user"),
                    "system": first.get("system"),
                    "response": first.get("assistant"),
                    "source": source,
                    "meta": _meta(rec, {"messages"}),
                }
            )
        return rows
    # records keep their own values (dtype object): an id column of 1 and 2.5 must not become floats 1.0 and 2.5
    df = obj if isinstance(obj, pd.DataFrame) else pd.DataFrame(obj, dtype=object)
    if fmt == "advbench":  # every AdvBench goal is a harmful behavior
        fields = {"prompt": "goal", **fields} if "goal" in df.columns else {"prompt": "target", **fields}
        return [{"label": 1, **r} if "label" not in fields else r for r in _rows_table(df, fields, source)]
    if fmt == "beavertails":
        return _rows_beavertails(df, fields, source)
    if fmt == "harmbench":
        return _rows_harmbench(df, fields, source)
    return _rows_table(df, fields, source)


def _rows_beavertails(df: pd.DataFrame, fields: dict[str, str], source: str) -> list[dict[str, Any]]:
    """BeaverTails QA pairs: ``prompt``, ``response``, ``category`` ({14 harm categories: bool}) and ``is_safe``.

    ``label`` is 1 for an unsafe pair (``is_safe`` false) and 0 for a safe one; ``category`` lists the flagged
    harm categories (joined by :data:`CATEGORY_SEP`, null for a safe pair).
    """
    missing = {"prompt", "response", "category", "is_safe"} - set(df.columns)
    if missing:
        raise PromptSetError(
            f"BeaverTails rows need prompt, response, category, is_safe; missing {sorted(missing)} "
            "(fix: set format to table and map fields)"
        )
    mapping = {"prompt": "prompt", "response": "response", "category": "category", "label": "is_safe", **fields}
    rows = _rows_table(df, mapping, source)
    if mapping["label"] == "is_safe":
        for row in rows:
            row["label"] = 0 if _truthy(row["label"]) else 1
    return rows


def _truthy(v: Any) -> bool:
    return v.strip().lower() in ("true", "1", "yes") if isinstance(v, str) else bool(v)


def _rows_harmbench(df: pd.DataFrame, fields: dict[str, str], source: str) -> list[dict[str, Any]]:
    """HarmBench behaviors (CSV): ``Behavior``, ``FunctionalCategory``, ``SemanticCategory``, ``Tags``,
    ``ContextString`` (may hold newlines) and ``BehaviorID``. A contextual behavior's prompt is its context and
    the behavior in HarmBench's layout (:data:`HARMBENCH_CONTEXT`); every behavior is harmful (``label`` 1)."""
    missing = {"Behavior", "BehaviorID"} - set(df.columns)
    if missing:
        raise PromptSetError(f"HarmBench rows need Behavior and BehaviorID; missing {sorted(missing)}")
    df = df.copy()
    ctx = df["ContextString"].fillna("").astype(str) if "ContextString" in df.columns else pd.Series("", index=df.index)
    df["_prompt"] = [
        HARMBENCH_CONTEXT.format(context=c.strip(), behavior=b) if c.strip() else b
        for c, b in zip(ctx, df["Behavior"].astype(str))
    ]
    mapping = {
        "prompt": "_prompt",
        "id": "BehaviorID",
        **({"category": "SemanticCategory"} if "SemanticCategory" in df.columns else {}),
        **fields,
    }
    return [{"label": 1, **r} for r in _rows_table(df, mapping, source)]


# ------------------------------------------------------------------------------------------ public


def load_prompt_set(
    spec: PromptSetSpec, *, seed: int, key: str = "prompt_set", base_dir: str | Path = ".", shards: int | None = None
) -> pd.DataFrame:
    """Load one prompt set spec (see the config schema) into the normalised table.

    ``shards`` (as resolved by the workflow from ``shards``/``shard_size``) sets the ``shard`` column.
    """
    source = spec.source
    fields = dict(spec.fields or {})
    if source == "builtin":
        rows = _builtin_rows(spec, key)
    elif source == "local":
        if not spec.path:
            raise PromptSetError(f"{key}.path: a local prompt set needs a path (fix: set {key}.path)")
        path = Path(base_dir) / Path(spec.path).expanduser()
        if not path.exists():
            raise PromptSetError(
                f"{key}.path: '{spec.path}' does not exist{relative_to(spec.path, base_dir)} (fix: correct the path)"
            )
        try:
            obj = read_records(path)
        except PromptSetError as exc:
            raise PromptSetError(f"{key}.path: {exc}") from None
        fmt = spec.format
        fmt = detect_format(obj) if fmt == "auto" else fmt
        try:
            rows = _rows_from(obj, fmt, fields, source=f"local:{path.name}")
        except PromptSetError as exc:
            raise PromptSetError(f"{key}: {exc}") from None
        except (KeyError, TypeError, AttributeError) as exc:
            raise PromptSetError(
                f"{key}: '{path.name}' does not look like format '{fmt}' ({exc!r}) "
                f"(fix: set {key}.format to one of {FORMATS})"
            ) from None
    elif source == "hub":
        rows = _hub_rows(spec, fields, key)
    else:  # pragma: no cover - schema forbids it
        raise PromptSetError(f"{key}.source: unknown source {source!r}")

    df = normalise(rows, system=spec.system, prefill=spec.prefill, label=spec.label, key=key)
    counts = dict(df.attrs["prep"])
    if spec.prefix:  # after ids are set: a prefixed set pairs row by row with the plain one
        df["prompt"] = spec.prefix + df["prompt"]
    if spec.per_category:
        before = len(df)
        df = sample_per_category(df, int(spec.per_category), spec.seed if spec.seed is not None else seed)
        counts["not_sampled_per_category"] = before - len(df)
    if spec.sample:
        n = int(spec.sample)
        counts["not_sampled"] = max(0, len(df) - n)
        warn_small_sample(key, n, len(df))
        if n < len(df):
            rng = np.random.default_rng(spec.seed if spec.seed is not None else seed)
            keep = np.sort(rng.choice(len(df), size=n, replace=False))
            df = df.iloc[keep].reset_index(drop=True)
    counts["rows"] = int(len(df))
    df.attrs["prep"] = counts
    if df.empty:
        raise PromptSetError(f"{key}: the prompt set is empty (fix: check the file, split, fields or sample)")
    df["shard"] = assign_shards(len(df), int(shards if shards is not None else spec.shards or 1))
    return df


def relative_to(path: str | Path, base_dir: str | Path) -> str:
    """`` (relative to <folder>)`` for a relative ``path``: where a missing file was looked for."""
    return "" if Path(path).expanduser().is_absolute() else f" (relative to {Path(base_dir).resolve()})"


def warn_small_sample(key: str, sample: int, rows: int) -> None:
    """``sample`` asks for more rows than the set has: all of them are used, and the researcher is told."""
    if sample > rows:
        log.warning(
            "%s.sample: %d rows asked for and the set has %d, so all %d are used (fix: sample at most %d, or "
            "remove sample)",
            key,
            sample,
            rows,
            rows,
            rows,
        )


def split_categories(value: Any) -> list[str]:
    """The categories of one row's ``category`` value (joined by :data:`CATEGORY_SEP`); none for a null."""
    return [c for c in value.split(CATEGORY_SEP) if c] if isinstance(value, str) else []


def sample_per_category(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """At most about ``n`` rows per (label, category) stratum, drawn at random with ``seed``; original order kept.

    A row flagged with several categories (``"a|b"``, :data:`CATEGORY_SEP`) counts towards each; rows are visited in a seeded random
    order and kept while any of their strata is short of ``n``. Rows without a category form one stratum per label.
    """
    rng = np.random.default_rng(seed)
    counts: dict[tuple[int | None, str | None], int] = {}
    keep = []
    for i in rng.permutation(len(df)):
        cat, label = df["category"].iloc[i], df["label"].iloc[i]
        label = None if pd.isna(label) else int(label)
        strata: list[tuple[int | None, str | None]] = [(label, c) for c in split_categories(cat)] or [(label, None)]
        if any(counts.get(s, 0) < n for s in strata):
            keep.append(i)
            for s in strata:
                counts[s] = counts.get(s, 0) + 1
    return df.iloc[sorted(keep)].reset_index(drop=True)


def builtin_splits(name: str) -> list[str]:
    """Split names of a builtin set: its top-level keys that hold a list of prompts."""
    data = yaml.safe_load((DATA_DIR / "prompts" / f"{name}.yaml").read_text())
    return [k for k, v in data.items() if isinstance(v, list)]


def _builtin_rows(spec: PromptSetSpec, key: str) -> list[dict[str, Any]]:
    name = spec.name
    if not name:
        raise PromptSetError(f"{key}.name: a builtin prompt set needs a name (fix: use one of {builtin_names()})")
    path = DATA_DIR / "prompts" / f"{name}.yaml"
    if not path.exists():
        raise PromptSetError(f"{key}.name: unknown builtin set {name!r} (fix: use one of {builtin_names()})")
    data = yaml.safe_load(path.read_text())
    available = builtin_splits(name)
    split = spec.split or "all"
    if split != "all" and split not in available:
        raise PromptSetError(
            f"{key}.split: {split!r} is not a split of builtin set {name!r} (fix: use one of {available + ['all']})"
        )
    rows = []
    for sp in available if split == "all" else [split]:
        for i, item in enumerate(data[sp]):
            if isinstance(item, dict) and "paraphrases" in item:  # emergent-misalignment question format
                rows += [
                    {**r, "label": data.get("label"), "category": name, "source": f"builtin:{name}/{sp}"}
                    for r in _rows_from([item], "em_questions", {}, "")
                ]
                continue
            entry = item if isinstance(item, dict) else {"prompt": item}  # a prompt, or {prompt, response}
            rows.append(
                {
                    "id": f"{name}-{sp}-{i:03d}",
                    "prompt": entry["prompt"],
                    "response": entry.get("response"),
                    "label": data.get("label"),
                    "category": name,
                    "source": f"builtin:{name}/{sp}",
                    "meta": "{}",
                }
            )
    return rows


def replay_table(prompts: pd.DataFrame, responses: pd.DataFrame) -> pd.DataFrame:
    """The prompt table with each row's ``response`` set to a variant's captured response (matched by id),
    so that other variants are scored on exactly the same text. Rows without a response are dropped."""
    got = responses.drop_duplicates("id").set_index("id")["response"]
    out = prompts.copy()
    out["response"] = out["id"].map(got)
    out = out[out["response"].notna() & (out["response"].astype(str) != "")].reset_index(drop=True)
    if out.empty:
        raise PromptSetError("the replayed variant produced no responses (fix: enable capture.generate)")
    out.attrs["prep"] = {
        "rows_read": int(len(prompts)),
        "dropped_no_response": int(len(prompts) - len(out)),
        "rows": int(len(out)),
    }
    return out


def _hub_rows(spec: PromptSetSpec, fields: dict[str, str], key: str) -> list[dict[str, Any]]:
    from datasets import load_dataset

    dataset = spec.dataset
    if not dataset:
        raise PromptSetError(f"{key}.dataset: missing hub dataset id (fix: add dataset: owner/name)")
    try:
        ds = load_dataset(dataset, spec.subset, split=spec.split or "train")
    except Exception as exc:  # noqa: BLE001
        first = first_line(exc)
        raise PromptSetError(
            f"{key}: cannot load hub dataset '{dataset}' ({first}) "
            f"(fix: check the id/split, or download it and use source: local)"
        ) from None
    df = ds.to_pandas()
    fmt = spec.format
    fmt = detect_format(df) if fmt == "auto" else fmt
    obj: Any = df if fmt in ("table", "advbench") else df.to_dict(orient="records")
    return _rows_from(obj, fmt, fields, source=f"hub:{dataset}")


LABELS = {0: 0, 1: 1, "0": 0, "1": 1, "false": 0, "true": 1, "False": 0, "True": 1}  # bools are taken as 0/1
"""Accepted label values: 1 = the positive class (harmful, unsafe, trait present), 0 = the negative one."""


def _label(value: Any, key: str) -> int | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer, str)) and value in LABELS:
        return LABELS[value]
    raise PromptSetError(
        f"{key}: label {value!r} is not 0 or 1 (fix: map labels to 0/1, e.g. with fields.label "
        "pointing to a 0/1 column, or set a constant label:)"
    )


def normalise(
    rows: list[dict[str, Any]],
    system: str | None = None,
    prefill: str | None = None,
    label: int | None = None,
    key: str = "prompt set",
) -> pd.DataFrame:
    """The normalised table; what was dropped is counted in ``df.attrs["prep"]`` and warned about by name.

    Rows without a prompt and exact repeats (same id and content) are dropped and counted; an id that appears
    with different content, or a label other than 0/1, stops with a one-line error: dropping either would
    change a result."""
    rows = [{**r, "id": id_text(r["id"])} if "id" in r else r for r in rows]
    df = pd.DataFrame(rows, dtype=object)
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = None
    df = df[COLUMNS].copy()
    counts = {"rows_read": int(len(df))}
    empty = df["prompt"].isna() | (df["prompt"].astype(str).str.strip() == "")
    df = df[~empty]
    counts["dropped_empty_prompt"] = int(empty.sum())
    if system is not None:
        df["system"] = df["system"].where(df["system"].notna(), system)
    if prefill is not None:
        df["prefill"] = df["prefill"].where(df["prefill"].notna(), prefill)
    if label is not None:
        df["label"] = label
    for col in ("prompt", "system", "prefill", "response", "category", "group", "source", "meta"):
        df[col] = df[col].map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
    missing_id = df["id"].isna()
    df.loc[missing_id, "id"] = [
        stable_id(r.system, r.prompt, r.prefill, r.response) for r in df[missing_id].itertuples()
    ]
    df["id"] = df["id"].astype(str)
    df["group"] = df["group"].where(df["group"].notna(), df["id"])
    df["label"] = pd.array([_label(v, key) for v in df["label"]], dtype="Int64")
    content = ["prompt", "system", "prefill", "response", "label"]
    exact = df.duplicated(["id", *content], keep="first")
    df = df[~exact]
    clash = df["id"].duplicated(keep=False)
    if clash.any():
        first = df.loc[clash, "id"].iloc[0]
        raise PromptSetError(
            f"{key}: {int(df.loc[clash, 'id'].nunique())} ids appear with different content, e.g. "
            f"{first!r} (fix: give each row its own id, or drop the id field to derive ids from content)"
        )
    counts["dropped_duplicate"] = int(exact.sum())
    repeated = df.duplicated(["prompt", "system", "prefill", "response"], keep="first")
    counts["repeated_prompt_kept"] = int(repeated.sum())
    for what, n in (
        ("rows without a prompt", counts["dropped_empty_prompt"]),
        ("exact duplicate rows", counts["dropped_duplicate"]),
    ):
        if n:
            log.warning("%s: dropped %d %s (of %d read)", key, n, what, counts["rows_read"])
    if counts["repeated_prompt_kept"]:
        log.warning(
            "%s: %d rows repeat another row's prompt (and response) under another id (kept)",
            key,
            counts["repeated_prompt_kept"],
        )
    df = df.reset_index(drop=True)
    df["shard"] = 0
    df.attrs["prep"] = counts
    return df


def id_text(value: Any) -> str | None:
    """An id as it is written in its file: ``1`` stays ``"1"``, ``2.5`` stays ``"2.5"`` (not ``"1.0"``: a column of
    mixed numbers is never cast); missing values stay missing (the id is then derived from the content)."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"  # JSON's spelling
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)


def assign_shards(n: int, shards: int) -> np.ndarray:
    """Contiguous, balanced shards: row i goes to shard floor(i * shards / n)."""
    return (np.arange(n) * shards // max(n, 1)).astype(np.int64)


def _jsonl_lines(path: Path) -> Iterator[str]:
    """Non-empty lines of a jsonl file, plain or gzipped, streamed."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            yield from (line for line in f if line.strip())
    except (OSError, EOFError, zlib.error, UnicodeDecodeError):
        _open_text(path)  # raises the one-line error that names the problem
        raise


def count_rows(path: Path) -> int:
    """Fast row count of a large local file (no normalisation): parquet metadata, lines, or a parse."""
    suffix = _inner_suffix(path)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return int(pq.ParquetFile(path).metadata.num_rows)
        except Exception:  # noqa: BLE001 - pyarrow raises several types for a bad file
            read_records(path)  # raises the one-line error
            raise
    if suffix == ".jsonl":
        return sum(1 for _ in _jsonl_lines(path))
    obj = read_records(path)
    return len(obj) if not isinstance(obj, dict) else len(obj.get("questions", []))


def peek_records(path: Path, n: int = 100) -> Any:
    """The first ``n`` records of a large table file (parquet, jsonl, csv/tsv), or the whole file otherwise."""
    suffix = _inner_suffix(path)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return next(pq.ParquetFile(path).iter_batches(batch_size=n)).to_pandas()
    if suffix == ".jsonl":
        return [json.loads(line) for line in itertools.islice(_jsonl_lines(path), n)]
    if suffix in (".csv", ".tsv"):
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False, nrows=n)
    return read_records(path)


FULL_LOAD_ROWS = 20_000
"""Local files up to this many records are loaded whole at start-up (counted, checked, compared for overlap)."""
_STARTUP: dict[tuple[Any, ...], pd.DataFrame | None] = {}
_ROWS: dict[tuple[str, int, int], int] = {}


def _row_count(path: Path) -> int:
    """:func:`count_rows`, once per file version and process (start-up asks for it from several checks)."""
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _ROWS:
        _ROWS[key] = count_rows(path)
    return _ROWS[key]


def startup_table(
    key: str, spec: PromptSetSpec, base_dir: Path, seed: int, limit: int = FULL_LOAD_ROWS
) -> pd.DataFrame | None:
    """The whole table of a set that start-up can afford to load (builtin, or a local file of at most ``limit``
    records), loaded once per process, sampled with ``seed`` (the study's) as prep samples it; None for hub sets,
    replays and larger files."""
    path = Path(base_dir) / Path(spec.path).expanduser() if spec.source == "local" and spec.path else None
    stat = path.stat() if path is not None and path.exists() else None
    cache_key = (key, repr(spec), str(base_dir), stat and (stat.st_mtime_ns, stat.st_size), limit, seed)
    if cache_key not in _STARTUP:
        table = None
        if spec.source == "builtin":
            table = load_prompt_set(spec, key=f"prompt_sets.{key}", seed=seed)
        elif path is not None and stat is not None:
            if stat.st_size and _row_count(path) <= limit:
                table = load_prompt_set(spec, key=f"prompt_sets.{key}", base_dir=base_dir, seed=seed)
        _STARTUP[cache_key] = table
    return _STARTUP[cache_key]


def check_spec(
    key: str, spec: PromptSetSpec, base_dir: Path, seed: int, full_load_rows: int = FULL_LOAD_ROWS
) -> int | None:
    """Start-up check of one prompt set; returns its row count (after ``sample``) where it can be known.

    It runs at every Snakefile parse, so it stays cheap: files are counted first (parquet metadata, lines);
    builtin sets and files up to ``full_load_rows`` records are loaded whole, larger ones have their format
    and field mapping checked on the first records. Hub sets are known only through ``sample``.
    """
    k = f"prompt_sets.{key}"
    sample = spec.sample
    if spec.source == "replay":  # sized like the set it replays, checked in config.check_replay
        return None
    try:
        if spec.source == "builtin":
            return len(startup_table(key, spec, base_dir, seed))  # type: ignore[arg-type]
        if spec.source == "local":
            if not spec.path:
                raise PromptSetError(f"{k}.path: missing (fix: add path: to the file)")
            path = Path(base_dir) / Path(spec.path).expanduser()
            if not path.exists():
                raise PromptSetError(
                    f"{k}.path: '{spec.path}' does not exist{relative_to(spec.path, base_dir)} (fix: correct the path)"
                )
            if path.stat().st_size == 0:
                raise PromptSetError(f"{k}: '{spec.path}' is empty (fix: point it to a non-empty file)")
            try:
                n = _row_count(path)
            except PromptSetError as exc:
                raise PromptSetError(f"{k}.path: {exc}") from None
            if n <= full_load_rows:  # small: load whole (also reports an empty set)
                return len(startup_table(key, spec, base_dir, seed, full_load_rows))  # type: ignore[arg-type]
            fmt = spec.format
            head = peek_records(path)
            try:
                _rows_from(head, detect_format(head) if fmt == "auto" else fmt, dict(spec.fields or {}), "check")
            except PromptSetError as exc:
                raise PromptSetError(f"{k}: {exc}") from None
            if sample:
                warn_small_sample(k, int(sample), n)
            return min(n, int(sample)) if sample else n
        if not spec.dataset:
            raise PromptSetError(f"{k}.dataset: missing hub dataset id (fix: add dataset: owner/name)")
        return int(sample) if sample else None
    except PromptSetError as exc:
        raise ConfigError(f"config error at {exc}") from None
