"""Start-up checks of a variant that would otherwise fail in a job, or give nonsense with no word: where it is placed
(``device_map``, ``max_memory``, ``offload_folder``), where its blocks are (``blocks``, on the model built from its
config on the meta device: no weights), its chat format (``chat_template``, ``chat_options``) and whether
bitsandbytes can quantise it. Each problem is one line naming ``variants.<name>.<key>`` and the fix
(:class:`~traitscope.ConfigError`); a chat option the template never reads is a warning."""

from __future__ import annotations

import json
import logging
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError

log = logging.getLogger(__name__)

DEVICE_MAP = re.compile(r"^(auto|balanced|balanced_low_0|sequential|cpu|mps|cuda(:\d+)?)$")
MEMORY_KEYS = re.compile(r"^(\d+|cpu|disk|mps)$")


def error(key: str, what: str, fix: str) -> ConfigError:
    return ConfigError(f"config error at {key}: {what} (fix: {fix})")


def job_device(var: dict[str, Any], jobs_on: str = "local", gpu_job: bool | None = None) -> str:
    """The kind of device (``cpu`` or ``cuda``) the variant's jobs run on: on a cluster (``jobs_on="cluster"``) the
    node its job asks for (a GPU node unless ``device_map: cpu`` or its resources ask no GPU: ``gpu_job``), here the
    CPU for ``device_map: cpu`` or where no GPU is visible."""
    dm = str(var.get("device_map", "auto"))
    if dm == "cpu":
        return "cpu"
    if jobs_on == "cluster":
        return "cpu" if gpu_job is False else "cuda"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_placement(name: str, var: dict[str, Any], base_dir: Path, jobs_on: str = "local") -> None:
    """``device_map`` is a device or an accelerate strategy (and, run here, a GPU this host has); ``max_memory``
    names devices and sizes; ``offload_folder`` is a folder that can be written."""
    key = f"variants.{name}"
    dm = var.get("device_map", "auto")
    if not isinstance(dm, str) or not DEVICE_MAP.match(dm):
        raise error(
            f"{key}.device_map",
            f"{dm!r} is not a device or placement"
            + (" (it has spaces)" if isinstance(dm, str) and dm != dm.strip() else ""),
            "use auto, balanced, balanced_low_0, sequential, cpu, cuda or cuda:N",
        )
    if dm.startswith("cuda") and jobs_on == "local":
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(dm.split(":")[1]) if ":" in dm else 0
        if index >= count:
            raise error(
                f"{key}.device_map",
                f"{dm!r} names a GPU this host does not have ({count} visible)",
                "use auto (every visible GPU, else the CPU), cpu, or run on a GPU node with --profile slurm",
            )
    for device, size in (var.get("max_memory") or {}).items():
        if not MEMORY_KEYS.match(str(device)):
            raise error(
                f"{key}.max_memory.{device}", f"{device!r} is not a device", "use GPU numbers (0, 1, ...), cpu or disk"
            )
        if _size_bytes(size) is None:
            raise error(
                f"{key}.max_memory.{device}",
                f"{size!r} is not a size",
                "write bytes (an integer) or a size such as 70GiB, 200GB or 500MiB",
            )
    folder = var.get("offload_folder")
    if folder:
        path = (base_dir / Path(str(folder)).expanduser()).resolve()
        if path.exists() and not path.is_dir():
            raise error(f"{key}.offload_folder", f"'{folder}' is a file", "point it to a folder (it is created)")
        probe = path if path.is_dir() else next((p for p in path.parents if p.exists()), Path("/"))
        if not os.access(probe, os.W_OK | os.X_OK):
            raise error(
                f"{key}.offload_folder", f"'{folder}' cannot be written ({probe} is read-only)", "use a writable folder"
            )


def _size_bytes(size: Any) -> int | None:
    from accelerate.utils import convert_file_size_to_int

    if isinstance(size, bool):
        return None
    if isinstance(size, int):
        return size if size > 0 else None
    try:
        return int(convert_file_size_to_int(str(size)))
    except (ValueError, TypeError):
        return None


# ------------------------------------------------------------------------------------------------- blocks


def check_blocks(name: str, var: dict[str, Any], config_file: Path | None) -> None:
    """A variant that names its ``blocks``: the path and the sublayers exist on the model built from its
    ``config.json`` on the meta device (no weights), where start-up can read that file."""
    blocks = var.get("blocks") or {}
    if not any(blocks.values()) or config_file is None or not config_file.is_file():
        return
    from ..core.architecture import decoder_layers, site_module
    from ..core.errors import ModelLoadError
    from ..core.specs import BlockNames

    model = _meta_model(str(config_file), bool(var.get("trust_remote_code")))
    model.traitscope_blocks = BlockNames(**{k: blocks.get(k) for k in BlockNames._fields})
    try:
        decoder_layers(model)
        for site in ("attn", "mlp"):
            if blocks.get(site):
                site_module(model, 0, site)
    except ModelLoadError as exc:
        raise ConfigError(
            f"config error at variants.{name}.blocks: {str(exc).replace('variants.<name>', f'variants.{name}')}"
        ) from None


@lru_cache(maxsize=8)
def _meta_model(config_file: str, trust_remote_code: bool) -> Any:
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(Path(config_file).parent, trust_remote_code=trust_remote_code)
    with init_empty_weights():
        return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)


# ------------------------------------------------------------------------------------------- chat format

OWNED_OPTIONS = (
    "messages",
    "conversation",
    "add_generation_prompt",
    "continue_final_message",
    "tokenize",
    "return_dict",
    "return_tensors",
    "return_assistant_tokens_mask",
    "tools",
    "documents",
    "chat_template",
    "padding",
    "truncation",
    "max_length",
    "tokenizer_kwargs",
)
"""Arguments of ``apply_chat_template`` itself: traitscope sets them for every rendering, so ``chat_options`` may not."""


def template_text(var: dict[str, Any], base_dir: Path, gguf: Path | None = None) -> str | None:
    """The chat template a variant renders prompts with, where start-up can read it without loading a tokenizer: its
    ``chat_template`` file, its folder's tokenizer files, or its GGUF's metadata; None otherwise (a hub model)."""
    if var.get("chat_template"):
        path = base_dir / Path(var["chat_template"]).expanduser()
        return path.read_text(encoding="utf-8") if path.is_file() else None
    if gguf is not None:
        from ..core.gguf_meta import read_gguf

        value = read_gguf(gguf).fields.get("tokenizer.chat_template")
        return str(value) if value else None
    model = Path(str(var.get("model", ""))).expanduser()
    folder = model if model.is_absolute() else base_dir / model
    if not folder.is_dir():
        return None
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    for file, field in (("chat_template.json", "chat_template"), ("tokenizer_config.json", "chat_template")):
        if (folder / file).is_file():
            try:
                value = json.loads((folder / file).read_text(encoding="utf-8")).get(field)
            except (ValueError, AttributeError):
                return None
            if isinstance(value, list):  # named templates: the default one
                value = next((t.get("template") for t in value if t.get("name") == "default"), None)
            if isinstance(value, str) and value:
                return value
    return None


def check_chat(
    name: str, var: dict[str, Any], template: str | None, prompt: str = "What is the capital of France?"
) -> None:
    """``chat_options`` are the template's own variables, never the call's; the template renders a prompt, and two
    different prompts differently (a template that ignores the messages would make every row the same text)."""
    key = f"variants.{name}.chat_options"
    options = dict(var.get("chat_options") or {})
    owned = sorted(set(options) & set(OWNED_OPTIONS))
    if owned:
        raise error(
            key,
            f"{', '.join(owned)} {'is' if len(owned) == 1 else 'are'} set by traitscope for every rendering",
            f"remove {', '.join(owned)} from chat_options (they are arguments of apply_chat_template, not of the template)",
        )
    if template is None:
        return
    import jinja2
    import jinja2.meta

    try:
        variables = jinja2.meta.find_undeclared_variables(jinja2.Environment().parse(template))
    except jinja2.TemplateSyntaxError:
        variables = None  # rendering below says what is wrong
    unread = sorted(k for k in options if variables is not None and k not in variables)
    if unread:
        log.warning(
            "%s: the chat template never reads %s, so %s nothing (fix: check the spelling against the template's "
            "variables: %s)",
            key,
            ", ".join(unread),
            "it changes" if len(unread) == 1 else "they change",
            ", ".join(sorted(variables or [])) or "none",
        )
    where = f"variants.{name}.chat_template" if var.get("chat_template") else f"variants.{name}.model"
    texts = []
    for content in (prompt, prompt[::-1] + " (2)"):
        try:
            texts.append(render(template, [{"role": "user", "content": content}], options))
        except Exception as exc:  # noqa: BLE001 - jinja's raise_exception, undefined names, type errors
            from ..core.errors import first_line

            raise error(
                where,
                f"its chat template fails on a prompt of this study ({first_line(exc)[:160]})",
                "fix the template, or give a working one with chat_template: <file.jinja>",
            ) from None
    if texts[0] == texts[1]:
        raise error(
            where,
            "its chat template renders two different prompts as the same text (it ignores the messages), so every "
            "row would be the same input",
            "give a template that writes each message's content, with chat_template: <file.jinja>",
        )


def render(template: str, messages: list[dict[str, str]], options: dict[str, Any]) -> str:
    """``messages`` in ``template`` as transformers renders it (with the generation prompt)."""
    from transformers.utils.chat_template_utils import render_jinja_template

    out = render_jinja_template(conversations=[messages], chat_template=template, add_generation_prompt=True, **options)
    rendered = out[0] if isinstance(out, tuple) else out
    return str(rendered[0] if isinstance(rendered, list) else rendered)


# ------------------------------------------------------------------------------------------ quantisation

BNB_BLOCK = 64
"""bitsandbytes' 4-bit kernels on the CPU (its AVX-512 path) need every layer width to be a multiple of this: a model
of hidden size 32, 48 or 96 loads, then fails at its first short forward pass ("shape '[32, 0]' is invalid",
"N must be divisible by block_n"); 64, 128, 192 and 320 run (measured with bitsandbytes 0.50 on tiny Llamas)."""


def check_quantizable(name: str, var: dict[str, Any], dims: Any, device: str) -> None:
    """``quantization: 4bit`` on the CPU for a model whose widths bitsandbytes' CPU kernels cannot take."""
    if var.get("quantization") != "4bit" or dims is None or device != "cpu":
        return
    hidden = int(getattr(dims, "hidden_size", 0) or 0)
    if hidden and hidden % BNB_BLOCK:
        raise error(
            f"variants.{name}.quantization",
            f"4bit on the CPU needs layer widths that are multiples of {BNB_BLOCK} (bitsandbytes' CPU kernels work "
            f"in blocks of {BNB_BLOCK}) and this model's hidden size is {hidden}",
            "use quantization: 8bit or none for this model, or run it on a GPU",
        )
