"""Contrastive data for trait extraction, in one prompt-table schema (see :mod:`traitscope.core.prompts`).

Sources:

``builtin``       project-written persona-style file ``data/traits/<category>/<name>.yaml``
``persona_json``  the persona-vectors format (``{"instruction": [{pos, neg}], "questions": [...]}``)
``contrast``      two prompt sets: ``pos`` (has the trait, label 1) and ``neg`` (label 0)

Persona-style rows follow the persona-vectors recipe: the system prompt is
``"You are a <assistant> assistant. <instruction>"`` with the pos or neg instruction, the user turn
is a question; ``group`` is the question, so a question never appears in both the train and the
test split of the extraction metrics.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from .errors import ConfigError, first_line
from .prompts import DATA_DIR, normalise
from .specs import TraitSpec


def builtin_traits() -> list[str]:
    root = DATA_DIR / "traits"
    return sorted(f"{p.parent.name}/{p.stem}" for p in root.glob("*/*.yaml"))


def _persona_data(key: str, spec: TraitSpec, base_dir: Path) -> dict[str, Any]:
    if spec.source == "builtin":
        name = spec.file or key
        path = DATA_DIR / "traits" / f"{name}.yaml"
        if not path.exists():
            raise ConfigError(
                f"config error at traits.{key}: no builtin trait data '{name}' "
                f"(fix: use one of {builtin_traits()}, or source: persona_json with a path)"
            )
        data = yaml.safe_load(path.read_text())
        questions = data["questions"]["extract"]
        return {
            "instruction": data["instruction"],
            "questions": questions,
            "assistant": data.get("assistant", {"pos": data["trait"], "neg": "helpful"}),
            "origin": f"builtin:{name}",
        }
    path = Path(base_dir) / Path(spec.path or "").expanduser()
    if not spec.path or not path.exists():
        raise ConfigError(
            f"config error at traits.{key}.path: persona JSON {spec.path!r} not found "
            f"(fix: point it to trait_data_extract/<trait>.json)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f" line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise ConfigError(
            f"config error at traits.{key}.path: '{path.name}'{where} is not JSON ({first_line(exc)}) "
            "(fix: point it to a persona-vectors trait_data_extract/<trait>.json)"
        ) from None
    if not isinstance(data, dict) or "instruction" not in data or "questions" not in data:
        raise ConfigError(
            f"config error at traits.{key}.path: '{path.name}' is not a persona trait JSON "
            f"(fix: it needs 'instruction' pairs and 'questions')"
        )
    pairs = data["instruction"]
    if not isinstance(pairs, list) or not all(isinstance(p, dict) and {"pos", "neg"} <= set(p) for p in pairs):
        raise ConfigError(
            f"config error at traits.{key}.path: '{path.name}' instruction must be a list of "
            "{pos, neg} pairs (fix: use the persona-vectors trait_data_extract format)"
        )
    return {
        "instruction": pairs,
        "questions": data["questions"],
        "assistant": {"pos": persona_adjective(spec, data, path), "neg": "helpful"},
        "origin": f"persona_json:{path.name}",
    }


def persona_adjective(spec: TraitSpec, data: dict[str, Any], path: Path) -> str:
    """The trait word of a persona-vectors file: ``adjective`` from the config, else the **word** its judge
    prompt names ("displays the trait: **evil**"), else the file name (the persona-vectors trait name)."""
    if spec.adjective:
        return spec.adjective
    named = re.search(r"\*\*([^*]+)\*\*", str(data.get("eval_prompt") or ""))
    return named.group(1).strip() if named else path.stem.replace("_", " ")


def with_article(word: str) -> str:
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def check_spec(key: str, spec: TraitSpec, prompt_sets: dict[str, Any], base_dir: Path) -> None:
    if spec.source == "contrast":
        for role in ("pos", "neg"):
            name = getattr(spec, role)
            if name not in prompt_sets:
                raise ConfigError(
                    f"config error at traits.{key}.{role}: unknown prompt set {name!r} "
                    f"(fix: use one of {sorted(prompt_sets)})"
                )
        return
    data = _persona_data(key, spec, base_dir)
    if not data["instruction"] or not data["questions"]:
        raise ConfigError(f"config error at traits.{key}: no instruction pairs or questions (fix: add some)")


def contrast_from_tables(pos: pd.DataFrame, neg: pd.DataFrame, pos_name: str, neg_name: str) -> pd.DataFrame:
    """Label 1 for the ``pos`` prompt set, 0 for ``neg``; every prompt is its own split group."""
    parts = [
        pos.assign(label=1, source=f"pos:{pos_name}", id="pos-" + pos["id"].astype(str)),
        neg.assign(label=0, source=f"neg:{neg_name}", id="neg-" + neg["id"].astype(str)),
    ]
    out = pd.concat(parts, ignore_index=True)
    out["group"] = out["id"]
    out["shard"] = 0
    out["label"] = out["label"].astype("Int64")
    return out


def persona_table(key: str, spec: TraitSpec, base_dir: str | Path = ".") -> pd.DataFrame:
    """Persona-style rows (builtin or persona_json): pairs x polarity x extract questions."""
    data = _persona_data(key, spec, Path(base_dir))
    pairs = data["instruction"][: spec.max_pairs or None]
    questions = data["questions"][: spec.max_questions or None]
    rows = []
    for p, pair in enumerate(pairs):
        for role, label in (("pos", 1), ("neg", 0)):
            system = f"You are {with_article(data['assistant'][role])} assistant. {pair[role]}"
            for q, question in enumerate(questions):
                rows.append(
                    {
                        "id": f"{role}-p{p}-q{q:02d}",
                        "prompt": question,
                        "system": system,
                        "label": label,
                        "group": f"q{q:02d}",
                        "category": key,
                        "source": data["origin"],
                        "meta": json.dumps({"pair": p, "question": q}),
                    }
                )
    return normalise(rows)


def trait_description(key: str, spec: TraitSpec, base_dir: str | Path = ".") -> str:
    """One sentence for a judge: the builtin file's description, else a generic one."""
    if spec.source == "builtin":
        data = yaml.safe_load((DATA_DIR / "traits" / f"{spec.file or key}.yaml").read_text())
        return str(data.get("description") or key)
    if spec.source == "contrast":
        return f"the answer resembles responses to '{spec.pos}' prompts rather than '{spec.neg}' prompts"
    return f"the answer shows the trait {key.split('/')[1]}"
