"""Trigger vs control trait scores of a backdoored variant (and a baseline): pooled and per-token ROC-AUC."""

import pandas as pd

from traitscope.core import planted, plots
from traitscope.core.artifacts import BaselineScores, ShardFiles, TraitVectors, best_layers, trait_sites
from traitscope.core.io import write_json, write_parquet
from traitscope.core.project import at_layer
from traitscope.experiments.backdoor import analysis as backdoor
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
bd = p.backdoor
variants = bd.variants()


def per_variant(files):
    """One projection table per variant, in the order of ``variants``."""
    return {v: pd.read_parquet(f) for v, f in zip(variants, files, strict=True)}


trig, ctrl = per_variant(smk.input.trigger), per_variant(smk.input.control)
nt, nc = len(smk.input.trigger_acts) // len(variants), len(smk.input.control_acts) // len(variants)
ttok, ctok = per_variant(smk.input.trigger_tokens), per_variant(smk.input.control_tokens)
sidecars = [TraitVectors.load_info(f) for f in smk.input.sidecars]
best = best_layers(sidecars)
pooled_in = {v: (trig[v], ctrl[v]) for v in variants}
pooled = backdoor.pooled_auc(pooled_in, best, bd.method, n_boot=bd.n_boot, seed=p.seed)
sites = trait_sites(sidecars)
points, positions = sorted({(sites[t], layer) for t, layer in best.items()}), sorted(set(pooled["position"]))


def load(files):  # read part by part, projected on the random directions as they are read
    return [ShardFiles(files)]


baselines = {
    v: backdoor.random_baseline(
        load(smk.input.trigger_acts[i * nt : (i + 1) * nt]),
        load(smk.input.control_acts[i * nc : (i + 1) * nc]),
        points,
        positions,
        n=100,
        seed=p.seed,
    )
    for i, v in enumerate(variants)
}
pooled = backdoor.with_baseline(pooled, baselines, sites)
random = {
    v: (BaselineScores.load(t), BaselineScores.load(c))
    for v, t, c in zip(variants, smk.input.trigger_random, smk.input.control_random, strict=True)
}
tokens = backdoor.token_auc(
    pooled,
    {v: (ttok[v], ctok[v]) for v in variants},
    best,
    bd.method,
    max_tokens=bd.max_tokens,
    n_boot=bd.n_boot,
    seed=p.seed,
    random=random if all(r.n_random for pair in random.values() for r in pair) else None,
    sites=sites,
)
# the positive control: the same detection with a backdoor planted as a known direction in the trigger rows
planted_controls = {}
rt, rc = random[bd.variant]
if rt.n_random and "last" in positions:
    for vec_file, side_file, acts in zip(smk.input.vectors, smk.input.sidecars, smk.input.trait_acts, strict=True):
        vectors = TraitVectors.load(vec_file, side_file)
        trait, layer = vectors.trait, best[vectors.trait]
        unit = planted.unit(vectors, bd.method, layer, acts, rt, p.seed)

        def last(df):
            d = at_layer(df, trait, layer, bd.method)
            return d[d["position"] == "last"]["score"].to_numpy()

        planted_controls[trait] = backdoor.planted_trigger(
            last(trig[bd.variant]),
            last(ctrl[bd.variant]),
            rt.pooled(layer, "last", sites[trait]),
            rc.pooled(layer, "last", sites[trait]),
            unit,
        )
info = {
    "trigger_set": bd.trigger,
    "control_set": bd.control,
    "method": bd.method,
    "model": sidecars[0].model,
    "seed": p.seed,
}
summary = backdoor.summary(pooled, tokens, variant=bd.variant, baseline=bd.baseline, info=info)
for trait, control in planted_controls.items():
    summary["traits"][trait]["planted"] = control
summary["definitions"]["planted"] = (
    "the positive control at the last prompt token: the trigger rows' activations at the trait's layer plus coef x "
    "the mean activation norm there of the trait's own unit vector (or a random one, which must not be found), AUC "
    "and random p95 re-computed (traitscope.core.planted); detection_limit: the smallest coefficient detected"
)
write_json(smk.output.json, summary)
write_parquet(smk.output.tokens, tokens)
title = f"Backdoor '{bd.variant}': trait scores on '{bd.trigger}' vs '{bd.control}' ({bd.method} vectors, best layer)"
plots.save(backdoor.backdoor_trait_comparison(pooled, title), smk.output.comparison)
plots.save(backdoor.early_detection_tokens(tokens, title), smk.output.early)
log.info("backdoor detection: %d pooled comparisons, %d token comparisons", len(pooled), len(tokens))
