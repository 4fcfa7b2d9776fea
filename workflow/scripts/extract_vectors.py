"""Compute trait vectors (mean difference, logistic probe) per layer with held-out metrics."""

import pandas as pd

from traitscope.artifacts import ActivationShard
from traitscope.extract import extract_trait
from traitscope.io import write_parquet
from traitscope.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
shard = ActivationShard.load(smk.input.activations)
table = pd.read_parquet(smk.input.table).set_index("id").loc[shard.ids].reset_index()
vectors, metrics = extract_trait(shard, table, p.job, trait=p.trait, variant=smk.wildcards.variant, model=p.model,
                                 layers=p.layers, position=p.position, seed=p.seed)
write_parquet(smk.output.metrics, metrics)
vectors.save(smk.output.vectors, smk.output.sidecar)
log.info("%s: best layer %s", p.trait, vectors.info["best"]["reason"])
