"""Where an SAE comes from (``sae.source``), without loading torch: what the workflow waits for, and the folder a
comparison job loads.

``train``                          a top-k SAE trained on the study's corpus (the ``sae_train`` rule)
a local folder                     SAELens (``cfg.json`` + ``sae_weights.safetensors``) or Gemma Scope (``params.npz``);
                                   a ``.npz`` file itself
``hub:<owner>/<repo>[/<path>]``    that path of a hub repository, downloaded with huggingface_hub
``saelens:<release>/<sae_id>``     an SAE of SAELens's pretrained registry (``pip install sae-lens``): the release's
                                   repository and the SAE's path there, downloaded as ``hub:`` is

``{layer}`` in the source is filled in with each layer.
"""

from __future__ import annotations

import importlib
import posixpath
from pathlib import Path
from typing import Any

from ...core.errors import TraitscopeError

CONFIG, WEIGHTS, GEMMA_SCOPE = "cfg.json", "sae_weights.safetensors", "params.npz"
REMOTE = ("hub:", "saelens:")
READABLE = (None, "gemma_2", "gemma_3")
"""The ``conversion_func`` values of SAELens's registry whose files this loader reads (SAELens's own layout, and
Gemma Scope's params.npz)."""


class SAEError(TraitscopeError):
    pass


def is_remote(source: str) -> bool:
    return source.startswith(REMOTE)


def local_files(folder: str) -> list[str]:
    """The files of a local SAE the workflow waits for: a ``.npz`` file, a Gemma Scope folder's ``params.npz``, or a
    SAELens folder's two files."""
    if folder.endswith(".npz"):
        return [folder]
    npz = posixpath.join(folder, GEMMA_SCOPE)
    if Path(npz).is_file() and not Path(folder, WEIGHTS).is_file():
        return [npz]
    return [posixpath.join(folder, CONFIG), posixpath.join(folder, WEIGHTS)]


def _registry() -> dict[str, Any]:
    for module in (
        "sae_lens",
        "sae_lens.loading.pretrained_saes_directory",
        "sae_lens.toolkit.pretrained_saes_directory",
    ):
        try:
            found = getattr(importlib.import_module(module), "get_pretrained_saes_directory", None)
        except ImportError:
            continue
        if found is not None:
            return dict(found())
    raise SAEError(
        "sae.source saelens:... needs SAELens's registry of releases (fix: pip install sae-lens, or give "
        "hub:<repo>/<path> of the SAE directly)"
    )


def saelens_hub(spec: str) -> str:
    """``saelens:<release>/<sae_id>`` as ``hub:<repo_id>/<path>`` through SAELens's own registry; a release or SAE id
    it does not list, or a release stored in a format this loader does not read, is a one-line error."""
    release, _, sae_id = spec[len("saelens:") :].partition("/")
    registry = _registry()
    if release not in registry:
        close = sorted(r for r in registry if release.split("-")[0] in r)[:6]
        raise SAEError(
            f"sae.source {spec}: SAELens has no release {release!r} (fix: use one of {close or sorted(registry)[:6]})"
        )
    entry = registry[release]
    saes = dict(getattr(entry, "saes_map", {}) or {})
    if sae_id not in saes:
        raise SAEError(
            f"sae.source {spec}: release {release} has no SAE {sae_id!r} (fix: use one of {sorted(saes)[:6]})"
        )
    conversion = getattr(entry, "conversion_func", None)
    if conversion not in READABLE:
        raise SAEError(
            f"sae.source {spec}: release {release} is stored in the {conversion!r} format, which traitscope does "
            "not read (fix: convert it with SAELens and save it as a SAELens folder: SAE.save_model(folder))"
        )
    return f"hub:{entry.repo_id}/{saes[sae_id]}".rstrip("/")


def resolve_source(source: str, layer: int) -> Path:
    """The folder (or file) of the SAE for ``layer``: ``source`` with ``{layer}`` filled in; ``saelens:`` resolved
    through SAELens's registry, and ``hub:`` downloaded (only that path) with huggingface_hub."""
    spec = source.format(layer=layer)
    if spec.startswith("saelens:"):
        spec = saelens_hub(spec)
    if spec.startswith("hub:"):
        parts = spec[4:].split("/")
        repo, sub = "/".join(parts[:2]), "/".join(parts[2:])
        from huggingface_hub import snapshot_download

        try:
            root = snapshot_download(repo, allow_patterns=[f"{sub}/*"] if sub else None)
        except Exception as exc:  # noqa: BLE001 - any hub failure becomes one line with the fix
            raise SAEError(
                f"sae.source {spec}: download failed ({type(exc).__name__}: {exc}) (fix: check the repo "
                "and path, or download it and give the local folder)"
            ) from exc
        return Path(root) / sub
    return Path(spec)
