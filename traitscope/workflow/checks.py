"""Checks that experiments share: one-line config errors and the checks of sections that several experiments read.

An experiment's ``check`` hook calls these at start-up (before any job runs); :mod:`traitscope.workflow.config`
uses them for the core sections. Kept apart from the start-up pipeline so that an experiment imports only what it
checks with.
"""

from __future__ import annotations

import re
from typing import Any

from ..core.errors import ConfigError
from ..core.layers import parse_layers
from ..core.specs import ModelDims

SET_NAME = re.compile(r"^[A-Za-z0-9_]+$")
"""What a prompt set's or variant's name may be (it is a folder name in every stage's paths)."""


def config_error(key: str, what: str, fix: str) -> ConfigError:
    return ConfigError(f"config error at {key}: {what} (fix: {fix})")


def check_adapter_on(cfg: dict[str, Any], key: str, name: str, base: str, why: str, fix: str) -> None:
    """Variant ``name`` must be variant ``base`` (without an adapter) plus a LoRA adapter, on the same model; else a
    one-line error at ``key`` saying ``why`` that matters to the experiment."""
    variant, plain = cfg["variants"][name], cfg["variants"][base]
    if not variant.get("adapter") or variant["model"] != plain["model"] or plain.get("adapter"):
        raise config_error(key, f"'{name}' must be '{base}' plus a LoRA adapter ({why})", fix)


def check_last_token_layers(
    cfg: dict[str, Any], dims: dict[str, ModelDims], key: str, base: str, why_last: str, fitted: str
) -> list[int]:
    """The layers of section ``key`` (``<key>.layers``) that a last-token direction of variant ``base``'s model is
    fitted at: each captured (capture.layers), the last position captured (``why_last`` says why), and ``<key>.layer``
    "best" or one of them (``fitted``: what is fitted there, for the fix). Returns the layers."""
    section, cap = cfg, cfg["capture"]
    for part in key.split("."):
        section = section[part]
    n = dims[base].n_layers
    layers = parse_layers(section["layers"], n, f"{key}.layers")
    missing = sorted(set(layers) - set(parse_layers(cap["layers"], n, "capture.layers")))
    if missing:
        raise config_error(
            f"{key}.layers", f"layers {missing} are not in capture.layers", f"capture them or narrow {key}.layers"
        )
    if "last" not in cap["positions"]:
        raise config_error("capture.positions", why_last, "add last")
    layer = section["layer"]
    if layer != "best" and (isinstance(layer, bool) or not isinstance(layer, int) or layer not in layers):
        raise config_error(
            f"{key}.layer",
            f"{layer!r} is neither 'best' nor one of {key}.layers {layers}",
            f"use best or a layer {fitted} fitted at",
        )
    return layers


def check_vector_variant(cfg: dict[str, Any], dims: dict[str, ModelDims], variant: str, key: str) -> None:
    """``variant`` must exist and share the hidden size of ``extract.variant``, so the trait vectors apply to it."""
    variants, ext = cfg["variants"], cfg["extract"]["variant"]
    if variant not in variants:
        raise config_error(key, f"unknown variant '{variant}'", f"use one of {sorted(variants)}")
    if dims[variant].hidden_size != dims[ext].hidden_size:
        raise config_error(
            key,
            f"variant '{variant}' has hidden size {dims[variant].hidden_size} but the trait vectors come from "
            f"'{ext}' with hidden size {dims[ext].hidden_size}, so they cannot transfer",
            "use variants whose hidden size matches extract.variant, or extract vectors from that model",
        )


def check_projected_method(cfg: dict[str, Any], method: str, key: str) -> None:
    """An analysis reads scores of ``method`` vectors, so the project stage must compute them."""
    if method not in cfg["project"]["methods"]:
        raise config_error(key, f"{method!r} is not in project.methods", f"use one of {cfg['project']['methods']}")


def check_steering_section(experiment: Any, cfg: dict[str, Any], dims: dict[str, Any]) -> None:
    """A steering section (``steering``, ``optimize``)'s traits and prompt set exist; its layers (where it has them) are layers of the model."""
    block = experiment.section(cfg) or {}
    for t in block["traits"]:
        if t not in cfg["traits"]:
            raise config_error(
                experiment.dotted("traits"), f"unknown trait {t!r}", f"use one of {sorted(cfg['traits'])}"
            )
    if block["prompt_set"] not in cfg["prompt_sets"]:
        raise config_error(
            experiment.dotted("prompt_set"),
            f"unknown prompt set {block['prompt_set']!r}",
            f"use one of {sorted(cfg['prompt_sets'])}",
        )
    if block.get("layers", "best") != "best":
        parse_layers(block["layers"], dims[cfg["extract"]["variant"]].n_layers, experiment.dotted("layers"))
