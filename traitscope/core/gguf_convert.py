"""A GGUF model file converted once into a plain safetensors folder, one tensor at a time.

transformers can load a GGUF model (it de-quantises every tensor into memory, then builds the model), but a model
loaded so refuses ``save_pretrained``, and rebuilding it to save it holds the weights twice in float32: 3.2 GiB of
peak memory for 1 GiB of float32 weights, about 100 GB for an 8B model. Here the GGUF's tensors are read from the
memory-mapped file one at a time (``gguf.GGUFReader``), de-quantised (``gguf.dequantize``), renamed and un-permuted
as transformers does it (its ``get_gguf_hf_weights_map`` and per-architecture ``TENSOR_PROCESSORS``), cast to the
dtype asked for and written into safetensors shards of at most ``shard_bytes``, so the peak is one tensor (in
float32 while it is de-quantised) plus one shard. The config and tokenizer come from transformers' own GGUF reading
(no tensors), and the model built on the meta device says which tensors it expects: a missing or unknown one is a
one-line error. ``benchmarks/convert_memory.py`` measures the peak against transformers' whole-model path.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

from .errors import TraitscopeError, first_line
from .specs import DTYPE_BYTES

DTYPES = tuple(DTYPE_BYTES)
SHARD_BYTES = 1 << 30
"""Each output shard holds at most this much (a larger single tensor gets a shard of its own)."""


class ConversionError(TraitscopeError):
    """A GGUF file that cannot be converted; the message names it and the fix."""


def convert_gguf(
    gguf: Path,
    out_dir: str | Path,
    source: dict[str, Any] | None = None,
    key: str = "model",
    dtype: str = "float32",
    shard_bytes: int = SHARD_BYTES,
) -> Path:
    """Convert ``gguf`` into a safetensors folder at ``out_dir`` (weights in ``dtype``, its tokenizer and chat template
    kept, ``traitscope_source.json`` recording ``source``), written into a temporary folder and renamed into place."""
    import numpy as np
    import torch
    from accelerate import init_empty_weights
    from gguf import GGUFReader, dequantize
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
        TensorProcessor,
        get_gguf_hf_weights_map,
        load_gguf_checkpoint,
    )

    if dtype not in DTYPES:
        raise ConversionError(f"{key}: cannot write weights as {dtype!r} (fix: one of {', '.join(DTYPES)})")
    target = getattr(torch, dtype)
    folder, fname = str(gguf.parent), gguf.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
        config = AutoConfig.from_pretrained(folder, gguf_file=fname)
        parsed = load_gguf_checkpoint(str(gguf), return_tensors=False)
        with init_empty_weights():
            model = AutoModelForCausalLM.from_config(config)
        reader = GGUFReader(str(gguf))
        from .gguf_meta import read_gguf

        architecture = read_gguf(gguf).architecture
        processor = TENSOR_PROCESSORS.get(architecture, TensorProcessor)(config=parsed["config"])
        names = get_gguf_hf_weights_map(model, processor)
    except Exception as exc:  # noqa: BLE001 - an architecture transformers cannot read from GGUF, a damaged header
        raise ConversionError(
            f"{key}: '{gguf}' cannot be converted ({first_line(exc)[:160]}) (fix: use a GGUF of an "
            "architecture transformers reads, or the model's safetensors folder)"
        ) from None
    expected = set(model.state_dict())
    if getattr(config, "tie_word_embeddings", False):
        expected = {n for n in expected if not n.endswith("lm_head.weight")}

    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")  # a killed conversion never leaves a half folder at `out`
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    shards: list[dict[str, Any]] = []
    pending: dict[str, Any] = {}
    pending_bytes = 0
    written: set[str] = set()

    def flush() -> None:
        nonlocal pending, pending_bytes
        if pending:
            path = tmp / f"model-{len(shards) + 1:05d}.safetensors"
            save_file(pending, str(path), metadata={"format": "pt"})
            shards.append({"file": path.name, "names": sorted(pending)})
        pending, pending_bytes = {}, 0

    extra: dict[str, Any] = {"tensors": {}}  # where some processors leave merged tensors (MoE experts)
    for tensor in reader.tensors:
        try:
            weights = dequantize(tensor.data, tensor.tensor_type)
            result = processor.process(
                weights=weights, name=tensor.name, tensor_key_mapping=names, parsed_parameters=extra
            )
        except Exception as exc:  # noqa: BLE001 - a tensor cut short or of an unknown type
            shutil.rmtree(tmp, ignore_errors=True)
            raise ConversionError(
                f"{key}: tensor {tensor.name} of '{gguf}' cannot be read ({first_line(exc)[:160]}) (fix: download or "
                "copy the .gguf file again)"
            ) from None
        ready = [(names[result.name], result.weights)] if result.name in names else []
        ready += [(n, t) for n, t in extra["tensors"].items()]
        extra["tensors"] = {}
        for name, array in ready:
            value = array if isinstance(array, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(array))
            value = value.to(target).contiguous()
            size = value.numel() * value.element_size()
            if pending and pending_bytes + size > shard_bytes:
                flush()
            pending[name] = value
            pending_bytes += size
            written.add(name)
        del weights, result, ready
    flush()
    missing, unknown = sorted(expected - written), sorted(written - expected)
    if missing or unknown:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConversionError(
            f"{key}: '{gguf}' does not hold the tensors its model needs (missing {missing[:3]}, unexpected "
            f"{unknown[:3]}) (fix: use a GGUF of an architecture transformers reads, or the safetensors folder)"
        )
    _name_shards(tmp, shards)
    config.torch_dtype = target
    config.architectures = [type(model).__name__]  # what save_pretrained of the model writes
    config.save_pretrained(tmp)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "traitscope_source.json").write_text(
        json.dumps({**(source or {"gguf": str(gguf)}), "dtype": dtype}, indent=2)
    )
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def _name_shards(folder: Path, shards: list[dict[str, Any]]) -> None:
    """Name the shards as ``save_pretrained`` does (``model.safetensors``, or ``model-0000k-of-0000N.safetensors`` with
    ``model.safetensors.index.json``)."""
    if len(shards) == 1:
        (folder / shards[0]["file"]).rename(folder / "model.safetensors")
        return
    n = len(shards)
    weight_map: dict[str, str] = {}
    total = 0
    for k, shard in enumerate(shards, start=1):
        name = f"model-{k:05d}-of-{n:05d}.safetensors"
        (folder / shard["file"]).rename(folder / name)
        total += (folder / name).stat().st_size
        weight_map.update({t: name for t in shard["names"]})
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def conversion_memory_mb(gguf: Path) -> int:
    """Host memory a conversion of ``gguf`` needs: its largest tensor de-quantised to float32, held about three times
    (de-quantised, processed, cast), one output shard, and 3 GB for Python, torch and transformers."""
    from .gguf_meta import read_gguf

    largest = max((math.prod(int(d) for d in t.shape) for t in read_gguf(gguf).tensors), default=0)
    return int((largest * 4 * 3 + SHARD_BYTES + 3e9) / 2**20)


def conversion_disk_mb(gguf: Path, dtype: str) -> int:
    """Disk the converted folder takes: every tensor at ``dtype``."""
    from .gguf_meta import read_gguf

    return (
        int(sum(math.prod(int(d) for d in t.shape) for t in read_gguf(gguf).tensors) * DTYPE_BYTES[dtype] / 2**20) + 1
    )


def conversion_dtype(asked: set[str], gguf: Path | None = None) -> str:
    """The dtype a GGUF is converted to for the variants that load it (``asked``: their ``dtype``s): float32 when one
    computes in float32 (or two ask different half precisions), else the half precision asked; ``auto`` alone takes
    the file's own float type (float16 for an F16 GGUF, bfloat16 otherwise, quantised ones included)."""
    if "float32" in asked or {"bfloat16", "float16"} <= asked:
        return "float32"
    for half in ("bfloat16", "float16"):
        if half in asked:
            return half
    if gguf is not None:
        from .gguf_meta import read_gguf

        types = {t.ggml_type for t in read_gguf(gguf).tensors}
        if types and types <= {0, 1}:  # GGML F32 = 0, F16 = 1
            return "float16" if 1 in types else "float32"
    return "bfloat16"
