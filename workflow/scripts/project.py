"""The trait scores of one (variant, prompt set): project every activation shard onto every trait vector, or gather
the score shards that the stream capture wrote (capture.stream). Shards are read one capture chunk at a time and the
tables written part by part, so memory does not grow with the shard."""

import pandas as pd

from traitscope.core.artifacts import BaselineScores, TraitVectors
from traitscope.core.io import concat_safetensors, write_parquet_parts
from traitscope.core.project import project_files, write_scores
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p, w = smk.params, smk.wildcards
if p.mode == "stream":
    n_pooled = write_parquet_parts(smk.output.scores, (pd.read_parquet(f) for f in smk.input.stream_scores))
    n_tokens = write_parquet_parts(smk.output.tokens, (pd.read_parquet(f) for f in smk.input.stream_tokens))
    n_parts = len(smk.input.stream_scores)
    parts = [BaselineScores.load(f, []) for f in smk.input.stream_baseline]
    concat_safetensors(
        list(smk.input.stream_baseline),
        smk.output.baseline,
        {**parts[0].meta, "ids": [i for b in parts for i in b.ids]},
        digest=False,
    )
else:
    traits = [TraitVectors.load(v, s) for v, s in zip(smk.input.vectors, smk.input.sidecars)]
    n_pooled, n_tokens, n_parts = write_scores(
        project_files(smk.input.activations, traits, p.project, p.n_layers, p.baseline),
        p.baseline,
        smk.output.scores,
        smk.output.tokens,
        smk.output.baseline,
    )
log.info(
    "%s/%s (%s): %d parts, %d pooled and %d token scores, %d random baseline directions",
    w.variant,
    w.pset,
    p.mode,
    n_parts,
    n_pooled,
    n_tokens,
    p.baseline.n_random,
)
