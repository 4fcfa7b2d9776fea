"""Capture activations of one (variant, prompt table[, shard]) at every requested layer in one job; or, for a
capture.stream set (rule capture_stream), project them onto the trait vectors chunk by chunk and keep the scores."""

import pandas as pd

from traitscope.api import load_model
from traitscope.core.artifacts import ActivationShard, TraitVectors
from traitscope.core.capture import CaptureError, capture_meta, capture_shard, iter_chunks, responses_table
from traitscope.core.chat import special_text_rows
from traitscope.core.dims import context_length
from traitscope.core.io import file_sha256, write_parquet
from traitscope.core.project import needed_layers, needed_sites, score_tensors, write_scores
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p, w = smk.params, smk.wildcards
df = pd.read_parquet(smk.input.prompts)
shard = w.get("shard")
if shard is not None:
    df = df[df["shard"] == int(shard)].reset_index(drop=True)
label = " ".join(str(v) for v in w)
lm = load_model(p.variant, key=f"variants.{w.variant}")  # the notebook's loader (traitscope.api)
model, tokenizer, fingerprint = lm.model, lm.tokenizer, lm.fingerprint()
job, reduce, reduce_key = p.job, None, None
if smk.rule == "capture_stream":  # hook only the layers and sites some trait is projected at
    traits = [TraitVectors.load(v, s) for v, s in zip(smk.input.vectors, smk.input.sidecars)]
    job = job._replace(
        layers=tuple(needed_layers(traits, p.project, list(job.layers), p.n_layers)), sites=needed_sites(traits)
    )

    def reduce(chunk, ids):
        shard = ActivationShard(
            chunk, {"ids": ids, "layers": list(job.layers), "positions": list(job.positions), "sites": list(job.sites)}
        )
        return score_tensors(shard, traits, p.project, p.n_layers, p.baseline)

    reduce_key = (repr(p.project), repr(p.baseline), [file_sha256(f) for f in smk.input.vectors])
ctx = context_length(model.config)
special = special_text_rows(tokenizer, df) if p.special_tokens == "refuse" else []
if special:
    raise CaptureError(
        f"{label}: {len(special)} rows spell a special token of the tokenizer, e.g. {special[:3]}, and "
        "checks.special_tokens is refuse (fix: remove it from the prompts, or set "
        "checks.special_tokens: text to keep it as ordinary text)"
    )
extra = {"variant": w.variant, "prompt_set": f"{smk.rule} {label}"}
if reduce is None:  # streamed into the shard at the memory of one chunk, one copy on disk (capture_shard)
    meta, responses = capture_shard(
        model,
        tokenizer,
        df,
        job,
        smk.output.activations,
        model_key=fingerprint,
        cache_dir=p.cache_dir,
        progress_label=label,
        context_length=ctx,
        extra_meta=extra,
    )
else:  # scores only, written chunk by chunk
    chunks = iter_chunks(
        model,
        tokenizer,
        df,
        job,
        model_key=fingerprint,
        cache_dir=p.cache_dir,
        progress_label=label,
        reduce=reduce,
        reduce_key=reduce_key,
    )
    tables, done = [], []

    def parts():
        for chunk in chunks:
            tables.append(chunk.responses)
            done.append(chunk.path)
            yield chunk.tensors, chunk.ids

    n_pooled, n_tokens, _ = write_scores(parts(), p.baseline, smk.output.scores, smk.output.tokens, smk.output.baseline)
    for path in done:  # the scores are in the outputs now: one copy on disk (the chunks' responses tables stay)
        path.unlink(missing_ok=True)
    responses = responses_table(tables, ctx)
    meta = capture_meta(df, job, fingerprint, responses)
n_cut, n_over, n_special = meta["n_truncated"], meta["n_over_context"], meta["n_special_text"]
if n_special:  # flagged per row in the responses table (column special_text)
    log.warning(
        "%s: %d of %d rows spell a special token of the tokenizer in their text; it was kept as text, not "
        "turned into a control token (checks.special_tokens: refuse stops start-up on them instead)",
        label,
        n_special,
        len(df),
    )
if n_cut:  # counted per row in the responses table (columns truncated, over_context), in the shard's metadata
    log.warning(
        "%s: %d of %d prompts were longer than capture.max_length=%d tokens and lost their start "
        "(fix: raise capture.max_length up to the model's context)",
        label,
        n_cut,
        len(df),
        p.job.max_length,
    )
if n_over:  # and in results/all per prompt set
    log.warning(
        "%s: %d of %d rows (prompt + prefill + response) are longer than the model's context of %d tokens, "
        "so their last tokens sit at positions it was not trained on (fix: shorten the prefills/responses "
        "or use a longer-context model)",
        label,
        n_over,
        len(df),
        ctx,
    )
write_parquet(smk.output.responses, responses)
log.info(
    "%s: captured %d prompts at %d layers, positions %s%s",
    label,
    len(df),
    len(job.layers),
    job.positions,
    "" if reduce is None else f"; kept {n_pooled} pooled and {n_tokens} token scores, no activations",
)
