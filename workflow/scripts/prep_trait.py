"""Build the labelled contrastive table of one trait (persona pairs or two prompt sets)."""

import pandas as pd

from traitscope.core.io import write_model_inputs
from traitscope.core.traits import contrast_from_tables, persona_table
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
spec, key = smk.params.spec, smk.params.trait
if spec.source == "contrast":
    df = contrast_from_tables(pd.read_parquet(smk.input.pos), pd.read_parquet(smk.input.neg), spec.pos, spec.neg)
else:
    df = persona_table(key, spec)
write_model_inputs(smk.output[0], df, f"traits.{key}")
log.info(
    "trait %s: %d rows (%d pos, %d neg), %d groups",
    key,
    len(df),
    int((df.label == 1).sum()),
    int((df.label == 0).sum()),
    df["group"].nunique(),
)
