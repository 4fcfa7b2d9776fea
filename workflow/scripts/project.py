"""The trait scores of one (variant, prompt set): project every activation shard onto every trait vector, or gather
the score shards that the stream capture wrote (capture.stream). Written part by part, one shard in memory at a time."""

import pandas as pd

from traitscope.artifacts import ActivationShard, TraitVectors
from traitscope.io import ParquetParts, write_parquet_parts
from traitscope.project import project_shard
from traitscope.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p, w = smk.params, smk.wildcards
if p.mode == "stream":
    n_pooled = write_parquet_parts(smk.output.scores, (pd.read_parquet(f) for f in smk.input.stream_scores))
    n_tokens = write_parquet_parts(smk.output.tokens, (pd.read_parquet(f) for f in smk.input.stream_tokens))
    n_shards = len(smk.input.stream_scores)
else:
    traits = [TraitVectors.load(v, s) for v, s in zip(smk.input.vectors, smk.input.sidecars)]
    with ParquetParts(smk.output.scores) as pooled_out, ParquetParts(smk.output.tokens) as token_out:
        for f in smk.input.activations:
            pooled, tokens = project_shard(ActivationShard.load(f), traits, p.project, n_layers=p.n_layers)
            pooled_out.write(pooled)
            token_out.write(tokens)
    n_pooled, n_tokens, n_shards = pooled_out.rows, token_out.rows, len(smk.input.activations)
log.info("%s/%s (%s): %d shards, %d pooled and %d token scores", w.variant, w.pset, p.mode, n_shards, n_pooled,
         n_tokens)
