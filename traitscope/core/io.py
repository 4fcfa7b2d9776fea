"""Storage: atomic writes, content hashes, safetensors and parquet helpers.

Every writer goes through :func:`atomic_path`: data are written to a temporary file in the
destination folder and renamed into place, so a killed job never leaves a half-written file
under its final name.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import math
import os
import socket
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .errors import TraitscopeError, first_line
from .secrets import holds_secret, scrub, secret_values


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds. The file gets the
    mode a plain ``open`` would give it (0666 less the umask), not ``mkstemp``'s 0600."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(dest)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.{_WRITER}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


_WRITER = f"{socket.gethostname().replace('.', '_')}-{os.getpid()}"
"""Who writes a temporary file (host and process), in its name: ``.<name>.<host>-<pid>.<random>.tmp``."""


def temporary_writer(name: str) -> tuple[str, int] | None:
    """The (host, pid) that made a temporary named ``name`` (``.<name>.<host>-<pid>.<random>.tmp``, what
    :func:`atomic_path` and :func:`temporary_folder` make), or None for any other name."""
    if not (name.startswith(".") and name.endswith(".tmp")):
        return None
    parts = name[:-4].rsplit(".", 2)
    if len(parts) != 3 or len(parts[0]) < 2:
        return None
    host, _, pid = parts[1].rpartition("-")
    return (host, int(pid)) if host and pid.isdigit() else None


def temporary_folder(near: str | os.PathLike[str], name: str) -> tempfile.TemporaryDirectory[str]:
    """A work folder beside ``near`` (``.<name>.<host>-<pid>.<random>.tmp``), removed when its block ends; one a
    killed job left is recognised by start-up (:func:`temporary_writer`) and removed once its writer is gone."""
    return tempfile.TemporaryDirectory(dir=Path(near).parent, prefix=f".{name}.{_WRITER}.", suffix=".tmp")


def temporaries_of(dest: Path) -> list[Path]:
    """The temporary files :func:`atomic_path` makes for ``dest`` (``.<name>.<host>-<pid>.<random>.tmp`` beside it)."""
    return [p for p in dest.parent.glob(f".{glob.escape(dest.name)}.*.tmp") if p.is_file()]


def remove_stale_temporaries(dest: Path) -> int:
    """Remove what a killed writer of ``dest`` left: its temporary files written on this host by a process that no
    longer runs. A temporary of this process (another thread) or of a live process, or one written on another host
    (a cluster node), is left alone; start-up (:func:`traitscope.workflow.guard.tidy`), which runs while no job does,
    removes those."""
    host = socket.gethostname().replace(".", "_")
    removed = 0
    for p in temporaries_of(dest):
        writer = p.name[len(dest.name) + 2 :].split(".")[0]
        name, _, pid = writer.rpartition("-")
        if name != host or not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        p.unlink(missing_ok=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Text (and JSON, Markdown), with any secret value from the environment scrubbed."""
    with atomic_path(path) as tmp:
        tmp.write_text(scrub(text))


def write_html_table(path: str | os.PathLike[str], df: pd.DataFrame, title: str, note: str = "") -> None:
    """A table as a small self-contained HTML page (pandas' ``to_html``, text escaped; floats to 4 significant
    digits), for the report, where a parquet file only downloads; the parquet beside it stays the data."""
    import html

    body = df.to_html(index=False, float_format=lambda x: f"{x:.4g}", na_rep="", border=0, classes="t")
    style = (
        "body{font:13px system-ui,sans-serif;margin:12px}table.t{border-collapse:collapse}"
        "table.t th,table.t td{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}"
        "table.t th{position:sticky;top:0;background:#f6f8fa}"
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body><h3>{html.escape(title)}</h3>"
        f"<p>{html.escape(note)} ({len(df)} rows)</p>{body}</body></html>\n"
    )
    write_text(path, page)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Strict JSON (readable by jq and browsers): NaN and infinities, e.g. an undefined statistic, become null."""
    write_text(path, json.dumps(_finite(obj), indent=2, sort_keys=False, default=_json_default, allow_nan=False) + "\n")


def _finite(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if hasattr(obj, "tolist") and hasattr(obj, "ndim"):  # numpy scalars and arrays, torch tensors
        return _finite(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def read_json(path: str | os.PathLike[str]) -> Any:
    return json.loads(Path(path).read_text())


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _scrubbed(df: pd.DataFrame, secrets: dict[str, str]) -> pd.DataFrame:
    """``df`` with the ``secrets`` (values of secret environment variables) scrubbed from its text columns."""
    if not secrets:
        return df
    df = df.copy()
    for col in df.select_dtypes(include=["object", "string"]).columns:
        df[col] = df[col].map(lambda v: scrub(v) if isinstance(v, str) else v)
    return df


def write_parquet(path: str | os.PathLike[str], df: pd.DataFrame, *, scrub_secrets: bool = True) -> None:
    """A table, with any secret value from the environment scrubbed from its text columns.

    ``scrub_secrets=False`` is for the model's own inputs (prompt tables, finetuning data): they are a copy of the
    researcher's files and must stay exactly what the model is given (:func:`write_model_inputs` warns about the rows
    holding a secret's value); every output derived from them is scrubbed."""
    if scrub_secrets:
        df = _scrubbed(df, secret_values())
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_model_inputs(path: str | os.PathLike[str], df: pd.DataFrame, key: str) -> int:
    """A table the model reads (a prompt set, a trait's contrastive rows), written verbatim: scrubbing it would
    change what the model sees. Rows holding the value of a secret environment variable are counted and warned
    about; every output made from them (responses, scores, JSON, logs) is scrubbed. Returns that count."""
    import logging

    secrets = secret_values()
    text = df.select_dtypes(include=["object", "string"])
    hit = (
        text.apply(lambda col: col.map(lambda v: holds_secret(v, secrets))).any(axis=1)
        if secrets and len(text.columns)
        else pd.Series(False, index=df.index)
    )
    n = int(hit.sum())
    if n:
        names = sorted(
            {secrets[x] for v in text[hit].to_numpy().ravel() if isinstance(v, str) for x in secrets if x in v}
        )
        logging.getLogger("traitscope.core.secrets").warning(
            "%s: %d rows hold the value of %s; the model sees them verbatim, and every output written from them "
            "redacts it (the responses tables flag those rows in column scrubbed)",
            key,
            n,
            ", ".join(f"${x}" for x in names),
        )
    write_parquet(path, df, scrub_secrets=False)
    return n


class ParquetParts:
    """One parquet table written part by part (row groups), so that a table larger than memory never sits in memory
    whole: ``with ParquetParts(path) as out: out.write(df)``. Every part is cast to the first non-empty part's
    schema; secret values are scrubbed like :func:`write_parquet`. Atomic: the file appears when the block ends
    without an error. ``rows`` counts what was written."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path
        self.rows = 0
        self._writer: Any = None
        self._empty: pd.DataFrame | None = None
        self._secrets = secret_values()

    def __enter__(self) -> ParquetParts:
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        return self

    def write(self, df: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not len(df):
            self._empty = df if self._empty is None else self._empty
            return
        df = _scrubbed(df, self._secrets)
        if self._writer is None:
            table = pa.Table.from_pandas(df, preserve_index=False)
            self._writer = pq.ParquetWriter(self._tmp, table.schema)
        else:
            table = pa.Table.from_pandas(df, schema=self._writer.schema, preserve_index=False)
        self._writer.write_table(table)
        self.rows += len(df)

    def __exit__(self, *exc: Any) -> Any:
        if self._writer is not None:
            self._writer.close()
        elif exc[0] is None:
            (self._empty if self._empty is not None else pd.DataFrame()).to_parquet(self._tmp, index=False)
        return self._atomic.__exit__(*exc)


def write_parquet_parts(path: str | os.PathLike[str], parts: Iterable[pd.DataFrame]) -> int:
    """:class:`ParquetParts` over an iterable of parts; returns the row count."""
    with ParquetParts(path) as out:
        for df in parts:
            out.write(df)
    return out.rows


def parquet_attrs(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``DataFrame.attrs`` stored with a parquet table, read from its schema alone (no rows)."""
    import pyarrow.parquet as pq

    raw = (pq.read_schema(path).metadata or {}).get(b"PANDAS_ATTRS")
    return json.loads(raw) if raw else {}


def read_parquets(paths: Iterable[str | os.PathLike[str]]) -> pd.DataFrame:
    """Several parquet tables of one schema (e.g. the shards of a prompt set) as one table."""
    return pd.concat([pd.read_parquet(f) for f in paths], ignore_index=True)


META_KEY = "traitscope"
"""The one safetensors header entry holding a traitscope file's metadata as sorted JSON."""


def write_safetensors(
    path: str | os.PathLike[str],
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Write tensors with the metadata as one JSON header entry (``traitscope``, keys sorted).

    One entry, because safetensors writes a multi-key header in hash order, which differs from process to
    process: with one key the same tensors and metadata give the same bytes every run."""
    meta = {META_KEY: json.dumps(dict(metadata), sort_keys=True, default=_json_default)} if metadata else None
    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(contiguous, str(tmp), metadata=meta)


CHECKSUM_KEY = "sha256"
"""Metadata entry of a verified cache file: the digest of its tensors (and of any companion file)."""


def tensor_digest(tensors: Mapping[str, torch.Tensor], *extra: str) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes (sorted by name), plus ``extra`` strings."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    for text in extra:
        h.update(text.encode())
    return h.hexdigest()


def write_verified(
    path: str | os.PathLike[str],
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, Any] | None = None,
    *companions: str | os.PathLike[str],
) -> None:
    """A cache entry: tensors with a checksum of their content and of ``companions`` (files written before it)."""
    digest = tensor_digest(tensors, *(file_sha256(c) for c in companions))
    write_safetensors(path, tensors, {**(metadata or {}), CHECKSUM_KEY: digest})


def read_verified(
    path: str | os.PathLike[str], *companions: str | os.PathLike[str]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """A cache entry written by :func:`write_verified` if it is complete and unchanged; otherwise None, after a
    warning that names the file, and the bad entry is removed so that it is computed again."""
    import logging

    try:
        tensors, meta = read_safetensors(path)
        ok = all(Path(c).exists() for c in companions) and meta.get(CHECKSUM_KEY) == tensor_digest(
            tensors, *(file_sha256(c) for c in companions)
        )
    except Exception as exc:  # noqa: BLE001 - a truncated or garbled file is recomputed, whatever the error
        ok, reason = False, f"unreadable ({type(exc).__name__})"
    else:
        reason = "checksum mismatch (changed or incomplete)"
    if ok:
        return tensors, meta
    logging.getLogger("traitscope.cache").warning("cache entry %s: %s; computing it again", path, reason)
    for p in (path, *companions):
        Path(p).unlink(missing_ok=True)
    return None


class CorruptFileError(TraitscopeError):
    """A file the study reads is truncated, garbled or not of its format; the message names it and the fix."""


REBUILD_FIX = "delete it and run again: the workflow rebuilds what it wrote, or restore your own copy"


def read_safetensors(
    path: str | os.PathLike[str], keys: list[str] | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read tensors (all, or ``keys``) and the decoded metadata header; a file that is not readable safetensors is a
    one-line :class:`CorruptFileError` naming it."""
    out: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
            present = set(f.keys())
            missing = [k for k in keys or [] if k not in present]
            if missing:
                raise CorruptFileError(
                    f"'{path}' has no tensor {missing[0]!r} ({len(present)} tensors stored) "
                    "(fix: re-run the job that writes it with the settings that need it)"
                )
            for k in keys if keys is not None else list(f.keys()):
                out[k] = f.get_tensor(k)
    except CorruptFileError:
        raise
    except FileNotFoundError:
        raise CorruptFileError(f"'{path}' does not exist (fix: run the job that writes it)") from None
    except Exception as exc:  # noqa: BLE001 - safetensors and the OS raise several types for a bad file
        raise CorruptFileError(
            f"'{path}' is not a readable safetensors file ({first_line(exc)[:160]}) (fix: {REBUILD_FIX})"
        ) from None
    if set(raw) == {META_KEY}:
        return out, json.loads(raw[META_KEY])
    return out, {k: _maybe_json(v) for k, v in raw.items()}  # files written by other tools (one string per key)


def safetensors_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON header of a safetensors file (names, dtypes, shapes, offsets), without reading any tensor; a
    ``ValueError`` saying why when it is not one."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError("shorter than its header")
        n = int.from_bytes(head, "little")
        if n <= 0 or 8 + n > size:
            raise ValueError("header length past the end of the file (truncated)")
        if n > 100_000_000:
            raise ValueError("no safetensors header (its declared length is over 100 MB)")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError("header is not JSON") from None
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    return header


def data_start(path: str | os.PathLike[str]) -> int:
    """Where a safetensors file's data section starts (after the 8-byte length and the header)."""
    with open(path, "rb") as f:
        return 8 + int.from_bytes(f.read(8), "little")


def check_safetensors(path: Path) -> str | None:
    """Why ``path`` is not a complete safetensors file (header, and data of exactly the size it declares), or None."""
    try:
        header = safetensors_header(path)
    except ValueError as exc:
        return str(exc)
    size, start = path.stat().st_size, data_start(path)
    ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    if start + max(ends, default=0) != size:
        return f"{size} bytes where the header declares {start + max(ends, default=0)} (truncated or extended)"
    return None


def check_parquet(path: Path) -> str | None:
    """Why ``path`` is not a complete parquet file (magic bytes and readable footer metadata), or None."""
    import pyarrow.parquet as pq

    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(max(0, path.stat().st_size - 4))
        tail = f.read(4)
    if head != b"PAR1" or tail != b"PAR1":
        return "no parquet magic bytes at both ends (truncated or not parquet)"
    try:
        pq.read_metadata(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        return f"footer unreadable ({first_line(exc)[:120]})"
    return None


def check_json(path: Path) -> str | None:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return f"not JSON ({first_line(exc)[:120]})"
    return None


CHECKERS = {".safetensors": check_safetensors, ".parquet": check_parquet, ".json": check_json}
"""Structural checks by suffix: the files the workflow writes and reads back."""


def file_problem(path: str | os.PathLike[str]) -> str | None:
    """Why a file the workflow wrote cannot be read back (truncated, garbled, empty), or None when it is sound or
    of a kind without a check. Cheap: headers and footers, not the data."""
    p = Path(path)
    check = CHECKERS.get(p.suffix)
    if check is None or not p.is_file():
        return None
    if p.stat().st_size == 0:
        return "empty (0 bytes)"
    try:
        return check(p)
    except OSError as exc:
        return f"unreadable ({first_line(exc)[:120]})"


def verify_inputs(paths: Iterable[str | os.PathLike[str]]) -> None:
    """A one-line :class:`CorruptFileError` for the first input that cannot be read back, naming it and the fix."""
    for path in paths:
        problem = file_problem(path)
        if problem:
            raise CorruptFileError(f"input '{path}' is {problem} (fix: {REBUILD_FIX})")


def safetensors_keys(path: str | os.PathLike[str]) -> list[str]:
    with safe_open(str(path), framework="pt") as f:
        return list(f.keys())


def _maybe_json(value: str) -> Any:
    try:
        return json.loads(value)
    except (json.JSONDecodeError, TypeError):
        return value


def content_hash(*parts: Any, length: int = 16) -> str:
    """Stable hash of JSON-serialisable parts (key order normalised)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=_json_default).encode())
        h.update(b"\x00")
    return h.hexdigest()[:length]


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


YAML_MAX_BYTES = 64 << 20
"""A YAML file larger than this is refused: prompt sets that large belong in jsonl or parquet."""
YAML_MAX_NODES = 2_000_000
"""At most this many nodes once aliases are expanded: a file whose aliases nest ("billion laughs") is refused
instead of filling memory."""


class YAMLLimitError(ValueError):
    pass


def load_yaml(text: str, *, max_nodes: int = YAML_MAX_NODES) -> Any:
    """``yaml.safe_load`` with a bound on the document's size once aliases are expanded (counted on the node graph,
    before any Python object is built). Raises :class:`YAMLLimitError` past it, ``yaml.YAMLError`` when not YAML."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        expanded: dict[int, int] = {}

        def size(n: Any) -> int:
            key = id(n)
            if key not in expanded:
                expanded[key] = 1  # a recursive alias counts once
                children = (
                    n.value
                    if isinstance(n, yaml.SequenceNode)
                    else [x for pair in n.value for x in pair]
                    if isinstance(n, yaml.MappingNode)
                    else []
                )
                expanded[key] = 1 + sum(size(c) for c in children)
                if expanded[key] > max_nodes:
                    raise YAMLLimitError(f"more than {max_nodes:,} values once its aliases are expanded")
            return expanded[key]

        size(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


_ITEMSIZE = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "U16": 2,
    "U32": 4,
    "U64": 8,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}
COPY_BLOCK = 64 << 20


def concat_safetensors(
    parts: Sequence[str | os.PathLike[str]],
    path: str | os.PathLike[str],
    metadata: Mapping[str, Any] | None = None,
    *,
    rebase: tuple[str, ...] = ("response.offsets",),
    digest: bool = True,
) -> str | None:
    """Concatenate the tensors of safetensors files along their first axis into one file, streaming: bytes are
    copied from each part in blocks, so memory does not grow with the parts (what :func:`merge_chunks
    <traitscope.core.capture.merge_chunks>` does in memory). Every part holds the same tensor names; a name in ``rebase``
    is an ``[n + 1]`` int64 offsets array, re-based so it indexes the concatenated token arrays. The metadata is one
    sorted JSON entry (:data:`META_KEY`), as :func:`write_safetensors` writes it. Atomic. Returns the sha256 of the
    data section (what :func:`data_sha256` recomputes) when ``digest``."""
    import numpy as np

    headers = [safetensors_header(p) for p in parts]
    names = sorted(k for k in headers[0] if k != "__metadata__")
    for p, h in zip(parts, headers):
        if sorted(k for k in h if k != "__metadata__") != names:
            raise ValueError(f"'{p}' holds other tensors than '{parts[0]}'")
    entries: dict[str, Any] = {}
    offset = 0
    for name in names:
        dtype = headers[0][name]["dtype"]
        shapes = [h[name]["shape"] for h in headers]
        first = sum(s[0] for s in shapes) - (len(parts) - 1 if name in rebase else 0)
        nbytes = first * int(np.prod(shapes[0][1:], dtype=np.int64)) * _ITEMSIZE[dtype]
        entries[name] = {"dtype": dtype, "shape": [first, *shapes[0][1:]], "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {META_KEY: json.dumps(dict(metadata), sort_keys=True, default=_json_default)}
    header.update(entries)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data section starts 8-byte aligned, as safetensors writes it
    starts = [data_start(p) for p in parts]
    sha = hashlib.sha256() if digest else None
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        out.write(len(raw).to_bytes(8, "little"))
        out.write(raw)

        def emit(data: bytes) -> None:  # the data section, digested as it is written
            out.write(data)
            if sha is not None:
                sha.update(data)

        for name in names:
            base = 0
            for i, (p, hd, start) in enumerate(zip(parts, headers, starts, strict=True)):
                a, b = hd[name]["data_offsets"]
                with open(p, "rb") as f:
                    f.seek(start + a)
                    if name in rebase:
                        values = np.frombuffer(f.read(b - a), dtype=np.int64)
                        emit((values[1 if i else 0 :] + base).astype(np.int64).tobytes())
                        base += int(values[-1])
                        continue
                    left = b - a
                    while left:
                        block = f.read(min(COPY_BLOCK, left))
                        if not block:
                            raise ValueError(f"'{p}' ends before its tensor {name} does")
                        emit(block)
                        left -= len(block)
    return sha.hexdigest() if sha is not None else None


def data_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a safetensors file's data section (everything after its header), read in blocks."""
    h = hashlib.sha256()
    start = data_start(path)
    with open(path, "rb") as f:
        f.seek(start)
        while block := f.read(COPY_BLOCK):
            h.update(block)
    return h.hexdigest()
