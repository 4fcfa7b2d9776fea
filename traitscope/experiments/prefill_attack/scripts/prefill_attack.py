"""Prefill attack: four conditions (harmful/benign x prefill/none) scored at the prefill token positions."""

import pandas as pd

from traitscope.core import plots
from traitscope.core.artifacts import BaselineScores, TraitVectors, best_layers, trait_sites
from traitscope.core.io import read_parquets, write_json, write_parquet
from traitscope.experiments.prefill_attack import analysis as prefill
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
pa = smk.params.prefill
sets = pa.conditions()
sidecars = [TraitVectors.load_info(f) for f in smk.input.sidecars]
best = best_layers(sidecars)
tokens = {c: read_parquets(smk.input[c]) for c in sets}
prompts = {c: pd.read_parquet(f) for c, f in zip(sets, smk.input.prompts)}
scores = prefill.window_scores(tokens, prompts, best, pa.method)
baselines = {c: BaselineScores.load(f) for c, f in zip(sets, smk.input.baselines)}
sites = trait_sites(sidecars)
random = prefill.random_windows(scores, baselines, sites) if all(b.n_random for b in baselines.values()) else None
comparisons = prefill.compare_conditions(
    scores, correction=pa.correction, alpha=pa.alpha, n_boot=pa.n_boot, seed=smk.params.seed, random=random
)
info = {
    "variant": pa.variant,
    "prompt_sets": sets,
    "method": pa.method,
    "model": sidecars[0].model,
    "prefill_text": sorted(prompts["C2"]["prefill"].dropna().unique().tolist()),
    "seed": smk.params.seed,
    "sites": sites,
}  # resid (the residual stream), attn or mlp (sublayer outputs)
result = prefill.summary(comparisons, scores, info)
traj = prefill.trajectories(tokens, best, pa.method, pa.max_tokens)
write_json(smk.output.json, result)
write_parquet(smk.output.scores, scores)
write_parquet(smk.output.trajectory, traj)
k = int(result["prefill_tokens"]["median"])
what = f"variant '{pa.variant}', {pa.method} vectors, prefill {info['prefill_text'][0]!r}"
plots.save(
    prefill.prefill_grid(
        result,
        f"Prefill attack: mean trait score over the first {k} assistant tokens "
        f"(the prefill, or the model's own start)\n{what}",
    ),
    smk.output.grid,
)
plots.save(
    prefill.trajectory_divergence(traj, k, f"Prefill attack: trait score along the assistant turn\n{what}"),
    smk.output.divergence,
)
log.info("C2 vs C4 d: %s", {t: round(r["cohens_d"], 2) for t, r in comparisons["C2_vs_C4"]["traits"].items()})
for name in ("C2_vs_C4", "C1_vs_C3"):
    for trait, r in comparisons[name]["traits"].items():
        if r.get("n_random") and not r["beats_random"]:
            log.warning(
                "%s %s: AUC %.3f DOES NOT BEAT ITS RANDOM BASELINE (95th percentile of %d random directions %.3f)",
                name,
                trait,
                r["auc"],
                r["n_random"],
                r["random_auc_p95"],
            )
