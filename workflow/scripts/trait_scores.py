"""Per-prompt trait scores at each trait's best layer for every (variant, prompt set), with a figure."""

import pandas as pd

from traitscope.core import plots
from traitscope.core.analyze import score_summary, score_table
from traitscope.core.artifacts import TraitVectors, best_layers
from traitscope.core.io import write_html_table, write_parquet
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
sidecars = [TraitVectors.load_info(f) for f in smk.input.sidecars]
best = best_layers(sidecars)
positions = {s.trait: s.position for s in sidecars}
frames = [(v, s, pd.read_parquet(f)) for (v, s), f in zip(p.pairs, smk.input.scores)]
summary = score_summary(frames, best, positions, method=p.method)
write_parquet(smk.output.table, summary)
write_html_table(
    smk.output.table_html,
    score_table(summary),
    "Trait scores per variant, prompt set and trait (pooled, at each trait's chosen layer)",
    "mean, standard deviation and quartiles over prompts; every prompt's score is in trait_scores.parquet beside it",
)
plots.save(plots.trait_scores(summary), smk.output.figure)
