"""Each experiment's finding in one line, beside its control: the front page of the report and ``results/findings.md``.

Every line is read from an experiment's own JSON result (nothing is recomputed) and ends with its verdict against its
control: random directions at the same layer and rows (``beats random directions`` or ``does NOT beat random
directions``). The order follows the pipeline: extraction, harm check, emergent misalignment, external datasets,
prefill attack, backdoor, model organism.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .results import Results

Finding = tuple[str, str, bool | None]
"""(experiment, one-line finding, whether it beats its control; None where there is no single verdict)."""


def _verdict(beats: bool) -> str:
    return "beats random directions" if beats else "does NOT beat random directions"


def extraction(res: Results) -> Iterator[Finding]:
    traits = res.traits()
    if not traits:
        return
    best = {t: res.vector_info(t).info["best"] for t in traits}
    beaten = [t for t, b in best.items() if b.get("beats_random")]
    missed = [f"{t} (AUC {best[t]['auc']:.2f} vs {best[t]['random_auc_p95']:.2f})" for t in traits if t not in beaten]
    line = (f"{len(beaten)} of {len(traits)} trait vectors separate held-out answers better than the 95th percentile of "
            "random directions at their chosen layer" + (f"; not: {', '.join(missed)}" if missed else ""))
    yield "Extraction", line, len(beaten) == len(traits)


def harm_check(res: Results) -> Iterator[Finding]:
    if "harm_check" not in res.experiments():
        return
    h = res.experiment("harm_check")
    base = h["eval_baseline"]
    yield ("Harm check", f"{h['trait']} at layer {h['best_layer']} separates the independent harmful and harmless "
           f"prompts with AUC {h['eval_auc']:.2f} (random 95th percentile {base['random_auc_p95']:.2f}): "
           f"{_verdict(base['beats_random'])}", bool(base["beats_random"]))


def variant_comparison(res: Results) -> Iterator[Finding]:
    if "variant_comparison" not in res.experiments():
        return
    c = res.experiment("variant_comparison")
    traits = c["traits"]
    significant = [t for t, r in traits.items() if r["significant"]]
    if "n_significant_and_beats_random" in c:
        both = [t for t in significant if traits[t].get("beats_random")]
        line = (f"{c['variant']} vs {c['base']} on the same tokens: {len(significant)} of {len(traits)} traits differ "
                f"significantly ({c['correction']['method']}); {len(both)} of those also shift more than random "
                f"directions do" + (f" ({', '.join(both)})" if both else ""))
        yield "Emergent misalignment", line, bool(both)
    else:
        yield ("Emergent misalignment", f"{c['variant']} vs {c['base']}: {len(significant)} of {len(traits)} traits "
               "differ significantly (no random-direction control in this result; project.random_directions must be above 0)",
               None)


def external(res: Results) -> Iterator[Finding]:
    for name in (n for n in res.experiments() if n.startswith("external/")):
        e = res.experiment(name)
        parts, beaten = [], 0
        for trait, r in e["traits"].items():
            o = r["overall"]
            beaten += bool(o["beats_random"])
            parts.append(f"{trait} {o['auc']:.2f} vs {o['random_auc_p95']:.2f}")
        yield (f"External: {e['dataset']}", f"unsafe vs safe rows ({e['n_unsafe']} vs {e['n_safe']}), AUC vs random "
               f"95th percentile: {'; '.join(parts)}; {beaten} of {len(parts)} traits beat random directions",
               beaten > 0)


def prefill_attack(res: Results) -> Iterator[Finding]:
    if "prefill_attack" not in res.experiments():
        return
    p = res.experiment("prefill_attack")
    comp = p["comparisons"].get("C2_vs_C4")
    if not comp:
        return
    parts = [f"{t} AUC {r['auc']:.2f} vs {r['random_auc_p95']:.2f}" for t, r in comp["traits"].items()]
    beaten = [t for t, r in comp["traits"].items() if r.get("beats_random")]
    yield ("Prefill attack", "under a forced-compliance prefill, harmful vs benign prompts (C2 vs C4): "
           f"{'; '.join(parts)}; harm still represented (beats random directions) for "
           f"{', '.join(beaten) if beaten else 'no trait'}", bool(beaten))


def backdoor(res: Results) -> Iterator[Finding]:
    for name in (n for n in res.experiments() if n.startswith("backdoor/")):
        b = res.experiment(name)
        variant = name.split("/", 1)[1]
        beaten, total = [], 0
        for trait, r in b["traits"].items():
            for pos, by_variant in r["positions"].items():
                cell = by_variant.get(variant)
                if cell is None:
                    continue
                total += 1
                if cell.get("beats_random"):
                    beaten.append(f"{trait} ({pos}, AUC {cell['auc']:.2f} vs {cell['random_auc_p95']:.2f})")
        yield (f"Backdoor: {variant}", f"trigger vs control prompts before any output: {len(beaten)} of {total} "
               "trait scores beat random directions" + (f": {', '.join(beaten)}" if beaten else ""), bool(beaten))


def organism(res: Results) -> Iterator[Finding]:
    for name in (n for n in res.experiments() if n.startswith("organism/")):
        o = res.experiment(name)
        ch = o["chosen"]
        yield (f"Model organism: {o['finetuned']}", f"the {ch['method']} direction at layer {ch['layer']} tells "
               f"{o['finetuned']} from {o['base']} on held-out prompts with AUC {ch['heldout_auc']:.2f} (random 95th "
               f"percentile {ch['random_auc_p95']:.2f}): {_verdict(ch['heldout_beats_random'])}",
               bool(ch["heldout_beats_random"]))


EXPERIMENTS: tuple[Callable[[Results], Iterator[Finding]], ...] = (
    extraction, harm_check, variant_comparison, external, prefill_attack, backdoor, organism)
"""In pipeline order: the report's front page lists the findings in this order."""


def findings(res: Results) -> list[Finding]:
    """Every finding the results folder holds, in pipeline order."""
    return [f for experiment in EXPERIMENTS for f in experiment(res)]


def markdown(items: list[Finding]) -> str:
    return "".join(f"- **{name}**: {line}\n" for name, line, _ in items)


def front_page(items: list[Finding], intro: str) -> str:
    """The report's front page (reStructuredText): ``intro``, then one bullet per finding."""
    body = "".join(f"- **{name}**: {line}\n" for name, line, _ in items)
    return f"{intro.rstrip()}\n\nFindings, each beside its control:\n\n{body}"


def as_json(items: list[Finding]) -> list[dict[str, Any]]:
    return [{"experiment": name, "finding": line, "beats_control": verdict} for name, line, verdict in items]
