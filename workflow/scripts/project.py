"""Project one activation shard onto every trait vector (pooled and per-token scores)."""

from traitscope.io import read_safetensors, write_parquet
from traitscope.project import load_trait_vectors, project_shard
from traitscope.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
tensors, meta = read_safetensors(smk.input.activations)
traits = {t: load_trait_vectors(v, s) for t, v, s in zip(p.traits, smk.input.vectors, smk.input.sidecars)}
pooled, tokens = project_shard(tensors, meta, traits, layers_mode=p.project["layers"], methods=p.project["methods"],
                               per_token=p.project["per_token"], n_layers=p.n_layers)
write_parquet(smk.output.scores, pooled)
write_parquet(smk.output.tokens, tokens)
log.info("projected %d prompts on %d traits: %d pooled, %d token scores", len(meta["ids"]), len(traits), len(pooled),
         len(tokens))
