"""Training trajectory: when, during finetuning, does the organism become misaligned?

A finetune keeps its adapter at chosen steps (``finetune.<name>.checkpoints``); start-up adds each as a variant
(``<variant>_step<k>``). Every step (the base as step 0, each checkpoint, the finished finetune) answers the ``test``
prompts in its own capture. Three readings per step, each a mean over prompts with a 95% t interval (scipy):

Organism direction
    the finished finetune's direction (its mean last-prompt-token activation minus the base's on ``train``, at
    ``layer``), and each step's test prompts projected onto it (before any answer); the control: ``n_random`` random
    unit directions at the same layer, whose mean change from step 0 to the end gives a 95th percentile of |change|
    the direction's own change is read against (does the shift fitted on the train prompts carry the held-out ones?).
Traits
    each trait's vector (``method``, its best layer and extraction position) on each step's own answers.
Judged misalignment
    ``n_generations`` of each step's answers scored 0-100 by the judge (the organism experiment's rubric).

The steepest step: between consecutive steps, the largest change per training step (of the organism-direction score,
and of judged misalignment), named by the interval it falls in.
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


class TrajectorySettings(NamedTuple):
    finetuned: str
    base: str
    train: str
    test: str
    layers: Any
    layer: Any
    method: str
    n_generations: int
    n_random: int


def checkpoint_variants(variants: dict[str, Any], finetuned: str) -> list[tuple[int, str]]:
    """(step, variant) of every checkpoint variant of ``finetuned``'s finetune, by step (``variants``: name -> spec,
    a dict or a ModelSpec)."""

    def get(spec: Any, key: str) -> Any:
        return spec.get(key) if isinstance(spec, dict) else getattr(spec, key)

    ft = get(variants[finetuned], "finetune")
    steps = [
        (int(get(v, "checkpoint")), n) for n, v in variants.items() if get(v, "finetune") == ft and get(v, "checkpoint")
    ]
    return sorted(steps)


class Trajectory(Experiment):
    name = "trajectory"
    # the judged answers are an input; their number is trajectory_judge's
    left_out = {"trajectory": ("n_generations",)}
    title = "Training trajectory"
    settings = TrajectorySettings
    uses_judge = True

    def check(self, cfg: dict[str, Any], dims: dict[str, Any], base_dir: Path, configured: list[Any]) -> None:
        t = self.section(cfg) or {}
        variants, sets, cap = cfg["variants"], cfg["prompt_sets"], cfg["capture"]
        for role in ("finetuned", "base"):
            if t[role] not in variants:
                raise config_error(self.dotted(role), f"unknown variant {t[role]!r}", f"use one of {sorted(variants)}")
        fin = variants[t["finetuned"]]
        if not fin.get("finetune") or fin.get("checkpoint"):
            raise config_error(
                self.dotted("finetuned"),
                f"'{t['finetuned']}' is not a finished finetune (a variant with finetune: and no checkpoint:)",
                "name the variant whose finetune lists checkpoints",
            )
        check_adapter_on(
            cfg,
            self.dotted("finetuned"),
            t["finetuned"],
            t["base"],
            "step 0 of its training is the base",
            f"use the finetune's base variant, '{cfg['finetune'][fin['finetune']]['base']}'",
        )
        steps = checkpoint_variants(variants, t["finetuned"])
        if not steps:
            raise config_error(
                f"finetune.{fin['finetune']}.checkpoints",
                "is empty, so the training trajectory has no steps between the base and the finished finetune",
                f"keep a few steps, e.g. checkpoints: [{cfg['finetune'][fin['finetune']]['save_steps']}]",
            )
        seen: dict[int, str] = {}
        for step, name in steps:
            if step in seen:
                raise config_error(
                    f"variants.{name}.checkpoint",
                    f"'{seen[step]}' is step {step} of the same finetune too",
                    "keep one variant per step",
                )
            seen[step] = name
        for role in ("train", "test"):
            if t[role] not in sets:
                raise config_error(self.dotted(role), f"unknown prompt set {t[role]!r}", f"use one of {sorted(sets)}")
        if sets[t["test"]].get("source") == "replay":
            raise config_error(
                self.dotted("test"),
                f"'{t['test']}' replays another variant's answers, so a checkpoint's own answers are never judged",
                "use the set it replays, or any set the model answers",
            )
        if not (cap.get("generate") or {}).get("enabled"):
            raise config_error(
                "capture.generate.enabled", "the trajectory judges each step's own answers", "set it to true"
            )
        if t["method"] not in cfg["extract"]["methods"]:
            raise config_error(
                self.dotted("method"),
                f"{t['method']!r} vectors are not extracted",
                f"use one of extract.methods {cfg['extract']['methods']}",
            )
        check_last_token_layers(
            cfg,
            dims,
            self.dotted(),
            t["base"],
            "the organism's direction is read at the last token",
            "the direction is",
        )

    def steps(self, study: StudyView, s: TrajectorySettings) -> list[tuple[int | None, str]]:
        """(step, variant) in training order: the base (0), each checkpoint, the finished finetune (None: its step
        count is read from its adapter)."""
        return [(0, s.base), *checkpoint_variants(study.variants, s.finetuned), (None, s.finetuned)]

    def step_variants(self, study: StudyView, s: TrajectorySettings) -> list[str]:
        return [v for _, v in self.steps(study, s)]

    def activation_pairs(self, study: StudyView, s: TrajectorySettings) -> set[tuple[str, str]]:
        return {(s.base, s.train), (s.finetuned, s.train)} | {(v, s.test) for v in self.step_variants(study, s)}

    def prompt_sets(self, s: TrajectorySettings) -> list[str]:
        return [s.train, s.test]

    def layers(self, study: StudyView, s: TrajectorySettings) -> tuple[int, ...]:
        return tuple(parse_layers(s.layers, study.n_layers(s.base), self.dotted("layers")))

    def judged(self, lay: Layout, variant: str = "{variant}") -> str:
        """One step's judged answers."""
        return self.folder(lay, "judged", f"{variant}.parquet")

    def files(self, lay: Layout) -> dict[str, str]:
        return {
            "table": self.folder(lay, "trajectory.parquet"),
            "json": self.folder(lay, "trajectory.json"),
            "figure": self.folder(lay, "trajectory.png"),
            "direction": self.folder(lay, "direction.safetensors"),
        }

    def targets(self, study: StudyView, s: TrajectorySettings, lay: Layout) -> list[str]:
        f = self.files(lay)
        return [f["json"], f["figure"]]

    def results(self) -> dict[str, str]:
        return {"trajectory": "trajectory/trajectory.json"}

    def findings(self, res: Any) -> Iterator[Finding]:
        if "trajectory" not in res.experiments():
            return
        r = res.experiment("trajectory")
        d, j = r["direction"], r["judged"]
        yield (
            "Training trajectory",
            f"along {r['finetuned']}'s direction (layer {d['layer']}) the test prompts move {d['change']:.3g} "
            f"(d_z {d['dz']:.2f}) from step 0 to {r['steps'][-1]} (random directions' |change| p95 "
            f"{d['random_abs_change_p95']:.3g}, n={d['n_random']}): "
            + ("beats them" if d["beats_random"] else "does NOT beat them")
            + f"; steepest between steps {_span(d['steepest'])}; judged misalignment {j['first']:.0f} -> "
            f"{j['last']:.0f} of 100 (n={j['n']} answers per step), steepest between steps {_span(j['steepest'])}",
            bool(d["beats_random"]),
        )

    def measurements(self, res: Any) -> list[str]:
        if "trajectory" not in res.experiments():
            return []
        r = res.experiment("trajectory")
        d, j = r["direction"], r["judged"]
        out = [
            "## Training trajectory",
            "",
            f"'{r['finetuned']}' at steps {', '.join(str(x) for x in r['steps'])} of {r['steps'][-1]}; direction "
            f"fitted on '{r['train_set']}' (n={r['n_train']} prompts) at layer {d['layer']} ({d['criterion']}); "
            f"'{r['test_set']}' projected (n={r['n_test']} prompts) and judged (n={j['n']} answers per step, "
            f"{j['judge_kind']}). Means with 95% t intervals.",
            "",
        ]
        rows = [
            [
                str(x["step"]),
                x["variant"],
                f"{fmt(x['direction'])} {ci(x['direction_ci_low'], x['direction_ci_high'])}",
                f"{fmt(x['judged'])} {ci(x['judged_ci_low'], x['judged_ci_high'])}",
            ]
            for x in r["by_step"]
        ]
        out += table(["step", "variant", "organism direction (projection)", "judged misalignment (0-100)"], rows)
        out += [
            f"Change along the direction, step 0 to {r['steps'][-1]}: {d['change']:.3g} (d_z {fmt(d['dz'])}) against "
            f"random directions' |change| p95 {d['random_abs_change_p95']:.3g} (n={d['n_random']}): beats random "
            f"{yes(d['beats_random'])}. "
            f"Steepest: direction between steps {_span(d['steepest'])}, judged misalignment between steps "
            f"{_span(j['steepest'])}.",
            "",
        ]
        return out


def _span(steepest: dict[str, Any] | None) -> str:
    return f"{steepest['from']} and {steepest['to']}" if steepest else "n/a"


EXPERIMENT = Trajectory()
