"""Judged steering sweep over a trait's candidate layers, on its training-split questions (layer choice by steering)."""

import pandas as pd

from traitscope.core import plots
from traitscope.core.artifacts import TraitVectors
from traitscope.core.io import write_parquet
from traitscope.core.layer_choice import candidate_layers, sweep_candidates, training_questions
from traitscope.core.sweep import build_task, trait_norms
from traitscope.core.traits import trait_description
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p, choice = smk.params, smk.params.choice
vectors = TraitVectors.load(smk.input.vectors, smk.input.sidecar)
layers = candidate_layers(vectors.info, choice.candidates)
site = vectors.site
norms = trait_norms(smk.input.activations, vectors, layers)
prompts = training_questions(pd.read_parquet(smk.input.table), vectors.info, choice.n_prompts)
task = build_task(
    variant=p.variant,
    judge_cfg=p.judge,
    judge_cache=p.judge_cache,
    trait=p.trait,
    description=trait_description(p.trait, p.trait_spec),
    prompts=prompts,
    layer=layers[0],
    norm=norms[layers[0]],
    max_new_tokens=choice.max_new_tokens,
    seed=p.seed,
    site=site,
)
method = vectors.best_method
table = sweep_candidates(
    task, {layer: vectors.get(method, layer) for layer in layers}, norms, list(choice.coefficients)
)
table = table.assign(trait=p.trait, method=method, site=site, norm=table["layer"].map(norms))
write_parquet(smk.output.table, table)
plots.save(plots.layer_choice(table, p.trait, task.judge.kind, choice.coherence_floor), smk.output.figure)
log.info("%s: %d answers judged at candidate layers %s", p.trait, len(table), layers)
