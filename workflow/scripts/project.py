"""Project one activation shard onto every trait vector (pooled and per-token scores)."""

from traitscope.artifacts import ActivationShard, TraitVectors
from traitscope.io import write_parquet
from traitscope.project import project_shard
from traitscope.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
shard = ActivationShard.load(smk.input.activations)
traits = [TraitVectors.load(v, s) for v, s in zip(smk.input.vectors, smk.input.sidecars)]
pooled, tokens = project_shard(shard, traits, p.project, n_layers=p.n_layers)
write_parquet(smk.output.scores, pooled)
write_parquet(smk.output.tokens, tokens)
log.info("projected %d prompts on %d traits: %d pooled, %d token scores", len(shard.ids), len(traits), len(pooled),
         len(tokens))
