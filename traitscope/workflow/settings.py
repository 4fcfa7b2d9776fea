"""Typed, immutable settings: one per config section, built once at start-up from the validated config.

Every class is a :class:`typing.NamedTuple` without defaults: the schema
(``traitscope/schemas/config.schema.yaml``) is the one home of every default, and :func:`build` fills a
settings object from the schema-completed config, so a key the schema leaves out is ``None``.

Why tuples: a rule passes these objects as ``params``, and Snakemake re-runs a job when the ``repr`` of
a param changes, but only for builtin types (an object of any other class is silently ignored). A
NamedTuple is a tuple, so its ``repr`` (every field that changes the job's output) is what Snakemake
compares. Fields that change how a job runs but not what it writes (batch sizes, the judge's retries and
concurrency) are left out of that ``repr`` by :func:`_repr_without`, so editing them re-runs nothing.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar, Union, get_args, get_origin, get_type_hints

from ..core.layers import parse_layers

T = TypeVar("T")


def build(cls: type[T], data: Any) -> T:
    """``cls`` (a NamedTuple) from a mapping; absent keys are None, lists become tuples, nested types recurse."""
    hints = get_type_hints(cls)
    values = {}
    for name in cls._fields:  # type: ignore[attr-defined]
        values[name] = _convert(hints[name], (data or {}).get(name))
    return cls(**values)


def _convert(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value) if len(inner) == 1 else value
    if isinstance(hint, type) and issubclass(hint, tuple) and hasattr(hint, "_fields"):
        return build(hint, value)
    if origin is tuple and isinstance(value, (list, tuple)):
        return tuple(_convert(args[0], v) for v in value)
    if origin is dict and isinstance(value, dict):
        return {k: _convert(args[1], v) for k, v in sorted(value.items())}
    return value


def canonical(data: Any) -> Any:
    """``data`` with every mapping's keys sorted, so its ``repr`` does not depend on the order keys were
    written in the YAML (Snakemake compares params by ``repr``: a re-ordered config must re-run nothing)."""
    if isinstance(data, dict):
        return {k: canonical(data[k]) for k in sorted(data)}
    if isinstance(data, list):
        return [canonical(v) for v in data]
    return data


def as_dict(obj: Any) -> Any:
    """Plain JSON-ready data from settings (nested NamedTuples become dicts, tuples lists)."""
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return {k: as_dict(v) for k, v in zip(obj._fields, obj)}
    if isinstance(obj, (list, tuple)):
        return [as_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: as_dict(v) for k, v in obj.items()}
    return obj


def _repr_without(obj: tuple, hidden: tuple[str, ...]) -> str:
    fields = ", ".join(f"{k}={v!r}" for k, v in zip(obj._fields, obj) if k not in hidden)  # type: ignore[attr-defined]
    return f"{type(obj).__name__}({fields})"


# ------------------------------------------------------------------------------------------ models

class BlockNames(NamedTuple):
    """Where a model keeps its decoder blocks and, inside a block, the modules whose outputs are the ``attn`` and
    ``mlp`` sites (``variants.<name>.blocks``): for an architecture :mod:`traitscope.core.models` does not know."""

    path: str | None
    attn: str | None
    mlp: str | None


class ModelSpec(NamedTuple):
    """A variant: model (hub id, local folder, ``.gguf`` file or ``embedded:<name>``), optional adapter, how to load
    it, its chat format and, for models over several devices, where its layers go."""

    model: str
    finetune: str | None
    adapter: str | None
    dtype: str
    quantization: str
    device_map: str
    trust_remote_code: bool
    revision: str | None
    chat_template: str | None = None  # a Jinja file replacing the tokenizer's chat template
    chat_options: dict[str, Any] | None = None  # extra variables for the template, e.g. enable_thinking: false
    blocks: BlockNames | None = None
    max_memory: dict[str, str] | None = None  # accelerate's per-device limits, e.g. {0: 70GiB, cpu: 200GiB}
    offload_folder: str | None = None

    def __repr__(self) -> str:
        # the chat and block keys are left out while unset, so configs written before they existed keep their
        # params; where the layers are placed (max_memory, offload_folder) does not change what a job writes
        unset = tuple(k for k in ("chat_template", "chat_options", "blocks") if getattr(self, k) is None)
        return _repr_without(self, unset + ("max_memory", "offload_folder"))


class ModelDims(NamedTuple):
    n_layers: int
    hidden_size: int
    vocab_size: int
    context_length: int | None = None  # max_position_embeddings; None where the model config does not say


class FinetuneData(NamedTuple):
    source: str
    name: str | None
    path: str | None
    dataset: str | None
    subset: str | None
    split: str | None
    n: int | None
    trigger: str | None


class FinetuneSpec(NamedTuple):
    base: str
    data: FinetuneData
    rank: int
    alpha: float
    dropout: float
    target_modules: tuple[str, ...]
    epochs: int
    lr: float
    batch_size: int
    max_length: int
    warmup_steps: int
    weight_decay: float
    eval_fraction: float
    assistant_only: bool
    quantization: str
    save_steps: int
    seed: int  # resolved: the global seed where the config leaves it null


# ---------------------------------------------------------------------------------- data and traits

class PromptSetSpec(NamedTuple):
    source: str
    name: str | None
    prompt_set: str | None
    variant: str | None
    split: str | None
    path: str | None
    format: str
    dataset: str | None
    subset: str | None
    fields: dict[str, str] | None
    label: int | None
    sample: int | None
    per_category: int | None
    seed: int | None
    shards: int | None
    shard_size: int | None
    system: str | None
    prefill: str | None
    prefix: str | None


class TraitSpec(NamedTuple):
    source: str
    path: str | None
    file: str | None
    adjective: str | None
    pos: str | None
    neg: str | None
    position: str  # resolved: the trait's own, else last for contrast traits, else extract.position
    site: str  # resid, attn or mlp: where in the block the trait is read, steered and projected
    max_pairs: int | None
    max_questions: int | None

    def __repr__(self) -> str:
        # the site reaches every output through the trait's capture job (CaptureJob.sites) and so its vectors: the
        # rules that take the spec as a param (prompt building, judging, steering) need not re-run for it
        return _repr_without(self, ("site",))


def unresolved_trait(data: dict[str, Any]) -> TraitSpec:
    """A trait entry before ``extract.position`` is known (placeholder ``last``), for checks and tools that read
    only its source, files and sets; :meth:`Study.from_config` resolves the real position."""
    return build(TraitSpec, {**data, "position": data.get("position") or "last", "site": data.get("site") or "resid"})


# --------------------------------------------------------------------------------------- pipeline

class Generation(NamedTuple):
    enabled: bool
    max_new_tokens: int
    do_sample: bool
    temperature: float
    top_p: float


class FilterSettings(NamedTuple):
    """Thresholds of the judged persona filter (judge scores are 0-100)."""

    min_trait_pos: float
    max_trait_neg: float
    min_coherence: float


class SteeringChoiceSettings(NamedTuple):
    """Layer choice by steering effect: among the ``candidates`` layers of highest cross-validated AUC, the one whose
    vector, added at a coefficient, raises the judged trait score most while mean coherence stays at the floor."""

    candidates: int
    coefficients: tuple[float, ...]  # x the mean activation norm at the layer, at the trait's site
    coherence_floor: float  # judge scale 0-100
    n_prompts: int
    max_new_tokens: int


class ExtractSettings(NamedTuple):
    variant: str
    layers: Any
    methods: tuple[str, ...]
    position: str
    test_fraction: float
    selection_folds: int
    probe_C: float
    selection_method: str
    random_directions: int
    max_new_tokens: int
    batch_size: int
    filter: FilterSettings | None
    steering_layer_choice: SteeringChoiceSettings | None  # None: the layer of highest cross-validated AUC


class ExtractJob(NamedTuple):
    """What fitting the vectors of one trait depends on (not the variant or the capture settings)."""

    methods: tuple[str, ...]
    test_fraction: float
    selection_folds: int
    probe_C: float
    selection_method: str
    random_directions: int


class CaptureSettings(NamedTuple):
    variants: tuple[str, ...]
    prompt_sets: tuple[str, ...]
    layers: Any
    positions: tuple[str, ...]
    batch_size: int
    max_length: int
    chunk_size: int
    generate: Generation
    stream: bool
    keep_activations: tuple[str, ...]
    dtype: str  # how activations are stored: float16, bfloat16, float32


class CaptureJob(NamedTuple):
    """One capture job: the layers and positions it stores, how prompts are cut, how responses are made.

    ``batch_size`` is a starting size (halved on out-of-memory), so it is not part of the identity.
    """

    layers: tuple[int, ...]
    positions: tuple[str, ...]
    batch_size: int
    max_length: int
    chunk_size: int
    generation: Generation | None  # None: no responses are generated
    seed: int
    sites: tuple[str, ...]  # resid (the residual stream after the block), attn, mlp (sublayer outputs)
    dtype: str = "float16"  # how activations are stored (capture.dtype)

    def __repr__(self) -> str:
        # a residual-only, float16 job keeps the repr (and so the cache keys and Snakemake params) it had before sites
        # and capture.dtype existed
        left_out = ("batch_size",) + (("sites",) if self.sites == ("resid",) else ()) + (
            ("dtype",) if self.dtype == "float16" else ())
        return _repr_without(self, left_out)


class ProjectSettings(NamedTuple):
    layers: Any  # "best" or a layer spec
    methods: tuple[str, ...]
    per_token: bool
    random_directions: int  # random unit directions projected beside the traits: the baseline of score-based AUCs


class BaselineJob(NamedTuple):
    """The random-direction control baseline that ``project`` writes beside one prompt set's trait scores."""

    n_random: int
    seed: int
    per_token: bool  # per-token random scores too: the prefill attack's windowed scores are built from tokens


class ViewerSettings(NamedTuple):
    enabled: bool
    max_prompts: int
    max_tokens: int


class HarmCheckSettings(NamedTuple):
    trait: str
    harmful: str
    harmless: str
    min_auc: float


class JudgeSettings(NamedTuple):
    """The judge's identity (model, offline model) and how calls are made (not part of the identity)."""

    model: str
    offline_model: str
    max_concurrency: int
    retries: int
    backoff_s: float
    timeout_s: float

    def __repr__(self) -> str:
        return _repr_without(self, ("max_concurrency", "retries", "backoff_s", "timeout_s"))


class SteeringSettings(NamedTuple):
    traits: tuple[str, ...]
    prompt_set: str
    n_prompts: int
    coefficients: tuple[float, ...]
    layers: Any
    positions: str
    max_new_tokens: int


class OptimizeSettings(NamedTuple):
    traits: tuple[str, ...]
    prompt_set: str
    n_prompts: int
    coefficient: float
    population: int
    iterations: int
    sigma0: float
    pca_components: int
    max_new_tokens: int


class CompareSettings(NamedTuple):
    base: str
    variant: str
    prompt_set: str
    method: str
    position: str | None
    correction: str
    alpha: float
    n_boot: int


class ExternalDataset(NamedTuple):
    prompt_sets: tuple[str, ...]
    severity: str | None


class ExternalSettings(NamedTuple):
    variant: str
    method: str
    position: str | None
    min_per_class: int
    n_boot: int
    failure_fpr: float
    n_failures: int
    datasets: dict[str, ExternalDataset]


class PrefillSettings(NamedTuple):
    variant: str
    harmful: str
    harmful_prefill: str
    benign: str
    benign_prefill: str
    method: str
    correction: str
    alpha: float
    n_boot: int
    max_tokens: int

    def conditions(self) -> dict[str, str]:
        """C1..C4 -> prompt set."""
        return {"C1": self.harmful, "C2": self.harmful_prefill, "C3": self.benign, "C4": self.benign_prefill}


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


class ResourceOverride(NamedTuple):
    gpu: int | None
    gpu_model: str | None
    gres: str | None
    constraint: str | None
    slurm_extra: str | None
    slurm_account: str | None
    mem_mb: int | None
    runtime: int | None
    threads: int | None
    slurm_partition: str | None


class ResourceSettings(NamedTuple):
    cpu_partition: str
    gpu_partition: str
    gpu_memory_gb: float
    gpu_model: str | None
    constraint: str | None
    slurm_extra: str | None
    slurm_account: str | None
    overhead: float
    threads: int
    runtime: int
    min_mem_mb: int
    mem_retry_factor: float
    variants: dict[str, ResourceOverride]


class SaeSettings(NamedTuple):
    layers: tuple[int, ...]
    source: str
    variant: str | None
    corpus: tuple[str, ...]
    n_features: int
    k: int
    steps: int
    batch_size: int
    lr: float
    holdout: float
    position: str
    selection_fraction: float
    top_features: int
    top_tokens: int
    n_random: int
    n_boot: int


class SaeComparison(NamedTuple):
    """Two conditions an SAE experiment compares: condition a (labelled 1) against b."""

    a_variant: str
    a_set: str
    b_variant: str
    b_set: str
    a_label: str
    b_label: str


SECTIONS: dict[str, Any] = {
    "extract": ExtractSettings, "capture": CaptureSettings, "project": ProjectSettings, "judge": JudgeSettings,
    "steering": SteeringSettings, "optimize": OptimizeSettings, "compare": CompareSettings,
    "external": ExternalSettings, "prefill_attack": PrefillSettings, "organism": OrganismSettings,
    "backdoor": BackdoorSettings, "resources": ResourceSettings, "viewer": ViewerSettings,
    "sae": SaeSettings,
}
"""Config section -> settings class (optional sections are None when absent)."""

# ------------------------------------------------------------------------------------------- study

@dataclass(frozen=True)
class Study:
    """The whole validated study: every section typed, plus what start-up learnt (model sizes, row counts).

    Built once by :func:`traitscope.workflow.config.load_config`; the rules read it and pass each job only the
    settings it uses (``capture_job``, ``extract_job``, a section, a spec).
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
    harm_check: HarmCheckSettings | None
    steering: SteeringSettings | None
    optimize: OptimizeSettings | None
    compare: CompareSettings | None
    external: ExternalSettings | None
    prefill_attack: PrefillSettings | None
    organism: OrganismSettings | None
    backdoor: BackdoorSettings | None
    resources: ResourceSettings
    viewer: ViewerSettings
    sae: SaeSettings | None
    dims: dict[str, ModelDims] = field(default_factory=dict)
    rows: dict[str, int | None] = field(default_factory=dict)
    shards: dict[str, int] = field(default_factory=dict)
    trait_rows: dict[str, int] = field(default_factory=dict)  # rows of each trait's extraction data, where known
    # overlap of scored and extraction prompts: {"allowed": {set: {trait: prompts}}, "unchecked": [sets]}
    overlaps: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # the validated config with defaults, for provenance

    @classmethod
    def from_config(cls, cfg: dict[str, Any], **derived: Any) -> Study:
        """Typed sections from a schema-validated config with defaults filled in."""
        seed = int(cfg["seed"])
        finetune = {k: build(FinetuneSpec, {**v, "seed": seed if v.get("seed") is None else v["seed"]})
                    for k, v in cfg["finetune"].items()}
        ext = build(ExtractSettings, cfg["extract"])
        traits = {k: build(TraitSpec, {**v, "position": v.get("position") or
                                       ("last" if v["source"] == "contrast" else ext.position)})
                  for k, v in cfg["traits"].items()}
        sections: dict[str, Any] = {name: build(kind, cfg[name]) if cfg.get(name) else None for name, kind in SECTIONS.items()}
        harm = (cfg.get("checks") or {}).get("harm_separation")
        if "config" in derived:
            derived["config"] = canonical(derived["config"])
        return cls(seed=seed, results_dir=cfg["results_dir"],
                   variants={k: build(ModelSpec, v) for k, v in cfg["variants"].items()},
                   finetune=finetune, traits=traits,
                   prompt_sets={k: build(PromptSetSpec, v) for k, v in cfg["prompt_sets"].items()},
                   harm_check=build(HarmCheckSettings, harm) if harm else None, **sections, **derived)

    # ---- derived per-job settings
    def used_prompt_sets(self) -> list[str]:
        """Prompt sets some job reads: scored, trait extraction, steering, CMA-ES, organism and replay sources."""
        from .overlap import scored_sets

        used = scored_sets(self.config)
        used += [s for t in self.traits.values() if t.source == "contrast" for s in (t.pos, t.neg) if s]
        used += [sec.prompt_set for sec in (self.steering, self.optimize) if sec is not None]
        if self.organism is not None:
            used += [self.organism.train, self.organism.test]
        for name in list(used):
            spec = self.prompt_sets.get(name)
            if spec is not None and spec.source == "replay" and spec.prompt_set:
                used.append(spec.prompt_set)
        return sorted(set(used) & set(self.prompt_sets))

    def projected_pairs(self) -> list[tuple[str, str]]:
        """Every (variant, prompt set) that is captured and projected: capture.variants x capture.prompt_sets, and
        the sets each experiment scores (compared, external, prefill, backdoor trigger and control)."""
        pairs = {(v, s) for v in self.capture.variants for s in self.capture.prompt_sets}
        if self.compare is not None:
            pairs |= {(v, self.compare.prompt_set) for v in (self.compare.base, self.compare.variant)}
        if self.external is not None:
            pairs |= {(self.external.variant, s) for d in self.external.datasets.values() for s in d.prompt_sets}
        if self.prefill_attack is not None:
            pairs |= {(self.prefill_attack.variant, s) for s in self.prefill_attack.conditions().values()}
        if self.backdoor is not None:
            pairs |= {(v, s) for v in self.backdoor.variants() for s in (self.backdoor.trigger, self.backdoor.control)}
        return sorted(pairs)

    def judged_traits(self) -> list[str]:
        """Traits whose generated answers the judge filters (``extract.filter``): persona traits, which generate."""
        if self.extract.filter is None:
            return []
        return sorted(t for t, spec in self.traits.items()
                      if spec.source != "contrast" and spec.position == "response_mean")

    def activation_pairs(self) -> set[tuple[str, str]]:
        """(variant, prompt set) pairs whose raw activations some job reads: the harm check's sets on the extraction
        variant, the organism's train and test sets on both models, the backdoor's trigger and control sets (its
        random-direction baseline), the SAE corpus and the SAE comparisons."""
        pairs: set[tuple[str, str]] = set()
        if self.harm_check is not None:
            pairs |= {(self.extract.variant, s) for s in (self.harm_check.harmful, self.harm_check.harmless)}
        if self.organism is not None:
            o = self.organism
            pairs |= {(v, s) for v in (o.base, o.finetuned) for s in (o.train, o.test)}
        if self.backdoor is not None:
            pairs |= {(v, s) for v in self.backdoor.variants() for s in (self.backdoor.trigger, self.backdoor.control)}
        if self.sae is not None:
            pairs |= {(self.sae_variant(), s) for s in self.sae_corpus()}
            pairs |= {p for c in self.sae_comparisons().values() for p in ((c.a_variant, c.a_set), (c.b_variant, c.b_set))}
        return pairs

    def activation_sets(self) -> list[str]:
        """Prompt sets of :meth:`activation_pairs` and those ``capture.keep_activations`` keeps: with
        ``capture.stream`` these are still captured, then projected."""
        return sorted(set(self.capture.keep_activations) | {s for _, s in self.activation_pairs()})

    def sae_variant(self) -> str:
        assert self.sae is not None
        return self.sae.variant or self.extract.variant

    def sae_corpus(self) -> tuple[str, ...]:
        assert self.sae is not None
        return self.sae.corpus or self.capture.prompt_sets

    def sae_comparisons(self) -> dict[str, SaeComparison]:
        """The two-condition experiments of this study that SAE features are compared on."""
        out = {}
        if self.backdoor is not None:
            b = self.backdoor
            out["backdoor"] = SaeComparison(b.variant, b.trigger, b.variant, b.control, "trigger", "control")
        if self.organism is not None:
            o = self.organism
            out["organism"] = SaeComparison(o.finetuned, o.test, o.base, o.test, f"finetuned ({o.finetuned})",
                                            f"base ({o.base})")
        if self.prefill_attack is not None:
            c = self.prefill_attack.conditions()
            v = self.prefill_attack.variant
            out["prefill"] = SaeComparison(v, c["C2"], v, c["C4"], "C2 harmful + prefill", "C4 benign + prefill")
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
        return CaptureJob(layers=self.capture_layers(variant), positions=c.positions, batch_size=c.batch_size,
                          max_length=c.max_length, chunk_size=c.chunk_size,
                          generation=c.generate if generates else None, seed=self.seed, sites=self.capture_sites(),
                          dtype=c.dtype)

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
        return CaptureJob(layers=self.extract_layers(), positions=("response",) if response else (position,),
                          batch_size=self.extract.batch_size, max_length=self.capture.max_length,
                          chunk_size=self.capture.chunk_size, generation=gen if response else None, seed=self.seed,
                          sites=(self.traits[trait].site,), dtype=self.capture.dtype)

    def extract_job(self) -> ExtractJob:
        e = self.extract
        return ExtractJob(methods=e.methods, test_fraction=e.test_fraction, selection_folds=e.selection_folds,
                          probe_C=e.probe_C, selection_method=e.selection_method,
                          random_directions=e.random_directions)

    def baseline_job(self, pset: str) -> BaselineJob:
        """Random directions projected with ``pset``: per token only for the prefill attack's conditions (its AUCs
        compare windowed per-token scores); every other score-based AUC reads pooled scores."""
        prefill = self.prefill_attack is not None and pset in self.prefill_attack.conditions().values()
        per_token = prefill and self.project.per_token and "response" in self.capture.positions
        return BaselineJob(n_random=self.project.random_directions, seed=self.seed, per_token=per_token)

    def shard_count(self, pset: str) -> int:
        return self.shards[pset]

    def organism_layers(self) -> tuple[int, ...]:
        assert self.organism is not None
        return tuple(parse_layers(self.organism.layers, self.n_layers(self.organism.base), "organism.layers"))
