"""Compute trait vectors (every extract.methods) per layer, at the site the trait's activations were captured at,
with held-out metrics."""

import pandas as pd

from traitscope.core.artifacts import ActivationShard
from traitscope.core.extract import extract_trait
from traitscope.core.io import parquet_attrs, write_parquet
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
shard = ActivationShard.load(smk.input.activations)
table = pd.read_parquet(smk.input.table).set_index("id").loc[shard.ids].reset_index()
drop, info = None, None
if smk.input.judged:  # extract.filter: only the pairs whose answers passed the judge
    judged = pd.read_parquet(smk.input.judged[0])
    drop, info = set(judged.loc[~judged["keep"], "id"]), parquet_attrs(smk.input.judged[0])["filter"]
vectors, metrics = extract_trait(
    shard,
    table,
    p.job,
    trait=p.trait,
    variant=smk.wildcards.variant,
    model=p.model,
    layers=p.layers,
    position=p.position,
    seed=p.seed,
    site=shard.site,
    drop_ids=drop,
    filter_info=info,
)
write_parquet(smk.output.metrics, metrics)
vectors.save(smk.output.vectors, smk.output.sidecar)
log.info("%s: best layer %s", p.trait, vectors.info["best"]["reason"])
