# experiments: research questions answered from projections (no model runs here).

COMPARE = CFG.get("compare")
EXTERNAL = CFG.get("external")
PREFILL = CFG.get("prefill_attack")


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


if EXTERNAL:
    EXT_DIR = f"{R}/external"

    rule external_dataset:
        input:
            scores=lambda w: shard_paths(PROJECTIONS + ".parquet", [EXTERNAL["variant"]], EXTERNAL["datasets"][w.dataset]["prompt_sets"]),
            prompts=lambda w: [f"{R}/prompts/{s}.parquet" for s in EXTERNAL["datasets"][w.dataset]["prompt_sets"]],
            sidecars=vector_files("vectors.json"),
        output:
            json=f"{EXT_DIR}/{{dataset}}/results.json",
            table=f"{EXT_DIR}/{{dataset}}/per_category.parquet",
            scores=f"{EXT_DIR}/{{dataset}}/scores.parquet",
            failures=f"{EXT_DIR}/{{dataset}}/failure_cases.json",
            figure=f"{EXT_DIR}/{{dataset}}/per_category_auc.png",
        wildcard_constraints:
            dataset="|".join(EXTERNAL["datasets"]),
        params:
            external=EXTERNAL,
            dataset=lambda w: EXTERNAL["datasets"][w.dataset],
            positions={t: trait_position(CFG, t) for t in TRAITS},
            seed=SEED,
        log:
            f"{R}/logs/external/{{dataset}}.log",
        script:
            "../workflow/scripts/external_dataset.py"


if PREFILL:
    PREFILL_DIR = f"{R}/prefill_attack"
    PREFILL_SETS = {c: PREFILL[role] for c, role in
                    (("C1", "harmful"), ("C2", "harmful_prefill"), ("C3", "benign"), ("C4", "benign_prefill"))}

    rule prefill_attack:
        input:
            **{c: shard_paths(PROJECTIONS + ".tokens.parquet", [PREFILL["variant"]], [s]) for c, s in PREFILL_SETS.items()},
            prompts=[f"{R}/prompts/{s}.parquet" for s in PREFILL_SETS.values()],
            sidecars=vector_files("vectors.json"),
        output:
            json=f"{PREFILL_DIR}/condition_comparison.json",
            scores=f"{PREFILL_DIR}/window_scores.parquet",
            trajectory=f"{PREFILL_DIR}/trajectory.parquet",
            grid=f"{PREFILL_DIR}/2x2_grid.png",
            divergence=f"{PREFILL_DIR}/trajectory_divergence.png",
        params:
            prefill=PREFILL,
            sets=PREFILL_SETS,
            seed=SEED,
        log:
            f"{R}/logs/prefill_attack.log",
        script:
            "../workflow/scripts/prefill_attack.py"


def experiment_targets():
    out = []
    if COMPARE:
        out += [f"{EM_DIR}/variant_comparison.json", f"{EM_DIR}/figures/trait_distributions.png"]
    if EXTERNAL:
        out += [f"{EXT_DIR}/{d}/{f}" for d in EXTERNAL["datasets"]
                for f in ("results.json", "per_category_auc.png", "failure_cases.json")]
    if PREFILL:
        out += [f"{PREFILL_DIR}/condition_comparison.json", f"{PREFILL_DIR}/2x2_grid.png",
                f"{PREFILL_DIR}/trajectory_divergence.png"]
    return out
