"""External harm dataset: per-category ROC-AUC of trait scores, severity correlation and failure cases."""

import pandas as pd

from traitscope.core import plots
from traitscope.core.artifacts import BaselineScores, TraitVectors, best_layers, trait_sites
from traitscope.core.io import read_parquets, write_json, write_parquet
from traitscope.core.project import pooled_scores
from traitscope.experiments.external import analysis as external
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
ext, ds = smk.params.external, smk.params.dataset
sidecars = [TraitVectors.load_info(f) for f in smk.input.sidecars]
best = best_layers(sidecars)
positions = {s.trait: ext.position or s.position for s in sidecars}
prompts = read_parquets(smk.input.prompts)
frame = read_parquets(smk.input.scores)
pooled = pooled_scores({ext.variant: frame}, prompts, best, positions, ext.method)
scores = external.attach_rows(pooled, prompts, ds.severity)
baselines = [BaselineScores.load(f) for f in smk.input.baselines]
sites = trait_sites(sidecars)
random = (
    {
        t: pd.concat([pd.DataFrame(b.pooled(best[t], positions[t], sites[t]), index=b.ids) for b in baselines])
        for t in best
    }
    if all(b.n_random for b in baselines)
    else None
)
table = external.category_auc(
    scores, min_per_class=ext.min_per_class, n_boot=ext.n_boot, seed=smk.params.seed, random=random
)
severity = external.severity_correlation(scores, n_boot=ext.n_boot, seed=smk.params.seed)
info = {
    "dataset": smk.wildcards.dataset,
    "prompt_sets": list(ds.prompt_sets),
    "variant": ext.variant,
    "method": ext.method,
    "model": sidecars[0].model,
    "seed": smk.params.seed,
    "n_unsafe": int(scores.loc[scores["label"] == 1, "id"].nunique()),
    "n_safe": int(scores.loc[scores["label"] == 0, "id"].nunique()),
    "sources": sorted(prompts["source"].dropna().unique().tolist()),
    "sites": sites,
}  # where each trait is read: resid (the residual stream), attn or mlp (sublayer outputs)
result = external.summary(table, severity, info)
write_json(smk.output.json, result)
write_parquet(smk.output.table, table)
write_parquet(smk.output.scores, scores)
write_json(
    smk.output.failures,
    {**info, "failure_cases": external.failure_cases(scores, fpr=ext.failure_fpr, n_cases=ext.n_failures)},
)
title = (
    f"Do trait scores separate unsafe from safe rows of '{smk.wildcards.dataset}'? "
    f"(variant '{ext.variant}', {ext.method} vectors, n={info['n_unsafe']} unsafe / {info['n_safe']} safe)"
)
plots.save(external.per_category_auc(table, title), smk.output.figure)
log.info("overall AUC: %s", {r.trait: round(r.auc, 2) for r in table[table["category"] == "overall"].itertuples()})
for trait, entry in result["traits"].items():
    if entry["baseline"] and not entry["overall"]["beats_random"]:
        log.warning("%s: %s", trait, entry["baseline"])
