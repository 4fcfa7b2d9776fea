"""Judge every generated answer of a persona trait (trait expression, coherence) and mark the pairs that pass."""

import pandas as pd

from traitscope.core.io import write_parquet
from traitscope.core.judge import Judge
from traitscope.core.persona_filter import filter_pairs, judge_answers
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
table = pd.read_parquet(smk.input.table)
responses = pd.read_parquet(smk.input.responses)
judge = Judge.from_config(p.judge, p.judge_cache)
judged, counts = filter_pairs(
    judge_answers(judge, table, responses, p.trait.split("/")[1].replace("_", " "), p.description), p.filter
)
judged.attrs["filter"] = counts
write_parquet(smk.output[0], judged)
log.info(
    "%s: %d of %d pairs kept (%s)",
    p.trait,
    counts["kept_pairs"],
    counts["pairs"],
    {k: v for k, v in counts.items() if k.startswith("dropped_")},
)
