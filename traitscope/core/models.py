"""Model loading: a variant spec to a (model, tokenizer) pair, placed on its devices, quantised, with its adapter.

Where the weights come from (hub id, folder, GGUF, the embedded default) is :mod:`traitscope.core.sources`; the
model's dimensions without weights :mod:`traitscope.core.dims`; where its blocks and sites sit once loaded
:mod:`traitscope.core.architecture`. ``trust_remote_code`` is never set unless the config says so.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, ModelLoadError, first_line
from .sources import resolve_model_path
from .specs import ModelSpec

if TYPE_CHECKING:  # torch is imported lazily: the Snakefile imports this module at every parse
    import torch

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


def torch_dtype(name: str | None) -> torch.dtype | None:
    """The torch dtype a config names (``float32``, ``float16``, ``bfloat16``: a variant's ``dtype``, the capture's
    storage dtype); None for ``auto`` or no name. The one table from dtype names to torch."""
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}.get(name or "")


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

    named = torch_dtype(variant.dtype) if variant.dtype != "float32" else None
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
    from transformers import AutoModelForCausalLM

    model_id = resolve_model_path(variant.model, resources_dir)
    device = pick_device(variant.device_map)
    dtype = torch_dtype(variant.dtype) or "auto"
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
