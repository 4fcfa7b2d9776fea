"""No overlap between extraction and scored data: a prompt that helped fit a trait vector must not be scored
on that vector, or the score measures memorised training data, not the trait.

Every prompt set that is scored on the traits (:meth:`~traitscope.workflow.settings.Study.scored_sets`: the
captured sets and each experiment's) is compared
at start-up with the extraction prompts of every trait (a contrast trait's ``pos``/``neg`` sets, a persona
trait's questions), on normalised prompt text (:func:`normalise_text`: NFKC, case folded, invisible characters and
spacing removed) with any configured ``prefix`` removed.
Sets whose prompts start-up cannot load (hub datasets, files over the start-up load limit, replays of those) are
not compared: start-up warns and ``results/all`` lists them as unchecked. ``checks.allow_overlap`` lists the
scored sets allowed to overlap; their shared-prompt counts are recorded in ``results/all``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ..core.specs import PromptSetSpec, build, unresolved_trait


class Overlap(NamedTuple):
    scored: str  # the scored prompt set
    trait: str
    extraction: str  # where the trait's prompts come from (set names or the persona data)
    shared: int  # prompts in common


INVISIBLE = frozenset({"Cf", "Cc", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})
"""Unicode categories dropped before comparing: format characters (zero-width spaces and joiners, the byte-order
mark, soft hyphens, bidirectional marks), controls, unassigned and private-use code points, and every kind of space."""


def normalise_text(text: str) -> str:
    """The form prompts are compared in: Unicode NFKC (compatibility forms such as full-width letters, ligatures and
    non-breaking spaces folded), case folded, with every invisible or zero-width character and all spacing removed,
    so that ``"Ｈow do I\u200b bake  bread?"`` and ``"how do i bake bread?"`` are the same prompt."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", str(text)).casefold())
    return "".join(ch for ch in folded if not ch.isspace() and unicodedata.category(ch) not in INVISIBLE)


def set_texts(
    key: str, sets: dict[str, Any], base_dir: Path, known: dict[str, set[str] | None], seed: int
) -> set[str] | None:
    """Normalised prompt texts of a set (its prefix removed), or None where they cannot be known at start-up."""
    from ..core.prompts import startup_table

    if key in known:
        return known[key]
    spec = build(PromptSetSpec, sets[key])
    if spec.source == "replay":
        texts = set_texts(spec.prompt_set, sets, base_dir, known, seed) if spec.prompt_set in sets else None
    else:
        table = startup_table(key, spec, base_dir, seed)
        if table is None:
            texts = None
        else:
            prefix = spec.prefix or ""
            texts = {
                normalise_text(p[len(prefix) :] if prefix and p.startswith(prefix) else p) for p in table["prompt"]
            }
    known[key] = texts
    return texts


def trait_texts(
    key: str,
    spec_data: dict[str, Any],
    sets: dict[str, Any],
    base_dir: Path,
    known: dict[str, set[str] | None],
    seed: int,
) -> tuple[str, set[str] | None]:
    """Where a trait's extraction prompts come from, and their normalised texts (None if not known yet)."""
    from ..core.traits import persona_table

    spec = unresolved_trait(spec_data)
    if spec.source == "contrast":
        pos, neg = (set_texts(s, sets, base_dir, known, seed) if s else None for s in (spec.pos, spec.neg))
        return f"prompt sets {spec.pos!r} and {spec.neg!r}", None if pos is None or neg is None else pos | neg
    table = persona_table(key, spec, base_dir)
    return "its persona questions", {normalise_text(p) for p in table["prompt"]}


def find_overlaps(cfg: dict[str, Any], base_dir: Path, scored_sets: Sequence[str]) -> tuple[list[Overlap], list[str]]:
    """Every (scored set, trait) pair that shares prompts, with the count; and the (scored or extraction) sets
    that could not be compared because start-up cannot load them. ``scored_sets``: :meth:`Study.scored_sets`."""
    sets, known = cfg["prompt_sets"], {}  # type: ignore[var-annotated]
    found = []
    traits = {t: trait_texts(t, spec, sets, base_dir, known, cfg["seed"]) for t, spec in sorted(cfg["traits"].items())}
    for scored in scored_sets:
        if scored not in sets:
            continue
        texts = set_texts(scored, sets, base_dir, known, cfg["seed"])
        if texts is None:
            continue
        for trait, (where, extraction) in traits.items():
            shared = len(texts & extraction) if extraction is not None else 0
            if shared:
                found.append(Overlap(scored, trait, where, shared))
    return found, sorted(k for k, v in known.items() if v is None)
