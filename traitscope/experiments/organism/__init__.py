"""Model organisms: what finetuning changed, read from activations, and removed again by ablation.

Directions (per layer, from last-prompt-token activations of the base and the finetuned model on the
same ``train`` prompts):

``mean_diff``  mean(finetuned) - mean(base)
``probe``      logistic regression finetuned (1) vs base (0) on standardised activations; the decision
               direction mapped back to activation space (coef / scale)

Detection (held-out ``test`` prompts, never used to fit): both models' activations projected on the unit
direction; ROC-AUC finetuned vs base with a stratified bootstrap 95% CI, Cohen's d, and the mean paired
shift. The ablation layer ("best") is the layer with the largest *train* Cohen's d, so the held-out
numbers at that layer are not selected on the test prompts.

Ablation: ``h - strength (h . u) u`` after each chosen block (:class:`traitscope.core.steering.Ablate`) while the
finetuned model generates; base generations use the same model with the LoRA adapter disabled.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ...core.layers import parse_layers
from ...workflow.checks import check_adapter_on, config_error
from ...workflow.experiment import Experiment, Finding, SaeComparison, StudyView, verdict
from ...workflow.tables import ci, fmt

if TYPE_CHECKING:
    from ...workflow.layout import Layout


class OrganismSettings(NamedTuple):
    base: str
    finetuned: str
    train: str
    test: str
    layers: Any
    methods: tuple[str, ...]
    probe_C: float
    ablate_layers: Any
    ablate_method: str
    ablate_strength: float
    n_generations: int
    max_new_tokens: int
    judge: bool
    n_boot: int


class Organism(Experiment):
    name = "organism"
    title = "Organism"
    settings = OrganismSettings
    uses_judge = True

    def check(self, cfg: dict[str, Any], dims: dict[str, Any], base_dir: Path, configured: list) -> None:
        org = self.section(cfg) or {}
        variants, sets, cap = cfg["variants"], cfg["prompt_sets"], cfg["capture"]
        for role in ("base", "finetuned"):
            if org[role] not in variants:
                raise config_error(
                    self.dotted(role), f"unknown variant {org[role]!r}", f"use one of {sorted(variants)}"
                )
        check_adapter_on(
            cfg,
            self.dotted("finetuned"),
            org["finetuned"],
            org["base"],
            "the base generations come from the same model with the adapter disabled",
            "use a variant with finetune: (or adapter:) on the base variant's model",
        )
        for role in ("train", "test"):
            if org[role] not in sets:
                raise config_error(self.dotted(role), f"unknown prompt set {org[role]!r}", f"use one of {sorted(sets)}")
        if org["train"] == org["test"]:
            raise config_error(
                self.dotted("test"),
                "the test set is the train set, so detection would not be held out",
                "use a different prompt set (e.g. the eval split)",
            )
        n = dims[org["base"]].n_layers
        layers = set(parse_layers(org["layers"], n, self.dotted("layers")))
        missing = sorted(layers - set(parse_layers(cap["layers"], n, "capture.layers")))
        if missing:
            raise config_error(
                self.dotted("layers"),
                f"layers {missing} are not in capture.layers",
                f"capture them or narrow {self.dotted('layers')}",
            )
        if "last" not in cap["positions"]:
            raise config_error("capture.positions", "the organism directions need last-token activations", "add last")
        if org["ablate_method"] not in org["methods"]:
            raise config_error(
                self.dotted("ablate_method"),
                f"{org['ablate_method']!r} is not in {self.dotted('methods')}",
                f"use one of {org['methods']}",
            )
        if org["ablate_layers"] != "best":
            bad = sorted(set(parse_layers(org["ablate_layers"], n, self.dotted("ablate_layers"))) - layers)
            if bad:
                raise config_error(
                    self.dotted("ablate_layers"),
                    f"layers {bad} are not in {self.dotted('layers')}",
                    "ablate layers with a direction",
                )

    def activation_pairs(self, study: StudyView, s: OrganismSettings) -> set[tuple[str, str]]:
        return {(v, p) for v in (s.base, s.finetuned) for p in (s.train, s.test)}

    def prompt_sets(self, s: OrganismSettings) -> list[str]:
        return [s.train, s.test]

    def sae_comparisons(self, s: OrganismSettings) -> dict[str, SaeComparison]:
        return {
            "organism": SaeComparison(
                s.finetuned, s.test, s.base, s.test, f"finetuned ({s.finetuned})", f"base ({s.base})"
            )
        }

    def layers(self, study: StudyView, s: OrganismSettings) -> tuple[int, ...]:
        return tuple(parse_layers(s.layers, study.n_layers(s.base), self.dotted("layers")))

    def directions_files(self, lay: Layout, ft: str) -> dict[str, str]:
        return {
            "directions": self.folder(lay, ft, "directions.safetensors"),
            "table": self.folder(lay, ft, "detection.parquet"),
            "json": self.folder(lay, ft, "detection.json"),
            "figure": self.folder(lay, ft, "detection_auc.png"),
        }

    def ablation_files(self, lay: Layout, ft: str) -> dict[str, str]:
        return {
            "table": self.folder(lay, ft, "ablation.parquet"),
            "markdown": self.folder(lay, ft, "ablation.md"),
            "json": self.folder(lay, ft, "ablation.json"),
        }

    def targets(self, study: StudyView, s: OrganismSettings, lay: Layout) -> list[str]:
        return [self.directions_files(lay, s.finetuned)[k] for k in ("json", "figure")] + [
            self.ablation_files(lay, s.finetuned)[k] for k in ("markdown", "json")
        ]

    def results(self) -> dict[str, str]:
        return {"organism/{}": "organism/*/detection.json", "organism_ablation/{}": "organism/*/ablation.json"}

    def findings(self, res: Any) -> Iterator[Finding]:
        for name in (n for n in res.experiments() if n.startswith("organism/")):
            o = res.experiment(name)
            ch = o["chosen"]
            yield (
                f"Model organism: {o['finetuned']}",
                f"the {ch['method']} direction at layer {ch['layer']} tells "
                f"{o['finetuned']} from {o['base']} on held-out prompts with AUC {ch['heldout_auc']:.2f} (random "
                f"95th percentile {ch['random_auc_p95']:.2f}): {verdict(ch['heldout_beats_random'])}",
                bool(ch["heldout_beats_random"]),
            )

    def measurements(self, res: Any) -> list[str]:
        out: list[str] = []
        ex = res.experiments()
        for name in sorted(n for n in ex if n.startswith("organism/")):
            o = res.experiment(name)
            ch = o["chosen"]
            out += [
                f"## Model organism: {o['finetuned']}",
                "",
                f"The {ch['method']} direction at layer {ch['layer']}: held-out AUC {fmt(ch['heldout_auc'])} "
                f"{ci(*ch['heldout_auc_ci95'])}, random p95 {fmt(ch['random_auc_p95'])}, Cohen's d "
                f"{fmt(ch['heldout_cohens_d'])}.",
                "",
            ]
            abl = f"organism_ablation/{o['finetuned']}"
            if abl in ex:
                a = res.experiment(abl)
                judged = a["judge"]["by_condition"]
                out += [
                    "Judged share misaligned (offline judge): "
                    + ", ".join(f"{k} {fmt(v['share_misaligned'])}" for k, v in judged.items())
                    + f"; restoration rate {fmt(a['judge']['restoration_rate'])}.",
                    "",
                ]
        return out


EXPERIMENT = Organism()
