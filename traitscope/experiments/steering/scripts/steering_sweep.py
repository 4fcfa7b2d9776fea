"""Judged trait score and coherence of steered responses over coefficients (and layers)."""

import pandas as pd

from traitscope.core import plots
from traitscope.core.artifacts import TraitVectors
from traitscope.core.io import write_parquet
from traitscope.core.layers import parse_layers
from traitscope.core.sweep import build_task, sweep, trait_norms
from traitscope.core.traits import trait_description
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
table = table.assign(trait=p.trait, method=method, positions=st.positions, site=site, norm=table["layer"].map(norms))
write_parquet(smk.output.table, table)
plots.save(plots.steering_sweep(table, p.trait, task.judge.kind), smk.output.figure)
log.info("%s: %d steered responses judged by %s", p.trait, len(table), p.judge.model)
