# experiments: research questions answered from projections (no model runs here).

COMPARE = CFG.get("compare")


if COMPARE:
    EM_DIR = f"{R}/emergent_misalignment"

    rule variant_comparison:
        input:
            base=shard_paths(PROJECTIONS + ".parquet", [COMPARE["base"]], [COMPARE["prompt_set"]]),
            variant=shard_paths(PROJECTIONS + ".parquet", [COMPARE["variant"]], [COMPARE["prompt_set"]]),
            prompts=f"{R}/prompts/{COMPARE['prompt_set']}.parquet",
            sidecars=vector_files("vectors.json"),
        output:
            json=f"{EM_DIR}/variant_comparison.json",
            scores=f"{EM_DIR}/per_question_scores.parquet",
            figure=f"{EM_DIR}/figures/trait_distributions.png",
        params:
            compare=COMPARE,
            positions={t: trait_position(CFG, t) for t in TRAITS},
            seed=SEED,
        log:
            f"{R}/logs/variant_comparison.log",
        script:
            "../workflow/scripts/variant_comparison.py"


def experiment_targets():
    out = []
    if COMPARE:
        out += [f"{EM_DIR}/variant_comparison.json", f"{EM_DIR}/figures/trait_distributions.png"]
    return out
