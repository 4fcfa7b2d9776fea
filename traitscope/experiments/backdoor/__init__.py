"""Backdoor detection from trait scores: trigger vs control prompts, before any bad output.

Trigger and control prompt sets hold the same questions (paired by id) with and without the trigger, and
the same replayed response, so the two conditions differ only in the trigger. For each trait (at its best
layer) the scores of the backdoored variant separate the conditions with a ROC-AUC (stratified bootstrap
95% CI) and a paired Wilcoxon signed-rank test; a baseline variant without the backdoor on the same prompts
shows how much the trigger string alone moves the scores.

Token positions: ``-1`` is the last prompt token (the model has read the trigger, nothing is generated
yet); ``0, 1, ...`` are the replayed response tokens. The onset is the first position whose AUC CI lies
above 0.5.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ...workflow.checks import check_projected_method, check_vector_variant, config_error
from ...workflow.experiment import Comparison, Experiment, Finding, Panel, SaeComparison, StudyView
from ...workflow.tables import ci, fmt, table, yes

if TYPE_CHECKING:
    from ...workflow.layout import Layout


class BackdoorSettings(NamedTuple):
    variant: str
    baseline: str | None
    trigger: str
    control: str
    method: str
    max_tokens: int
    n_boot: int

    def variants(self) -> tuple[str, ...]:
        return (self.variant,) if self.baseline is None else (self.variant, self.baseline)


class Backdoor(Experiment):
    name = "backdoor"
    title = "Backdoor"
    settings = BackdoorSettings

    def check(self, cfg: dict[str, Any], dims: dict[str, Any], base_dir: Path, configured: list) -> None:
        bd = self.section(cfg) or {}
        for role in ("variant", "baseline"):
            if bd.get(role) is not None:
                check_vector_variant(cfg, dims, bd[role], self.dotted(role))
        for role in ("trigger", "control"):
            if bd[role] not in cfg["prompt_sets"]:
                raise config_error(
                    self.dotted(role), f"unknown prompt set {bd[role]!r}", f"use one of {sorted(cfg['prompt_sets'])}"
                )
        check_projected_method(cfg, bd["method"], self.dotted("method"))

    def condition_pairs(self, s: BackdoorSettings) -> list[tuple[str, str, str, str]]:
        return [(self.dotted("trigger"), s.trigger, self.dotted("control"), s.control)]

    def projected_pairs(self, s: BackdoorSettings) -> set[tuple[str, str]]:
        return {(v, p) for v in s.variants() for p in (s.trigger, s.control)}

    def scored_sets(self, s: BackdoorSettings) -> list[str]:
        return [s.trigger, s.control]

    def activation_pairs(self, study: StudyView, s: BackdoorSettings) -> set[tuple[str, str]]:
        return self.projected_pairs(s)  # its random-direction baseline projects the activations

    def per_token_baseline(self, s: BackdoorSettings, pset: str) -> bool:
        return pset in (s.trigger, s.control)  # how early: an AUC per response token, beside random directions

    def sae_comparisons(self, s: BackdoorSettings) -> dict[str, SaeComparison]:
        return {"backdoor": SaeComparison(s.variant, s.trigger, s.variant, s.control, "trigger", "control")}

    def files(self, lay: Layout, variant: str = "{variant}") -> dict[str, str]:
        return {
            "json": self.folder(lay, variant, "detection_auc.json"),
            "tokens": self.folder(lay, variant, "token_auc.parquet"),
            "comparison": self.folder(lay, variant, "trait_comparison.png"),
            "early": self.folder(lay, variant, "early_detection_tokens.png"),
        }

    def targets(self, study: StudyView, s: BackdoorSettings, lay: Layout) -> list[str]:
        return [self.files(lay, s.variant)[k] for k in ("json", "comparison", "early")]

    def comparisons(self, s: BackdoorSettings) -> list[Comparison]:
        return [
            Comparison(
                f"backdoor: trigger vs control ({v})",
                (Panel(f"trigger ({s.trigger})", v, s.trigger), Panel(f"control ({s.control})", v, s.control)),
                reference=1,
            )
            for v in s.variants()
        ]

    def results(self) -> dict[str, str]:
        return {"backdoor/{}": "backdoor/*/detection_auc.json"}

    def findings(self, res: Any) -> Iterator[Finding]:
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
            line = (
                f"trigger vs control prompts before any output: {len(beaten)} of {total} "
                "trait scores beat random directions" + (f": {', '.join(beaten)}" if beaten else "")
            )
            limits = {t: r["planted"]["detection_limit"] for t, r in b["traits"].items() if "planted" in r}
            if limits and not beaten:  # a null says how large a planted backdoor it would have found
                line += "; a trigger direction planted at the last prompt token would be detected from " + ", ".join(
                    f"{t} {'none up to 1' if x is None else f'{x:g}'} x norm" for t, x in limits.items()
                )
            yield f"Backdoor: {variant}", line, bool(beaten)

    def measurements(self, res: Any) -> list[str]:
        out: list[str] = []
        for name in sorted(n for n in res.experiments() if n.startswith("backdoor/")):
            b = res.experiment(name)
            variant = name.split("/", 1)[1]
            out += [
                f"## Backdoor: {variant}",
                "",
                "Trigger vs control at the last prompt token, before any output.",
                "",
            ]
            rows = []
            for t, r in sorted(b["traits"].items()):
                cells = r["positions"].get("last", {})
                bd, base = cells.get(variant, {}), cells.get(b.get("baseline") or "", {})
                rows.append(
                    [
                        t,
                        r["layer"],
                        f"{fmt(bd.get('auc'))} {ci(bd.get('ci_low'), bd.get('ci_high'))}",
                        fmt(bd.get("random_auc_p95")),
                        yes(bd.get("beats_random")),
                        fmt(base.get("auc")),
                    ]
                )
            out += table(["trait", "layer", f"{variant} AUC [95% CI]", "random p95", "beats", "base model AUC"], rows)
            planted = [
                [
                    t,
                    x["planted"],
                    f"{x['coef']:g}",
                    fmt(x["score_shift"]),
                    fmt(x["auc"]),
                    fmt(x["random_auc_p95"]),
                    yes(x["detected"]),
                ]
                for t, r in sorted(b["traits"].items())
                for x in (r.get("planted") or {}).get("rows", [])
            ]
            if planted:
                out += [
                    "",
                    "Planted trigger direction (the positive control): the trigger rows' activations at the trait's "
                    "layer plus coef x the mean activation norm there of the trait's own unit vector, or of a random "
                    "one; detected: AUC above the random directions' 95th percentile (which saturates with the AUC).",
                    "",
                ]
                out += table(
                    ["trait", "planted", "coef (x norm)", "score shift", "AUC", "random p95", "detected"], planted
                )
        return out


EXPERIMENT = Backdoor()
