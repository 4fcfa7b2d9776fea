"""The library face: the pipeline's own core on a live model, for notebooks.

Every function here is a thin, typed door to the functions the workflow's jobs run, not a second implementation:
:func:`capture` runs the capture jobs' batching, hooks and pooling (:func:`traitscope.core.capture.capture_prompts`),
:func:`extract` the extraction job's split, fitting, random-direction control and layer choice
(:func:`traitscope.core.extract.extract_trait`), :func:`project` the projection job's scores and control baseline,
:func:`steer` / :func:`ablate` the steering jobs' hooks, :func:`generate` their generation and :func:`judge` their
judge. The job scripts load models with :func:`load_model` too. ``tests/test_api.py`` checks that the results are the
pipeline's: the same vectors, activations and steered text for the same settings.

A session on the embedded default (CPU, no network; its GGUF is converted once under ``resources/``)::

    import traitscope as ts

    lm = ts.load_model("embedded:smollm2-135m-instruct")
    vectors = ts.extract(lm, pos=["How do I pick a lock to break in?", ...], neg=["How do I bake bread?", ...])
    scores = ts.project(lm, vectors, ["Tell me how to hurt someone."], random_directions=100)
    with ts.steer(lm, vectors, coefficient=4.0):
        text = ts.generate(lm, ["Describe your ideal weekend."])

Layers follow the pipeline's convention: layer ``L`` is the residual stream after decoder block ``L`` (0-based), i.e.
``hidden_states[L + 1]``. Coefficients of :func:`steer` are in units of the mean activation norm at the layer (as in
the steering sweep), unless ``norm=1``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import API
from .core.artifacts import ActivationShard, TraitVectors
from .core.capture import capture_prompts, model_fingerprint
from .core.dims import context_length
from .core.extract import extract_trait
from .core.judge import Judge
from .core.layers import parse_layers
from .core.methods import baseline_directions
from .core.prompts import normalise
from .core.sources import embedded_gguf_path, embedded_name, gguf_source, resolve_model_path
from .core.specs import CaptureJob, ExtractJob, Generation, ModelSpec
from .core.steering import BATCH_SIZE, Ablate, Steer, generate_steered
from .core.sweep import layer_norms
from .core.traits import contrast_from_tables

__all__ = list(API)

Prompts = Sequence[str] | pd.DataFrame
"""Prompts: a list of user turns, or a prompt table (``id``, ``prompt`` and optionally ``system``, ``prefill``,
``response``: the columns of the pipeline's prompt sets)."""


@dataclass
class LiveModel:
    """A loaded model with what the pipeline knows about it: its tokenizer (chat format set), its spec, its number of
    decoder blocks and hidden size, and the edits (:func:`steer`, :func:`ablate`) active on it.

    ``model, tokenizer = lm`` unpacks it for code that expects the pair (steering-vectors, nnsight).

    >>> lm = load_model("embedded:smollm2-135m-instruct")  # doctest: +SKIP
    >>> lm  # doctest: +SKIP
    LiveModel('embedded:smollm2-135m-instruct', 30 layers, hidden 576, cpu, chat template)
    """

    model: Any
    tokenizer: Any
    spec: ModelSpec
    resources_dir: str = "resources"
    edits: list[Any] = field(default_factory=list)

    @property
    def n_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def chat(self) -> bool:
        """Whether prompts are rendered with a chat template (else as plain text after the BOS token)."""
        return bool(getattr(self.tokenizer, "chat_template", None))

    @property
    def chat_format(self) -> dict[str, Any]:
        """How prompts are rendered (the chat template's hash, or ``plain``), as cache keys and shard metadata record
        it (:func:`traitscope.core.chat.chat_format`)."""
        from .core.chat import chat_format

        return chat_format(self.tokenizer)

    @property
    def sites(self) -> dict[str, str]:
        """Where :func:`capture`, :func:`steer` and :func:`ablate` can act in each block: ``resid`` (the block's
        output) and, where the block has them, ``attn`` and ``mlp`` (the sublayer outputs added to the stream), each
        with the module it hooks in block 0."""
        from .core.architecture import SITES, site_module
        from .core.models import ModelLoadError

        found = {}
        for site in SITES:
            try:
                module = site_module(self.model, 0, site)
            except ModelLoadError:
                continue
            found[site] = type(module).__name__
        return found

    def fingerprint(self) -> dict[str, Any]:
        """The model's identity in cache keys and shard metadata (the capture jobs' own)."""
        return model_fingerprint(self.spec, resolve_model_path(self.spec.model, self.resources_dir), self.tokenizer)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.model, self.tokenizer))

    def __repr__(self) -> str:
        kind = "chat template" if self.chat else "plain text"
        extra = f", adapter {self.spec.adapter!r}" if self.spec.adapter else ""
        quant = f", {self.spec.quantization}" if self.spec.quantization != "none" else ""
        return (
            f"LiveModel({self.spec.model!r}, {self.n_layers} layers, hidden {self.hidden_size}, {self.device}{quant}"
            f"{extra}, {kind})"
        )


def model_spec(spec: str | ModelSpec | dict[str, Any], **options: Any) -> ModelSpec:
    """A :class:`~traitscope.core.specs.ModelSpec` from a model string (hub id, local folder, ``.gguf`` file or
    ``embedded:<name>``), a ``variants.<name>`` dict, or a spec, with ``options`` (any ``variants.<name>`` key:
    ``adapter``, ``dtype``, ``quantization``, ``device_map``, ``revision``, ``trust_remote_code``, ...) and the
    schema's defaults filled in, exactly as start-up does.

    >>> model_spec("embedded:smollm2-135m-instruct", quantization="4bit").quantization
    '4bit'
    """
    from .workflow.config import entry

    if isinstance(spec, ModelSpec):
        return spec._replace(**options)
    data = {"model": spec} if isinstance(spec, str) else dict(spec)
    spec_: ModelSpec = entry("variants", {**data, **options})
    return spec_


def load_model(
    spec: str | ModelSpec | dict[str, Any],
    *,
    resources_dir: str | Path = "resources",
    key: str = "model",
    **options: Any,
) -> LiveModel:
    """Load a model as the pipeline's jobs do: a hub id, a local folder, a GGUF file (converted once to safetensors
    under ``resources_dir``, like the embedded default), with an optional PEFT ``adapter``, bitsandbytes
    ``quantization`` (``8bit``/``4bit``, on a GPU or the CPU), ``device_map`` (``auto``: every visible GPU),
    ``max_memory``, ``chat_template``; ``trust_remote_code`` stays false unless given. Eval mode, no gradients.

    A model that does not load is a one-line :class:`~traitscope.core.models.ModelLoadError` naming it and the fix.

    >>> lm = load_model("embedded:smollm2-135m-instruct")  # doctest: +SKIP
    >>> lm.n_layers, lm.hidden_size  # doctest: +SKIP
    (30, 576)
    """
    from .core.models import load_model as _load

    variant = model_spec(spec, **options)
    _convert_once(variant, Path(resources_dir))
    model, tokenizer = _load(variant, resources_dir=resources_dir, key=key)
    return LiveModel(model, tokenizer, variant, str(resources_dir))


def _convert_once(variant: ModelSpec, resources_dir: Path) -> None:
    """A GGUF model (embedded or a researcher's file) converted to its safetensors folder where it is not yet (the
    workflow's ``convert_*`` rules do the same)."""
    from .core.sources import convert_embedded, convert_gguf

    folder = Path(resolve_model_path(variant.model, resources_dir))
    if (folder / "config.json").exists():
        return
    name = embedded_name(variant.model)
    if name is not None:
        embedded_gguf_path(name)  # a missing package: one line naming the pip command
        convert_embedded(name, folder)
    elif (gguf := gguf_source(variant.model)) is not None:
        convert_gguf(gguf, folder, {"gguf": str(gguf)})


def prompt_table(prompts: Prompts, *, systems: Sequence[str | None] | str | None = None) -> pd.DataFrame:
    """The pipeline's prompt table from a list of prompts (ids ``0000``, ``0001``, ...) or a table holding at least
    ``prompt``; ``systems``: one system prompt for all, or one per prompt.

    >>> prompt_table(["Hi", "Bye"])[["id", "prompt"]].values.tolist()
    [['0000', 'Hi'], ['0001', 'Bye']]
    """
    if isinstance(prompts, pd.DataFrame):
        rows: list[dict[str, Any]] = [{str(k): v for k, v in r.items()} for r in prompts.to_dict(orient="records")]
        for i, r in enumerate(rows):
            r.setdefault("id", f"{i:04d}")
    else:
        rows = [{"id": f"{i:04d}", "prompt": p} for i, p in enumerate(prompts)]
    if systems is not None and not isinstance(systems, str):
        if len(systems) != len(rows):
            raise ValueError(f"{len(systems)} systems for {len(rows)} prompts (fix: give one per prompt, or one str)")
        rows = [{**r, "system": s} for r, s in zip(rows, systems)]
    df = normalise(rows, system=systems if isinstance(systems, str) else None, key="prompts")
    df["shard"] = 0
    return df


def prompt_set(spec: str | dict[str, Any], *, seed: int = 0) -> pd.DataFrame:
    """A prompt set as the pipeline loads it (``prompt_sets.<name>`` of the config: ``builtin``, a ``local`` file in
    any supported format, or ``hub``), or a path to a local file. Rows dropped while loading are counted in
    ``df.attrs["prep"]`` and warned about.

    >>> len(prompt_set({"source": "builtin", "name": "harmful", "split": "extract"})) > 0
    True
    """
    from .core.prompts import load_prompt_set
    from .workflow.config import entry

    data = {"source": "local", "path": str(spec)} if isinstance(spec, str) else dict(spec)
    return load_prompt_set(entry("prompt_sets", data), seed=seed, key="prompt_set")


def _layers(lm: LiveModel, layers: Any) -> tuple[int, ...]:
    return tuple(parse_layers(layers, lm.n_layers, "layers"))


def capture(
    lm: LiveModel,
    prompts: Prompts,
    *,
    layers: Any = "all",
    positions: Sequence[str] = ("last", "mean"),
    sites: Sequence[str] = ("resid",),
    systems: Sequence[str | None] | str | None = None,
    max_new_tokens: int | None = None,
    do_sample: bool = False,
    batch_size: int = 16,
    max_length: int = 512,
    chunk_size: int = 256,
    dtype: str = "float32",
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> ActivationShard:
    """Activations of ``prompts`` at ``layers`` (a layer spec: ``"all"``, ``12``, ``"10-20"``, a list), pooled at
    ``positions`` (``last``: the last prompt token; ``mean``: mean over the prompt; ``response``: every assistant-turn
    token, the prefill and a replayed ``response`` column or ``max_new_tokens`` generated ones), at ``sites``
    (``resid``, ``attn``, ``mlp``). Returns the :class:`~traitscope.core.artifacts.ActivationShard` a capture job
    writes (``dtype`` float32 here; the pipeline stores ``capture.dtype``, float16 by default); its
    ``meta["responses"]`` holds the per-row table (generated text, token counts, truncation).

    ``cache_dir`` keeps each chunk under a content key, so a repeated call is read back, verified, not recomputed.

    >>> acts = capture(lm, ["Hello!"], layers=[2, 3])  # doctest: +SKIP
    >>> acts.stored("last", 3).shape  # doctest: +SKIP
    torch.Size([1, 576])
    """
    gen = None
    if max_new_tokens:
        gen = Generation(enabled=True, max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=1.0, top_p=1.0)
    job = CaptureJob(
        layers=_layers(lm, layers),
        positions=tuple(positions),
        batch_size=batch_size,
        max_length=max_length,
        chunk_size=chunk_size,
        generation=gen,
        seed=seed,
        sites=tuple(sites),
        dtype=dtype,
    )
    df = prompt_table(prompts, systems=systems)
    tensors, meta, responses = capture_prompts(
        lm.model,
        lm.tokenizer,
        df,
        job,
        model_key=lm.fingerprint(),
        cache_dir=cache_dir,
        progress_label="capture",
        context_length=context_length(lm.model.config),
    )
    records = json.loads(responses.to_json(orient="records"))  # plain values: the shard saves as safetensors
    return ActivationShard(tensors, {**meta, "responses": records})


def extract(
    lm: LiveModel,
    pos: Prompts | None = None,
    neg: Prompts | None = None,
    *,
    table: pd.DataFrame | None = None,
    trait: str = "custom/trait",
    layers: Any = "all",
    methods: Sequence[str] = ("mean_diff", "probe"),
    position: str = "last",
    site: str = "resid",
    test_fraction: float = 0.25,
    selection_folds: int = 3,
    probe_C: float = 1.0,
    selection_method: str = "mean_diff",
    random_directions: int = 100,
    max_new_tokens: int = 16,
    batch_size: int = 16,
    max_length: int = 512,
    chunk_size: int = 256,
    dtype: str = "float16",
    seed: int = 0,
    variant: str = "live",
) -> TraitVectors:
    """Trait vectors from contrastive prompts, by the extraction job itself: ``pos`` (label 1) against ``neg``
    (label 0), or a labelled ``table`` (``prompt``, ``label``, ``group`` and optional ``system``: e.g. the pipeline's
    persona table, :func:`traitscope.core.traits.persona_table`). Every (``methods`` x ``layers``) vector is fitted
    on a grouped train split; the returned :class:`~traitscope.core.artifacts.TraitVectors` carries, per vector, the
    held-out test AUC, the random-direction control (``random_auc_p95``, ``beats_random``), a shuffled-label AUC, and
    the layer chosen by cross-validation inside the train split (``vectors.best_layer``, ``.info["best"]``).

    The defaults are the schema's ``extract`` defaults (a test holds them equal), except ``position``: ``last``
    here (the last prompt token, no generation); ``response_mean`` (the schema's, for persona traits) generates
    ``max_new_tokens``
    tokens per row first, as ``capture_trait`` does. ``dtype`` is how activations are held before fitting
    (``capture.dtype``): float16, as the pipeline, so the same settings give the pipeline's vectors
    (``batch_size`` and ``chunk_size`` too: prompts are batched by length inside a chunk, and padding moves the last
    bits of an activation).

    >>> vectors = extract(lm, pos=harmful_prompts, neg=benign_prompts, layers="all")  # doctest: +SKIP
    >>> vectors.metrics(vectors.best_method, vectors.best_layer)["beats_random"]  # doctest: +SKIP
    True
    """
    if table is None:
        if pos is None or neg is None:
            raise ValueError("extract needs pos and neg prompts, or a labelled table (fix: pass pos=..., neg=...)")
        table = contrast_from_tables(prompt_table(pos), prompt_table(neg), "pos", "neg")
    elif "shard" not in table:
        table = table.assign(shard=0)
    response = position == "response_mean"
    shard = capture(
        lm,
        table,
        layers=layers,
        positions=("response",) if response else (position,),
        sites=(site,),
        max_new_tokens=max_new_tokens if response else None,
        batch_size=batch_size,
        max_length=max_length,
        chunk_size=chunk_size,
        dtype=dtype,
        seed=seed,
    )
    job = ExtractJob(
        methods=tuple(methods),
        test_fraction=test_fraction,
        selection_folds=selection_folds,
        probe_C=probe_C,
        selection_method=selection_method,
        random_directions=random_directions,
    )
    vectors, _metrics = extract_trait(
        shard,
        table.reset_index(drop=True),
        job,
        trait=trait,
        variant=variant,
        model=lm.spec.model,
        layers=shard.layers,
        position=position,
        seed=seed,
        site=site,
    )
    return vectors


def _vector(
    vectors: TraitVectors | torch.Tensor, layer: int | None, method: str | None, site: str | None
) -> tuple[torch.Tensor, int, str]:
    """(vector, layer, site) of an edit: a trait's chosen layer, method and own site unless given."""
    if isinstance(vectors, TraitVectors):
        at = vectors.best_layer if layer is None else int(layer)
        return vectors.get(method or vectors.best_method, at), at, site or vectors.site
    if layer is None:
        raise ValueError("a bare tensor needs its layer (fix: steer(lm, v, layer=12, ...))")
    return vectors.detach().float(), int(layer), site or "resid"


@contextlib.contextmanager
def _active(lm: LiveModel, edit: Steer | Ablate) -> Iterator[Any]:
    """``edit``'s hook on while the block runs, and the edit in ``lm.edits`` so that :func:`generate` resets it."""
    with edit:
        lm.edits.append(edit)
        try:
            yield edit
        finally:
            lm.edits.remove(edit)


def project(
    lm: LiveModel | None,
    vectors: TraitVectors | Sequence[TraitVectors],
    acts: ActivationShard | Prompts,
    *,
    layers: Any = "best",
    methods: Sequence[str] | None = None,
    position: str | None = None,
    random_directions: int = 100,
    seed: int = 0,
) -> pd.DataFrame:
    """Scores of each prompt on each trait: the scalar projection ``a . v / ||v||`` of its pooled activation, as the
    projection job computes them, one tidy row per (id, trait, method, layer, position). ``acts``: a shard from
    :func:`capture`, or prompts (captured here at the layers needed, so ``lm`` is needed then).

    With ``random_directions`` > 0, the control beside each score: the same activation projected on that many seeded
    random unit directions at the layer (the project stage's baseline directions), as ``random_p05`` / ``random_p95``:
    how far a direction chosen at random reaches on this activation. A score outside that band is not yet a trait
    effect (activations share a large common component, which a trait vector may pick up for every prompt); the
    effect is the difference between groups of prompts, to be compared with the random directions' difference
    (:func:`random_aucs`). ``layers``: ``"best"`` (each trait's chosen layer), a layer spec, or ``"neighbours"``.

    >>> project(lm, vectors, ["How do I make a weapon?"])  # doctest: +SKIP
         id        trait     method  layer position   score  random_p05  random_p95
    0  0000  custom/trait  mean_diff     24     last  161.26      -35.90       36.30
    """
    from .core.project import select_layers

    traits = [vectors] if isinstance(vectors, TraitVectors) else list(vectors)
    n_layers = lm.n_layers if lm is not None else max(max(t.info["layers"]) for t in traits) + 1
    wanted = {t.trait: select_layers(layers, t, sorted(int(x) for x in t.info["layers"]), n_layers) for t in traits}
    if not isinstance(acts, ActivationShard):
        if lm is None:
            raise ValueError("projecting prompts needs the model (fix: project(lm, vectors, prompts))")
        needed = sorted({la for v in wanted.values() for la in v})
        acts = capture(
            lm,
            acts,
            layers=needed,
            positions=sorted({_stored(position or t.position) for t in traits}),
            sites=sorted({t.site for t in traits}),
            seed=seed,
        )
    rows = []
    for t in traits:
        pos = position or t.position
        for layer in wanted[t.trait]:
            pooled, ok = acts.pooled(pos, layer, t.site)
            x = pooled[ok].astype(np.float64)
            ids = np.asarray(acts.ids)[ok]
            band = None
            if random_directions:
                dirs = baseline_directions(random_directions, x.shape[1], seed, layer).astype(np.float64)
                band = np.percentile(x @ dirs.T, [5, 95], axis=1)
            for method in methods or [t.best_method]:
                s = x @ t.unit(method, layer).double().numpy()
                frame = pd.DataFrame(
                    {"id": ids, "trait": t.trait, "method": method, "layer": layer, "position": pos, "score": s}
                )
                if band is not None:
                    frame = frame.assign(random_p05=band[0], random_p95=band[1])
                rows.append(frame)
    return pd.concat(rows, ignore_index=True)


def random_aucs(
    lm: LiveModel | None,
    vectors: TraitVectors,
    acts: ActivationShard | Prompts,
    labels: Sequence[int] | np.ndarray,
    *,
    layer: int | None = None,
    method: str | None = None,
    random_directions: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """The control of a separation: the ROC-AUC of the trait vector between the ``labels`` 1 and 0 rows of ``acts``
    (or prompts, captured here), beside the AUCs of ``random_directions`` seeded random unit directions at the same
    layer on the same rows (the project stage's baseline directions, each oriented to its better side on these rows:
    stricter than the extraction's control, which orients them on the training split). Returns ``auc``, ``random_auc_p95``, ``random_auc_mean``, ``beats_random`` and ``n``.

    >>> random_aucs(lm, vectors, prompts, labels)  # doctest: +SKIP
    {'auc': 1.0, 'random_auc_p95': 0.79, 'random_auc_mean': 0.6, 'beats_random': True, 'n': 40, 'layer': 24}
    """
    from sklearn.metrics import roc_auc_score

    at = vectors.best_layer if layer is None else int(layer)
    if not isinstance(acts, ActivationShard):
        if lm is None:
            raise ValueError("scoring prompts needs the model (fix: random_aucs(lm, vectors, prompts, labels))")
        acts = capture(lm, acts, layers=[at], positions=(_stored(vectors.position),), sites=(vectors.site,))
    x, ok = acts.pooled(vectors.position, at, vectors.site)
    y = np.asarray(labels)[ok]
    x = x[ok].astype(np.float64)
    auc = float(roc_auc_score(y, x @ vectors.unit(method or vectors.best_method, at).double().numpy()))
    dirs = baseline_directions(random_directions, x.shape[1], seed, at).astype(np.float64)
    rand = np.array([roc_auc_score(y, x @ d) for d in dirs])
    rand = np.maximum(rand, 1 - rand)
    p95 = float(np.percentile(rand, 95))
    return {
        "auc": auc,
        "random_auc_p95": p95,
        "random_auc_mean": float(rand.mean()),
        "beats_random": auc > p95,
        "n": int(ok.sum()),
        "layer": at,
    }


def _stored(position: str) -> str:
    return "response" if position == "response_mean" else position


def _norm(lm: LiveModel, layer: int, site: str, norm: float | None) -> float:
    """The coefficient unit: ``norm`` when given, else the mean last-token activation norm at the layer and site over
    :data:`NEUTRAL` prompts (the steering jobs take it over the trait's contrastive prompts; pass theirs as ``norm``
    to reproduce a job)."""
    if norm is not None:
        return float(norm)
    shard = capture(lm, NEUTRAL, layers=[layer], positions=("last",), sites=(site,))
    return layer_norms(shard, "last", [layer], site)[layer]


NEUTRAL = (
    "Tell me about your day.",
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "How do I boil an egg?",
    "Explain photosynthesis simply.",
    "What should I read next?",
    "Give me a tip for learning to code.",
    "Describe a cat.",
)
"""Prompts whose mean last-token activation norm is the default unit of :func:`steer`'s coefficient."""


@contextlib.contextmanager
def steer(
    lm: LiveModel,
    vectors: TraitVectors | torch.Tensor,
    layer: int | None = None,
    coefficient: float = 1.0,
    *,
    method: str | None = None,
    positions: str = "all",
    site: str | None = None,
    norm: float | None = None,
) -> Iterator[Steer]:
    """While the block runs, add ``coefficient x norm`` times the unit vector to the activations after block
    ``layer`` (each trait's chosen layer and method by default) at ``positions`` (``all``, ``prompt``, ``response``):
    the steering jobs' hook. ``norm`` is the unit of the coefficient; by default the mean activation norm at the
    layer (last token of a few neutral prompts), so ``coefficient`` means the same across layers and models, like
    ``steering.coefficients``; ``norm=1`` steers by raw length. Nests with other edits.

    >>> with steer(lm, vectors, coefficient=0.5):  # doctest: +SKIP
    ...     print(generate(lm, ["Describe your ideal weekend."])[0])
    """
    v, at, where = _vector(vectors, layer, method, site)
    with _active(lm, Steer(lm.model, at, v, coefficient * _norm(lm, at, where, norm), positions, where)) as edit:
        yield edit


@contextlib.contextmanager
def ablate(
    lm: LiveModel,
    vectors: TraitVectors | torch.Tensor,
    layer: int | None = None,
    strength: float = 1.0,
    *,
    method: str | None = None,
    positions: str = "all",
    site: str | None = None,
) -> Iterator[Ablate]:
    """While the block runs, remove ``strength`` x the component along the unit vector after block ``layer``
    (1 = directional ablation: ``h - (h . u) u``), as the organism's ablation job does.

    >>> with ablate(lm, vectors):  # doctest: +SKIP
    ...     acts = capture(lm, ["Hello"], layers=[vectors.best_layer])
    """
    v, at, where = _vector(vectors, layer, method, site)
    with _active(lm, Ablate(lm.model, at, v, strength, positions, where)) as edit:
        yield edit


def generate(
    lm: LiveModel,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 48,
    systems: Sequence[str | None] | None = None,
    do_sample: bool = False,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
) -> list[str]:
    """Responses to ``prompts`` (greedy unless ``do_sample``), rendered with the model's chat format, with every
    :func:`steer` / :func:`ablate` active on ``lm`` applied: the steering jobs' generation.

    >>> generate(lm, ["Say hello."], max_new_tokens=8)  # doctest: +SKIP
    ['Hello! How can I help you today?']
    """
    return generate_steered(
        lm.model,
        lm.tokenizer,
        list(prompts),
        list(lm.edits),
        max_new_tokens=max_new_tokens,
        systems=systems,
        batch_size=batch_size,
        do_sample=do_sample,
        seed=seed,
    )


def judge(
    questions: Sequence[str],
    answers: Sequence[str],
    *,
    trait: str,
    description: str,
    model: str = "traitscope/offline-judge",
    offline_model: str = "embedded:smollm2-135m-instruct",
    cache_dir: str | Path | None = None,
    max_concurrency: int = 4,
) -> pd.DataFrame:
    """Judged 0-100 trait score and coherence of each (question, answer), by the pipeline's judge: any litellm
    ``model`` (its key from the environment) or ``traitscope/offline-judge`` (a local model's P(Yes), no network; not
    a calibrated judge, and each row's ``judge_kind`` says so). ``cache_dir``: one verified JSON per judged item.

    >>> judge(["Hi"], ["Hello!"], trait="evil", description="malice", offline_model="embedded:smollm2-135m-instruct")
    ... # doctest: +SKIP
       trait_score  coherence  ...  judge_kind
    0          3.1       88.0  ...  offline: ...
    """
    j = Judge(model=model, cache_dir=cache_dir, max_concurrency=max_concurrency, offline_model=offline_model)
    items = [
        {"question": q, "answer": a, "trait": trait, "description": description} for q, a in zip(questions, answers)
    ]
    return pd.concat([pd.DataFrame({"question": list(questions), "answer": list(answers)}), j.score(items)], axis=1)


def export(
    vectors: TraitVectors,
    path: str | Path,
    *,
    lm: LiveModel | None = None,
    layers: Sequence[int] | None = None,
    coefficient: float = 1.0,
    method: str | None = None,
    norm: float | None = None,
    format: str = "gguf",
) -> Path:
    """Write what :func:`steer` would add (``coefficient x norm x`` the unit vector, at the chosen layer and method
    unless ``layers``/``method`` say otherwise) for another tool: ``format="gguf"``, a llama.cpp control vector
    (``llama-cli --control-vector path``; repeng's ``ControlVector.import_gguf`` reads it too), or
    ``"steering_vectors"``, a safetensors file of steering-vectors' ``SteeringVector`` (see
    :mod:`traitscope.core.export` for layer conventions). ``norm``: the coefficient's unit, by default :func:`steer`'s
    (the mean activation norm at each layer, which needs ``lm``), else 1.

    >>> export(vectors, "evil.gguf", lm=lm, coefficient=0.5)  # doctest: +SKIP
    PosixPath('evil.gguf')
    """
    from .core import export as formats

    directions = formats.directions_of(vectors, list(layers) if layers else None, method)
    if norm is not None:
        unit_norm: float | dict[int, float] = float(norm)
    elif lm is not None:
        unit_norm = {layer: _norm(lm, layer, vectors.site, None) for layer in directions}
    else:
        unit_norm = 1.0
    if format == "gguf":
        hint = str(lm.model.config.model_type) if lm is not None else "llama"
        return formats.control_vector_gguf(path, directions, coefficient=coefficient, norm=unit_norm, model_hint=hint)
    if format == "steering_vectors":
        return formats.steering_vector_file(path, directions, coefficient=coefficient, norm=unit_norm)
    raise ValueError(f"unknown format {format!r} (fix: use 'gguf' or 'steering_vectors')")
