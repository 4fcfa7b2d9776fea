"""Trait vectors for other tools: a llama.cpp control-vector GGUF (read back with the gguf package, as llama.cpp and
repeng read it) and a steering-vectors SteeringVector file."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch

from traitscope.core.export import (
    ExportError,
    control_vector_gguf,
    read_control_vector_gguf,
    read_steering_vector_file,
    steering_vector_file,
)


def directions(d=8):
    g = torch.Generator().manual_seed(0)
    return {1: torch.randn(d, generator=g), 3: torch.randn(d, generator=g) * 7}


def test_control_vector_gguf_is_what_llama_cpp_reads(tmp_path):
    dirs = directions()
    path = control_vector_gguf(tmp_path / "t.gguf", dirs, coefficient=0.5, norm={1: 2.0, 3: 10.0}, model_hint="qwen2")
    reader = gguf.GGUFReader(str(path))
    fields = reader.fields
    assert bytes(fields["general.architecture"].parts[-1]).decode() == "controlvector"
    assert bytes(fields["controlvector.model_hint"].parts[-1]).decode() == "qwen2"
    assert int(fields["controlvector.layer_count"].parts[-1][0]) == 2
    assert sorted(t.name for t in reader.tensors) == ["direction.1", "direction.3"]
    assert all(t.tensor_type == gguf.GGMLQuantizationType.F32 for t in reader.tensors)
    back = read_control_vector_gguf(path)
    for layer, scale in ((1, 0.5 * 2.0), (3, 0.5 * 10.0)):  # coefficient x norm x the unit vector
        want = (dirs[layer] / dirs[layer].norm() * scale).numpy()
        np.testing.assert_allclose(back[layer], want, rtol=1e-6)
        assert np.linalg.norm(back[layer]) == pytest.approx(scale, rel=1e-6)
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically: no partial file left


def test_layer_zero_and_mixed_sizes_are_one_line_errors(tmp_path):
    with pytest.raises(ExportError, match=r"^layer 0 cannot be a llama.cpp control vector .*\(fix: export layers 1"):
        control_vector_gguf(tmp_path / "z.gguf", {0: torch.ones(4)})
    assert not (tmp_path / "z.gguf").exists()
    with pytest.raises(ExportError, match=r"different sizes \[4, 5\]"):
        control_vector_gguf(tmp_path / "m.gguf", {1: torch.ones(4), 2: torch.ones(5)})


def test_steering_vectors_file_round_trips(tmp_path):
    dirs = directions()
    path = steering_vector_file(tmp_path / "t.safetensors", dirs, coefficient=2.0)
    acts, layer_type = read_steering_vector_file(path)
    assert layer_type == "decoder_block" and list(acts) == [1, 3]
    for layer in (1, 3):
        torch.testing.assert_close(acts[layer], dirs[layer] / dirs[layer].norm() * 2.0)


def test_the_docstring_examples_hold():
    import doctest

    import traitscope.core.export as export

    result = doctest.testmod(export)
    assert result.attempted >= 6 and result.failed == 0
