"""Cluster resources of model jobs, estimated from the model's size and overridable per variant.

parameters ~= 12 * layers * hidden^2 + 2 * vocab * hidden   (decoder blocks + embeddings/LM head)
weights    = parameters x bytes/parameter (float32 4, float16/bfloat16 2); quantised: blocks x (8bit 1, 4bit 0.5)
             + embeddings and LM head x 2 (bitsandbytes leaves them unquantised)
need       = weights x overhead (activations, KV cache, CUDA context)
GPUs       = ceil(need / gpu_memory_gb), or the GPUs a variant's max_memory names; host memory = weights x 1.1 (loading) or need on CPU, plus one capture
             chunk's activations twice over (chunks are streamed into the shard, so the shard's size never counts)

A 70B Llama (80 layers, hidden 8192, vocab 128256) in bfloat16: ~66e9 parameters, 133 GB of weights,
173 GB with overhead: 3 x 80 GB GPUs; in 4bit: 37 GB -> 1 GPU.

Finetune jobs are sized for training instead (:func:`training_memory`): the weights at the training dtype (or in
4 bits for QLoRA), the LoRA adapter with its gradient and AdamW state (16 bytes per trainable parameter), the
activations of one micro-batch kept for the backward pass (with gradient checkpointing: each block's input, plus one
block's activations while it is recomputed), and the logits with their gradient in float32; times
``TRAINING_SLACK`` for the CUDA context and fragmentation.

The SLURM request of a model job (the keys snakemake-executor-plugin-slurm reads): ``gpu`` and ``gpu_model``
(``--gpus=<model>:<n>``) or ``gres`` (``--gres``), ``constraint`` (``-C``), ``slurm_extra``, ``slurm_account``
(``-A``), ``slurm_partition``, ``runtime``, ``mem_mb`` (times ``mem_retry_factor`` per retry) and
``cpus_per_task`` = the job's threads.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from ..core.specs import DTYPE_BYTES, FinetuneSpec
from .settings import Study

BYTES = {**DTYPE_BYTES, "auto": 2.0}  # auto: a checkpoint's own dtype, a half precision for most


QUANT_BYTES = {"8bit": 1.0, "4bit": 0.5}


def parameter_split(n_layers: int, hidden: int, vocab: int) -> tuple[float, float]:
    """Estimated parameters of the decoder blocks and of the embeddings plus LM head."""
    return 12.0 * n_layers * hidden**2, 2.0 * vocab * hidden


def estimate_parameters(n_layers: int, hidden: int, vocab: int) -> float:
    return sum(parameter_split(n_layers, hidden, vocab))


def weight_bytes(quantization: str, dtype: str, n_layers: int, hidden: int, vocab: int) -> float:
    """Bytes of a model's weights: the blocks at the dtype's size, or 1 (8bit) or 0.5 (4bit) byte per parameter when
    quantised, where bitsandbytes leaves the embeddings and LM head at 2 bytes (its compute dtype)."""
    blocks, embeddings = parameter_split(n_layers, hidden, vocab)
    if quantization in QUANT_BYTES:
        return blocks * QUANT_BYTES[quantization] + embeddings * 2.0
    return (blocks + embeddings) * BYTES.get(dtype, 4.0)


def model_job_resources(study: Study, variant: str) -> dict[str, Any]:
    """Snakemake resources (+ threads) of a job that loads ``variant``."""
    res = study.resources
    spec = study.variants[variant]
    dims = study.dims[variant]
    weights_gb = weight_bytes(spec.quantization, spec.dtype, dims.n_layers, dims.hidden_size, dims.vocab_size) / 1e9
    need_gb = weights_gb * float(res.overhead)
    on_cpu = spec.device_map == "cpu"
    named_gpus = [k for k in (spec.max_memory or {}) if str(k).isdigit()]  # the GPUs accelerate may fill
    gpu = 0 if on_cpu else len(named_gpus) or max(1, math.ceil(need_gb / float(res.gpu_memory_gb)))
    chunk_gb = chunk_activation_bytes(study, variant) * CHUNK_COPIES / 1e9  # one chunk, never the shard
    host_gb = (need_gb if on_cpu else weights_gb * 1.1) + chunk_gb
    out: dict[str, Any] = {
        "gpu": gpu,
        "gpu_model": res.gpu_model,
        "constraint": res.constraint,
        "slurm_extra": res.slurm_extra,
        "slurm_account": res.slurm_account,
        "mem_mb": max(int(res.min_mem_mb), int(math.ceil(host_gb * 1024))),
        "runtime": int(res.runtime),
        "threads": int(res.threads),
        "slurm_partition": res.cpu_partition if gpu == 0 else res.gpu_partition,
        "weights_gb": round(weights_gb, 2),
    }
    over = (res.variants or {}).get(variant)
    override = {k: v for k, v in over._asdict().items() if v is not None} if over else {}
    out.update(override)
    if override.get("gres"):  # the plugin refuses gpu and gres together
        out["gpu"], out["gpu_model"] = 0, None
    gpu_job = bool(out["gpu"]) or "gpu" in str(out.get("gres") or "")
    if ("gpu" in override or "gres" in override) and "slurm_partition" not in override:
        out["slurm_partition"] = res.gpu_partition if gpu_job else res.cpu_partition
    if not out["gpu"]:
        out["gpu_model"] = None
    out["cpus_per_task"] = out["threads"]
    return out


def memory_for_attempt(mem_mb: int, attempt: int, factor: float) -> int:
    """Host memory (MB) of try ``attempt`` (1, 2, ...): ``mem_mb x factor^(attempt - 1)``, so that a job killed for
    memory asks for more when Snakemake retries it."""
    return int(math.ceil(mem_mb * float(factor) ** (max(1, int(attempt)) - 1)))


READ_MB_PER_S = 100.0
"""A conservative rate at which ``project`` reads activation shards and projects them on a CPU node."""


CHUNK_COPIES = 2.0
"""A capture job holds a chunk's activations about twice (the per-row pieces gathered from the hooks, then the
stacked chunk it writes); a project job one part of a shard plus a float32 copy of one layer's slice (1.5)."""


def chunk_activation_bytes(study: Study, variant: str) -> float:
    """The activations of one capture chunk (``capture.chunk_size`` prompts) of ``variant``: what a capture job
    holds at once, whatever its shard's size (chunks are streamed into the shard file)."""
    from .budget import prompt_activation_bytes

    return prompt_activation_bytes(study, variant) * study.capture.chunk_size


def project_job_resources(study: Study, variant: str, pset: str) -> dict[str, int]:
    """Memory and runtime of the ``project`` job of one (variant, prompt set): it reads its shards one capture chunk
    at a time (plus a float32 copy of one layer's slice and the chunk's score frames), so its memory comes from
    one chunk, not from the shard; its runtime from reading every shard."""
    from .budget import pair_budget

    b = pair_budget(study, variant, pset)
    chunk = min(study.capture.chunk_size, max(b.rows, 1))
    per_chunk = b.activation_bytes_per_prompt * chunk if not b.streamed else 0.0
    scores_per_chunk = b.score_bytes_per_prompt * chunk * 8  # in-memory frames are ~8x the parquet
    mem_mb = 2000 + int(math.ceil((per_chunk * 1.5 + scores_per_chunk) / 2**20))
    read = b.activation_bytes_per_prompt * b.rows if not b.streamed else b.score_bytes_per_prompt * b.rows
    return {"mem_mb": mem_mb, "runtime": 30 + int(math.ceil(read / (READ_MB_PER_S * 1e6) / 60))}


TRAINING_SLACK = 1.15
"""Factor on a training estimate for the CUDA context, the allocator's fragmentation and peft's buffers."""
ACTIVATION_VALUES_PER_TOKEN = 34.0
"""Activation values a transformer block keeps per token and hidden unit for its backward pass, beside the attention
scores (Korthikanti et al. 2022, "Reducing activation recomputation in large transformer models", section 4.1:
34 x s x b x h bytes per layer at 16 bits, i.e. 17 values of 2 bytes)."""


class TrainingMemory(NamedTuple):
    """What a finetune job holds on its GPUs, in bytes, and whether it recomputes activations."""

    weights: float
    adapter: float  # trainable parameters with their gradient and AdamW's two moments, float32
    activations: float
    logits: float
    checkpointing: bool

    @property
    def total(self) -> float:
        return (self.weights + self.adapter + self.activations + self.logits) * TRAINING_SLACK


def lora_parameters(n_layers: int, hidden: int, rank: int, targets: tuple[str, ...]) -> float:
    """Trainable parameters of a LoRA adapter: rank x (in + out) per targeted module and block, the MLP's inner width
    taken as 3.5 x hidden (Llama 70B: 28672 = 3.5 x 8192) where a module has it on one side."""
    mlp = {
        "gate_proj",
        "up_proj",
        "down_proj",
        "fc1",
        "fc2",
        "c_fc",
        "w1",
        "w2",
        "w3",
        "dense_h_to_4h",
        "dense_4h_to_h",
    }
    per_block = sum(rank * (hidden + (3.5 * hidden if t in mlp else hidden)) for t in targets)
    return n_layers * per_block


def training_memory(study: Study, ft: str) -> TrainingMemory:
    """The GPU memory of finetune ``ft`` (see the module's docstring): its base's weights (4-bit for QLoRA), the
    adapter's training state and one micro-batch of ``max_length`` tokens."""
    spec = study.finetune[ft]
    base = study.variants[spec.base]
    dims = study.dims[spec.base]
    return training_bytes(spec, base.dtype, base.quantization, dims.n_layers, dims.hidden_size, dims.vocab_size)


def training_bytes(
    spec: FinetuneSpec, dtype: str, quantization: str, layers: int, hidden: int, vocab: int
) -> TrainingMemory:
    """:func:`training_memory` of a finetune ``spec`` of a base of that shape, loaded in ``dtype`` and
    ``quantization`` (a QLoRA ``spec`` loads it in 4-bit whatever the base's): for callers outside a study
    (``benchmarks/gpu_check.py`` compares it with the peak a GPU measures)."""
    from ..core.finetune import CHECKPOINTING_PARAMETERS

    quant = "4bit" if spec.quantization == "4bit" else quantization
    weights = weight_bytes(quant, dtype, layers, hidden, vocab)
    adapter = lora_parameters(layers, hidden, spec.rank, spec.target_modules) * 16.0
    value = 4.0 if dtype == "float32" and quant == "none" else 2.0  # what activations are computed in
    tokens = float(min(spec.micro_batch_size or spec.batch_size, spec.batch_size) * spec.max_length)
    heads = max(1, hidden // 128)
    block = tokens * hidden * ACTIVATION_VALUES_PER_TOKEN / 2 * value + heads * tokens * spec.max_length * value * 2.5
    gc = spec.gradient_checkpointing
    checkpointing = (
        bool(gc) if gc in (True, False) else estimate_parameters(layers, hidden, vocab) > CHECKPOINTING_PARAMETERS
    )
    activations = (layers * tokens * hidden * value + block) if checkpointing else layers * block
    logits = tokens * vocab * 4.0 * 3  # float32 logits, their log-softmax and gradient
    return TrainingMemory(weights, adapter, activations, logits, checkpointing)


def finetune_job_resources(study: Study, ft: str) -> dict[str, Any]:
    """Snakemake resources (+ threads) of finetune ``ft``'s jobs: the model job of its base variant, with GPUs and
    memory from :func:`training_memory` instead of the inference estimate, and ``finetune.<ft>.resources`` over it."""
    res = study.resources
    spec = study.finetune[ft]
    out = model_job_resources(study, spec.base)
    mem = training_memory(study, ft)
    need_gb = mem.total / 1e9
    on_cpu = study.variants[spec.base].device_map == "cpu"
    base_override = (res.variants or {}).get(spec.base)
    if not on_cpu and not (base_override and (base_override.gpu is not None or base_override.gres)):
        out["gpu"] = max(1, math.ceil(need_gb / float(res.gpu_memory_gb)))
        out["slurm_partition"] = res.gpu_partition
    load_gb = mem.weights / 1e9 * 1.1  # the weights pass through host memory while they load
    out["mem_mb"] = max(int(res.min_mem_mb), int(math.ceil((need_gb if on_cpu else load_gb) * 1024)))
    out["training_gb"] = round(need_gb, 1)
    override = {k: v for k, v in spec.resources._asdict().items() if v is not None} if spec.resources else {}
    out.update(override)
    if override.get("gres"):
        out["gpu"], out["gpu_model"] = 0, None
    if not out["gpu"]:
        out["gpu_model"] = None
    out["cpus_per_task"] = out["threads"]
    return out


def training_report(study: Study, cluster: bool = False) -> list[str]:
    """Start-up lines: what each finetune job asks for and why (the training estimate's parts). Run here (not on a
    ``cluster``) without a visible GPU, the jobs train on this host's CPU whatever a cluster would be asked for."""
    import torch

    here_on_cpu = not cluster and not torch.cuda.is_available()
    lines = []
    for ft in study.finetune:
        mem, job = training_memory(study, ft), finetune_job_resources(study, ft)
        gpus = f"{job['gpu']} GPU(s) of {study.resources.gpu_memory_gb:g} GB"
        where = "the CPU" if not job["gpu"] else f"this host's CPU (on a cluster: {gpus})" if here_on_cpu else gpus
        lines.append(
            f"finetune {ft}: {mem.total / 1e9:.1f} GB to train (weights {mem.weights / 1e9:.1f}, adapter and optimizer "
            f"{mem.adapter / 1e9:.1f}, activations {mem.activations / 1e9:.1f}"
            f"{' with gradient checkpointing' if mem.checkpointing else ''}, logits {mem.logits / 1e9:.1f}, "
            f"x{TRAINING_SLACK}): {where}, {job['mem_mb']} MB of host memory"
        )
    return lines
