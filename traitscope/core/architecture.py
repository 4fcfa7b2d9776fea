"""The architecture map: where a loaded model keeps its decoder blocks and the sublayers whose outputs are the
sites a trait is read at (``resid``, ``attn``, ``mlp``), for Llama, Mistral, Qwen, Gemma, Phi, GPT-2/J/NeoX, OPT, MPT
and, through ``variants.<name>.blocks``, any other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .errors import ModelLoadError

if TYPE_CHECKING:  # torch is imported lazily: the Snakefile imports the model modules at every parse
    import torch
    from torch import nn


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
