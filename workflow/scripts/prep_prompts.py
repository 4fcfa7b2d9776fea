"""Load one prompt set (builtin, local file, hub dataset, or a replay of captured responses) into the
normalised parquet schema."""

import pandas as pd

from traitscope.core.io import read_parquets, write_model_inputs
from traitscope.core.prompts import load_prompt_set, replay_table
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
spec = smk.params.spec
if spec.source == "replay":
    responses = read_parquets(smk.input.responses)
    df = replay_table(pd.read_parquet(smk.input.source), responses)
    df["source"] = f"replay:{spec.variant}/{spec.prompt_set}"
    if df.attrs["prep"]["dropped_no_response"]:
        log.warning(
            "prompt_sets.%s: dropped %d of %d rows that have no response to replay",
            smk.wildcards.pset,
            df.attrs["prep"]["dropped_no_response"],
            df.attrs["prep"]["rows_read"],
        )
else:
    df = load_prompt_set(spec, key=f"prompt_sets.{smk.wildcards.pset}", seed=smk.params.seed, shards=smk.params.shards)
write_model_inputs(
    smk.output[0], df, f"prompt_sets.{smk.wildcards.pset}"
)  # df.attrs["prep"] (rows read, dropped, sampled) travels with the table
log.info("prompt set %s: %d prompts in %d shard(s)", smk.wildcards.pset, len(df), df["shard"].nunique())
