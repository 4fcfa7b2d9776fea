"""Cluster resources of model jobs, estimated from the model's size and overridable per variant.

parameters ~= 12 * layers * hidden^2 + 2 * vocab * hidden   (decoder blocks + embeddings/LM head)
weights    = parameters x bytes/parameter (float32 4, float16/bfloat16 2, 8bit 1, 4bit 0.5)
need       = weights x overhead (activations, KV cache, CUDA context)
GPUs       = ceil(need / gpu_memory_gb); host memory = weights x 1.1 (loading) or need on CPU

A 70B Llama (80 layers, hidden 8192, vocab 128256) in bfloat16: ~66e9 parameters, 133 GB of weights,
173 GB with overhead: 3 x 80 GB GPUs; in 4bit: 33 GB -> 1 GPU.
"""

from __future__ import annotations

import math
from typing import Any

from .settings import Study

BYTES = {"float32": 4.0, "float16": 2.0, "bfloat16": 2.0, "auto": 2.0}


def estimate_parameters(n_layers: int, hidden: int, vocab: int) -> float:
    return 12.0 * n_layers * hidden**2 + 2.0 * vocab * hidden


def model_job_resources(study: Study, variant: str) -> dict[str, Any]:
    """Snakemake resources (+ threads) of a job that loads ``variant``."""
    res = study.resources
    spec = study.variants[variant]
    dims = study.dims[variant]
    bpp = {"8bit": 1.0, "4bit": 0.5}.get(spec.quantization, BYTES.get(spec.dtype, 4.0))
    weights_gb = estimate_parameters(dims.n_layers, dims.hidden_size, dims.vocab_size) * bpp / 1e9
    need_gb = weights_gb * float(res.overhead)
    on_cpu = spec.device_map == "cpu"
    gpu = 0 if on_cpu else max(1, math.ceil(need_gb / float(res.gpu_memory_gb)))
    host_gb = need_gb if on_cpu else weights_gb * 1.1
    out: dict[str, Any] = {
        "gpu": gpu,
        "mem_mb": max(int(res.min_mem_mb), int(math.ceil(host_gb * 1024))),
        "runtime": int(res.runtime),
        "threads": int(res.threads),
        "slurm_partition": res.cpu_partition if gpu == 0 else res.gpu_partition,
        "weights_gb": round(weights_gb, 2),
    }
    if gpu and res.gpu_model:
        out["gpu_model"] = res.gpu_model
    over = (res.variants or {}).get(variant)
    override = {k: v for k, v in over._asdict().items() if v is not None} if over else {}
    out.update(override)
    if "gpu" in override and "slurm_partition" not in override:
        out["slurm_partition"] = res.cpu_partition if override["gpu"] == 0 else res.gpu_partition
    if not out.get("gpu"):
        out.pop("gpu_model", None)
    return out
