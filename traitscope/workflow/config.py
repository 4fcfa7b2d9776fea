"""Configuration: schema validation with one-line errors, semantic checks, layer specs.

:func:`load_config` is what the Snakefile calls at start-up. Every problem is raised as a
:class:`~traitscope.ConfigError` whose message is one line naming the config key and the fix,
before any job runs.
"""

from __future__ import annotations

import copy
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from ..core.chat import PLAIN_FORMAT, folder_has_template, special_text_hits, special_texts
from ..core.errors import ConfigError, TraitscopeError
from ..core.layers import parse_layers
from ..core.specs import FinetuneSpec, ModelDims, ModelSpec, PromptSetSpec, build, unresolved_trait
from .checks import (
    SET_NAME,
    check_vector_variant,
    config_error,
)
from .experiment import Experiment
from .layout import Layout
from .settings import Study

SCHEMA_PATH = Path(__file__).parents[1] / "schemas" / "config.schema.yaml"
TRAIT_KEY = re.compile(r"^[a-z0-9_]+/[a-z0-9_]+$")
RENAMED = {"compare": "emergent_misalignment"}
"""Config sections that were renamed (one name per concept: config section, rules, scripts, results folder)."""

log = logging.getLogger(__name__)


def load_schema(experiments: Sequence[Experiment] = ()) -> dict[str, Any]:
    """The config schema: the core's (``traitscope/schemas/config.schema.yaml``) with each experiment's section
    fragment in place (a top-level key, or nested like ``checks.harm_separation``)."""
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    for e in experiments:
        node = schema
        for k in e.key()[:-1]:
            node = node["properties"][k]
        node.setdefault("properties", {})[e.key()[-1]] = {"default": None, **e.schema_fragment()}
    return schema


def _path(err: ValidationError) -> str:
    return ".".join(str(p) for p in err.absolute_path) or "<top level>"


def format_schema_error(err: ValidationError) -> str:
    """Turn a jsonschema error into one line: where, what, and the fix."""
    where, inst, v = _path(err), err.instance, err.validator
    if v == "required":
        missing = re.search(r"'([^']+)'", err.message)
        name = missing.group(1) if missing else err.message
        parent = "" if where == "<top level>" else f" under {where}"
        return f"config error at {where}: missing key '{name}' (fix: add '{name}'{parent})"
    if v == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(inst) - set(allowed)) if isinstance(inst, dict) else []
        return f"config error at {where}: unknown key(s) {extra} (fix: remove or rename them; allowed keys: {allowed})"
    if v == "enum":
        return f"config error at {where}: {inst!r} is not allowed (fix: use one of {err.validator_value})"
    if v == "type":
        want = err.validator_value
        return f"config error at {where}: expected {want}, got {type(inst).__name__} {inst!r} (fix: give a {want})"
    if v in ("minItems", "minProperties"):
        return f"config error at {where}: must not be empty (fix: add at least one entry)"
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return f"config error at {where}: {err.message} (fix: give a value that satisfies {v} {err.validator_value})"
    if v == "oneOf":
        desc = err.schema.get("description", "see the schema")
        return f"config error at {where}: {inst!r} is not valid (fix: {desc})"
    return f"config error at {where}: {err.message.splitlines()[0]} (fix: see {SCHEMA_PATH.name})"


def fill_defaults(instance: Any, schema: dict[str, Any]) -> Any:
    """Fill ``default`` values recursively, also inside ``additionalProperties`` maps."""
    kind = schema.get("type")
    if not isinstance(instance, dict) or not (
        kind is None or kind == "object" or (isinstance(kind, list) and "object" in kind)
    ):
        return instance
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            fill_defaults(instance[key], sub)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in instance.items():
            if key not in schema.get("properties", {}):
                fill_defaults(value, extra)
    return instance


def validate_schema(config: dict[str, Any], experiments: Sequence[Experiment] = ()) -> dict[str, Any]:
    """Validate against the schema (one-line error on failure) and return a copy with defaults."""
    schema = load_schema(experiments)
    for old, new in RENAMED.items():
        if old in config and new in schema["properties"]:
            raise ConfigError(f"config error at {old}: the section is now called {new} (fix: rename {old}: to {new}:)")
    error = best_match(Draft202012Validator(schema).iter_errors(config))
    if error is not None:
        raise ConfigError(format_schema_error(error))
    cfg = copy.deepcopy(config)
    inherit_from_base(cfg)
    return fill_defaults(cfg, schema)


INHERITED = ("dtype", "quantization", "device_map", "max_memory", "offload_folder")
"""What a finetuned variant (``finetune: <name>``) and its checkpoint variants take from the finetune's base variant
unless they set it themselves: its precision and placement, so that base and finetune are compared in one dtype and
their jobs ask for the same GPUs and memory."""


def inherit_from_base(cfg: dict[str, Any]) -> None:
    """Copy each :data:`INHERITED` key the base variant sets (before the schema's defaults) into every variant
    finetuned from it that does not set it."""
    variants, finetunes = cfg.get("variants") or {}, cfg.get("finetune") or {}
    for var in variants.values():
        ft = var.get("finetune") if isinstance(var, dict) else None
        base = variants.get((finetunes.get(ft) or {}).get("base")) if isinstance(ft, str) else None
        if not isinstance(base, dict):
            continue  # an unknown finetune or base: resolve_finetuned names it
        for key in INHERITED:
            if key not in var and key in base:
                var[key] = copy.deepcopy(base[key])


# -------------------------------------------------------------------------------------- semantics


def check_semantics(
    cfg: dict[str, Any],
    base_dir: Path,
    resources_dir: Path,
    experiments: Sequence[Experiment] = (),
    jobs_on: str = "local",
) -> tuple[dict[str, ModelDims], dict[str, int | None], dict[str, int]]:
    """Cross-reference checks; returns the :class:`ModelDims` of each variant, the row count per prompt set (None
    where unknown before prep) and the rows of each trait's extraction data where start-up can load it. ``jobs_on``:
    ``cluster`` when the jobs run on cluster nodes (a variant is then checked against the device its job asks for,
    not this host's)."""
    from ..core import prompts, traits
    from ..core.dims import check_adapter, model_dims
    from ..core.models import check_bitsandbytes, read_chat_template
    from ..core.sources import embedded_gguf_path, embedded_name, gguf_source, looks_local
    from . import variant_checks

    variants, sets, trait_cfg = cfg["variants"], cfg["prompt_sets"], cfg["traits"]
    results = str(cfg["results_dir"]).strip()
    if not results or Path(results).expanduser().resolve() == Path("/") or Path(results).expanduser() == Path.home():
        raise config_error(
            "results_dir",
            f"{cfg['results_dir']!r} is not a directory of its own",
            "use a relative folder such as results, or an absolute path below /",
        )
    base = Path(base_dir).expanduser().resolve()
    given = base / Path(results).expanduser()
    if given.is_symlink() and not given.exists():
        raise config_error(
            "results_dir",
            f"{cfg['results_dir']!r} is a symbolic link to nothing ({os.readlink(given)})",
            "point the link at a folder, or use another results_dir",
        )
    if given.exists() and not given.is_dir():
        raise config_error(
            "results_dir", f"{cfg['results_dir']!r} is a file", "use a folder of its own, such as results"
        )
    resolved = given.resolve()
    if base == resolved or base.is_relative_to(resolved):
        raise config_error(
            "results_dir",
            f"{cfg['results_dir']!r} is the project folder (or holds it), where results would mix "
            "with the config, data and code",
            "use a folder of its own, such as results",
        )
    check_seeds(cfg)
    for name in sets:
        if not SET_NAME.match(name):
            raise config_error(f"prompt_sets.{name}", "names may use letters, digits and _ only", f"rename '{name}'")

    resolve_finetuned(cfg, jobs_on, base)
    dims: dict[str, ModelDims] = {}
    for name, var in variants.items():
        model = var["model"]
        if embedded_name(model) is None and looks_local(model) and not Path(model).expanduser().exists():
            raise config_error(
                f"variants.{name}.model", f"local folder '{model}' does not exist", "fix the path or use a hub id"
            )
        adapter = var.get("adapter")
        if adapter and not var.get("finetune") and looks_local(adapter) and not Path(adapter).expanduser().exists():
            raise config_error(
                f"variants.{name}.adapter",
                f"adapter folder '{adapter}' does not exist",
                "fix the path, or let the finetune rule produce it",
            )
        dims[name] = model_dims(
            model,
            resources_dir=resources_dir,
            revision=var.get("revision"),
            trust_remote_code=bool(var.get("trust_remote_code")),
            key=f"variants.{name}.model",
        )
        if adapter and not var.get("finetune") and Path(adapter).expanduser().is_dir():
            check_adapter(adapter, dims[name], f"variants.{name}.adapter", model)
        variant_checks.check_placement(name, var, base_dir, jobs_on)
        if var.get("quantization", "none") != "none":
            device = variant_checks.job_device(var, jobs_on, gpu_job(cfg, name))
            check_bitsandbytes(device, f"variants.{name}.quantization")
            variant_checks.check_quantizable(name, var, dims[name], device)
        embedded = embedded_name(model)
        gguf = embedded_gguf_path(embedded) if embedded else gguf_source(model)
        model_dir = (
            resources_dir / "models" / embedded
            if embedded
            else base_dir / Path(model).expanduser()
            if gguf is None and looks_local(model)
            else None
        )
        variant_checks.check_blocks(name, var, model_dir / "config.json" if model_dir is not None else None)
        if var.get("chat_template"):
            read_chat_template(var["chat_template"], f"variants.{name}.chat_template")
        template = variant_checks.template_text(var, base_dir, gguf)
        variant_checks.check_chat(name, var, template)
        if (
            not var.get("chat_template")
            and template is None
            and (gguf is not None or (looks_local(model) and folder_has_template(model) is False))
        ):
            log.warning(
                "variants.%s: the tokenizer of '%s' has no chat template, so prompts are given in the plain "
                "format (%s) (fix: use the model's instruct/chat version, or add a chat template to its "
                "tokenizer_config.json or as chat_template.jinja)",
                name,
                model,
                PLAIN_FORMAT,
            )

    ext = cfg["extract"]
    if ext["variant"] not in variants:
        raise config_error("extract.variant", f"unknown variant '{ext['variant']}'", f"use one of {sorted(variants)}")
    if ext["selection_method"] not in ext["methods"]:
        raise config_error(
            "extract.selection_method",
            f"'{ext['selection_method']}' is not in extract.methods",
            f"use one of {ext['methods']}",
        )
    parse_layers(ext["layers"], dims[ext["variant"]].n_layers, "extract.layers")

    rows = {
        key: prompts.check_spec(key, build(PromptSetSpec, spec), base_dir, cfg["seed"]) for key, spec in sets.items()
    }
    check_replay(cfg, rows)

    for key, spec in trait_cfg.items():
        if not TRAIT_KEY.match(key):
            raise config_error(
                f"traits.{key}", "trait keys are 'category/name' in lower case", "rename it, e.g. safety/evil"
            )
        traits.check_spec(key, unresolved_trait(spec), sets, base_dir)

    cap = cfg["capture"]
    for v in cap["variants"]:
        check_vector_variant(cfg, dims, v, "capture.variants")
        parse_layers(cap["layers"], dims[v].n_layers, "capture.layers")
    for s in cap["prompt_sets"]:
        if s not in sets:
            raise config_error(
                "capture.prompt_sets",
                f"unknown prompt set '{s}'",
                f"define it under prompt_sets or use one of {sorted(sets)}",
            )
    for s in cap["keep_activations"]:
        if s not in sets:
            raise config_error("capture.keep_activations", f"unknown prompt set '{s}'", f"use one of {sorted(sets)}")

    proj = cfg["project"]
    if proj["layers"] not in ("best", "neighbours"):
        parse_layers(proj["layers"], dims[ext["variant"]].n_layers, "project.layers")
    for m in proj["methods"]:
        if m not in ext["methods"]:
            raise config_error(
                "project.methods",
                f"'{m}' vectors are not extracted",
                f"add it to extract.methods or use {ext['methods']}",
            )

    configured = [(e, e.build(data)) for e in experiments if (data := e.section(cfg))]
    if any(e.uses_judge for e, _ in configured):  # the judged outputs
        if cfg["judge"]["model"].startswith("traitscope/"):
            model_dims(cfg["judge"]["offline_model"], resources_dir=resources_dir, key="judge.offline_model")
        else:
            from ..core.judge import check_judge_model

            try:
                check_judge_model(cfg["judge"]["model"])
            except TraitscopeError as exc:
                raise ConfigError(f"config error at {exc}") from None

    check_context(cfg, dims)
    for e, _ in configured:
        e.check(cfg, dims, base_dir, configured)
    check_conditions(cfg, base_dir, configured)
    trait_rows = check_splits(cfg, base_dir)
    check_special_tokens(cfg, base_dir, resources_dir)
    return dims, rows, trait_rows


SEED_RANGE = (0, 2**32 - 1)
"""What numpy's and scikit-learn's random generators take as a seed."""


def check_seeds(cfg: Any, where: str = "") -> None:
    """Every ``seed`` in the config is an integer numpy can seed with."""
    items = cfg.items() if isinstance(cfg, dict) else enumerate(cfg) if isinstance(cfg, list) else []
    for k, v in items:
        key = f"{where}.{k}" if where else str(k)
        if k == "seed" and isinstance(v, int) and not SEED_RANGE[0] <= v <= SEED_RANGE[1]:
            raise config_error(
                key,
                f"{v} is outside the seeds numpy accepts ({SEED_RANGE[0]} to {SEED_RANGE[1]})",
                "use a seed in that range",
            )
        check_seeds(v, key)


def condition_pairs(
    cfg: dict[str, Any], configured: Sequence[tuple[Experiment, Any]] = ()
) -> list[tuple[str, str, str, str]]:
    """Prompt sets that stand for two conditions an analysis compares, so they must differ: (key of the first,
    its set, key of the second, its set): each contrast trait's pos and neg, and each experiment's conditions."""
    pairs = []
    for key, spec in cfg["traits"].items():
        if spec.get("source") == "contrast":
            pairs.append((f"traits.{key}.pos", spec.get("pos"), f"traits.{key}.neg", spec.get("neg")))
    for e, s in configured:
        pairs += e.condition_pairs(s)
    return pairs


def _row_keys(key: str, cfg: dict[str, Any], base_dir: Path) -> set[str] | None:
    """What the model is shown for each row of a set (system prompt, prompt with its prefix, prefill), normalised
    like the overlap check; None where start-up cannot load the set."""
    from ..core.prompts import startup_table
    from .overlap import normalise_text

    spec = cfg["prompt_sets"].get(key)
    if spec is None or spec.get("source") == "replay":
        return None
    table = startup_table(key, build(PromptSetSpec, spec), base_dir, cfg["seed"])
    if table is None:
        return None
    cols = [table[c].fillna("").map(normalise_text) for c in ("system", "prompt", "prefill")]
    return set(cols[0] + "\x1f" + cols[1] + "\x1f" + cols[2])


def check_conditions(cfg: dict[str, Any], base_dir: Path, configured: Sequence[tuple[Experiment, Any]] = ()) -> None:
    """Two conditions an analysis compares are different prompt sets with no row in common (same system prompt,
    prompt and prefill), or the comparison could only ever give an AUC of about 0.5."""
    for key_a, set_a, key_b, set_b in condition_pairs(cfg, configured):
        if not set_a or not set_b:
            continue
        if set_a == set_b:
            raise config_error(
                key_b,
                f"{set_b!r} is also {key_a}, so the two conditions are the same prompts",
                "use a prompt set of the other condition",
            )
        rows_a, rows_b = _row_keys(set_a, cfg, base_dir), _row_keys(set_b, cfg, base_dir)
        if rows_a is None or rows_b is None:
            continue
        shared = len(rows_a & rows_b)
        if shared:
            what = "are the same prompts" if rows_a == rows_b else f"share {shared} of their prompts"
            raise config_error(
                key_b,
                f"prompt sets {set_a!r} ({key_a}) and {set_b!r} {what} (same system prompt, prompt and "
                "prefill), which the comparison must tell apart",
                "remove the shared prompts from one of them, or use sets of two different conditions",
            )


def check_special_tokens(cfg: dict[str, Any], base_dir: Path, resources_dir: Path) -> None:
    """With ``checks.special_tokens: refuse``: no prompt set start-up can load spells a special token of a variant's
    tokenizer (read from its files, or the embedded GGUF). Sets start-up cannot load are refused by capture."""
    if cfg["checks"].get("special_tokens", "text") != "refuse":
        return
    from ..core.chat import file_special_tokens, gguf_special_tokens
    from ..core.models import load_tokenizer
    from ..core.prompts import startup_table
    from ..core.sources import embedded_dir, embedded_gguf_path, embedded_name, gguf_source

    specials: dict[str, str] = {}  # token -> a variant whose tokenizer has it
    for name, var in cfg["variants"].items():
        emb = embedded_name(var["model"])
        folder = embedded_dir(emb, resources_dir) if emb else Path(var["model"]).expanduser()
        found = file_special_tokens(folder) if folder.is_dir() else None
        gguf = embedded_gguf_path(emb) if emb else gguf_source(var["model"], f"variants.{name}.model")
        if found is None and gguf is not None:
            found = gguf_special_tokens(gguf)
        if found is None:
            try:
                found = set(special_texts(load_tokenizer(build(ModelSpec, var), key=f"variants.{name}")))
            except TraitscopeError:
                log.warning(
                    "variants.%s: its tokenizer cannot be read at start-up, so special-token text is checked "
                    "by the capture jobs",
                    name,
                )
                continue
        specials.update({t: name for t in sorted(found) if t not in specials})
    for key, spec in cfg["prompt_sets"].items():
        if spec.get("source") == "replay":
            continue
        table = startup_table(key, build(PromptSetSpec, spec), base_dir, cfg["seed"])
        if table is None:
            continue
        for col, token, hit in special_text_hits(table, specials):
            raise config_error(
                f"prompt_sets.{key}",
                f"{int(hit.sum())} rows spell the special token {token!r} of variant "
                f"{specials[token]!r} in their {col}, e.g. row {table.loc[hit, 'id'].iloc[0]!r}, and "
                "checks.special_tokens is refuse",
                "remove it from the prompts, or set checks.special_tokens: text to keep it as ordinary text",
            )


def check_splits(cfg: dict[str, Any], base_dir: Path) -> dict[str, int]:
    """Each trait's extraction data can give the train/test split (extract.test_fraction) and the grouped
    cross-validation folds (extract.selection_folds) that extraction will ask for, with both classes everywhere:
    the same split, on the same rows and seed, as the extract job, done at start-up instead of after the capture.
    Traits whose data start-up cannot load are checked by the job. Returns the rows of each trait it checked."""
    from ..core.extract import SplitError, grouped_split, selection_folds
    from ..core.prompts import startup_table
    from ..core.traits import contrast_from_tables, persona_table

    ext, sets = cfg["extract"], cfg["prompt_sets"]
    counts: dict[str, int] = {}
    for key, data in cfg["traits"].items():
        spec = unresolved_trait(data)
        if spec.source == "contrast":
            tables = [
                startup_table(str(s), build(PromptSetSpec, sets[str(s)]), base_dir, cfg["seed"])
                for s in (spec.pos, spec.neg)
            ]
            if tables[0] is None or tables[1] is None:
                continue
            table = contrast_from_tables(tables[0], tables[1], str(spec.pos), str(spec.neg))
        else:
            table = persona_table(key, spec, base_dir)
        counts[key] = len(table)
        labels, groups = table["label"].to_numpy(dtype=int), table["group"].to_numpy()
        n_pos, n_neg = int((labels == 1).sum()), int((labels == 0).sum())
        try:
            train, _ = grouped_split(labels, groups, ext["test_fraction"], cfg["seed"])
            selection_folds(labels[train], groups[train], ext["selection_folds"], cfg["seed"])
        except SplitError as exc:
            raise ConfigError(
                f"config error at traits.{key}: {n_pos} positive and {n_neg} negative rows in "
                f"{len(set(groups.tolist()))} groups cannot be split as asked: {exc}"
            ) from None
    return counts


def check_overlap(
    cfg: dict[str, Any], base_dir: Path, scored: Sequence[str]
) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Scored sets sharing prompts with a trait's extraction data: an error unless the set is listed in
    ``checks.allow_overlap``. Returns the allowed overlaps (set -> trait -> shared prompts) and the sets that
    start-up could not compare, for the manifest."""
    from .overlap import find_overlaps

    allowed = list(cfg["checks"].get("allow_overlap") or [])
    for name in allowed:
        if name not in cfg["prompt_sets"]:
            raise config_error(
                "checks.allow_overlap", f"unknown prompt set {name!r}", f"use one of {sorted(cfg['prompt_sets'])}"
            )
    recorded: dict[str, dict[str, int]] = {}
    overlaps, unchecked = find_overlaps(cfg, base_dir, scored)
    if unchecked:
        log.warning(
            "prompt sets %s are loaded only by prep (hub or large files): their overlap with extraction "
            "prompts is not checked",
            unchecked,
        )
    for o in overlaps:
        if o.scored not in allowed:
            raise config_error(
                f"prompt_sets.{o.scored}",
                f"{o.shared} of its prompts are also extraction prompts of trait "
                f"{o.trait} ({o.extraction}), so its scores on that trait would be measured on training data",
                f"score other prompts, or list '{o.scored}' under checks.allow_overlap to accept and record it",
            )
        recorded.setdefault(o.scored, {})[o.trait] = o.shared
        log.warning(
            "prompt set %s shares %d prompts with the extraction data of %s (allowed by checks.allow_overlap)",
            o.scored,
            o.shared,
            o.trait,
        )
    return recorded, unchecked


def gpu_job(cfg: dict[str, Any], variant: str) -> bool | None:
    """Whether the variant's cluster jobs ask for a GPU as far as its ``resources.variants`` override says (None: the
    estimate from the model's size decides, a GPU for any model not on ``device_map: cpu``)."""
    over = ((cfg.get("resources") or {}).get("variants") or {}).get(variant) or {}
    if over.get("gres"):
        return "gpu" in str(over["gres"])
    if "gpu" in over and over["gpu"] is not None:
        return bool(over["gpu"])
    return None


def resolve_finetuned(cfg: dict[str, Any], jobs_on: str = "local", base_dir: Path = Path(".")) -> None:
    """A variant with ``finetune: <name>`` becomes the finetune's base model plus the adapter it trains."""
    variants, finetunes = cfg["variants"], cfg["finetune"]
    for name in list(variants) + list(finetunes):
        if not SET_NAME.match(name):
            where = "variants" if name in variants else "finetune"
            raise config_error(f"{where}.{name}", "names may use letters, digits and _ only", f"rename '{name}'")
    for name, ft in finetunes.items():
        if ft["base"] not in variants:
            raise config_error(
                f"finetune.{name}.base", f"unknown variant '{ft['base']}'", f"use one of {sorted(variants)}"
            )
        if variants[ft["base"]].get("finetune"):
            raise config_error(
                f"finetune.{name}.base",
                f"'{ft['base']}' is itself a finetuned variant",
                "finetune a variant without finetune:",
            )
        data = ft["data"]
        need = {"generated": "name", "local": "path", "hub": "dataset"}[data["source"]]
        if not data.get(need):
            raise config_error(f"finetune.{name}.data.{need}", f"missing for source {data['source']}", f"add {need}:")
        if data["source"] == "generated":
            from ..core.finetune_data import DATASETS

            if data["name"] not in DATASETS:
                raise config_error(
                    f"finetune.{name}.data.name",
                    f"unknown generated dataset {data['name']!r}",
                    f"use one of {list(DATASETS)}",
                )
    for name, var in variants.items():
        ft = var.get("finetune")
        if not ft:
            if not var.get("model"):
                raise config_error(
                    f"variants.{name}",
                    "no model",
                    "add model: (a hub id, a local folder or embedded:<name>) or finetune: <name>",
                )
            continue
        if ft not in finetunes:
            raise config_error(
                f"variants.{name}.finetune",
                f"unknown finetune {ft!r}",
                f"define it under finetune: or use one of {sorted(finetunes)}",
            )
        if var.get("adapter"):
            raise config_error(f"variants.{name}", "both adapter and finetune are set", "keep one of them")
        base = variants[finetunes[ft]["base"]]
        if var.get("model") and var["model"] != base["model"]:
            raise config_error(
                f"variants.{name}.model",
                f"'{var['model']}' differs from the model of finetune.{ft}.base",
                "remove model: (it is taken from the base variant)",
            )
        var.update(
            model=base["model"],
            revision=base.get("revision"),
            trust_remote_code=base.get("trust_remote_code", False),
            adapter=Layout(cfg["results_dir"]).adapter(ft),
        )
        if finetunes[ft].get("quantization", "none") != "none":
            from ..core.models import check_bitsandbytes
            from .variant_checks import job_device

            check_bitsandbytes(
                job_device(base, jobs_on, gpu_job(cfg, finetunes[ft]["base"])), f"finetune.{ft}.quantization"
            )
        for inherited in ("chat_template", "chat_options", "blocks"):  # the format and layout the adapter learned in
            if var.get(inherited) is None:
                var[inherited] = base.get(inherited)
    add_checkpoint_variants(cfg, base_dir)


def finetune_steps(spec: dict[str, Any], base_dir: Path, seed: int) -> int | None:
    """The optimizer steps a finetune will take (``ceil(train examples / batch_size) x epochs``, the held-out
    ``eval_fraction`` left out), where start-up can count its examples: generated data, a local file; None for a hub
    dataset. An upper bound: examples without an assistant token within ``max_length`` are dropped in training."""
    import gzip
    import math

    from ..core.finetune import split_examples

    data = spec["data"]
    try:
        if data["source"] == "generated":
            from ..core.finetune_data import generate

            n = len(
                generate(data["name"], n=data.get("n"), seed=int(spec.get("seed") or seed), trigger=data.get("trigger"))
            )
        elif data["source"] == "local":
            path = Path(base_dir) / Path(str(data.get("path"))).expanduser()
            opener: Any = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt", encoding="utf-8") as f:
                n = sum(1 for line in f if line.strip())
            n = min(n, int(data["n"])) if data.get("n") else n
        else:
            return None
    except (OSError, ValueError, TraitscopeError):
        return None  # the finetune's own checks name what is wrong with its data
    train, _ = split_examples(n, float(spec.get("eval_fraction", 0.1)), int(spec.get("seed") or seed))
    return math.ceil(len(train) / int(spec["batch_size"])) * int(spec["epochs"])


def check_step(key: str, ft: str, step: int, total: int | None) -> None:
    """A checkpoint ``step`` comes before the last of the finetune's ``total`` steps (the last is its adapter)."""
    if total is not None and step >= total:
        raise config_error(
            key,
            f"step {step} is at or past the last of finetune.{ft}'s {total} steps (its finished adapter is the "
            f"variant with finetune: {ft})",
            f"use steps from 1 to {total - 1}",
        )


def add_checkpoint_variants(cfg: dict[str, Any], base_dir: Path = Path(".")) -> None:
    """Each step ``k`` of ``finetune.<ft>.checkpoints`` becomes variant ``<variant>_step<k>`` beside every variant
    with ``finetune: <ft>`` (after that variant, in config order): the same model with the adapter as it was after
    ``k`` steps. A variant that already holds the name must be that checkpoint (a resolved config read again)."""
    variants, finetunes = cfg["variants"], cfg["finetune"]
    lay = Layout(cfg["results_dir"])
    steps = {ft: finetune_steps(spec, base_dir, int(cfg["seed"])) for ft, spec in finetunes.items()}
    for ft, spec in finetunes.items():
        for k in spec.get("checkpoints") or []:
            check_step(f"finetune.{ft}.checkpoints", ft, int(k), steps[ft])
    out: dict[str, Any] = {}
    for name, var in variants.items():
        out[name] = var
        ft = var.get("finetune")
        step = var.get("checkpoint")
        if step is not None:
            if not ft:
                raise config_error(f"variants.{name}.checkpoint", "is set without finetune:", "add finetune: <name>")
            check_step(f"variants.{name}.checkpoint", ft, int(step), steps.get(ft))
            var["adapter"] = lay.checkpoint_adapter(ft, step)
            continue
        for k in (finetunes[ft].get("checkpoints") or []) if ft else []:
            child = f"{name}_step{k}"
            held = variants.get(child)
            if held is not None and (held.get("finetune"), held.get("checkpoint")) != (ft, k):
                raise config_error(
                    f"variants.{child}",
                    f"the name is taken: start-up names checkpoint {k} of finetune.{ft} so",
                    "rename this variant",
                )
            out[child] = held or {
                **copy.deepcopy(var),
                "checkpoint": k,
                "adapter": lay.checkpoint_adapter(ft, k),
            }
    variants.clear()  # in place: callers hold the dict
    variants.update(out)


def check_context(cfg: dict[str, Any], dims: dict[str, ModelDims]) -> None:
    """Every sequence a job builds fits the model's context: the prompt is cut at ``capture.max_length`` (counted),
    so prompt plus generated tokens must stay within ``max_position_embeddings``; likewise a finetune example."""
    cap, ext = cfg["capture"], cfg["extract"]
    generates = cap["generate"]["enabled"] and "response" in cap["positions"]
    capture = (
        (cap["max_length"] + cap["generate"]["max_new_tokens"], "capture.max_length + capture.generate.max_new_tokens")
        if generates
        else (cap["max_length"], "capture.max_length")
    )
    checks = [(v, *capture) for v in cap["variants"]]
    checks.append(
        (ext["variant"], cap["max_length"] + ext["max_new_tokens"], "capture.max_length + extract.max_new_tokens")
    )
    for v, n, what in checks:
        ctx = dims[v].context_length
        if ctx is not None and n > ctx:
            raise config_error(
                "capture.max_length",
                f"{what} = {n} tokens exceeds the context of variant '{v}' ({ctx} tokens), "
                "where its positions would be extrapolated",
                f"lower them to at most {ctx} in total",
            )
    for name, ft in cfg["finetune"].items():
        base = ft.get("base")
        ctx = dims[base].context_length if base in dims else None
        if ctx is not None and ft["max_length"] > ctx:
            raise config_error(
                f"finetune.{name}.max_length",
                f"{ft['max_length']} exceeds the context of variant '{base}' ({ctx} tokens)",
                f"use at most {ctx}",
            )


def check_replay(cfg: dict[str, Any], rows: dict[str, int | None]) -> None:
    """A replay set needs an existing, non-replay source set and a variant that generates responses."""
    sets, variants, cap = cfg["prompt_sets"], cfg["variants"], cfg["capture"]
    for key, spec in sets.items():
        if spec["source"] != "replay":
            continue
        src, var = spec.get("prompt_set"), spec.get("variant")
        if src not in sets or sets[src]["source"] == "replay":
            raise config_error(
                f"prompt_sets.{key}.prompt_set",
                f"{src!r} is not a prompt set to replay",
                f"use one of {sorted(k for k, v in sets.items() if v['source'] != 'replay')}",
            )
        if var not in variants:
            raise config_error(
                f"prompt_sets.{key}.variant", f"unknown variant {var!r}", f"use one of {sorted(variants)}"
            )
        if not cap["generate"]["enabled"] or "response" not in cap["positions"]:
            raise config_error(
                f"prompt_sets.{key}",
                "replay needs generated responses",
                "set capture.generate.enabled: true and keep response in capture.positions",
            )
        rows[key] = rows.get(src)


def load_config(
    config: dict[str, Any],
    base_dir: str | Path = ".",
    resources_dir: str | Path = "resources",
    check: bool = True,
    *,
    experiments: Sequence[Experiment] = (),
    jobs_on: str = "local",
) -> Study:
    """Validate a raw config dict (schema, then semantics) and return the typed :class:`~traitscope.workflow.settings.Study`.

    ``experiments`` is the registry (:data:`traitscope.experiments.REGISTRY`; :func:`traitscope.study.load_config`
    passes it): their sections are validated, checked and typed. With ``check`` the model sizes (``dims``),
    prompt-set row counts (``rows``) and capture shards (``shards``) are learnt too; without it only the schema is
    applied (no file or model is opened).
    """
    cfg = validate_schema(config, experiments)
    if not check:
        return Study.from_config(cfg, experiments, config=cfg)
    dims, rows, trait_rows = check_semantics(cfg, Path(base_dir), Path(resources_dir), experiments, jobs_on)
    study = Study.from_config(cfg, experiments, config=cfg)
    overlaps, unchecked = check_overlap(cfg, Path(base_dir), study.scored_sets())
    shards = {k: shard_count(k, spec, rows.get(k)) for k, spec in cfg["prompt_sets"].items()}
    for k, spec in cfg["prompt_sets"].items():  # a replay set keeps the shards of the set it replays
        if spec["source"] == "replay":
            shards[k] = shards[spec["prompt_set"]]
    overlap = {"allowed": overlaps, "unchecked": unchecked}
    return replace(study, dims=dims, rows=rows, shards=shards, trait_rows=trait_rows, overlaps=overlap)


def entry(kind: str, data: dict[str, Any]) -> Any:
    """One typed entry of a map section (``variants``, ``prompt_sets``, ``traits``, ``finetune``) from a partial
    dict, with the schema's defaults: for callers outside a study (tests, notebooks, benchmarks). A finetune's
    ``seed`` left null is the schema's global seed."""
    schema = load_schema()["properties"][kind]["additionalProperties"]
    filled = fill_defaults(copy.deepcopy(data), schema)
    if kind == "traits":
        return unresolved_trait(filled)
    if kind == "finetune":
        if filled.get("seed") is None:
            filled["seed"] = load_schema()["properties"]["seed"]["default"]
        return build(FinetuneSpec, filled)
    return build({"variants": ModelSpec, "prompt_sets": PromptSetSpec}[kind], filled)


def section(name: str, data: dict[str, Any] | None = None, experiments: Sequence[Experiment] = ()) -> Any:
    """One typed top-level section (``capture``, ``judge``, an experiment's) from a partial dict, with the schema's
    defaults."""
    from .settings import SECTIONS

    for e in experiments:
        if e.name == name:  # its own fragment holds its defaults
            return e.build(fill_defaults(copy.deepcopy(data or {}), e.schema_fragment()))
    sub = load_schema()["properties"][name]
    return build(SECTIONS[name], fill_defaults(copy.deepcopy(data or {}), sub))


def shard_count(key: str, spec: dict[str, Any], rows: int | None) -> int:
    """Capture shards of a prompt set: ``shards``, or ceil(rows / ``shard_size``)."""
    if spec.get("shards") and spec.get("shard_size"):
        raise config_error(f"prompt_sets.{key}", "both shards and shard_size are set", "keep one of them")
    if spec.get("shard_size"):
        if rows is None:
            raise config_error(
                f"prompt_sets.{key}.shard_size",
                "the size of this set is unknown before it is downloaded",
                "set sample (a fixed size) or shards instead",
            )
        return max(1, -(-rows // int(spec["shard_size"])))
    shards = int(spec.get("shards") or 1)
    if rows is not None and shards > rows:
        raise config_error(
            f"prompt_sets.{key}.shards",
            f"{shards} shards for {rows} prompts would leave shards empty",
            f"use at most {rows} shards, or shard_size",
        )
    return shards
