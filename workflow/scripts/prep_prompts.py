"""Load one prompt set (builtin, local file or hub dataset) into the normalised parquet schema."""

from traitscope.io import write_parquet
from traitscope.prompts import load_prompt_set
from traitscope.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
df = load_prompt_set(smk.params.spec, key=f"prompt_sets.{smk.wildcards.pset}", seed=smk.params.seed,
                     shards=smk.params.shards)
write_parquet(smk.output[0], df)
log.info("prompt set %s: %d prompts in %d shard(s)", smk.wildcards.pset, len(df), df["shard"].nunique())
