"""Typed, immutable settings of the core stages: one NamedTuple per config entry or section the core reads.

Every class is a :class:`typing.NamedTuple` without defaults: the schema (``traitscope/schemas/``) is the one
home of every default, and :func:`build` fills a settings object from the schema-completed config, so a key the
schema leaves out is ``None``.

Why tuples: a rule passes these objects as ``params``, and Snakemake re-runs a job when the ``repr`` of
a param changes, but only for builtin types (an object of any other class is silently ignored). A
NamedTuple is a tuple, so its ``repr`` (every field that changes the job's output) is what Snakemake
compares. Fields that change how a job runs but not what it writes (batch sizes, the judge's retries and
concurrency) are left out of that ``repr`` by :func:`repr_without`, so editing them re-runs nothing.
"""

from __future__ import annotations

import types
from typing import Any, NamedTuple, TypeVar, Union, get_args, get_origin, get_type_hints

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


def repr_without(obj: tuple, hidden: tuple[str, ...]) -> str:
    fields = ", ".join(f"{k}={v!r}" for k, v in zip(obj._fields, obj) if k not in hidden)  # type: ignore[attr-defined]
    return f"{type(obj).__name__}({fields})"


DTYPE_BYTES: dict[str, float] = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0}
"""Bytes per value of each floating dtype a config may name (weights, stored activations, converted GGUFs)."""


class Params(tuple):
    """Settings as one rule passes them to its job: the fields its output does not depend on (``left_out``) are
    absent from the ``repr`` (what Snakemake compares to decide a re-run) and refused on access (a job cannot read
    a field whose change would not re-run it). Everything else reads through to ``settings``. A tuple, because
    Snakemake tracks a param only when it is a builtin container or scalar (any other object it silently ignores).

    >>> from typing import NamedTuple
    >>> class S(NamedTuple):
    ...     n_boot: int
    ...     n_random: int
    >>> p = Params(S(200, 50), ("n_random",))
    >>> p, p.n_boot
    (S(n_boot=200), 200)
    """

    def __new__(cls, settings: Any, left_out: tuple[str, ...]) -> Params:
        unknown = [f for f in left_out if f not in settings._fields]
        if unknown:
            raise ValueError(f"{type(settings).__name__} has no field(s) {unknown} to leave out")
        return super().__new__(cls, (settings, tuple(left_out)))

    @property
    def _settings(self) -> Any:
        return tuple.__getitem__(self, 0)

    @property
    def _left_out(self) -> tuple[str, ...]:
        return tuple.__getitem__(self, 1)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._left_out:
            raise AttributeError(
                f"{type(self._settings).__name__}.{name} is left out of this rule's params, so a change to it does not "
                "re-run the job (fix: take it out of the rule's left_out, beside the settings class)"
            )
        return getattr(self._settings, name)

    def __repr__(self) -> str:
        return repr_without(self._settings, self._left_out)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Params) and repr(self) == repr(other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(repr(self))

    def __reduce__(self) -> tuple[Any, ...]:
        return (Params, (self._settings, self._left_out))


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
    checkpoint: int | None = None  # with finetune: the adapter after this many training steps

    def __repr__(self) -> str:
        # the chat, block and checkpoint keys are left out while unset, so configs written before they existed keep
        # their params; where the layers are placed (max_memory, offload_folder) does not change what a job writes
        unset = tuple(k for k in ("chat_template", "chat_options", "blocks", "checkpoint") if getattr(self, k) is None)
        return repr_without(self, unset + ("max_memory", "offload_folder"))


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
    micro_batch_size: int | None = None  # examples per forward pass (None: batch_size); halved on out-of-memory
    gradient_checkpointing: str | bool = "auto"  # auto: on for a base of more than 3e9 parameters
    cpu_4bit_autograd: bool = True  # QLoRA on the CPU: keep bitsandbytes' differentiable kernel
    resources: ResourceOverride | None = None  # what its job asks SLURM for, over the training estimate

    def __repr__(self) -> str:
        return repr_without(self, FINETUNE_EXECUTION + (("cpu_4bit_autograd",) if self.cpu_4bit_autograd else ()))


FINETUNE_EXECUTION = ("micro_batch_size", "gradient_checkpointing", "resources")
"""Finetune settings that change how training runs, not what it learns (the effective batch, the data order and the
number of optimizer steps stay; sums of gradients over micro-batches differ in the last bits): left out of the
params' ``repr`` and of the resume checkpoint's key, so changing them re-runs nothing."""


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
        return repr_without(self, ("site",))


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
        left_out = (
            ("batch_size",)
            + (("sites",) if self.sites == ("resid",) else ())
            + (("dtype",) if self.dtype == "float16" else ())
        )
        return repr_without(self, left_out)


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


class JudgeSettings(NamedTuple):
    """The judge's identity (model, offline model) and how calls are made (not part of the identity)."""

    model: str
    offline_model: str
    max_concurrency: int
    retries: int
    backoff_s: float
    timeout_s: float

    def __repr__(self) -> str:
        return repr_without(self, ("max_concurrency", "retries", "backoff_s", "timeout_s"))


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
