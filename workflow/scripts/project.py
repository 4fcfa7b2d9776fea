"""The trait scores of one (variant, prompt set): project every activation shard onto every trait vector, or gather
the score shards that the stream capture wrote (capture.stream). Written part by part, one shard in memory at a time."""

import pandas as pd

from traitscope.artifacts import ActivationShard, BaselineScores, TraitVectors
from traitscope.io import ParquetParts, write_parquet_parts
from traitscope.project import baseline_scores, score_frames, score_tensors
from traitscope.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p, w = smk.params, smk.wildcards
if p.mode == "stream":
    n_pooled = write_parquet_parts(smk.output.scores, (pd.read_parquet(f) for f in smk.input.stream_scores))
    n_tokens = write_parquet_parts(smk.output.tokens, (pd.read_parquet(f) for f in smk.input.stream_tokens))
    n_shards = len(smk.input.stream_scores)
    baseline = BaselineScores.concat([BaselineScores.load(f) for f in smk.input.stream_baseline])
else:
    traits = [TraitVectors.load(v, s) for v, s in zip(smk.input.vectors, smk.input.sidecars)]
    random_parts, ids = [], []
    with ParquetParts(smk.output.scores) as pooled_out, ParquetParts(smk.output.tokens) as token_out:
        for f in smk.input.activations:
            shard = ActivationShard.load(f)
            scores = score_tensors(shard, traits, p.project, p.n_layers, p.baseline)
            pooled, tokens = score_frames(scores, shard.ids)
            pooled_out.write(pooled)
            token_out.write(tokens)
            random_parts.append(scores)
            ids += shard.ids
    n_pooled, n_tokens, n_shards = pooled_out.rows, token_out.rows, len(smk.input.activations)
    baseline = baseline_scores(random_parts, ids, p.baseline)
baseline.save(smk.output.baseline)
log.info("%s/%s (%s): %d shards, %d pooled and %d token scores, %d random baseline directions", w.variant, w.pset,
         p.mode, n_shards, n_pooled, n_tokens, baseline.n_random)
