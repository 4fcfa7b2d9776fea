"""Shared directions: do finetunes on different data move the model along one direction?

Each organism's direction at a layer is the mean last-prompt-token activation of the organism minus the base model's,
on the same ``train`` prompts (the organism experiment's ``mean_diff``). Three readings, each beside its control:

Cosines
    the cosine of every pair of organisms' directions per layer, beside the 95th percentile of |cosine| between
    ``n_random`` pairs of random unit directions (isotropic: a floor, not a null for the anisotropic residual stream),
    each organism's split-half reliability (its direction fitted on two halves of the prompts: the cosine two
    estimates of the same direction reach), and the cosine with each finetuning control (what any finetune shares).
Transfer
    organism A's direction ablated (``h - (h . u) u`` after the block, every position) while organism B answers the
    ``test`` prompts; judged misalignment (0-100) against B's own answers, paired per prompt, beside a random unit
    direction ablated the same way.
Steering
    the base model with ``steer_coefficient`` x organism A's direction added after the block (1 adds A's mean shift),
    judged, beside a random direction of the same norm.

Ablation and steering act at ``layer``: "best" is the layer of the largest mean cosine between organisms (controls
left out), chosen on the cosines and never on the judged outcome.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ...core.layers import parse_layers
from ...workflow.checks import check_adapter_on, check_last_token_layers, config_error
from ...workflow.experiment import Experiment, Finding, StudyView
from ...workflow.tables import ci, fmt, table, yes

if TYPE_CHECKING:
    from ...workflow.layout import Layout


class SharedDirectionsSettings(NamedTuple):
    base: str
    organisms: tuple[str, ...]
    controls: tuple[str, ...]
    train: str
    test: str
    layers: Any
    layer: Any
    n_generations: int
    max_new_tokens: int
    steer_coefficient: float
    n_random: int
    n_boot: int


class SharedDirections(Experiment):
    name = "shared_directions"
    # the directions do not depend on the judged answers, nor the answers on the random control
    left_out = {
        "shared_directions": ("n_generations", "max_new_tokens", "steer_coefficient", "test", "n_boot"),
        "shared_directions_answers": ("n_random", "n_boot"),
        "shared_directions_transfer": ("n_random",),
    }
    title = "Shared directions"
    settings = SharedDirectionsSettings
    uses_judge = True

    def check(self, cfg: dict[str, Any], dims: dict[str, Any], base_dir: Path, configured: list[Any]) -> None:
        sd = self.section(cfg) or {}
        variants, sets = cfg["variants"], cfg["prompt_sets"]
        if sd["base"] not in variants:
            raise config_error(self.dotted("base"), f"unknown variant {sd['base']!r}", f"use one of {sorted(variants)}")
        both = set(sd["organisms"]) & set(sd["controls"])
        if both:
            raise config_error(
                self.dotted("controls"),
                f"{sorted(both)} are also organisms",
                "list a finetune either as an organism or as a control",
            )
        for role in ("organisms", "controls"):
            for name in sd[role]:
                if name not in variants:
                    raise config_error(self.dotted(role), f"unknown variant {name!r}", f"use one of {sorted(variants)}")
                check_adapter_on(
                    cfg,
                    self.dotted(role),
                    name,
                    sd["base"],
                    "its direction is read against the base on the same model",
                    f"use a variant with finetune: (or adapter:) on the '{sd['base']}' variant's model",
                )
        for role in ("train", "test"):
            if sd[role] not in sets:
                raise config_error(self.dotted(role), f"unknown prompt set {sd[role]!r}", f"use one of {sorted(sets)}")
        check_last_token_layers(
            cfg,
            dims,
            self.dotted(),
            sd["base"],
            "the shared directions need last-token activations",
            "the directions are",
        )

    def finetuned(self, s: SharedDirectionsSettings) -> list[str]:
        """The organisms and then the controls: the rows and columns of every matrix."""
        return [*s.organisms, *s.controls]

    def variants(self, s: SharedDirectionsSettings) -> list[str]:
        return [s.base, *self.finetuned(s)]

    def activation_pairs(self, study: StudyView, s: SharedDirectionsSettings) -> set[tuple[str, str]]:
        return {(v, s.train) for v in self.variants(s)}

    def prompt_sets(self, s: SharedDirectionsSettings) -> list[str]:
        return [s.train, s.test]

    def layers(self, study: StudyView, s: SharedDirectionsSettings) -> tuple[int, ...]:
        return tuple(parse_layers(s.layers, study.n_layers(s.base), self.dotted("layers")))

    def direction_files(self, lay: Layout) -> dict[str, str]:
        return {
            "directions": self.folder(lay, "directions.safetensors"),
            "table": self.folder(lay, "cosines.parquet"),
            "json": self.folder(lay, "cosines.json"),
            "figure": self.folder(lay, "cosines.png"),
        }

    def answers(self, lay: Layout, variant: str = "{variant}") -> str:
        """One model's judged answers under every condition (its own, ablated or steered)."""
        return self.folder(lay, "answers", f"{variant}.parquet")

    def transfer_files(self, lay: Layout) -> dict[str, str]:
        return {
            "table": self.folder(lay, "transfer.parquet"),
            "json": self.folder(lay, "transfer.json"),
            "figure": self.folder(lay, "transfer.png"),
            "markdown": self.folder(lay, "answers.md"),
        }

    def targets(self, study: StudyView, s: SharedDirectionsSettings, lay: Layout) -> list[str]:
        d, t = self.direction_files(lay), self.transfer_files(lay)
        return [d["json"], d["figure"], t["json"], t["figure"], t["markdown"]]

    def results(self) -> dict[str, str]:
        return {
            "shared_directions": "shared_directions/cosines.json",
            "shared_transfer": "shared_directions/transfer.json",
        }

    def findings(self, res: Any) -> Iterator[Finding]:
        ex = res.experiments()
        if "shared_directions" not in ex:
            return
        c = res.experiment("shared_directions")
        at = c["chosen"]
        pairs = [p for p in c["pairs"] if p["layer"] == at["layer"] and p["kind"] == "organisms"]
        text = "; ".join(f"{p['a']}~{p['b']} {p['cosine']:.2f}" for p in pairs)
        yield (
            "Shared directions",
            f"cosine of the organisms' directions at layer {at['layer']}: {text} (random p95 "
            f"{at['random_p95']:.2f}, split-half reliability {_reliability(c, at['layer'])}): "
            + ("above random" if all(p["beats_random"] for p in pairs) else "NOT above random for every pair"),
            all(p["beats_random"] for p in pairs),
        )
        if "shared_transfer" in ex:
            t = res.experiment("shared_transfer")
            cells = [x for x in t["transfer"] if x["direction"] != x["model"]]
            beats = [x for x in cells if x["beats_random"]]
            yield (
                "Shared directions: transfer",
                f"{len(beats)}/{len(cells)} organism directions ablated in another organism lower judged misalignment "
                "more than a random direction does (paired per prompt, "
                f"n={t['n_prompts']} prompts, offline judge)",
                bool(beats) if cells else None,
            )

    def measurements(self, res: Any) -> list[str]:
        ex = res.experiments()
        if "shared_directions" not in ex:
            return []
        c = res.experiment("shared_directions")
        at = c["chosen"]
        out = [
            "## Shared directions",
            "",
            f"Directions fitted on '{c['train_set']}' (n={c['n_train']} prompts, last token); cosines at layer "
            f"{at['layer']} ({at['criterion']}); random p95 {fmt(at['random_p95'])} (n={c['n_random']} random pairs).",
            "",
        ]
        rows = [
            [f"{p['a']} ~ {p['b']}", p["kind"], fmt(p["cosine"]), yes(p["beats_random"])]
            for p in c["pairs"]
            if p["layer"] == at["layer"]
        ]
        rows += [
            [f"{v} (split halves)", "reliability", fmt(r["by_layer"][str(at["layer"])]), "-"]
            for v, r in c["reliability"].items()
        ]
        out += table(["pair", "kind", "cosine", "above random p95"], rows)
        if "shared_transfer" in ex:
            t = res.experiment("shared_transfer")
            out += [
                f"Judged misalignment (0-100, {t['judge_kind']}), change against each model's own answers, paired per "
                f"prompt (n={t['n_prompts']}), 95% CI; control: a random direction.",
                "",
            ]
            rows = [_row(x["model"], f"ablate {x['direction']}", x) for x in t["transfer"]]
            rows += [_row(t["base"], f"steer {x['direction']}", x) for x in t["steering"]]
            out += table(["model", "condition", "own answers", "change", "random direction", "beats random"], rows)
        return out


def _row(model: str, condition: str, x: dict[str, Any]) -> list[str]:
    """One line of the judged table: the model's own score, the change with its CI, the random direction's change."""
    change = f"{fmt(x['change'])} {ci(x['ci_low'], x['ci_high'])}"
    return [model, condition, fmt(x["own"]), change, fmt(x["random_change"]), yes(x["beats_random"])]


def _reliability(c: dict[str, Any], layer: int) -> str:
    return ", ".join(f"{v} {r['by_layer'][str(layer)]:.2f}" for v, r in c["reliability"].items())


EXPERIMENT = SharedDirections()
