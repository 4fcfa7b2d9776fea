"""Emergent misalignment: trait scores of a variant vs the base on the same prompts and response tokens."""

import pandas as pd

from traitscope.core import planted, plots
from traitscope.core.artifacts import BaselineScores, TraitVectors, best_layers, trait_sites
from traitscope.core.io import read_parquets, write_json, write_parquet
from traitscope.core.project import pooled_scores
from traitscope.experiments.emergent_misalignment import analysis as emergent_misalignment
from traitscope.experiments.emergent_misalignment.analysis import (
    compare_variants,
    random_control,
    random_differences,
    sensitivity,
    with_random_control,
)
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
c = smk.params.settings
sidecars = [TraitVectors.load_info(f) for f in smk.input.sidecars]
best = best_layers(sidecars)
positions = {s.trait: c.position or s.position for s in sidecars}
frames = {c.base: read_parquets(smk.input.base), c.variant: read_parquets(smk.input.variant)}
prompts = pd.read_parquet(smk.input.prompts)
scores = pooled_scores(frames, prompts, best, positions, c.method)
result, per_q = compare_variants(
    scores,
    base=c.base,
    variant=c.variant,
    correction=c.correction,
    alpha=c.alpha,
    n_boot=c.n_boot,
    seed=smk.params.seed,
)
if smk.input.get("baselines"):  # the control: the same comparison along random directions
    baselines = {v: BaselineScores.load(f) for v, f in zip((c.base, c.variant), smk.input.baselines)}
    sites = trait_sites(sidecars)
    diffs = random_differences(baselines, prompts, best, positions, sites, base=c.base, variant=c.variant)
    result = with_random_control(result, random_control(diffs))
    # the positive control: what the same test finds when a known vector is planted in the variant's activations
    units = {}
    for vec_file, side_file, acts in zip(smk.input.vectors, smk.input.sidecars, smk.input.trait_acts, strict=True):
        vectors = TraitVectors.load(vec_file, side_file)
        layer = best[vectors.trait]
        units[vectors.trait] = planted.unit(vectors, c.method, layer, acts, baselines[c.base], smk.params.seed)
    result["sensitivity"] = sensitivity(per_q, diffs, result, units)
    result["sensitivity_definition"] = (
        "planted effects: the variant's activations at each trait's layer plus coef x the mean activation norm there "
        "(over the trait's extraction answers, the steering unit) of the trait's own unit vector, or of a random one, "
        "exact for fixed tokens (traitscope.core.planted); the same test, correction and random control re-run; "
        "detection_limit: the smallest coefficient detected (None: none up to 1)"
    )
result.update(
    prompt_set=c.prompt_set,
    replayed_responses_of=prompts["source"].iloc[0],
    method=c.method,
    model=sidecars[0].model,
    seed=smk.params.seed,
)
write_json(smk.output.json, result)
write_parquet(smk.output.scores, per_q)
title = (
    f"Trait scores of '{c.variant}' vs '{c.base}' on the same prompts and replayed responses "
    f"('{c.prompt_set}', {c.method} vectors; p corrected by {c.correction} across traits)"
)
plots.save(emergent_misalignment.trait_distributions(per_q, result, title), smk.output.figure)
log.info("variant comparison: %s", {t: round(r["cohens_dz"], 2) for t, r in result["traits"].items()})
