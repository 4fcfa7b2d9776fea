"""The validated study: every config section typed, the experiments' settings, and what start-up learnt.

Built once by :func:`traitscope.workflow.config.load_config` from a schema-validated config and the experiment
registry (:data:`traitscope.experiments.REGISTRY`); the rules read it and pass each job only the settings it uses
(``capture_job``, ``extract_job``, a section, a spec). ``Study`` asks each configured experiment, through the hooks of
:class:`~traitscope.workflow.experiment.Experiment`, which (variant, prompt set) pairs it reads; it names none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.layers import parse_layers
from ..core.specs import (
    BaselineJob,
    CaptureJob,
    CaptureSettings,
    ExtractJob,
    ExtractSettings,
    FinetuneSpec,
    JudgeSettings,
    ModelDims,
    ModelSpec,
    ProjectSettings,
    PromptSetSpec,
    ResourceSettings,
    TraitSpec,
    ViewerSettings,
    build,
    canonical,
)
from .experiment import Experiment, SaeComparison

SECTIONS: dict[str, Any] = {
    "extract": ExtractSettings,
    "capture": CaptureSettings,
    "project": ProjectSettings,
    "judge": JudgeSettings,
    "resources": ResourceSettings,
    "viewer": ViewerSettings,
}
"""Config section -> settings class of the core sections (each experiment brings its own)."""


@dataclass(frozen=True)
class Study:
    """The whole validated study: every section typed, plus what start-up learnt (model sizes, row counts).

    An experiment's settings are an attribute named after it (``study.backdoor``; None when not configured).
    """

    seed: int
    results_dir: str
    variants: dict[str, ModelSpec]
    finetune: dict[str, FinetuneSpec]
    traits: dict[str, TraitSpec]
    prompt_sets: dict[str, PromptSetSpec]
    extract: ExtractSettings
    capture: CaptureSettings
    project: ProjectSettings
    judge: JudgeSettings
    resources: ResourceSettings
    viewer: ViewerSettings
    registry: tuple[Experiment, ...] = ()
    experiments: dict[str, Any] = field(default_factory=dict)  # experiment name -> settings (None: not configured)
    dims: dict[str, ModelDims] = field(default_factory=dict)
    rows: dict[str, int | None] = field(default_factory=dict)
    shards: dict[str, int] = field(default_factory=dict)
    trait_rows: dict[str, int] = field(default_factory=dict)  # rows of each trait's extraction data, where known
    # overlap of scored and extraction prompts: {"allowed": {set: {trait: prompts}}, "unchecked": [sets]}
    overlaps: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # the validated config with defaults, for provenance

    def __getattr__(self, name: str) -> Any:
        experiments = self.__dict__.get("experiments") or {}
        if name in experiments:
            return experiments[name]
        raise AttributeError(f"Study has no attribute or experiment {name!r}")

    @classmethod
    def from_config(cls, cfg: dict[str, Any], registry: Sequence[Experiment] = (), **derived: Any) -> Study:
        """Typed sections from a schema-validated config with defaults filled in."""
        seed = int(cfg["seed"])
        finetune = {
            k: build(FinetuneSpec, {**v, "seed": seed if v.get("seed") is None else v["seed"]})
            for k, v in cfg["finetune"].items()
        }
        ext = build(ExtractSettings, cfg["extract"])
        traits = {
            k: build(
                TraitSpec,
                {**v, "position": v.get("position") or ("last" if v["source"] == "contrast" else ext.position)},
            )
            for k, v in cfg["traits"].items()
        }
        sections: dict[str, Any] = {name: build(kind, cfg[name]) for name, kind in SECTIONS.items()}
        experiments = {e.name: (e.build(data) if (data := e.section(cfg)) else None) for e in registry}
        if "config" in derived:
            derived["config"] = canonical(derived["config"])
        return cls(
            seed=seed,
            results_dir=cfg["results_dir"],
            variants={k: build(ModelSpec, v) for k, v in cfg["variants"].items()},
            finetune=finetune,
            traits=traits,
            prompt_sets={k: build(PromptSetSpec, v) for k, v in cfg["prompt_sets"].items()},
            registry=tuple(registry),
            experiments=experiments,
            **sections,
            **derived,
        )

    # ---- the configured experiments
    def configured(self) -> list[tuple[Experiment, Any]]:
        """(experiment, its settings) of every experiment the study configures, in registry order."""
        return [(e, self.experiments[e.name]) for e in self.registry if self.experiments.get(e.name) is not None]

    def experiment(self, name: str) -> Experiment:
        for e in self.registry:
            if e.name == name:
                return e
        raise KeyError(f"no experiment {name!r} in the registry")

    # ---- derived per-job settings
    def scored_sets(self) -> list[str]:
        """Every prompt set scored on the trait vectors: capture.prompt_sets, then each experiment's, without
        repeats (the sets start-up compares with the extraction prompts)."""
        out = list(self.capture.prompt_sets)
        for e, s in self.configured():
            out += e.scored_sets(s)
        return list(dict.fromkeys(out))

    def used_prompt_sets(self) -> list[str]:
        """Prompt sets some job reads: scored, trait extraction, the experiments' own, and replay sources."""
        used = self.scored_sets()
        used += [s for t in self.traits.values() if t.source == "contrast" for s in (t.pos, t.neg) if s]
        for e, s in self.configured():
            used += e.prompt_sets(s)
        for name in list(used):
            spec = self.prompt_sets.get(name)
            if spec is not None and spec.source == "replay" and spec.prompt_set:
                used.append(spec.prompt_set)
        return sorted(set(used) & set(self.prompt_sets))

    def projected_pairs(self) -> list[tuple[str, str]]:
        """Every (variant, prompt set) that is captured and projected: capture.variants x capture.prompt_sets, and
        the pairs each experiment scores."""
        pairs = {(v, s) for v in self.capture.variants for s in self.capture.prompt_sets}
        for e, s in self.configured():
            pairs |= e.projected_pairs(s)
        return sorted(pairs)

    def judged_traits(self) -> list[str]:
        """Traits whose generated answers the judge filters (``extract.filter``): persona traits, which generate."""
        if self.extract.filter is None:
            return []
        return sorted(
            t for t, spec in self.traits.items() if spec.source != "contrast" and spec.position == "response_mean"
        )

    def activation_pairs(self) -> set[tuple[str, str]]:
        """(variant, prompt set) pairs whose raw activations some experiment's job reads."""
        pairs: set[tuple[str, str]] = set()
        for e, s in self.configured():
            pairs |= e.activation_pairs(self, s)
        return pairs

    def activation_sets(self) -> list[str]:
        """Prompt sets of :meth:`activation_pairs` and those ``capture.keep_activations`` keeps: with
        ``capture.stream`` these are still captured, then projected."""
        return sorted(set(self.capture.keep_activations) | {s for _, s in self.activation_pairs()})

    def sae_comparisons(self) -> dict[str, SaeComparison]:
        """The two-condition contrasts of this study's experiments that SAE features can be compared on."""
        out: dict[str, SaeComparison] = {}
        for e, s in self.configured():
            out.update(e.sae_comparisons(s))
        return out

    def streamed(self, pset: str) -> bool:
        """Is ``pset`` projected inside its capture job (``capture.stream``), keeping no activations?"""
        return self.capture.stream and pset not in self.activation_sets()

    def captured_only_pairs(self) -> list[tuple[str, str]]:
        """(variant, prompt set) pairs captured for their activations (:meth:`activation_pairs`) but not projected."""
        return sorted(self.activation_pairs() - set(self.projected_pairs()))

    def trait_names(self) -> list[str]:
        return sorted(self.traits)

    def n_layers(self, variant: str) -> int:
        return self.dims[variant].n_layers

    def capture_layers(self, variant: str) -> tuple[int, ...]:
        return tuple(parse_layers(self.capture.layers, self.n_layers(variant), "capture.layers"))

    def extract_layers(self) -> tuple[int, ...]:
        return tuple(parse_layers(self.extract.layers, self.n_layers(self.extract.variant), "extract.layers"))

    def capture_job(self, variant: str) -> CaptureJob:
        """A prompt-set capture job of ``variant``: capture.* settings at capture.layers."""
        c = self.capture
        generates = c.generate.enabled and "response" in c.positions
        return CaptureJob(
            layers=self.capture_layers(variant),
            positions=c.positions,
            batch_size=c.batch_size,
            max_length=c.max_length,
            chunk_size=c.chunk_size,
            generation=c.generate if generates else None,
            seed=self.seed,
            sites=self.capture_sites(),
            dtype=c.dtype,
        )

    def capture_sites(self) -> tuple[str, ...]:
        """The sites a prompt-set capture stores: the residual stream (SAE, organism, and every ``resid`` trait),
        then each other site some trait is read at."""
        return ("resid", *sorted({t.site for t in self.traits.values()} - {"resid"}))

    def trait_capture_job(self, trait: str) -> CaptureJob:
        """The contrastive capture of one trait: extract.layers at the trait's position; ``response_mean``
        traits generate extract.max_new_tokens tokens (greedy unless capture.generate samples)."""
        position = self.traits[trait].position
        response = position == "response_mean"
        gen = self.capture.generate._replace(enabled=True, max_new_tokens=self.extract.max_new_tokens)
        return CaptureJob(
            layers=self.extract_layers(),
            positions=("response",) if response else (position,),
            batch_size=self.extract.batch_size,
            max_length=self.capture.max_length,
            chunk_size=self.capture.chunk_size,
            generation=gen if response else None,
            seed=self.seed,
            sites=(self.traits[trait].site,),
            dtype=self.capture.dtype,
        )

    def extract_job(self) -> ExtractJob:
        e = self.extract
        return ExtractJob(
            methods=e.methods,
            test_fraction=e.test_fraction,
            selection_folds=e.selection_folds,
            probe_C=e.probe_C,
            selection_method=e.selection_method,
            random_directions=e.random_directions,
        )

    def baseline_job(self, pset: str) -> BaselineJob:
        """Random directions projected with ``pset``: per token only where an experiment compares windowed per-token
        scores (the prefill attack's conditions); every other score-based AUC reads pooled scores."""
        wanted = any(e.per_token_baseline(s, pset) for e, s in self.configured())
        per_token = wanted and self.project.per_token and "response" in self.capture.positions
        return BaselineJob(n_random=self.project.random_directions, seed=self.seed, per_token=per_token)

    def shard_count(self, pset: str) -> int:
        return self.shards[pset]
