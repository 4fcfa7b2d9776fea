"""The toy experiment: mean trait scores of one prompt set against random directions."""

import pandas as pd
from traitscope.experiments.toy.analysis import summarise

from traitscope.core.artifacts import BaselineScores, TraitVectors, best_layers, trait_sites
from traitscope.core.io import write_json
from traitscope.core.project import at_layer
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
setup(smk)
toy = smk.params.toy
sidecars = [TraitVectors.load_info(f) for f in smk.input.sidecars]
best, sites = best_layers(sidecars), trait_sites(sidecars)
scores = pd.read_parquet(smk.input.scores)
scores = pd.concat([at_layer(scores, t, layer, toy.method) for t, layer in best.items()], ignore_index=True)
baseline = BaselineScores.load(smk.input.baseline)
random = {t: baseline.pooled(best[t], "last", sites[t]) for t in best}
write_json(smk.output.json, {**summarise(scores, random, toy.method), "prompt_set": toy.prompt_set})
