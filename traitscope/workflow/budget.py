"""The disk a study's capture will write, known before any job runs (printed at start-up and by the dry run).

Per (variant, prompt set), bytes per prompt:

activations (two-step)  values: sites x layers x hidden x (pooled positions + response tokens) x 2 bytes (4 with
                        ``capture.dtype: float32``),
                        plus the token ids and prefill marks of the response tokens (9 bytes each); sites: the
                        residual stream and each attn/mlp site some trait is read at
scores                  score rows: traits x methods x projected layers x (pooled positions + response tokens) x
                        SCORE_ROW_BYTES (a parquet row of id, trait, method, layer, position and a float32 score,
                        compressed); written by the stream capture (shard files) and by ``project`` (set table)
random baseline         float32 scores of ``project.random_directions`` random directions at every projected layer
                        (with ``project.layers: best``, up to one layer per trait; ``neighbours``, up to three) x
                        (pooled positions + response
                        mean, + response tokens for the prefill attack's sets) x 4 bytes, beside the scores

Response tokens per prompt are at most the prefill plus ``capture.generate.max_new_tokens``; the estimate takes
that bound (replayed responses are counted at the same length), so it is an upper estimate for generated text.
``project.layers: best`` projects one layer per trait, ``neighbours`` (the default) up to three: the chosen layer and the
nearest captured layer on each side (counted as three, an upper estimate).
"""

from __future__ import annotations

from typing import NamedTuple

from ..core.layers import parse_layers
from ..core.specs import DTYPE_BYTES, CaptureJob
from .settings import Study

SCORE_ROW_BYTES = 8.0
"""Bytes per score row in parquet at scale (``tests/test_budget.py`` measures it on the tables ``project`` writes for
a shard of 2,000 prompts and 6 traits)."""
TOKEN_EXTRA_BYTES = 9  # int64 token id + bool prefill mark per stored response token
VALUE_BYTES = DTYPE_BYTES  # per stored activation value (capture.dtype)


class Budget(NamedTuple):
    variant: str
    prompt_set: str
    rows: int
    streamed: bool
    activation_bytes_per_prompt: float  # what two-step capture writes per prompt (0 written when streamed)
    score_bytes_per_prompt: float  # the score tables, per prompt (0 for a pair that is captured, not projected)

    @property
    def written_per_prompt(self) -> float:
        """Bytes this config writes per prompt of the set: scores only when streamed, activations and scores else
        (stream shards and the set table both hold the scores)."""
        return (
            2 * self.score_bytes_per_prompt
            if self.streamed
            else (self.activation_bytes_per_prompt + self.score_bytes_per_prompt)
        )

    @property
    def written(self) -> float:
        return self.rows * self.written_per_prompt


def response_tokens(study: Study) -> int:
    """Upper estimate of assistant-turn tokens per prompt (0 when responses are not captured)."""
    cap = study.capture
    return cap.generate.max_new_tokens if "response" in cap.positions else 0


def activation_bytes(job: CaptureJob, hidden: int, tokens: int) -> float:
    """Bytes one prompt takes in a capture job's shard: a value at every (site, layer) for each pooled position and
    each of its ``tokens`` response tokens (when the job stores them), plus each token's id and prefill mark."""
    pooled = len([p for p in job.positions if p in ("last", "mean")])
    tokens = tokens if "response" in job.positions else 0
    values = len(job.sites) * len(job.layers) * hidden * (pooled + tokens)
    return values * VALUE_BYTES[job.dtype] + TOKEN_EXTRA_BYTES * tokens


def prompt_activation_bytes(study: Study, variant: str) -> float:
    """Bytes one prompt of a prompt-set capture of ``variant`` takes (every set's capture job is the same)."""
    return activation_bytes(study.capture_job(variant), study.dims[variant].hidden_size, response_tokens(study))


def pair_budget(study: Study, variant: str, pset: str, projected: bool = True) -> Budget:
    cap, proj = study.capture, study.project
    dims = study.dims[variant]
    pooled = len([p for p in cap.positions if p in ("last", "mean")])
    tokens = response_tokens(study)
    acts = prompt_activation_bytes(study, variant)
    per_trait = {"best": 1, "neighbours": 3}.get(proj.layers) if isinstance(proj.layers, str) else None
    proj_layers = per_trait or len(parse_layers(proj.layers, dims.n_layers, "project.layers"))
    score_positions = pooled + (1 if tokens else 0) + (tokens if proj.per_token else 0)
    scores = len(study.traits) * len(proj.methods) * proj_layers * score_positions * SCORE_ROW_BYTES
    base = study.baseline_job(pset)
    random_layers = min(per_trait * len(study.traits), dims.n_layers) if per_trait else proj_layers
    random_positions = pooled + (1 if tokens else 0) + (tokens if base.per_token else 0)
    scores += base.n_random * random_layers * random_positions * 4.0
    return Budget(
        variant,
        pset,
        int(study.rows.get(pset) or 0),
        study.streamed(pset) and projected,
        acts,
        scores if projected else 0.0,
    )


def trait_capture_bytes(study: Study, trait: str) -> float:
    """What the contrastive capture of one trait writes (its extraction rows at extract.layers, at the trait's
    position and site; response tokens up to extract.max_new_tokens for ``response_mean`` traits), or 0 where the
    rows are unknown before prep."""
    per_row = activation_bytes(
        study.trait_capture_job(trait), study.dims[study.extract.variant].hidden_size, study.extract.max_new_tokens
    )
    return study.trait_rows.get(trait, 0) * per_row


def study_budget(study: Study) -> list[Budget]:
    """The budget of every captured (variant, prompt set): the projected ones, and those only an analysis reads
    as activations (the organism's train and test sets, the SAE corpus)."""
    projected = set(study.projected_pairs())
    return [
        pair_budget(study, v, s, (v, s) in projected) for v, s in sorted(projected | set(study.captured_only_pairs()))
    ]


def total_bytes(study: Study) -> float:
    """What start-up announces the study will write: every captured (variant, set) and every trait capture."""
    return sum(b.written for b in study_budget(study)) + sum(trait_capture_bytes(study, t) for t in study.trait_names())


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1000
    return f"{n:.1f} TB"


def report(study: Study, limit_gb: float) -> list[str]:
    """Lines of the activation budget: per (variant, set), per variant and in total, with a warning above
    ``limit_gb`` (``checks.activation_budget_gb``)."""
    budgets = study_budget(study)
    lines = [
        "activation budget (what capture and project will write; checks.activation_budget_gb to change the warning):"
    ]
    for b in budgets:
        how = (
            "stream: scores only"
            if b.streamed
            else "activations + scores"
            if b.score_bytes_per_prompt
            else "activations"
        )
        lines.append(
            f"  {b.variant}/{b.prompt_set}: {b.rows} prompts x {human(b.written_per_prompt)} = "
            f"{human(b.written)} ({how})"
        )
    per_variant: dict[str, float] = {}
    for b in budgets:
        per_variant[b.variant] = per_variant.get(b.variant, 0.0) + b.written
    traits = {t: trait_capture_bytes(study, t) for t in study.trait_names()}
    lines.append(
        f"  trait extraction captures ({study.extract.variant}): "
        + ", ".join(f"{t} {human(n)}" for t, n in traits.items())
    )
    lines.append("  per variant: " + ", ".join(f"{v} {human(n)}" for v, n in sorted(per_variant.items())))
    total = total_bytes(study)
    lines.append(f"  total: {human(total)}")
    if total > limit_gb * 1e9:
        lines.append(
            f"WARNING: capture will write {human(total)}, above checks.activation_budget_gb={limit_gb:g} GB "
            "(fix: capture fewer layers (capture.layers), drop `response` from capture.positions for large "
            "sets, or set capture.stream: true to keep scores only)"
        )
    return lines
