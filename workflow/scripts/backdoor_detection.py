"""Trigger vs control trait scores of a backdoored variant (and a baseline): pooled and per-token ROC-AUC."""

from traitscope import backdoor, plots
from traitscope.artifacts import TraitVectors, best_layers
from traitscope.io import read_parquets, write_json, write_parquet
from traitscope.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
bd = p.backdoor
variants = bd.variants()


def per_variant(files, n):
    return {v: read_parquets(files[i * n:(i + 1) * n])
            for i, v in enumerate(variants)}


nt, nc = p.shards["trigger"], p.shards["control"]
trig, ctrl = per_variant(smk.input.trigger, nt), per_variant(smk.input.control, nc)
ttok, ctok = per_variant(smk.input.trigger_tokens, nt), per_variant(smk.input.control_tokens, nc)
sidecars = [TraitVectors.load_info(f) for f in smk.input.sidecars]
best = best_layers(sidecars)
pooled_in = {v: (trig[v], ctrl[v]) for v in variants}
pooled = backdoor.pooled_auc(pooled_in, best, bd.method, n_boot=bd.n_boot, seed=p.seed)
tokens = backdoor.token_auc(pooled, {v: (ttok[v], ctok[v]) for v in variants}, best, bd.method,
                            max_tokens=bd.max_tokens, n_boot=bd.n_boot, seed=p.seed)
info = {"trigger_set": bd.trigger, "control_set": bd.control, "method": bd.method,
        "model": sidecars[0].model, "seed": p.seed}
write_json(smk.output.json, backdoor.summary(pooled, tokens, variant=bd.variant, baseline=bd.baseline, info=info))
write_parquet(smk.output.tokens, tokens)
title = f"Backdoor '{bd.variant}': trait scores on '{bd.trigger}' vs '{bd.control}' ({bd.method} vectors, best layer)"
plots.save(plots.backdoor_trait_comparison(pooled, title), smk.output.comparison)
plots.save(plots.early_detection_tokens(tokens, title), smk.output.early)
log.info("backdoor detection: %d pooled comparisons, %d token comparisons", len(pooled), len(tokens))
