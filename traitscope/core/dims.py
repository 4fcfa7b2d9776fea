"""A model's dimensions (layers, hidden size, vocabulary, context) read from its config or GGUF header without
loading weights, and the checks that need only them: a causal LM, an adapter that fits the model.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import ConfigError, first_line
from .sources import embedded_dir, embedded_gguf_path, embedded_name, gguf_dims, gguf_dir, gguf_source, looks_local
from .specs import ModelDims


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
    return gguf_dims(gguf(), key)


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
