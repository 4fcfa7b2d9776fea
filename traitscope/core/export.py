"""Trait vectors in the formats other steering tools read.

``control_vector_gguf``   a llama.cpp control vector (``--control-vector`` / ``--control-vector-scaled``), which
                          repeng's ``ControlVector.import_gguf`` reads too: GGUF architecture ``controlvector``, one
                          float32 tensor ``direction.<N>`` per layer, ``controlvector.model_hint`` and
                          ``controlvector.layer_count``. llama.cpp adds ``direction.<N>`` to the output of block ``N``
                          (0-based; it has no slot for ``N = 0``), which is traitscope's layer ``N``: a vector at
                          layer ``L`` is written as ``direction.<L>``, and layer 0 cannot be written.
``steering_vector_file``  steering-vectors' ``SteeringVector(layer_activations, layer_type="decoder_block")`` as
                          safetensors (tensors ``layer_activations.<L>``, ``layer_type`` in the metadata), since that
                          library only pickles its objects; :func:`read_steering_vector_file` reads it back.

What is written is the vector that is added: ``coefficient x norm x`` the unit vector, as :func:`steer` adds it
(``norm``: the coefficient's unit, e.g. the mean activation norm at the layer; 1 for a raw length).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import TraitscopeError
from .io import atomic_path, read_safetensors, write_safetensors
from .methods import unit


class ExportError(TraitscopeError, ValueError):
    pass


Norm = float | Mapping[int, float]
"""The coefficient's unit: one for every layer, or one per layer."""


def _added(directions: Mapping[int, torch.Tensor], coefficient: float, norm: Norm) -> dict[int, np.ndarray]:
    if not directions:
        raise ExportError("no layer to export (fix: give at least one layer's vector)")
    sizes = {int(v.numel()) for v in directions.values()}
    if len(sizes) != 1:
        raise ExportError(f"the vectors have different sizes {sorted(sizes)} (fix: export one model's vectors)")
    scale = {int(la): float(norm[la] if isinstance(norm, Mapping) else norm) for la in directions}
    return {
        int(layer): (unit(v.detach().float().reshape(-1)) * (coefficient * scale[int(layer)]))
        .numpy()
        .astype(np.float32)
        for layer, v in sorted(directions.items())
    }


def control_vector_gguf(
    path: str | Path,
    directions: Mapping[int, torch.Tensor],
    *,
    coefficient: float = 1.0,
    norm: Norm = 1.0,
    model_hint: str = "llama",
) -> Path:
    """Write ``directions`` (layer -> vector) as a llama.cpp control-vector GGUF, atomically; returns the path.

    >>> import torch, gguf, tempfile, os
    >>> p = control_vector_gguf(os.path.join(tempfile.mkdtemp(), "evil.gguf"), {12: torch.ones(4)}, coefficient=2.0)
    >>> [(t.name, t.data.tolist()) for t in gguf.GGUFReader(p).tensors]
    [('direction.12', [1.0, 1.0, 1.0, 1.0])]
    """
    import gguf

    added = _added(directions, coefficient, norm)
    if 0 in added:
        raise ExportError(
            "layer 0 cannot be a llama.cpp control vector (llama.cpp adds direction.N after block N and has no "
            "slot for N = 0) (fix: export layers 1 and above)"
        )
    path = Path(path)
    with atomic_path(path) as tmp:
        writer = gguf.GGUFWriter(str(tmp), "controlvector")
        writer.add_string("controlvector.model_hint", model_hint)
        writer.add_uint32("controlvector.layer_count", len(added))
        for layer, v in added.items():
            writer.add_tensor(f"direction.{layer}", v)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return path


def read_control_vector_gguf(path: str | Path) -> dict[int, np.ndarray]:
    """The layer -> added vector of a control-vector GGUF (llama.cpp's or :func:`control_vector_gguf`'s)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    out = {}
    for t in reader.tensors:
        if t.name.startswith("direction."):
            out[int(t.name.split(".", 1)[1])] = np.array(t.data, dtype=np.float32).reshape(-1)
    if not out:
        raise ExportError(f"{path}: no direction.<N> tensor (fix: give a llama.cpp control-vector GGUF)")
    return out


def steering_vector_file(
    path: str | Path, directions: Mapping[int, torch.Tensor], *, coefficient: float = 1.0, norm: Norm = 1.0
) -> Path:
    """Write ``directions`` as steering-vectors' ``SteeringVector`` (decoder-block outputs, the same layer
    convention as traitscope), as safetensors; load it with :func:`read_steering_vector_file`.

    >>> import torch, tempfile, os
    >>> p = steering_vector_file(os.path.join(tempfile.mkdtemp(), "evil.safetensors"), {3: torch.tensor([3.0, 4.0])})
    >>> read_steering_vector_file(p)
    ({3: tensor([0.6000, 0.8000])}, 'decoder_block')
    """
    added = _added(directions, coefficient, norm)
    write_safetensors(
        path,
        {f"layer_activations.{layer}": torch.from_numpy(v) for layer, v in added.items()},
        {"layer_type": "decoder_block", "format": "steering-vectors SteeringVector"},
    )
    return Path(path)


def read_steering_vector_file(path: str | Path) -> tuple[dict[int, torch.Tensor], str]:
    """``(layer_activations, layer_type)``: ``steering_vectors.SteeringVector(*read_steering_vector_file(p))``."""
    tensors, meta = read_safetensors(path)
    acts = {int(k.split(".", 1)[1]): v for k, v in tensors.items() if k.startswith("layer_activations.")}
    return dict(sorted(acts.items())), str(meta.get("layer_type", "decoder_block"))


def directions_of(vectors: Any, layers: list[int] | None, method: str | None) -> dict[int, torch.Tensor]:
    """Layer -> vector of a :class:`~traitscope.core.artifacts.TraitVectors` (its chosen layer and method unless
    given)."""
    method = method or vectors.best_method
    return {int(layer): vectors.get(method, int(layer)) for layer in (layers or [vectors.best_layer])}
