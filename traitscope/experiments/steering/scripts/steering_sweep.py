"""Judged trait score and coherence of steered responses over coefficients (and layers)."""

import pandas as pd

from traitscope.core import plots
from traitscope.core.artifacts import TraitVectors
from traitscope.core.io import write_json, write_parquet
from traitscope.core.layers import parse_layers
from traitscope.core.sweep import build_task, same_norm_random, sweep, trait_norms
from traitscope.core.traits import trait_description
from traitscope.experiments.steering import analysis
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
st = p.steering
vectors = TraitVectors.load(smk.input.vectors, smk.input.sidecar)
layers = [vectors.best_layer] if st.layers == "best" else parse_layers(st.layers, p.n_layers, "steering.layers")
site = vectors.site
norms = trait_norms(smk.input.activations, vectors, layers)
prompts = pd.read_parquet(smk.input.prompts)["prompt"].tolist()[: st.n_prompts]
task = build_task(
    variant=p.variant,
    judge_cfg=p.judge,
    judge_cache=p.judge_cache,
    trait=p.trait,
    description=trait_description(p.trait, p.trait_spec),
    prompts=prompts,
    layer=layers[0],
    norm=norms[layers[0]],
    max_new_tokens=st.max_new_tokens,
    positions=st.positions,
    seed=p.seed,
    site=site,
)
method = vectors.best_method
table = sweep(task, {layer: vectors.get(method, layer) for layer in layers}, norms, list(st.coefficients))
# the control: a random direction of the same norm at the first layer, at every nonzero coefficient (coefficient 0
# is the unsteered model, the same answers for both)
control = sweep(
    task,
    {layers[0]: same_norm_random(vectors.get(method, layers[0]), p.seed)},
    norms,
    [c for c in st.coefficients if c != 0],
)
unsteered = table[(table["layer"] == layers[0]) & (table["coef"] == 0)]
table = pd.concat(
    [
        table.assign(vector=analysis.TRAIT),
        unsteered.assign(vector=analysis.RANDOM),
        control.assign(vector=analysis.RANDOM),
    ],
    ignore_index=True,
)
table = table.assign(trait=p.trait, method=method, positions=st.positions, site=site, norm=table["layer"].map(norms))
write_parquet(smk.output.table, table)
summary = analysis.versus_random(table)
write_json(smk.output.summary, {"trait": p.trait, "variant": smk.wildcards.variant, "method": method, **summary})
log.info("%s: %s", p.trait, analysis.finding_line(summary))
plots.save(plots.steering_sweep(table, p.trait, task.judge.kind, smk.wildcards.variant), smk.output.figure)
log.info("%s: %d steered responses judged by %s", p.trait, len(table), p.judge.model)
